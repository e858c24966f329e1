"""Checkpoints: a partition's whole state with the offsets it reflects, written atomically.

One file per partition: a magic line, a JSON header (format, config fingerprint,
offsets, size and SHA-256 of the payload), then the engine pickled. Written to a
temporary file, fsynced, renamed over the old one and the directory fsynced, so a crash
at any point leaves the previous checkpoint or the new one, never half of one. A file
that is corrupt, truncated, of another format or made under other detection settings is
reported and moved aside (``*.rejected-<time>``), never loaded.

Pickle, not a hand-written format: the state is numpy arrays and river's detectors,
which pickle exactly and fast; the files are written and read by driftgate alone, in a
directory only it should write to (never load a checkpoint from an untrusted source).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detectors.monitor import MonitorConfig
from streamer.config import CheckpointConfig, FeedbackConfig, LimitsConfig
from streamer.engine import Engine
from streamer.errors import DriftgateError

log = logging.getLogger(__name__)

MAGIC = b"driftgate-checkpoint\n"
FORMAT = 1
Position = tuple[str, int]


def config_fingerprint(
    monitor_config: MonitorConfig, limits: LimitsConfig, feedback: FeedbackConfig
) -> str:
    """What a checkpoint's state depends on: the detection, limits and join settings."""
    settings = {
        "detection": dataclasses.asdict(monitor_config),
        "limits": limits.model_dump(),
        "feedback": feedback.model_dump(),
    }
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Loaded:
    engine: Engine
    positions: dict[Position, int]
    written_at: float


class CheckpointDirectory:
    """Checkpoints of named partitions in one local directory."""

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
        payload = pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)
        now = self._wall_clock()
        header = {
            "format": FORMAT,
            "config": config_fingerprint(engine.monitor_config, engine.limits, engine.feedback),
            "positions": sorted([t, p, offset] for (t, p), offset in positions.items()),
            "written_at": now,
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        target = self._file(name)
        temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            with open(temporary, "wb") as fh:
                fh.write(MAGIC)
                fh.write(json.dumps(header).encode() + b"\n")
                fh.write(payload)
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
            header, engine = _decode(data, fingerprint)
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


def _decode(data: bytes, fingerprint: str) -> tuple[dict[str, Any], Engine]:
    """Header and engine of a checkpoint file; ValueError says what is wrong with it."""
    if not data.startswith(MAGIC):
        raise ValueError("not a driftgate checkpoint")
    end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) : end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable header ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else header
        raise ValueError(f"format {got!r}, this driftgate reads format {FORMAT}")
    if header.get("config") != fingerprint:
        raise ValueError(
            "made under other detection, limits or feedback settings (a new reference "
            "is built with the new ones)"
        )
    payload = data[end + 1 :]
    if len(payload) != header.get("bytes") or (
        hashlib.sha256(payload).hexdigest() != header.get("sha256")
    ):
        raise ValueError("truncated or corrupt (size or checksum mismatch)")
    try:
        engine = pickle.loads(payload)
    except Exception as exc:  # any unpickling failure means "unusable"
        raise ValueError(f"cannot be unpickled ({type(exc).__name__}: {exc})") from exc
    if not isinstance(engine, Engine):
        raise ValueError(f"holds a {type(engine).__name__}, not an engine")
    return header, engine


class Checkpoints:
    """When to checkpoint, and the engine's checkpoint under its name (the consumer
    group and the topic are in it, so that deployments can share a directory)."""

    def __init__(
        self,
        config: CheckpointConfig,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.dir is None:
            raise ValueError("Checkpoints need checkpoint.dir")
        self.config = config
        self.directory = CheckpointDirectory(Path(config.dir))
        self.name = name
        self._clock = clock
        self._events = 0
        self._at = clock()

    def due(self, events: int) -> bool:
        """Count a batch's records; True once enough records or time have passed."""
        self._events += events
        return (
            self._events >= self.config.interval_events
            or self._clock() - self._at >= self.config.interval_s
        )

    def save(self, engine: Engine) -> dict[Position, int]:
        """Checkpoint the engine; returns the offsets its state reflects, which is what
        may be committed now."""
        self.directory.save(self.name, engine, engine.positions)
        self._events = 0
        self._at = self._clock()
        return dict(engine.positions)

    def restore(self, current: Engine) -> Engine | None:
        """The engine of the checkpoint, if there is a usable one (its ``positions``
        say where to resume)."""
        fingerprint = config_fingerprint(current.monitor_config, current.limits, current.feedback)
        loaded = self.directory.load(self.name, fingerprint)
        if loaded is None:
            return None
        log.info(
            "state restored from the checkpoint of %s, resuming at %s",
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(loaded.written_at)),
            ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(loaded.positions.items())),
        )
        return loaded.engine
