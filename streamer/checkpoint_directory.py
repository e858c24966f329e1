"""Checkpoints as files in a local directory, written atomically.

One file per name: written to a temporary file, fsynced, renamed over the old one and the
directory fsynced, so a crash at any point leaves the previous checkpoint or the new one,
never half of one. A file that is corrupt, truncated, of another format or made under
other detection settings is reported and moved aside (``*.rejected-<time>``), never loaded.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from streamer.checkpoint_format import Loaded, decode, encode
from streamer.engine import Engine
from streamer.errors import DriftgateError
from streamer.event_order import Position

log = logging.getLogger(__name__)


class CheckpointDirectory:
    """Checkpoints, by name, in one local directory."""

    def __init__(self, path: Path, wall_clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._wall_clock = wall_clock
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DriftgateError(
                f"cannot create the checkpoint directory {self.path}: {exc.strerror} "
                "(set checkpoint.dir to a writable directory)"
            ) from exc
        self.saved = 0
        self.rejected = 0
        self.last_saved_at: float | None = None

    def _file(self, name: str) -> Path:
        return self.path / f"{name}.ckpt"

    def save(self, name: str, engine: Engine, positions: dict[Position, int]) -> None:
        now = self._wall_clock()
        data = encode(engine, positions, now)
        target = self._file(name)
        temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            with open(temporary, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, target)
            directory = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise DriftgateError(
                f"cannot write checkpoint {target}: {exc.strerror}", retriable=True
            ) from exc
        self.saved += 1
        self.last_saved_at = now

    def load(self, name: str, fingerprint: str) -> Loaded | None:
        """The partition's checkpoint, or None when there is none or it is unusable
        (then moved aside and logged). ``fingerprint`` is :func:`config_fingerprint` of
        the current settings: a checkpoint made under other settings is not loaded."""
        path = self._file(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DriftgateError(f"cannot read checkpoint {path}: {exc.strerror}") from exc
        try:
            header, engine = decode(data, fingerprint)
        except ValueError as exc:
            self._set_aside(path, str(exc))
            return None
        positions = {(str(t), int(p)): int(o) for t, p, o in header["positions"]}
        return Loaded(engine, positions, float(header["written_at"]))

    def _set_aside(self, path: Path, reason: str) -> None:
        self.rejected += 1
        aside = path.with_name(f"{path.name}.rejected-{int(self._wall_clock())}")
        log.error(
            "checkpoint %s not loaded: %s; moved to %s, the partition starts afresh",
            path,
            reason,
            aside.name,
        )
        try:
            os.replace(path, aside)
        except OSError as exc:
            log.error("cannot move %s aside: %s", path, exc.strerror)
