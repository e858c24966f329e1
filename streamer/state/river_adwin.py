"""river's ADWIN window as its fields, not as river's opaque pickle bytes.

river 0.26's ADWIN keeps its window in a compiled object (``AdaptiveWindowing``, Rust)
whose only ways in and out are its constructor and ``__getstate__``/``__setstate__``:
the struct serialised with bincode (fixed-width little-endian integers, a u64 length
before each vector). Its getters (width, total, variance) do not expose the buckets, and
the buckets cannot be rebuilt by replaying values (they are compressed sums), so the
state is kept as the struct's fields (river's rust_src/adwin.rs): the constructor's
parameters, the running totals and counters, and each bucket's totals and variances.

Why not keep river's bytes as they are: its ``__setstate__`` panics (a PanicException,
with a backtrace on stderr) on a malformed blob and allocates whatever length a blob
claims. So a checkpoint holds the fields, which are validated here, and only bytes this
module wrote from validated fields ever reach river. :func:`fields_of` checks that
writing its fields back gives river's bytes exactly, so a river release that changes the
layout fails at the first checkpoint (and in the tests), never silently.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from river._river_rust.drift import AdaptiveWindowing

# delta f64, clock i32, max_buckets u64, min_window_length f64, grace_period f64,
# total f64, variance f64, width f64, total_width f64,
# n_buckets i32, max_n_buckets i32, tick i32, n_detections i32
_HEAD = struct.Struct("<diQddddddiiii")
_HEAD_FIELDS = (
    "delta",
    "clock",
    "max_buckets",
    "min_window_length",
    "grace_period",
    "total",
    "variance",
    "width",
    "total_width",
    "n_buckets",
    "max_n_buckets",
    "tick",
    "n_detections",
)
_U64 = struct.Struct("<Q")
# After the struct, river's Python binding keeps its constructor's arguments: delta f64,
# clock i32, max_buckets u64, min_window_length i32, grace_period i32. They are the
# struct's own (checked when read, written from it).
_ARGS = struct.Struct("<diQii")
_INTS = {"clock", "max_buckets", "n_buckets", "max_n_buckets", "tick", "n_detections"}
# A window of 2**63 values is beyond any stream: more buckets than this is corruption.
_MAX_BUCKET_LISTS = 64
_MAX_BUCKET_SIZE = 1_000


def fields_of(window: AdaptiveWindowing) -> dict[str, Any]:
    """The window's fields; ValueError if river's bytes are not laid out as expected."""
    blob = window.__getstate__()
    try:
        fields = _parse(blob)
    except (struct.error, ValueError) as exc:
        raise ValueError(f"river's ADWIN state is not laid out as expected: {exc}") from exc
    if _write(fields) != blob:
        raise ValueError("river's ADWIN state does not round-trip through its fields")
    return fields


def window_from(fields: object) -> AdaptiveWindowing:
    """A window with these fields, validated first; ValueError says what is wrong."""
    if not isinstance(fields, dict) or set(fields) != {*_HEAD_FIELDS, "buckets"}:
        raise ValueError("an ADWIN window needs exactly its fields")
    for name in _HEAD_FIELDS:
        value = fields[name]
        if name in _INTS:
            if type(value) is not int or not 0 <= value < 2**31:
                raise ValueError(f"ADWIN {name} must be a non-negative 32-bit integer")
        elif type(value) is not float:
            raise ValueError(f"ADWIN {name} must be a float")
    if not 0.0 < fields["delta"] < 1.0 or fields["clock"] < 1:
        raise ValueError("ADWIN delta must be in (0, 1) and clock at least 1")
    size = fields["max_buckets"]
    if not 1 <= size <= _MAX_BUCKET_SIZE:
        raise ValueError(f"ADWIN max_buckets must be in 1..{_MAX_BUCKET_SIZE}")
    buckets = fields["buckets"]
    if not isinstance(buckets, list) or not 1 <= len(buckets) <= _MAX_BUCKET_LISTS:
        raise ValueError(f"ADWIN needs 1..{_MAX_BUCKET_LISTS} bucket lists")
    for bucket in buckets:
        _check_bucket(bucket, size)
    delta, clock, max_buckets, min_window_length, grace_period = _arguments(fields)
    window = AdaptiveWindowing(
        delta=delta,
        clock=clock,
        max_buckets=max_buckets,
        min_window_length=min_window_length,
        grace_period=grace_period,
    )
    window.__setstate__(_write(fields))
    return window


def _check_bucket(bucket: object, size: int) -> None:
    if not isinstance(bucket, dict) or set(bucket) != {
        "max_size",
        "current_idx",
        "totals",
        "variances",
    }:
        raise ValueError("an ADWIN bucket list needs exactly its fields")
    if type(bucket["max_size"]) is not int or bucket["max_size"] != size:
        raise ValueError("an ADWIN bucket list's size must be the window's max_buckets")
    # At rest a list holds at most max_buckets entries (river merges the one more at
    # once); one more would make river's next insert index past its end and panic.
    if type(bucket["current_idx"]) is not int or not 0 <= bucket["current_idx"] <= size:
        raise ValueError("an ADWIN bucket list's index is out of range")
    for name in ("totals", "variances"):
        values = bucket[name]
        if (
            not isinstance(values, list)
            or len(values) != size + 1
            or any(type(v) is not float for v in values)
        ):
            raise ValueError(f"an ADWIN bucket list's {name} must be max_buckets + 1 floats")


def _whole(value: float, name: str) -> int:
    if not math.isfinite(value) or value != int(value) or not 0 <= value < 2**31:
        raise ValueError(f"ADWIN {name} must be a whole number")
    return int(value)


def _parse(blob: bytes) -> dict[str, Any]:
    fields: dict[str, Any] = dict(zip(_HEAD_FIELDS, _HEAD.unpack_from(blob, 0), strict=True))
    at = _HEAD.size
    (count,) = _U64.unpack_from(blob, at)
    at += _U64.size
    if count > _MAX_BUCKET_LISTS:
        raise ValueError(f"{count} bucket lists")
    buckets = []
    for _ in range(count):
        max_size, current = struct.unpack_from("<QQ", blob, at)
        at += 16
        bucket: dict[str, Any] = {"max_size": max_size, "current_idx": current}
        for name in ("totals", "variances"):
            (n,) = _U64.unpack_from(blob, at)
            at += _U64.size
            if n > _MAX_BUCKET_SIZE + 1:
                raise ValueError(f"a bucket list of {n} values")
            bucket[name] = list(struct.unpack_from(f"<{n}d", blob, at))
            at += 8 * n
        buckets.append(bucket)
    fields["buckets"] = buckets
    if _ARGS.unpack_from(blob, at) != _arguments(fields):
        raise ValueError("the binding's arguments are not the window's")
    at += _ARGS.size
    if at != len(blob):
        raise ValueError(f"{len(blob) - at} bytes left over")
    return fields


def _arguments(fields: dict[str, Any]) -> tuple[float, int, int, int, int]:
    return (
        fields["delta"],
        fields["clock"],
        fields["max_buckets"],
        _whole(fields["min_window_length"], "min_window_length"),
        _whole(fields["grace_period"], "grace_period"),
    )


def _write(fields: dict[str, Any]) -> bytes:
    parts = [_HEAD.pack(*(fields[name] for name in _HEAD_FIELDS))]
    parts.append(_U64.pack(len(fields["buckets"])))
    for bucket in fields["buckets"]:
        parts.append(struct.pack("<QQ", bucket["max_size"], bucket["current_idx"]))
        for name in ("totals", "variances"):
            values = bucket[name]
            parts.append(_U64.pack(len(values)) + struct.pack(f"<{len(values)}d", *values))
    parts.append(_ARGS.pack(*_arguments(fields)))
    return b"".join(parts)
