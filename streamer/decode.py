"""Bytes to validated events, or to a rejection with a reason. Never raises on input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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


def _decode(model: type[BaseModel], raw: bytes, limits: LimitsConfig) -> BaseModel | Rejected:
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


def _long_string(values: Mapping[str, object], limit: int) -> str | None:
    for key, value in values.items():
        if len(key) > limit or (isinstance(value, str) and len(value) > limit):
            return str(key[:64])
    return None


def decode_prediction(raw: bytes, limits: LimitsConfig) -> PredictionEvent | Rejected:
    event = _decode(PredictionEvent, raw, limits)
    if not isinstance(event, PredictionEvent):
        return event if isinstance(event, Rejected) else Rejected("wrong_type", "not a prediction")
    if len(event.features) > limits.max_features_per_event:
        return Rejected(
            "too_many_features",
            f"{len(event.features)} features > limits.max_features_per_event="
            f"{limits.max_features_per_event}",
        )
    for field in (event.features, event.cohort):
        key = _long_string(field, limits.max_string_bytes)
        if key is not None:
            return Rejected(
                "string_too_long",
                f"{key!r}: longer than limits.max_string_bytes={limits.max_string_bytes}",
            )
    return event


def decode_feedback(raw: bytes, limits: LimitsConfig) -> FeedbackEvent | Rejected:
    event = _decode(FeedbackEvent, raw, limits)
    if isinstance(event, FeedbackEvent | Rejected):
        return event
    return Rejected("wrong_type", "not a feedback event")
