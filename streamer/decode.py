"""Bytes to validated events, or to a rejection with a reason. Never raises on input.

The pydantic models in ``streamer/events.py`` are the contract. Validating every event
with them costs ~8 µs, more than the rest of the pipeline, so well-formed events take a
fast path: orjson parses, a few exact type checks on the top-level fields accept, and the
feature values are checked per column of the batch (:func:`invalid_feature_rows`).
Anything the fast path is not sure of goes through pydantic, which also names the
reason. A property test checks that whatever the fast path accepts, pydantic accepts
with the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from streamer.config import LimitsConfig
from streamer.events import FeedbackEvent, PredictionEvent

# The reasons are a closed set: they are metric labels and dead-letter headers.
REASONS = (
    "too_large",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "too_many_features",
    "string_too_long",
    "too_many_models",
    "invalid_record",
)

# A prediction as the engine reads it: the event's fields, already validated; ``ts`` and
# ``score`` are numbers, ``cohort`` a dict of strings (possibly absent or None).
Prediction = dict[str, Any]

_SCALARS = frozenset({float, int, bool, str, type(None)})
_NUMBERS = (float, int)
_STR = {str}
_ID_LIMIT = 256
# Integers beyond what a double holds exactly are not a measurement anyone sends.
_LARGEST_INT = 2**53


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


def _reason(error: ValidationError) -> Rejected:
    problem = error.errors(include_url=False)[0]
    kind = problem["type"]
    location = ".".join(str(part) for part in problem["loc"])
    detail = f"{location}: {problem['msg']}" if location else problem["msg"]
    if kind == "json_invalid":
        reason = "invalid_json"
    elif not problem["loc"] and kind in ("model_type", "model_attributes_type", "dict_type"):
        reason = "not_an_object"
    elif kind == "missing":
        reason = "missing_field"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        reason = "wrong_type"
    else:
        reason = "invalid_value"
    return Rejected(reason, detail[:500])


def _validate(model: type[BaseModel], raw: bytes | None, limits: LimitsConfig) -> Any:
    if raw is None:
        return Rejected("invalid_json", "empty message (tombstone)")
    if len(raw) > limits.max_message_bytes:
        return Rejected(
            "too_large", f"{len(raw)} bytes > limits.max_message_bytes={limits.max_message_bytes}"
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        return _reason(exc)


def _fast_prediction(obj: object, limits: LimitsConfig) -> bool:
    """True when the contract surely holds for everything but the feature values."""
    if type(obj) is not dict:
        return False
    ids = (obj.get("event_id"), obj.get("model"), obj.get("model_version"))
    ts, score, features = obj.get("ts"), obj.get("score"), obj.get("features")
    cohort = obj.get("cohort")
    return (
        set(map(type, ids)) == _STR
        and min(map(len, ids)) > 0  # type: ignore[arg-type]
        and max(map(len, ids)) <= _ID_LIMIT  # type: ignore[arg-type]
        and type(ts) in _NUMBERS
        and ts >= 0  # type: ignore[operator]
        and type(score) in _NUMBERS
        and type(features) is dict
        and len(features) <= limits.max_features_per_event
        and (
            cohort is None
            or (
                type(cohort) is dict
                and (
                    not cohort
                    or (
                        set(map(type, cohort.values())) == _STR
                        and max(map(len, cohort.values())) <= limits.max_string_bytes
                        and max(map(len, cohort)) <= limits.max_string_bytes
                    )
                )
            )
        )
    )


def decode_prediction(raw: bytes | None, limits: LimitsConfig) -> Prediction | Rejected:
    """One prediction, fully checked: a batch of one through the batch path."""
    event = decode_prediction_envelope(raw, limits)
    if isinstance(event, Rejected):
        return event
    bad = invalid_feature_rows({k: [v] for k, v in event["features"].items()}, limits)
    return bad.get(0, event)


def decode_prediction_envelope(
    raw: bytes | None, limits: LimitsConfig, parsed: object = None
) -> Prediction | Rejected:
    """A prediction whose feature values are still to be checked per column with
    :func:`invalid_feature_rows`. ``parsed`` is the message already parsed from JSON,
    when the source has it (then ``raw`` is only kept for dead letters)."""
    if parsed is None and raw is not None and len(raw) <= limits.max_message_bytes:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None  # pydantic names the reason
    if _fast_prediction(parsed, limits):
        return parsed  # type: ignore[return-value]
    if parsed is not None:
        raw = orjson.dumps(parsed)
    event = _validate(PredictionEvent, raw, limits)
    if isinstance(event, Rejected):
        return event
    if len(event.features) > limits.max_features_per_event:
        return Rejected(
            "too_many_features",
            f"{len(event.features)} features > limits.max_features_per_event="
            f"{limits.max_features_per_event}",
        )
    for key, value in event.cohort.items():
        if len(key) > limits.max_string_bytes or len(value) > limits.max_string_bytes:
            return _too_long(f"cohort.{key[:64]}", limits)
    prediction: Prediction = event.model_dump()
    return prediction


def _too_long(where: str, limits: LimitsConfig) -> Rejected:
    return Rejected(
        "string_too_long", f"{where}: longer than limits.max_string_bytes={limits.max_string_bytes}"
    )


def invalid_feature_rows(
    features: Mapping[str, Sequence[object]], limits: LimitsConfig
) -> dict[int, Rejected]:
    """Rows whose feature values break the contract, checked a column at a time.

    A column of plain scalars and short strings (the usual case) costs one pass in C;
    only a column that fails is searched row by row.
    """
    bad: dict[int, Rejected] = {}
    limit = limits.max_string_bytes
    for name, column in features.items():
        if len(name) > limit:
            for row, value in enumerate(column):
                if value is not None:
                    bad.setdefault(row, _too_long(f"features.{name[:64]}", limits))
            continue
        types = set(map(type, column))
        if not types <= _SCALARS:
            for row, value in enumerate(column):
                if type(value) not in _SCALARS:
                    bad.setdefault(
                        row,
                        Rejected(
                            "wrong_type",
                            f"features.{name}: a feature value must be a number, string, "
                            f"boolean or null, not {type(value).__name__}",
                        ),
                    )
        if int in types and any(type(v) is int and abs(v) > _LARGEST_INT for v in column):
            for row, value in enumerate(column):
                if type(value) is int and abs(value) > _LARGEST_INT:
                    bad.setdefault(
                        row, Rejected("invalid_value", f"features.{name}: integer out of range")
                    )
        strings = [v for v in column if type(v) is str] if str in types else []
        if strings and max(map(len, strings)) > limit:
            for row, value in enumerate(column):
                if type(value) is str and len(value) > limit:
                    bad.setdefault(row, _too_long(f"features.{name}", limits))
    return bad


def decode_feedback(
    raw: bytes | None, limits: LimitsConfig, parsed: object = None
) -> FeedbackEvent | Rejected:
    if parsed is not None:
        raw = orjson.dumps(parsed)
    event = _validate(FeedbackEvent, raw, limits)
    if isinstance(event, FeedbackEvent | Rejected):
        return event
    return Rejected("wrong_type", "not a feedback event")
