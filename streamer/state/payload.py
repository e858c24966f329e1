"""The engine's state as bytes and back: records (:mod:`.codec`) packed with msgpack."""

from __future__ import annotations

from typing import Any

import msgpack

from streamer.state.codec import Decoder, Encoder, not_a_checkpoint
from streamer.state.migrations import STATE_VERSION, migrate
from streamer.state.registry import REGISTRY


def dumps(state: object) -> bytes:
    """The state as msgpack'd records of :data:`STATE_VERSION`; TypeError names a class
    the registry does not allow."""
    data: bytes = msgpack.packb(Encoder(REGISTRY).encode(state), use_bin_type=True)
    return data


def unpack(payload: bytes) -> Any:
    """The record tree of a payload, not yet built into objects."""
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True, timestamp=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise not_a_checkpoint(f"its state is not msgpack ({type(exc).__name__})") from exc


def loads(payload: bytes, version: object = STATE_VERSION) -> object:
    """The state of a payload of state format ``version``, migrated and validated;
    :func:`~streamer.state.codec.not_a_checkpoint` (a ValueError) when it is not one."""
    tree = migrate(unpack(payload), version)
    try:
        return Decoder(REGISTRY).decode(tree)
    except RecursionError as exc:
        raise not_a_checkpoint("records nested too deep") from exc
    except (TypeError, AttributeError, OverflowError) as exc:
        # What the checks before building an object did not foresee: still refused.
        raise not_a_checkpoint(f"{type(exc).__name__}: {exc}") from exc
