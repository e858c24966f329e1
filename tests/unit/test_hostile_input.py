"""Hostile input (issue #9): whatever arrives, nothing raises and nothing goes uncounted.

Every record is either processed or dead-lettered with one of the known reasons, valid
events next to hostile ones are still processed, the limits hold and are configurable,
malformed messages do not slow the valid ones down, and a flood of never-seen feature
names and cohort values keeps the state bounded.

Messages are built from small specs (a target field and a literal spliced into the JSON
text), so that NaN, 10**400 or 100,000 levels of nesting reach the decoder exactly as a
producer would send them, and hypothesis prints the spec, not a 10 MB example. A second
path hands the decoder what Python's ``json`` module made of the bytes (a source may parse
before the engine does): it reads NaN, Infinity, 10**400 and lone surrogates, which
orjson refuses.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.monitor import MonitorConfig
from detectors.new_features import OVERFLOW, NewFeatures
from streamer.config import FeedbackConfig, LimitsConfig, load_settings
from streamer.decode import (
    REASONS,
    Rejected,
    decode_prediction_envelope,
)
from streamer.engine import FEEDBACK, PREDICTIONS, Engine, InputRecord
from streamer.feedback_decode import decode_feedback
from tests.support import decode_one

LIMITS = LimitsConfig()
VALID, INVALID, EITHER = "valid", "invalid", "either"
MB = 1 << 20

# -- building messages ---------------------------------------------------------------------

T0 = 1_763_712_000.0
REGIONS = ("eu", "us", "apac")
COUNTRIES = ("DE", "FR", "US", "BR")


def prediction(i: int, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"p-{i}",
        "ts": T0 + i,
        "model": "fraud",
        "model_version": "v1",
        "cohort": {"region": REGIONS[i % 3]},
        "features": {
            "amount": 10.0 + (i * 7919) % 997,
            "country": COUNTRIES[i % 4],
            "is_new": i % 5 == 0,
        },
        "score": (i % 100) / 100,
    }
    event.update(fields)
    return event


def feedback(event_id: str, i: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": T0 + i + 60,
        "label": i % 2,
        "source": "chargeback",
        "override": False,
    }


def deep(depth: int, opening: bytes = b"[", closing: bytes = b"]", inner: bytes = b"") -> bytes:
    return opening * depth + inner + closing * depth


def deep_object(depth: int) -> list[Any]:
    """A list nested ``depth`` levels, built without recursion (as a lax parser would)."""
    root: list[Any] = []
    node = root
    for _ in range(depth - 1):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


# Literal JSON texts, spliced where a field's value goes.
LITERALS: dict[str, bytes] = {
    "zero": b"0",
    "one_and_a_half": b"1.5",
    "negative": b"-1",
    "underflow": b"1e-400",
    "large": b"1e300",
    "past_2_53": b"9007199254740993",
    "nan": b"NaN",
    "infinity": b"Infinity",
    "minus_infinity": b"-Infinity",
    "overflow": b"1e400",
    "minus_overflow": b"-1e400",
    "huge_int": b"1" + b"0" * 400,
    "minus_huge_int": b"-1" + b"0" * 400,
    "true": b"true",
    "false": b"false",
    "null": b"null",
    "text": b'"x"',
    "empty_text": b'""',
    "long_text": b'"' + b"x" * 2_000 + b'"',
    "timestamp": b'"2025-11-21T08:00:00Z"',
    "surrogate": b'"\\ud800"',
    "empty_array": b"[]",
    "array": b"[1, 2]",
    "empty_object": b"{}",
    "object": b'{"a": 1}',
    "nested_object": b'{"a": [1]}',
    "deep_300": deep(300),
    "deep_2000": deep(2_000),
    "deep_10k": deep(10_000),
    "deep_100k": deep(100_000),
    "deep_objects_10k": deep(10_000, b'{"a":', b"}", b"1"),
}
FINITE = {"zero", "one_and_a_half", "negative", "underflow", "large", "past_2_53"}
IN_UNIT_INTERVAL = {"zero", "underflow"}  # a label is a binary outcome in [0, 1]
NON_FINITE = {"nan", "infinity", "minus_infinity", "overflow", "minus_overflow"}
HUGE = {"huge_int", "minus_huge_int"}
BOOLS = {"true", "false"}
SHORT_TEXT = {"text", "empty_text", "timestamp"}
TOO_DEEP_FOR_ORJSON = {"deep_2000", "deep_10k", "deep_100k", "deep_objects_10k"}

PREDICTION_TARGETS = (
    "event_id",
    "ts",
    "model",
    "model_version",
    "score",
    "features",
    "cohort",
    "features.amount",
    "cohort.region",
    "extra",
)
FEEDBACK_TARGETS = ("event_id", "ts", "label", "source", "override", "extra")
REQUIRED = {
    PREDICTIONS: ("event_id", "ts", "model", "model_version", "score", "features"),
    FEEDBACK: ("event_id", "ts", "label"),
}
OPTIONAL = {PREDICTIONS: ("cohort",), FEEDBACK: ("source", "override")}
# Bytes that are not UTF-8: a stray continuation, a truncated sequence, an encoded
# surrogate, a code point past U+10FFFF, an overlong encoding.
NOT_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf")
NAMES: dict[str, bytes] = {
    "empty_name": b'""',
    "unicode_name": '"montant_\u00e9\u2713"'.encode(),
    "overflow_name": b'"__other__"',
    "longest_name": b'"' + b"n" * LIMITS.max_string_bytes + b'"',
    "long_name": b'"' + b"n" * (LIMITS.max_string_bytes + 1) + b'"',
    "surrogate_name": b'"\\udc80"',
}
HOLE = "__hole_5b1e__"


def spliced(event: dict[str, Any], target: str, literal: bytes, **more: bytes) -> bytes:
    """The event's JSON with ``literal`` as the value at ``target`` (``a.b`` nests), and
    each of ``more`` as the value of that top-level field."""
    event = json.loads(json.dumps(event))
    holes = {target: literal, **more}
    for n, where in enumerate(holes):
        outer, _, inner = where.partition(".")
        if inner:
            event[outer][inner] = f"{HOLE}{n}"
        else:
            event[outer] = f"{HOLE}{n}"
    text = orjson.dumps(event)
    for n, value in enumerate(holes.values()):
        text = text.replace(f'"{HOLE}{n}"'.encode(), value, 1)
    return text


def named(event: dict[str, Any], name: bytes) -> bytes:
    """The event's JSON with one more feature whose name is the JSON string ``name``."""
    event = json.loads(json.dumps(event))
    event["features"][HOLE] = 1.0
    return orjson.dumps(event).replace(b'"' + HOLE.encode() + b'"', name, 1)


