"""Feedback messages to labels, or to a rejection with a reason. Never raises on input.

The same contract and paths as predictions (:mod:`streamer.decode`): pydantic's
``FeedbackEvent`` is the contract, a fast path accepts what surely holds, and a batch's
valid labels come out as columns, with no object per label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import orjson

from streamer.config import LimitsConfig

# The contract's shared checks and limits; private to the decoding of both topics.
from streamer.decode import (
    _FLOAT_MAX,
    _ID_LIMIT,
    _NUMBER_TYPES,
    _NUMBERS,
    _TOMBSTONE,
    _UNPARSED,
    Rejected,
    _finite_sum,
    _parsed_batch,
    _short_strings,
    _slow,
    _too_large,
    _utf8,
)
from streamer.events import FeedbackEvent

_SOURCE_LIMIT = 128
_FEEDBACK_FIELDS = frozenset(FeedbackEvent.model_fields)


def _fast_feedback(obj: object, strict_parser: bool) -> FeedbackEvent | None:
    """The event when the contract surely holds (pydantic would accept it with these
    values), else None. ``model_construct`` skips pydantic's ~10 µs of validation."""
    if type(obj) is not dict:
        return None
    event_id, ts, label = obj.get("event_id"), obj.get("ts"), obj.get("label")
    source, override = obj.get("source", "unknown"), obj.get("override", False)
    if not (
        type(event_id) is str
        and 0 < len(event_id) <= _ID_LIMIT
        and type(ts) in _NUMBERS
        and 0 <= ts <= _FLOAT_MAX  # type: ignore[operator]
        and type(label) in _NUMBERS
        and 0 <= label <= 1  # type: ignore[operator]
        and type(source) is str
        and 0 < len(source) <= _SOURCE_LIMIT
        and type(override) is bool
        and (strict_parser or _utf8((event_id, source)))
    ):
        return None
    return FeedbackEvent.model_construct(
        event_id=event_id,
        ts=float(ts),  # type: ignore[arg-type]
        label=float(label),  # type: ignore[arg-type]
        source=source,
        override=override,
    )


@dataclass(frozen=True)
class FeedbackColumns:
    """The valid labels of a batch as columns; ``rows`` says which message each was."""

    rows: list[int]
    event_id: list[str]
    ts: list[float]
    label: list[float]
    source: list[str]
    override: list[bool]


_LABEL_FIELDS = itemgetter("event_id", "ts", "label")


def decode_feedbacks(
    raws: Sequence[bytes | None], parsed: Sequence[object], limits: LimitsConfig
) -> tuple[FeedbackColumns, dict[int, Rejected]]:
    """:func:`decode_feedback` of each message of a batch, the valid labels as columns
    (no object per label) and the others by position. The fast path's checks run a
    column at a time; a batch they are not sure of is decoded one message at a time."""
    columns = _fast_feedbacks(raws, parsed, limits)
    if columns is not None:
        return columns, {}
    events = [decode_feedback(r, limits, p) for r, p in zip(raws, parsed, strict=True)]
    valid = [(i, e) for i, e in enumerate(events) if isinstance(e, FeedbackEvent)]
    return FeedbackColumns(
        [i for i, _ in valid],
        [e.event_id for _, e in valid],
        [e.ts for _, e in valid],
        [e.label for _, e in valid],
        [e.source for _, e in valid],
        [e.override for _, e in valid],
    ), {i: e for i, e in enumerate(events) if isinstance(e, Rejected)}


def _fast_feedbacks(
    raws: Sequence[bytes | None], parsed: Sequence[object], limits: LimitsConfig
) -> FeedbackColumns | None:
    """The columns when :func:`_fast_feedback` surely holds for every message: the
    same checks, a column at a time."""
    objects = _parsed_batch(raws, parsed, limits)
    if not objects or set(map(type, objects)) != {dict}:
        return None
    try:
        event_ids, ts, labels = zip(*map(_LABEL_FIELDS, objects))
    except KeyError:
        return None
    sources = [obj.get("source", "unknown") for obj in objects]
    overrides = [obj.get("override", False) for obj in objects]
    if not (_short_strings(event_ids, _ID_LIMIT) and _short_strings(sources, _SOURCE_LIMIT)):
        return None
    for column, high in ((ts, _FLOAT_MAX), (labels, 1)):
        types = set(map(type, column))
        # A finite sum: no NaN or infinity (a laxer parser's), nothing past a double.
        if not types <= _NUMBER_TYPES or not _finite_sum(column, types):
            return None
        if min(column) < 0 or max(column) > high:
            return None
    if set(map(type, overrides)) != {bool}:
        return None
    if any(p is not None for p in parsed):  # a laxer parser's strings: lone surrogates?
        text = "".join(chain(event_ids, sources))
        if not (text.isascii() or _utf8((text,))):
            return None
    return FeedbackColumns(
        list(range(len(objects))),
        list(event_ids),
        list(map(float, ts)),
        list(map(float, labels)),
        sources,
        overrides,
    )


def decode_feedback(
    raw: bytes | None, limits: LimitsConfig, parsed: object = None
) -> FeedbackEvent | Rejected:
    if raw is not None and len(raw) > limits.max_message_bytes:
        return _too_large(len(raw), limits)
    if parsed is None:
        if raw is None:
            return _TOMBSTONE
        try:
            fast = _fast_feedback(orjson.loads(raw), strict_parser=True)
        except orjson.JSONDecodeError:
            fast = None
        event = fast or _slow(FeedbackEvent, _FEEDBACK_FIELDS, raw, _UNPARSED)
    else:
        fast = _fast_feedback(parsed, strict_parser=False)
        event = fast or _slow(FeedbackEvent, _FEEDBACK_FIELDS, None, parsed)
    if isinstance(event, FeedbackEvent | Rejected):
        return event
    return Rejected("wrong_type", "not a feedback event")
