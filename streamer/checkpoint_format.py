"""A checkpoint's bytes: the engine's whole state with the offsets it reflects.

A magic line, a JSON header (format, state format version, config fingerprint, offsets,
size and SHA-256 of the payload), then the engine as typed records in msgpack
(:mod:`streamer.state`). The stores (``checkpoint_directory``, ``checkpoint_topic``) keep
these bytes; ``checkpoint`` decides when to write them.

Not pickle: whoever can write the checkpoint topic or directory could make every
instance that restores from it run their code. Reading a checkpoint builds only the
classes of the state's allow-list from validated fields, and an older state format is
migrated (``streamer.state.migrations``), so an upgrade keeps references and waiting
predictions. FORMAT numbers the file layout: 5 is the first with the records (state
format 1); formats 4 and before were pickles, set aside once with a log line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from detectors.monitor import MonitorConfig
from streamer.config import FeedbackConfig, LimitsConfig
from streamer.engine import Engine
from streamer.event_order import Position
from streamer.state.codec import not_a_checkpoint
from streamer.state.migrations import STATE_VERSION
from streamer.state.payload import dumps, loads

MAGIC = b"driftgate-checkpoint\n"
# 5: the engine as typed records, versioned by "state" (streamer.state.migrations);
# 4 and before: pickles (4: one engine per consumer group, 3: one per partition).
FORMAT = 5
LAST_PICKLE_FORMAT = 4


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
    """A checkpoint's bytes: the magic line, the JSON header, the engine's records."""
    payload = dumps(engine)
    header = {
        "format": FORMAT,
        "state": STATE_VERSION,
        "config": config_fingerprint(
            engine.monitor_config, engine.limits, engine.feedback, engine.reference_digest
        ),
        "positions": sorted([t, p, offset] for (t, p), offset in positions.items()),
        "written_at": now,
        "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def read_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and the payload of a checkpoint of this format, checked against each
    other; ValueError says what is wrong."""
    if not data.startswith(MAGIC):
        raise not_a_checkpoint("no driftgate-checkpoint line")
    end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) : end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable header ({exc})") from exc
    got = header.get("format") if isinstance(header, dict) else header
    if type(got) is int and got <= LAST_PICKLE_FORMAT:
        raise ValueError(
            f"format {got} is a pickle, which this driftgate no longer loads (a pickle can "
            "run code): the state restarts once, references and waiting predictions "
            "included, and is kept across upgrades from now on"
        )
    if got != FORMAT:
        raise ValueError(f"format {got!r}, this driftgate reads format {FORMAT}")
    payload = data[end + 1 :]
    if len(payload) != header.get("bytes") or (
        hashlib.sha256(payload).hexdigest() != header.get("sha256")
    ):
        raise ValueError("truncated or corrupt (size or checksum mismatch)")
    return header, payload


def decode(data: bytes, fingerprint: str | None) -> tuple[dict[str, Any], Engine]:
    """Header and engine of a checkpoint; ValueError says what is wrong with it. With
    ``fingerprint`` None (``driftgate state inspect``), whatever settings it was made under."""
    header, payload = read_header(data)
    if fingerprint is not None and header.get("config") != fingerprint:
        raise ValueError(
            "made under other detection, limits or feedback settings or another pinned "
            "reference file (a new reference is built with the new ones)"
        )
    engine = loads(payload, header.get("state"))
    if not isinstance(engine, Engine):
        raise not_a_checkpoint(f"holds a {type(engine).__name__}, not an engine")
    return header, engine