def expected_prediction(target: str, literal: str) -> str:
    """Whether the contract accepts a prediction whose ``target`` holds ``literal``."""
    if target == "extra":
        if literal in TOO_DEEP_FOR_ORJSON:
            return INVALID  # not JSON either parser reads
        # Refused by both parsers on the wire; Python's json reads it, and the field is
        # ignored.
        return EITHER if literal == "surrogate" else VALID
    if target == "score":
        return VALID if literal in FINITE else INVALID
    if target == "label":
        return VALID if literal in IN_UNIT_INTERVAL else INVALID
    if target == "ts":
        return VALID if literal in (FINITE - {"negative"}) | {"timestamp"} else INVALID
    if target in ("event_id", "model", "model_version", "source"):
        return VALID if literal in {"text", "timestamp"} else INVALID
    if target == "features":
        return VALID if literal in {"empty_object", "object"} else INVALID
    if target == "cohort":
        return VALID if literal in {"null", "empty_object", "object"} else INVALID
    if target == "features.amount":
        scalar = (FINITE - {"past_2_53"}) | BOOLS | SHORT_TEXT | {"null"}
        return VALID if literal in scalar else INVALID
    if target == "cohort.region":
        # Numbers and booleans are labels too, read as their text ("nan" included).
        return VALID if literal in FINITE | NON_FINITE | HUGE | BOOLS | SHORT_TEXT else INVALID
    if target == "override":
        if literal in BOOLS:
            return VALID
        return EITHER if literal in FINITE else INVALID  # pydantic reads 0 and 1 as booleans
    raise AssertionError(target)


TEN_MB = orjson.dumps(prediction(0, padding="x" * (10 * MB)))
MANY_FEATURES = orjson.dumps(prediction(0, features={f"f{k}": k for k in range(100_000)}))
JUST_TOO_MANY = orjson.dumps(
    prediction(0, features={f"f{k}": k for k in range(LIMITS.max_features_per_event + 1)})
)
GOOD = orjson.dumps(prediction(0))
FIXED: dict[str, tuple[bytes | None, str]] = {
    "empty": (b"", INVALID),
    "tombstone": (None, INVALID),
    "null": (b"null", INVALID),
    "true": (b"true", INVALID),
    "number": (b"1", INVALID),
    "string": (b'"x"', INVALID),
    "array": (b"[]", INVALID),
    "empty_object": (b"{}", INVALID),
    "nan": (b"NaN", INVALID),
    "ten_mb": (TEN_MB, INVALID),
    "hundred_thousand_features": (MANY_FEATURES, INVALID),
    "just_too_many_features": (JUST_TOO_MANY, INVALID),
    "deep_10k": (deep(10_000), INVALID),
    "deep_100k": (deep(100_000), INVALID),
    "deep_objects_100k": (deep(100_000, b'{"a":', b"}", b"1"), INVALID),
    "unterminated": (b"[" * 100_000, INVALID),
    "trailing_garbage": (GOOD + b" x", INVALID),
    "two_messages": (GOOD + GOOD, INVALID),
    "trailing_whitespace": (GOOD + b" \n", VALID),
    "gzip": (b"\x1f\x8b\x08\x00" + GOOD, INVALID),
    # Python's json detects these encodings, orjson does not.
    "bom": (b"\xef\xbb\xbf" + GOOD, EITHER),
    "utf16": (GOOD.decode().encode("utf-16"), EITHER),
    "duplicate_keys": (GOOD.replace(b'"score":', b'"score":"x","score":'), EITHER),
}


