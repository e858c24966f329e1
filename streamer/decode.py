"""Bytes to validated events, or to a rejection with a reason. Never raises on input.

The pydantic models in ``streamer/events.py`` are the contract. Validating every event
with them costs ~8 µs, more than the rest of the pipeline, so well-formed events take a
fast path: orjson parses, a few exact type checks on the top-level fields accept, and the
feature values are checked per column of the batch, a column of floats becoming the
array the detectors take (:func:`checked_feature_columns`).
Anything the fast path is not sure of goes through pydantic, which also names the
reason. A property test checks that whatever the fast path accepts, pydantic accepts
with the same values.

A source may hand over the message already parsed (``parsed``). Its parser may be laxer
than orjson (Python's ``json`` reads NaN, Infinity, 10**400 and lone surrogates, and
nests without limit), so the fast path checks what orjson would have refused, and the
slow path re-encodes such an object in a way that can neither raise nor recurse.

Feedback messages take the same paths in :mod:`streamer.feedback_decode`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from detectors.arrays import FeatureColumn, FloatArray
from streamer.config import LimitsConfig
from streamer.events import PredictionEvent

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
_NUMBER_TYPES = frozenset(_NUMBERS)
_NUMERIC = frozenset({float, int, bool, type(None)})
_STR = {str}
_FLOAT = {float}
_INT = {int}
_ID_LIMIT = 256
# Integers beyond what a double holds exactly are not a measurement anyone sends.
_LARGEST_INT = 2**53
# Bounds ts and score to what a double holds: NaN and infinities fail the comparison.
_FLOAT_MAX = sys.float_info.max
_PREDICTION_FIELDS = frozenset(PredictionEvent.model_fields)
_UNPARSED = object()


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


_TOMBSTONE = Rejected("invalid_json", "empty message (tombstone)")


def _too_large(size: int, limits: LimitsConfig) -> Rejected:
    return Rejected(
        "too_large", f"{size} bytes > limits.max_message_bytes={limits.max_message_bytes}"
    )


def _pydantic(model: type[BaseModel], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        return _reason(exc)


def _slow(
    model: type[BaseModel], fields: frozenset[str], message: bytes | None, parsed: object
) -> Any:
    """pydantic's verdict on what the fast path was not sure of, naming the reason.

    ``message`` is the message's bytes (None when a source handed it over parsed), and
    ``parsed`` the message as a source or orjson parsed it (_UNPARSED: not tried yet).
    """
    if message is not None:
        event = _pydantic(model, message)
        if not (isinstance(event, Rejected) and event.reason == "invalid_json"):
            return event
        # orjson reads up to 1024 levels of nesting, pydantic 200: a message nested deep
        # only in a field the contract ignores is judged on the other fields.
        if parsed is _UNPARSED:
            try:
                parsed = orjson.loads(message)
            except orjson.JSONDecodeError:
                return event
    encoded = _encoded(parsed, fields)
    if isinstance(encoded, Rejected):
        return encoded
    return _pydantic(model, encoded)


def _encoded(parsed: object, fields: frozenset[str]) -> bytes | Rejected:
    """JSON text of a parsed message, for pydantic to validate and name the reason.

    Only the contract's fields are kept: the others are ignored either way, so their
    depth and types must not decide. The standard library writes what orjson would
    refuse or change (NaN becomes null, integers past 64 bits raise) as the literals a
    producer sent, so pydantic names the same reason as for the bytes; a lone surrogate
    is escaped, and pydantic rejects it as orjson does.
    """
    if type(parsed) is dict:
        parsed = {k: v for k, v in parsed.items() if k in fields}
    try:
        return json.dumps(parsed, allow_nan=True).encode()
    except RecursionError:
        return Rejected("invalid_json", "nested too deeply")
    except TypeError as exc:
        return Rejected("wrong_type", f"not a JSON value: {exc}"[:500])
    except ValueError as exc:  # a circular object, or an integer of over 4300 digits
        return Rejected("invalid_value", f"not a JSON value: {exc}"[:500])


def _utf8(strings: Iterable[str]) -> bool:
    """False when a string holds a lone surrogate (Python's json reads "\\ud800"): it
    cannot be written out again as UTF-8, in a decision, a metric or a dead letter."""
    try:
        for text in strings:
            if not text.isascii():  # O(1) in CPython: a flag of the string
                text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _fast_prediction(obj: object, limits: LimitsConfig, strict_parser: bool = True) -> bool:
    """True when the contract surely holds for everything but the feature values.

    ``strict_parser`` says ``obj`` came from orjson, whose strings are all valid UTF-8.
    """
    if type(obj) is not dict:
        return False
    ids: tuple[Any, ...] = (obj.get("event_id"), obj.get("model"), obj.get("model_version"))
    ts, score, features = obj.get("ts"), obj.get("score"), obj.get("features")
    cohort = obj.get("cohort")
    return (
        _short_strings(ids, _ID_LIMIT)
        and type(ts) in _NUMBERS
        and 0 <= ts <= (_FLOAT_MAX if type(ts) is float else _LARGEST_INT)  # type: ignore[operator]
        and type(score) in _NUMBERS
        and _exact(score)  # type: ignore[arg-type]
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
        and (strict_parser or _utf8_envelope(ids, cohort))
    )


def _exact(number: float) -> bool:
    """A number a double holds exactly: an integer past 2**53 is left to pydantic, which
    reads it as the nearest double (or rejects it), so the fast path never differs."""
    if type(number) is int:
        return -_LARGEST_INT <= number <= _LARGEST_INT
    return -_FLOAT_MAX <= number <= _FLOAT_MAX


def _utf8_envelope(ids: tuple[str, ...], cohort: dict[str, str] | None) -> bool:
    # Joined, a lone surrogate stays one (Python never pairs them): one check for all.
    text = "".join((*ids, *(cohort or ()), *(cohort or {}).values()))
    return text.isascii() or _utf8((text,))


def decode_prediction_envelope(
    raw: bytes | None, limits: LimitsConfig, parsed: object = None
) -> Prediction | Rejected:
    """A prediction whose feature values are still to be checked per column with
    :func:`invalid_feature_rows`. ``parsed`` is the message already parsed from JSON,
    when the source has it (then ``raw`` is only kept for dead letters)."""
    # The size limit holds for a message a source parsed too: on the record's bytes.
    if raw is not None and len(raw) > limits.max_message_bytes:
        return _too_large(len(raw), limits)
    message = None
    if parsed is None:
        if raw is None:
            return _TOMBSTONE
        message = raw
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            # pydantic reads NaN, 1e400 and the like to name the reason; orjson does not.
            return _checked(_pydantic(PredictionEvent, raw), limits)
    if _fast_prediction(parsed, limits, strict_parser=message is not None):
        return parsed  # type: ignore[return-value]
    features = parsed.get("features") if type(parsed) is dict else None
    if type(features) is dict and len(features) > limits.max_features_per_event:
        # Said before pydantic would validate every one of, say, 100,000 values.
        return _too_many_features(len(features), limits)
    return _checked(_slow(PredictionEvent, _PREDICTION_FIELDS, message, parsed), limits)


def decode_prediction_envelopes(
    raws: Sequence[bytes | None], parsed: Sequence[object], limits: LimitsConfig
) -> list[Prediction | Rejected]:
    """:func:`decode_prediction_envelope` of each message of a batch (``parsed[i]`` is
    message i already parsed, or None). The fast path's checks run a column at a time
    over the whole batch; a batch they are not sure of is decoded one event at a time."""
    objects = _parsed_batch(raws, parsed, limits)
    strict = all(p is None for p in parsed)  # parsed here, by orjson
    if objects is not None and _fast_predictions(objects, limits, strict_parser=strict):
        return objects
    return [decode_prediction_envelope(r, limits, p) for r, p in zip(raws, parsed)]


def _parsed_batch(
    raws: Sequence[bytes | None], parsed: Sequence[object], limits: LimitsConfig
) -> list[Any] | None:
    """Every message of a batch parsed (orjson's or the source's), or None when one is a
    tombstone, too large or not JSON: then the batch is decoded one message at a time."""
    messages = [raw for raw in raws if raw is not None]
    if len(messages) != len(raws) or max(map(len, messages), default=0) > limits.max_message_bytes:
        return None
    try:
        return [orjson.loads(m) if p is None else p for m, p in zip(messages, parsed)]
    except orjson.JSONDecodeError:
        return None


def _short_strings(column: Sequence[Any], limit: int) -> bool:
    """Every value a string of 1 to ``limit`` characters."""
    if set(map(type, column)) != _STR:
        return False
    return min(map(len, column)) > 0 and max(map(len, column)) <= limit


_ENVELOPE_FIELDS = itemgetter("event_id", "model", "model_version", "ts", "score", "features")


def _fast_predictions(objects: list[Any], limits: LimitsConfig, strict_parser: bool) -> bool:
    """True when :func:`_fast_prediction` surely holds for every object: the same
    checks, a column at a time (a few passes in C instead of a dozen tests per event)."""
    if not objects or set(map(type, objects)) != {dict}:
        return False
    try:
        *ids, ts, score, features = zip(*map(_ENVELOPE_FIELDS, objects))
    except KeyError:
        return False
    if not all(_short_strings(column, _ID_LIMIT) for column in ids):
        return False
    for column, low in ((ts, 0.0), (score, -_FLOAT_MAX)):
        types = set(map(type, column))
        # A finite sum: no NaN or infinity (a laxer parser's), nothing past a double.
        if not types <= _NUMBER_TYPES or not _finite_sum(column, types):
            return False
        if min(column) < low or max(column) > _FLOAT_MAX:
            return False
        if int in types and not all(map(_exact, column)):
            return False
    if set(map(type, features)) != {dict}:
        return False
    if max(map(len, features)) > limits.max_features_per_event:
        return False
    cohorts = [obj["cohort"] for obj in objects if obj.get("cohort") is not None]
    names: list[str] = []
    labels: list[str] = []
    if cohorts:
        if set(map(type, cohorts)) != {dict}:
            return False
        names = list(chain.from_iterable(cohorts))
        labels = list(chain.from_iterable(map(dict.values, cohorts)))
        limit = limits.max_string_bytes
        if labels and (
            set(map(type, labels)) != _STR
            or max(map(len, labels)) > limit
            or max(map(len, names)) > limit
        ):
            return False
    if strict_parser:
        return True
    text = "".join(chain.from_iterable((*ids, names, labels)))
    return text.isascii() or _utf8((text,))


def _checked(event: PredictionEvent | Rejected, limits: LimitsConfig) -> Prediction | Rejected:
    """The limits pydantic does not know, on an event it accepted."""
    if isinstance(event, Rejected):
        return event
    if len(event.features) > limits.max_features_per_event:
        return _too_many_features(len(event.features), limits)
    for key, value in event.cohort.items():
        if len(key) > limits.max_string_bytes or len(value) > limits.max_string_bytes:
            return _too_long(f"cohort.{key[:64]}", limits)
    prediction: Prediction = event.model_dump()
    return prediction


def _too_many_features(count: int, limits: LimitsConfig) -> Rejected:
    return Rejected(
        "too_many_features",
        f"{count} features > limits.max_features_per_event={limits.max_features_per_event}",
    )


def _too_long(where: str, limits: LimitsConfig) -> Rejected:
    return Rejected(
        "string_too_long", f"{where}: longer than limits.max_string_bytes={limits.max_string_bytes}"
    )


def invalid_feature_rows(
    features: Mapping[str, FeatureColumn], limits: LimitsConfig
) -> dict[int, Rejected]:
    """Rows whose feature values break the contract (see :func:`checked_feature_columns`)."""
    return checked_feature_columns(features, limits)[1]


def checked_feature_columns(
    features: Mapping[str, FeatureColumn], limits: LimitsConfig
) -> tuple[dict[str, FeatureColumn], dict[int, Rejected]]:
    """The columns as the detectors take them, and the rows whose feature values break
    the contract, checked a column at a time.

    A column of floats only (most numeric features) becomes a read-only float64 array,
    converted here once instead of by every detector. A column of plain scalars and
    short strings (the usual case) costs a few passes in C; only a column that fails is
    searched row by row. NaN, infinities and lone surrogates cannot come out of orjson,
    only out of a laxer parser a source used.
    """
    bad: dict[int, Rejected] = {}
    columns: dict[str, FeatureColumn] = dict(features)
    limit = limits.max_string_bytes
    for name, column in features.items():
        if len(name) > limit or not _utf8((name,)):
            problem = (
                _too_long(f"features.{name[:64]}", limits)
                if len(name) > limit
                else Rejected("invalid_value", f"features.{name[:64]!a}: not valid UTF-8")
            )
            for row, value in enumerate(column):
                if value is not None:
                    bad.setdefault(row, problem)
            continue
        types = set(map(type, column))
        array = float_array(column, types)
        if array is not None:
            columns[name] = array
            continue
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
        if int in types and _largest_int(column, types) > _LARGEST_INT:
            for row, value in enumerate(column):
                if type(value) is int and abs(value) > _LARGEST_INT:
                    bad.setdefault(
                        row, Rejected("invalid_value", f"features.{name}: integer out of range")
                    )
        if float in types and not _finite_sum(column, types):
            for row, value in enumerate(column):
                if type(value) is float and not math.isfinite(value):
                    bad.setdefault(
                        row, Rejected("invalid_value", f"features.{name}: not a finite number")
                    )
        strings = [v for v in column if type(v) is str] if str in types else []
        if strings and max(map(len, strings)) > limit:
            for row, value in enumerate(column):
                if type(value) is str and len(value) > limit:
                    bad.setdefault(row, _too_long(f"features.{name}", limits))
        if strings and not _utf8(strings):
            for row, value in enumerate(column):
                if type(value) is str and not _utf8((value,)):
                    bad.setdefault(
                        row, Rejected("invalid_value", f"features.{name}: not valid UTF-8")
                    )
    return columns, bad


def float_array(column: FeatureColumn, types: set[type] | None = None) -> FloatArray | None:
    """A column of finite floats only as the read-only float64 array the detectors take
    as is; None for any other column. ``types``: the column's value types, when known."""
    if (types if types is not None else set(map(type, column))) != _FLOAT:
        return None
    # Python floats only: np.array's sequence path copies them exactly, ~1.5x faster
    # than np.fromiter's iterator.
    array = np.array(column, dtype=np.float64)
    if not np.isfinite(array).all():
        return None
    array.flags.writeable = False
    return array


def _largest_int(column: FeatureColumn, types: set[type]) -> int:
    """The largest magnitude of the column's integers (booleans aside): in C for a column
    of integers only, the usual case."""
    ints = column if types == _INT else [v for v in column if type(v) is int]
    return int(max(map(abs, ints)))


def _finite_sum(column: FeatureColumn, types: set[type]) -> bool:
    """True when no float of the column is NaN or infinite (their sum is finite). False
    may also mean that finite values overflowed, or a huge integer: the rows then say."""
    try:
        if types <= _NUMERIC:
            # filter(None) drops None, zeros and False, and keeps NaN: all in C.
            return math.isfinite(sum(filter(None, column)))
        return math.isfinite(sum([v for v in column if type(v) is float]))
    except OverflowError:
        return False
