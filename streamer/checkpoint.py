"""Checkpoints: a partition's whole state with the offsets it reflects, written atomically.

One file per partition: a magic line, a JSON header (format, config fingerprint,
offsets, size and SHA-256 of the payload), then the engine pickled. Written to a
temporary file, fsynced, renamed over the old one and the directory fsynced, so a crash
at any point leaves the previous checkpoint or the new one, never half of one. A file
that is corrupt, truncated, of another format or made under other detection settings is
reported and moved aside (``*.rejected-<time>``), never loaded. Containers without a
volume keep the same bytes in a compacted Kafka topic instead (``checkpoint_topic``).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectors.monitor import MonitorConfig
from streamer.config import CheckpointConfig, FeedbackConfig, KafkaConfig, LimitsConfig
from streamer.engine import Engine
from streamer.errors import DriftgateError
from streamer.shards import owned_positions

if TYPE_CHECKING:
    from streamer.checkpoint_topic import CheckpointTopic

log = logging.getLogger(__name__)

MAGIC = b"driftgate-checkpoint\n"
FORMAT = 3  # 3: outcome conditions keep each scope's last measured effect; 2: per partition
Position = tuple[str, int]


def config_fingerprint(
    monitor_config: MonitorConfig,
    limits: LimitsConfig,
    feedback: FeedbackConfig,
    reference_digest: str = "",
) -> str:
    """What a checkpoint's state depends on: the detection, limits and join settings, and
    the pinned references (``Engine.reference_digest``)."""
    settings = {
        "detection": dataclasses.asdict(monitor_config),
        "limits": limits.model_dump(),
        "feedback": feedback.model_dump(),
        # Always present: a checkpoint from before references could be pinned holds an
        # engine without them, which must not be resumed.
        "reference": reference_digest,
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


def encode(engine: Engine, positions: dict[Position, int], now: float) -> bytes:
    """A checkpoint's bytes: the magic line, the JSON header, the engine pickled."""
    payload = pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)
    header = {
        "format": FORMAT,
        "config": config_fingerprint(
            engine.monitor_config, engine.limits, engine.feedback, engine.reference_digest
        ),
        "positions": sorted([t, p, offset] for (t, p), offset in positions.items()),
        "written_at": now,
        "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def decode(data: bytes, fingerprint: str) -> tuple[dict[str, Any], Engine]:
    """Header and engine of a checkpoint; ValueError says what is wrong with it."""
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
            "made under other detection, limits or feedback settings or another pinned "
            "reference file (a new reference is built with the new ones)"
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
        kafka: KafkaConfig | None = None,
    ) -> None:
        """In ``config.topic`` when it is set (then ``config.dir`` is not used, so the
        image's default directory needs no unsetting), else in ``config.dir``."""
        self.config = config
        self.directory: CheckpointDirectory | CheckpointTopic
        if config.topic is not None:
            if kafka is None:
                raise ValueError("a checkpoint topic needs the Kafka settings")
            # Imported here: checkpoint_topic builds on this module.
            from streamer.checkpoint_topic import CheckpointTopic

            self.directory = CheckpointTopic(kafka, config.topic)
        elif config.dir is not None:
            self.directory = CheckpointDirectory(Path(config.dir))
        else:
            raise ValueError("Checkpoints need checkpoint.dir or checkpoint.topic")
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

    def file_name(self, partition: int) -> str:
        """One checkpoint per input partition number (-1: a replay's only one)."""
        return self.name if partition < 0 else f"{self.name}.p{partition}"

    def save(self, engines: Mapping[int, Engine]) -> dict[Position, int]:
        """Checkpoint each partition's engine; returns the offsets their states reflect,
        which is what may be committed now."""
        positions: dict[Position, int] = {}
        for partition, engine in sorted(engines.items()):
            own = owned_positions(partition, engine)
            self.directory.save(self.file_name(partition), engine, own)
            positions.update(own)
        self._events = 0
        self._at = self._clock()
        return positions

    def restore(self, partition: int, current: Engine) -> Engine | None:
        """The partition's engine from its checkpoint, if there is a usable one (its
        ``positions`` say where to resume). ``current`` holds the settings it must match."""
        fingerprint = config_fingerprint(
            current.monitor_config, current.limits, current.feedback, current.reference_digest
        )
        name = self.file_name(partition)
        loaded = self.directory.load(name, fingerprint)
        if loaded is None:
            return None
        log.info(
            "state of %s restored from its checkpoint of %s, resuming at %s",
            name,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(loaded.written_at)),
            ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(loaded.positions.items())),
        )
        return loaded.engine