def lax_parse(raw: bytes | None) -> object:
    """What Python's json makes of the bytes, or None where it refuses them."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


# -- specs ---------------------------------------------------------------------------------

# A spec is a tuple naming how to build one record; hypothesis draws and prints specs.
Spec = tuple[Any, ...]

weird_number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**53), 2**53),
)
valid_feature_value = st.one_of(weird_number, st.booleans(), st.none(), st.text(max_size=12))
valid_predictions = st.tuples(
    st.just("prediction"), valid_feature_value, st.text(max_size=6), st.booleans()
)
replaced = st.tuples(
    st.just("replace"), st.sampled_from(PREDICTION_TARGETS), st.sampled_from(sorted(LITERALS))
)
dropped = st.tuples(st.just("drop"), st.sampled_from(REQUIRED[PREDICTIONS] + OPTIONAL[PREDICTIONS]))
renamed = st.tuples(st.just("name"), st.sampled_from(sorted(NAMES)))
not_utf8 = st.tuples(
    st.just("not_utf8"),
    st.sampled_from(("event_id", "features.country", "cohort.region", "extra")),
    st.sampled_from(NOT_UTF8),
)
fixed = st.tuples(st.just("fixed"), st.sampled_from(sorted(FIXED)))
noise = st.tuples(st.just("bytes"), st.binary(max_size=64))
valid_feedback = st.tuples(st.just("feedback"), st.booleans())
replaced_feedback = st.tuples(
    st.just("feedback_replace"),
    st.sampled_from(FEEDBACK_TARGETS),
    st.sampled_from(sorted(LITERALS)),
)
dropped_feedback = st.tuples(
    st.just("feedback_drop"), st.sampled_from(REQUIRED[FEEDBACK] + OPTIONAL[FEEDBACK])
)
feedback_noise = st.tuples(st.just("feedback_bytes"), st.binary(max_size=64))
other_topic = st.tuples(st.just("other_topic"))
specs = st.one_of(
    valid_predictions,
    replaced,
    dropped,
    renamed,
    not_utf8,
    fixed,
    noise,
    valid_feedback,
    replaced_feedback,
    dropped_feedback,
    feedback_noise,
    other_topic,
)


def build(spec: Spec, i: int) -> tuple[str, bytes | None, str]:
    """The record of a spec at position ``i``: (kind, message bytes, expectation)."""
    kind, *args = spec
    base = prediction(i)
    if kind == "prediction":
        amount, region, extra = args
        base["features"]["amount"] = amount
        base["cohort"]["region"] = region
        if extra:
            base["schema"] = {"v": [2, {"x": None}]}
        return PREDICTIONS, orjson.dumps(base), VALID
    if kind == "replace":
        target, literal = args
        return (
            PREDICTIONS,
            spliced(base, target, LITERALS[literal]),
            expected_prediction(target, literal),
        )
    if kind == "drop":
        (field,) = args
        del base[field]
        return PREDICTIONS, orjson.dumps(base), VALID if field == "cohort" else INVALID
    if kind == "name":
        (name,) = args
        return (
            PREDICTIONS,
            named(base, NAMES[name]),
            INVALID if name in ("long_name", "surrogate_name") else VALID,
        )
    if kind == "not_utf8":
        target, bad = args
        # Python's json decodes bytes with "surrogatepass": an encoded surrogate is read
        # (as a lone surrogate), and in an unknown field it is ignored.
        lax = target == "extra" and bad == b"\xed\xa0\x80"
        return PREDICTIONS, spliced(base, target, b'"x' + bad + b'"'), EITHER if lax else INVALID
    if kind == "fixed":
        raw, expectation = FIXED[args[0]]
        return PREDICTIONS, raw, expectation
    if kind == "bytes":
        return PREDICTIONS, args[0], INVALID
    label = feedback(f"p-{i % 50}", i)  # the warm-up's predictions
    if kind == "feedback":
        (known,) = args
        if not known:
            label["event_id"] = f"never-{i}"
        return FEEDBACK, orjson.dumps(label), VALID
    if kind == "feedback_replace":
        target, literal = args
        return (
            FEEDBACK,
            spliced(label, target, LITERALS[literal]),
            expected_prediction(target, literal),
        )
    if kind == "feedback_drop":
        (field,) = args
        del label[field]
        return FEEDBACK, orjson.dumps(label), INVALID if field in REQUIRED[FEEDBACK] else VALID
    if kind == "feedback_bytes":
        return FEEDBACK, args[0], INVALID
    if kind == "other_topic":
        return "audit", orjson.dumps(base), INVALID
    raise AssertionError(spec)


def decoded(kind: str, raw: bytes | None, parsed: object = None) -> object:
    """A record decoded as the engine does, its feature values checked too."""
    if kind == FEEDBACK:
        return decode_feedback(raw, LIMITS, parsed)
    return decode_one(raw, LIMITS, parsed)


def reason_of(result: object) -> str | None:
    return result.reason if isinstance(result, Rejected) else None


def accepted(result: object) -> bool:
    if isinstance(result, Rejected):
        assert result.reason in REASONS, result
        return False
    return True


FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# -- the decoder ---------------------------------------------------------------------------


WITHOUT_SCORE = orjson.dumps({k: v for k, v in prediction(0).items() if k != "score"})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"\x00\x01 not json", "invalid_json", id="not-json"),
        pytest.param(GOOD.replace(b'"p-0"', b'"p-\xff"'), "invalid_json", id="not-utf8"),
        pytest.param(spliced(prediction(0), "score", b'"0.5"'), "wrong_type", id="string-score"),
        pytest.param(spliced(prediction(0), "score", b"[0.5]"), "wrong_type", id="array-score"),
        pytest.param(spliced(prediction(0), "score", b"true"), "wrong_type", id="bool-score"),
        pytest.param(spliced(prediction(0), "features", b"[1]"), "wrong_type", id="array-features"),
        pytest.param(
            spliced(prediction(0), "features.amount", b'{"a": 1}'), "wrong_type", id="object-value"
        ),
        pytest.param(spliced(prediction(0), "event_id", b"7"), "wrong_type", id="number-id"),
        pytest.param(spliced(prediction(0), "score", b"NaN"), "invalid_value", id="nan"),
        pytest.param(spliced(prediction(0), "score", b"Infinity"), "invalid_value", id="infinity"),
        pytest.param(spliced(prediction(0), "ts", b"-Infinity"), "invalid_value", id="-infinity"),
        pytest.param(
            spliced(prediction(0), "features.amount", b"NaN"), "invalid_value", id="nan-value"
        ),
        pytest.param(spliced(prediction(0), "score", b"1e400"), "invalid_value", id="1e400"),
        pytest.param(
            spliced(prediction(0), "score", LITERALS["huge_int"]), "invalid_value", id="10**400"
        ),
        pytest.param(
            spliced(prediction(0), "ts", LITERALS["huge_int"]), "invalid_value", id="10**400-ts"
        ),
        pytest.param(
            spliced(prediction(0), "features.amount", LITERALS["huge_int"]),
            "invalid_value",
            id="10**400-value",
        ),
        pytest.param(
            spliced(prediction(0), "ts", b'"0001-01-01T00:00:00Z"'), "invalid_value", id="year-1"
        ),
        pytest.param(deep(10_000), "invalid_json", id="10k-deep"),
        pytest.param(deep(100_000), "invalid_json", id="100k-deep"),
        pytest.param(
            spliced(prediction(0), "features.amount", deep(100_000)),
            "invalid_json",
            id="100k-deep-value",
        ),
        pytest.param(TEN_MB, "too_large", id="10MB"),
        pytest.param(MANY_FEATURES, "too_large", id="100k-features"),
        pytest.param(JUST_TOO_MANY, "too_many_features", id="1001-features"),
        pytest.param(WITHOUT_SCORE, "missing_field", id="missing-field"),
        pytest.param(b"", "invalid_json", id="empty"),
        pytest.param(None, "invalid_json", id="tombstone"),
        pytest.param(b"null", "not_an_object", id="null"),
    ],
)
def test_each_kind_of_hostile_message_is_rejected_with_its_reason(raw, reason):
    result = decoded(PREDICTIONS, raw)
    assert isinstance(result, Rejected) and result.reason == reason, result
    parsed = lax_parse(raw)
    if parsed is not None:
        # What Python's json read from the same bytes is rejected for the same reason.
        result = decoded(PREDICTIONS, raw, parsed)
        assert isinstance(result, Rejected) and result.reason == reason, result


@pytest.mark.parametrize("depth", [10_000, 100_000])
@pytest.mark.parametrize("where", ["message", "features.amount", "cohort.region", "score", "extra"])
def test_objects_nested_deeper_than_any_parser_allows_are_rejected_not_raised(depth, where):
    """A source whose parser nests without limit hands over such objects: the decoder
    must reject them without recursing (Python's json would hit RecursionError)."""
    nested = deep_object(depth)
    message: Any = nested if where == "message" else prediction(0)
    outer, _, inner = where.partition(".")
    if inner:
        message[outer][inner] = nested
    elif where != "message":
        message[outer] = nested
    started = time.perf_counter()
    as_prediction = decoded(PREDICTIONS, b"{}", message)
    as_feedback = decode_feedback(b"{}", LIMITS, message)
    assert time.perf_counter() - started < 1.0
    if where == "extra":
        assert isinstance(as_prediction, dict)  # an unknown field is ignored, however deep
    else:
        assert isinstance(as_prediction, Rejected) and as_prediction.reason in REASONS
    assert isinstance(as_feedback, Rejected) and as_feedback.reason in REASONS


def test_unknown_fields_are_ignored_as_deep_as_orjson_reads():
    """pydantic reads 200 levels, orjson 1024: a message nested 1000 deep only in a field
    the contract ignores is judged on its other fields, on the fast and the slow path."""
    fast = spliced(prediction(0), "extra", deep(1_000))
    assert isinstance(decode_one(fast, LIMITS), dict)
    # A number as a cohort label is valid, but only pydantic converts it.
    slow = spliced(prediction(0), "cohort.region", b"7", extra=deep(1_000))
    assert decode_one(slow, LIMITS)["cohort"] == {"region": "7"}
    wrong = spliced(prediction(0), "score", b'"x"', extra=deep(1_000))
    assert reason_of(decode_one(wrong, LIMITS)) == "wrong_type"
    label = spliced(feedback("p-0", 0), "label", b"1", extra=deep(1_000))
    assert decode_feedback(label, LIMITS).label == 1.0
    too_deep = spliced(prediction(0), "extra", deep(1_025))
    assert reason_of(decode_one(too_deep, LIMITS)) == "invalid_json"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("score", float("nan"), "invalid_value"),
        ("score", float("inf"), "invalid_value"),
        ("score", 10**400, "invalid_value"),
        ("ts", float("inf"), "invalid_value"),
        ("ts", 10**400, "invalid_value"),
        ("ts", -1, "invalid_value"),
        ("features", {"amount": float("nan")}, "invalid_value"),
        ("features", {"amount": float("-inf")}, "invalid_value"),
        ("features", {"amount": 10**400}, "invalid_value"),
        ("features", {"amount": "\ud800"}, "invalid_value"),
        ("features", {"\udc80": 1.0}, "invalid_value"),
        ("event_id", "p-\ud800", "invalid_json"),
        ("cohort", {"region": "\ud800"}, "invalid_json"),
        ("features", {"amount": {1, 2}}, "wrong_type"),
        ("extra", b"bytes", None),  # ignored: not a field of the contract
    ],
    ids=[
        "nan-score",
        "infinite-score",
        "10**400-score",
        "infinite-ts",
        "10**400-ts",
        "negative-ts",
        "nan-value",
        "infinite-value",
        "10**400-value",
        "surrogate-value",
        "surrogate-name",
        "surrogate-id",
        "surrogate-cohort",
        "set-value",
        "bytes-ignored",
    ],
)
def test_what_a_lax_parser_reads_is_held_to_the_contract(field, value, reason):
    """NaN, infinities, 10**400 and lone surrogates come out of Python's json; none may
    reach the detectors (a lone surrogate cannot be written out as UTF-8 again)."""
    result = decoded(PREDICTIONS, b"{}", prediction(0, **{field: value}))
    if reason is None:
        assert isinstance(result, dict)
    else:
        assert isinstance(result, Rejected) and result.reason == reason, result
    label = {**feedback("p-0", 0), field: value}
    verdict = decode_feedback(None, LIMITS, label)
    assert not isinstance(verdict, Rejected) or verdict.reason in REASONS


