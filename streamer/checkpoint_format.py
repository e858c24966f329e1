"""A checkpoint's bytes: the engine's whole state with the offsets it reflects.

A magic line, a JSON header (format, config fingerprint, offsets, size and SHA-256 of the
payload), then the engine pickled. The stores (``checkpoint_directory``,
``checkpoint_topic``) keep these bytes; ``checkpoint`` decides when to write them.

Pickle, not a hand-written format: the state is numpy arrays and river's detectors,
which pickle exactly and fast; the files are written and read by driftgate alone, in a
directory only it should write to (never load a checkpoint from an untrusted source).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from dataclasses import dataclass
from typing import Any

from detectors.monitor import MonitorConfig
from streamer.config import FeedbackConfig, LimitsConfig
from streamer.engine import Engine
from streamer.event_order import Position

MAGIC = b"driftgate-checkpoint\n"
FORMAT = 4  # 4: one engine per consumer group, fed by an event-time merge; 3: per partition


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