@settings(FUZZ, max_examples=1_000)
@given(specs)
def test_the_decoder_never_raises_and_follows_the_contract(spec):
    kind, raw, expectation = build(spec, 3)
    if kind not in (PREDICTIONS, FEEDBACK):
        return
    strict = accepted(decoded(kind, raw, None))
    parsed = lax_parse(raw)
    lax = accepted(decoded(kind, raw, parsed)) if parsed is not None else strict
    if expectation == VALID:
        assert strict and lax
    elif expectation == INVALID:
        assert not strict and not lax


# -- the engine ----------------------------------------------------------------------------

SMALL = MonitorConfig(
    reference_events=60,
    reference_max_events=60,
    reference_span_s=0.0,
    window_events=40,
    min_window_events=5,
    min_reference_events=5,
    persistence_windows=2,
    reference_labels=20,
    label_window_labels=20,
    min_labels=5,
)


def labels_accounted(engine: Engine) -> int:
    """Every label the join store was given ends in exactly one of these counters, or
    waits in the event-time merge."""
    join = engine.join
    outcomes = (join.joined, join.unknown, join.expired, join.evicted_labels, join.duplicate)
    return sum(outcomes) + join.pending + engine.order.buffered_labels


def events_processed(engine: Engine) -> int:
    """Predictions the monitors saw, or that wait in the event-time merge."""
    monitored = sum(monitor.events for monitor in engine.monitors.values())
    return monitored + engine.order.buffered_predictions


def check_batch(engine: Engine, records: Sequence[InputRecord]) -> dict[int, str]:
    """Process one batch and check the accounting; returns the dead-lettered offsets,
    each with its reason."""
    consumed, rejected = Counter(engine.counters.consumed), Counter(engine.counters.rejected)
    events, labels = events_processed(engine), labels_accounted(engine)
    result = engine.process(records)
    dead = [letter.record.offset for letter in result.dead_letters]
    assert len(dead) == len(set(dead)), "a record was dead-lettered twice"
    by_offset = {record.offset: record for record in records}
    assert set(dead) <= by_offset.keys()
    assert {letter.rejected.reason for letter in result.dead_letters} <= set(REASONS)
    kinds = Counter(record.kind for record in records)
    dead_kinds = Counter(by_offset[offset].kind for offset in dead)
    assert engine.counters.consumed - consumed == kinds
    newly_rejected: Counter[str] = Counter()
    for (kind, _), n in (engine.counters.rejected - rejected).items():
        newly_rejected[kind] += n
    assert newly_rejected == dead_kinds
    # consumed == processed + dead-lettered, per topic, with "processed" counted where
    # the events end up: the monitors for predictions, the join store for labels.
    assert events_processed(engine) - events == kinds[PREDICTIONS] - dead_kinds[PREDICTIONS]
    assert labels_accounted(engine) - labels == kinds[FEEDBACK] - dead_kinds[FEEDBACK]
    return {letter.record.offset: letter.rejected.reason for letter in result.dead_letters}


# Event times the contract accepts that are years past the warm-up's: the engine's bounded
# clock (limits.max_future_s) dead-letters them.
FAR_AHEAD = {"large", "past_2_53"}


def expected_of_engine(spec: Spec, expectation: str, after_far: bool) -> str:
    """What the engine does with a record the contract accepts: one dated far ahead of
    its topic's events is dead-lettered, unless it confirms the one before it
    (``after_far``: the last record of its partition was far ahead too, and may be
    within limits.max_future_s of it; streamer/source_clock.py)."""
    if _far_ahead(spec):
        return EITHER if after_far else INVALID
    return expectation


def _far_ahead(spec: Spec) -> bool:
    kind, *args = spec
    return kind in ("replace", "feedback_replace") and tuple(args) in {("ts", x) for x in FAR_AHEAD}


def warm_engine() -> Engine:
    engine = Engine(SMALL, LIMITS, FeedbackConfig())
    warm = [
        InputRecord(PREDICTIONS, orjson.dumps(prediction(i)), "predictions", 0, i)
        for i in range(SMALL.reference_events + 10)
    ]
    assert not engine.process(warm, final=True).dead_letters
    return engine


@settings(FUZZ, max_examples=300)
@given(
    batch=st.lists(st.tuples(specs, st.booleans()), min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=3),
)
def test_the_engine_processes_or_dead_letters_every_record_and_never_raises(batch, cuts):
    engine = warm_engine()
    # a label first, which sets the clock of the feedback partition
    warm_label = InputRecord(FEEDBACK, orjson.dumps(feedback("p-0", 0)), "feedback", 0, 0)
    assert not engine.process([warm_label]).dead_letters
    records, expectations = [], {}
    far_before: dict[str, bool] = {}  # per partition: its last record was far ahead
    for position, (spec, via_lax_parser) in enumerate(batch):
        offset = 1_000 + position
        kind, raw, expectation = build(spec, offset)
        expectation = expected_of_engine(spec, expectation, far_before.get(kind, False))
        if _far_ahead(spec) or expectation == VALID:
            far_before[kind] = _far_ahead(spec)
        parsed = lax_parse(raw) if via_lax_parser else None
        records.append(InputRecord(kind, raw, kind, 0, offset, None, parsed))
        expectations[offset] = expectation
    dead: set[int] = set()
    bounds = [0, *sorted(min(c, len(records)) for c in cuts), len(records)]
    for start, stop in pairwise(bounds):
        dead |= check_batch(engine, records[start:stop]).keys()
    assert not {o for o, e in expectations.items() if e == VALID} & dead
    assert {o for o, e in expectations.items() if e == INVALID} <= dead


def test_valid_events_around_the_worst_messages_are_still_processed():
    engine = warm_engine()
    worst = [TEN_MB, MANY_FEATURES, deep(100_000), b"\xff" * 1_000, None, b"null"]
    records = []
    for i in range(200):
        records.append(
            InputRecord(PREDICTIONS, orjson.dumps(prediction(10_000 + i)), "p", 0, 2 * i)
        )
        records.append(InputRecord(PREDICTIONS, worst[i % len(worst)], "p", 0, 2 * i + 1))
    started = time.perf_counter()
    dead = check_batch(engine, records)
    assert time.perf_counter() - started < 5.0
    assert dead.keys() == {record.offset for record in records[1::2]}


@pytest.mark.parametrize("label", [250.0, 3, -1, 1.5], ids=["price", "class", "minus", "1.5"])
def test_labels_that_are_not_binary_outcomes_are_dead_lettered_not_judged(label):
    """A regression or multi-class model's feedback once reached the outcome tests, whose
    positive counts then exceeded the label counts, and stopped the service."""
    engine = warm_engine()
    records = []
    for i in range(300):
        offset = 10_000 + i
        records.append(InputRecord(PREDICTIONS, orjson.dumps(prediction(offset)), "p", 0, i))
        mixed = label if i % 2 else i % 4 // 2  # every other label is a valid 0/1
        # labelled a minute after its prediction, as the event-time merge expects
        message = orjson.dumps({**feedback(f"p-{offset}", offset), "label": mixed})
        records.append(InputRecord(FEEDBACK, message, "f", 0, i))
    dead = check_batch(engine, records)
    bad = {record.offset for record in records[1::2] if record.offset % 2}
    assert dead == dict.fromkeys(bad, "invalid_value")
    engine.flush()  # the labels the event-time merge held for a later prediction
    assert engine.join.joined == 150


@pytest.mark.parametrize("unit", [1e3, 1e6, 1e9], ids=["ms", "us", "ns"])
def test_event_times_in_milliseconds_or_finer_are_read_as_seconds(unit):
    """A producer sending epoch milliseconds gets the decisions, windows and label delays
    of the same stream in seconds, not windows dated in the year 57,000."""

    def decisions(scale: float) -> tuple[list[dict[str, Any]], int, list[int]]:
        engine = Engine(SMALL, LIMITS, FeedbackConfig())
        records, found = [], []
        for i in range(600):
            event = prediction(i, ts=(T0 + i) * scale)
            event["features"]["amount"] *= 1 if i < 300 else 40  # a shift to decide on
            records.append(InputRecord(PREDICTIONS, orjson.dumps(event), "p", 0, i))
            label = {**feedback(f"p-{i}", i), "ts": (T0 + i + 60) * scale}
            records.append(InputRecord(FEEDBACK, orjson.dumps(label), "f", 0, i))
        for start in range(0, len(records), 100):
            result = engine.process(records[start : start + 100])
            assert not result.dead_letters
            found += [d.to_dict() for d in result.decisions]
        for d in found:
            d.pop("decision_id")
        _, delays, _ = engine.join.delay_histogram()
        return found, engine.join.joined, delays.tolist()

    in_seconds = decisions(1.0)
    assert in_seconds[0] and in_seconds[1] > 0  # the stream has something to decide
    assert decisions(unit) == in_seconds


# -- limits --------------------------------------------------------------------------------


def sized(total: int) -> bytes:
    """A valid prediction padded (with an unknown field) to exactly ``total`` bytes."""
    empty = orjson.dumps(prediction(0, padding=""))
    return orjson.dumps(prediction(0, padding="x" * (total - len(empty))))


def test_the_message_size_limit_is_configurable_and_exact():
    limits = LimitsConfig(max_message_bytes=4_096)
    assert isinstance(decode_one(sized(4_096), limits), dict)
    assert reason_of(decode_one(sized(4_097), limits)) == "too_large"
    started = time.perf_counter()
    assert reason_of(decode_one(TEN_MB, LIMITS)) == "too_large"
    assert time.perf_counter() - started < 0.05  # refused on its length, before parsing
    # Raised past it, a 10 MB message is read like any other.
    assert isinstance(decode_one(TEN_MB, LimitsConfig(max_message_bytes=16 * MB)), dict)


def test_the_features_limit_is_configurable_and_holds_for_100_000_features():
    limits = LimitsConfig(max_features_per_event=10)
    ten = orjson.dumps(prediction(0, features={f"f{k}": k for k in range(10)}))
    eleven = orjson.dumps(prediction(0, features={f"f{k}": k for k in range(11)}))
    assert isinstance(decode_one(ten, limits), dict)
    assert reason_of(decode_one(eleven, limits)) == "too_many_features"
    roomy = LimitsConfig(max_message_bytes=8 * MB)
    started = time.perf_counter()
    assert reason_of(decode_one(MANY_FEATURES, roomy)) == "too_many_features"
    parsed = json.loads(MANY_FEATURES)
    assert reason_of(decode_prediction_envelope(b"", roomy, parsed)) == "too_many_features"
    assert time.perf_counter() - started < 1.0
    # Allowed, 100,000 features in one event are processed, and the names the reference
    # never had are tracked up to the monitor's cap.
    allowed = LimitsConfig(max_message_bytes=8 * MB, max_features_per_event=100_000)
    engine = Engine(SMALL, allowed, FeedbackConfig())
    warm = [InputRecord(PREDICTIONS, orjson.dumps(prediction(i)), "p", 0, i) for i in range(70)]
    engine.process(warm, final=True)
    started = time.perf_counter()
    check_batch(engine, [InputRecord(PREDICTIONS, MANY_FEATURES, "p", 0, 70)])
    assert time.perf_counter() - started < 10.0
    tracked = engine.monitors["fraud"].new_features.totals
    assert len(tracked) == SMALL.max_features + 1
    assert tracked[OVERFLOW] == 100_000 - SMALL.max_features


@pytest.mark.parametrize(
    "where", ["features.country", "features.name", "cohort.region", "cohort.key"]
)
def test_the_string_limit_is_configurable_and_holds_everywhere(where):
    def message(length: int) -> dict[str, Any]:
        text = "s" * length
        event = prediction(0)
        if where == "features.country":
            event["features"]["country"] = text
        elif where == "features.name":
            event["features"][text] = 1.0
        elif where == "cohort.region":
            event["cohort"]["region"] = text
        else:
            event["cohort"][text] = "eu"
        return event

    for limits in (LimitsConfig(max_string_bytes=16), LIMITS):
        at, past = message(limits.max_string_bytes), message(limits.max_string_bytes + 1)
        assert isinstance(decode_one(orjson.dumps(at), limits), dict)
        assert reason_of(decode_one(orjson.dumps(past), limits)) == "string_too_long"
        engine = Engine(SMALL, limits, FeedbackConfig())
        records = [
            InputRecord(PREDICTIONS, orjson.dumps(at), "p", 0, 0),
            InputRecord(PREDICTIONS, orjson.dumps(past), "p", 0, 1),
            InputRecord(PREDICTIONS, b"", "p", 0, 2, None, past),  # as a source parsed it
        ]
        assert check_batch(engine, records) == {1: "string_too_long", 2: "string_too_long"}


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DRIFTGATE_LIMITS__MAX_MESSAGE_BYTES", "2048")
    monkeypatch.setenv("DRIFTGATE_LIMITS__MAX_FEATURES_PER_EVENT", "7")
    monkeypatch.setenv("DRIFTGATE_LIMITS__MAX_STRING_BYTES", "9")
    limits = load_settings().limits
    assert (limits.max_message_bytes, limits.max_features_per_event, limits.max_string_bytes) == (
        2_048,
        7,
        9,
    )


# -- malformed bursts ----------------------------------------------------------------------

MALFORMED: tuple[bytes | None, ...] = (
    b"not json",
    b"\xff\xfe\x00garbage",
    b"",
    None,
    b"null",
    b"[1, 2]",
    spliced(prediction(0), "score", b'"x"'),
    spliced(prediction(0), "score", b"NaN"),
    spliced(prediction(0), "ts", LITERALS["huge_int"]),
    spliced(prediction(0), "features", b"[]"),
    spliced(prediction(0), "features.amount", b"[1, 2]"),
    spliced(prediction(0), "extra", deep(10_000)),
    deep(100_000),
    orjson.dumps({k: v for k, v in prediction(0).items() if k != "features"}),
    TEN_MB,
    MANY_FEATURES,
)


def best_of(runs: int, *inputs: Callable[[], list[list[InputRecord]]]) -> list[float]:
    """The best time of each input's batches over ``runs`` rounds, the inputs taking
    turns within a round: a machine that slows down for a while (another test process
    of the suite) slows one round of each, not all runs of one."""
    settings_ = load_settings()
    best = [float("inf")] * len(inputs)
    for _ in range(runs):
        for i, batches in enumerate(inputs):
            engine = Engine(settings_.monitor, settings_.limits, settings_.feedback)
            work = batches()
            gc.collect()
            started = time.perf_counter()
            for batch in work:
                engine.process(batch, final=True)
            best[i] = min(best[i], time.perf_counter() - started)
    return best


@pytest.mark.slow
def test_ten_percent_malformed_messages_do_not_slow_the_valid_ones_down():
    n = 20_000
    valid = [orjson.dumps(prediction(i)) for i in range(n)]

    def batches(malformed: bool) -> Callable[[], list[list[InputRecord]]]:
        def make() -> list[list[InputRecord]]:
            values: list[bytes | None] = []
            for i, value in enumerate(valid):
                values.append(value)
                if malformed and i % 10 == 9:
                    values.append(MALFORMED[(i // 10) % len(MALFORMED)])
            records = [InputRecord(PREDICTIONS, v, "p", 0, o) for o, v in enumerate(values)]
            # As a Kafka poll delivers them (max_poll_records).
            return [records[k : k + 5_000] for k in range(0, len(records), 5_000)]

        return make

    clean, mixed = best_of(4, batches(malformed=False), batches(malformed=True))
    # Both runs process the same n valid events: the ratio is per valid event.
    assert mixed / clean < 2.0, f"{n} valid: {clean:.3f}s alone, {mixed:.3f}s with 10% malformed"


# -- memory bound --------------------------------------------------------------------------

HOSTILE_EVENTS = 200_000
NEW_NAMES_PER_EVENT = 5
_SHARED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def reachable_bytes(root: object) -> int:
    """Bytes of every object reachable from ``root`` (numpy arrays with their data),
    leaving out classes, modules and functions, which are shared, not state."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SHARED):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.fixture(scope="module")
def flooded() -> dict[str, Any]:
    """The default monitor and limits fed a normal reference, then 200,000 predictions
    that each carry 5 feature names and a cohort value never seen before, then more of
    them with a real new field too.

    The join store is capped at 20,000 predictions: it is bounded by its own setting
    (feedback.join_max_entries, ~200 bytes each), which would otherwise dominate the
    growth measured here. Batches are small (200) because the engine builds one column
    per feature name per batch: see test_a_flood_of_names_costs_time_linear_in_the_batch.
    """
    config = load_settings()
    engine = Engine(config.monitor, config.limits, FeedbackConfig(join_max_entries=20_000))
    reference = config.monitor.reference_events

    def message(i: int, hostile: bool, new_field: bool) -> bytes:
        event = prediction(i)
        if hostile:
            for k in range(NEW_NAMES_PER_EVENT):
                event["features"][f"f{i}_{k}"] = k
            event["cohort"]["region"] = f"r{i}"
        if new_field:
            event["features"]["zz_device_score"] = (i % 89) / 89
        return orjson.dumps(event)

    def feed(start: int, stop: int, hostile: bool, batch: int, new_field: bool = False) -> list:
        decisions = []
        for first in range(start, stop, batch):
            records = [
                InputRecord(PREDICTIONS, message(i, hostile, new_field), "p", 0, i)
                for i in range(first, min(first + batch, stop))
            ]
            result = engine.process(records, final=True)
            assert not result.dead_letters
            decisions.extend(result.decisions)
        return decisions

    feed(0, reference, hostile=False, batch=1_000)
    monitor = engine.monitors["fraud"]
    assert monitor.warm
    scopes = monitor.scopes
    gc.collect()
    rss_before = rss_bytes()
    quarter = HOSTILE_EVENTS // 4
    feed(reference, reference + quarter, hostile=True, batch=200)
    gc.collect()
    state_at_quarter = reachable_bytes(engine)
    end = reference + HOSTILE_EVENTS
    feed(reference + quarter, end, hostile=True, batch=200)
    gc.collect()
    flooded = {
        "config": config,
        "monitor": monitor,
        "events": monitor.events,
        "totals": dict(monitor.new_features.totals),
        "scopes": scopes,
        "state_at_quarter": state_at_quarter,
        "state_at_end": reachable_bytes(engine),
        "rss_growth": rss_bytes() - rss_before,
    }
    # A real new field, in every event while the flood goes on (it sorts after all the
    # flood's names): persistence_windows + 1 windows are enough to confirm it.
    windows = (config.monitor.persistence_windows + 1) * config.monitor.window_events
    flooded["decisions"] = feed(end, end + windows, hostile=True, batch=200, new_field=True)
    return flooded


@pytest.mark.slow
def test_a_million_new_feature_names_and_200_000_cohort_values_stay_bounded(flooded):
    config, monitor = flooded["config"], flooded["monitor"]
    assert flooded["events"] == config.monitor.reference_events + HOSTILE_EVENTS
    # New names: the first max_features are counted on their own, the others under
    # __other__. A batch keeps columns for its 2 x max_features names in most events
    # (here: 400 of the 1,000 new names of a 200-event batch); the rest are not counted.
    totals = flooded["totals"]
    assert len(totals) == config.monitor.max_features + 1
    counted = sum(totals.values())
    batches = HOSTILE_EVENTS // 200
    columns_per_batch = 2 * config.monitor.max_features - 3  # less the 3 reference features
    assert counted == batches * columns_per_batch
    assert totals[OVERFLOW] == counted - config.monitor.max_features
    # Cohort values: the reference's scopes, nothing added; new values fold to __other__.
    assert monitor.scopes is flooded["scopes"]
    other = monitor.scopes.labels.index({"region": "__other__"})
    assert monitor.scopes.assign({"region": ["r12345", "never"]}, 2)[:, 1].tolist() == [other] * 2
    assert set(monitor.features) == {"amount", "country", "is_new"}
    # The engine's whole state, and the process, stay far from unbounded.
    assert flooded["state_at_end"] < 100 * MB
    assert flooded["rss_growth"] < 100 * MB


@pytest.mark.slow
def test_a_real_new_field_is_still_found_during_the_flood(flooded):
    found = [d for d in flooded["decisions"] if d.feature == "zz_device_score"]
    assert [(d.action, d.cause, d.evidence["kind"]) for d in found] == [
        ("fix_upstream", "schema_change", "new_feature")
    ]


def test_new_features_watch_the_names_in_most_events_first():
    """Names seen once each, sorting before a real new field, take no slot from it."""
    tracker = NewFeatures(max_names=10, windows=2, min_share=0.5)
    rows, confirmed = 100, []
    for window in range(3):
        names = {
            f"junk{window}_{k:03d}": [None] * k + [1.0] + [None] * (rows - k - 1)
            for k in range(rows)
        }
        names["zip_code"] = [float(row) for row in range(rows)]
        tracker.observe(dict(sorted(names.items())), rows)
        confirmed += tracker.close(rows)
    assert [feature.name for feature in confirmed] == ["zip_code"]
    assert len(tracker.totals) == 10 + 1
    assert sum(tracker.totals.values()) == 3 * (rows + rows)
    assert len(tracker.values("zip_code")) == 0  # a window's values go with it


def test_new_features_confirmed_stay_bounded_when_names_keep_changing():
    tracker = NewFeatures(max_names=5, windows=1, min_share=0.5)
    for window in range(100):
        tracker.observe({f"n{window}_{k}": [1.0] * 10 for k in range(5)}, 10)
        assert len(tracker.close(10)) == 5  # each window's names are news
        assert len(tracker.confirmed) <= 2 * 5


@pytest.mark.slow
def test_the_state_does_not_grow_with_the_stream(flooded):
    """From a quarter of the flood to its end (150,000 events, 750,000 new names), the
    state reachable from the engine stays the same size: nothing is kept per event."""
    growth = flooded["state_at_end"] - flooded["state_at_quarter"]
    assert growth < 1 * MB, f"{growth / MB:.1f} MB more state after 150,000 events"


@pytest.mark.slow
def test_a_flood_of_names_costs_time_linear_in_the_batch():
    """At a Kafka poll's size, events carrying never-seen names cost a small multiple
    of plain events, not one proportional to the batch."""
    config = load_settings()
    size = 2_000

    def per_event(hostile: bool) -> float:
        engine = Engine(config.monitor, config.limits, config.feedback)
        for first in range(0, config.monitor.reference_events, 1_000):
            engine.process(
                [
                    InputRecord(PREDICTIONS, orjson.dumps(prediction(i)), "p", 0, i)
                    for i in range(first, first + 1_000)
                ]
            )
        events = [prediction(i) for i in range(10**6, 10**6 + size)]
        if hostile:
            for event in events:
                for k in range(NEW_NAMES_PER_EVENT):
                    event["features"][f"{event['event_id']}_{k}"] = k
        records = [
            InputRecord(PREDICTIONS, orjson.dumps(e), "p", 0, o) for o, e in enumerate(events)
        ]
        # The cost of the work itself: collections of the objects other tests keep
        # alive (the flood fixture's) would be timed too.
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            engine.process(records, final=True)
            return (time.perf_counter() - started) / size
        finally:
            gc.enable()

    plain, flood = per_event(False), per_event(True)
    # Columns for every name cost 87x plain events at this batch size; a small multiple
    # is the price of counting and watching the names.
    assert flood < 10 * plain, f"{flood * 1e6:.0f} us per flooding event, {plain * 1e6:.0f} plain"
