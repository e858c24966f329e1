from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streamer.config import LimitsConfig
from streamer.decode import (
    REASONS,
    Rejected,
    _fast_prediction,
    _fast_predictions,
    checked_feature_columns,
    decode_prediction_envelope,
    decode_prediction_envelopes,
    invalid_feature_rows,
)
from streamer.engine import prediction_batch
from streamer.events import FeedbackEvent, PredictionEvent
from streamer.feedback_decode import _fast_feedback, decode_feedback, decode_feedbacks
from tests.support import decode_one

LIMITS = LimitsConfig()
GOOD = (
    b'{"event_id": "p-1", "ts": 1763712000.5, "model": "fraud", "model_version": "v1",'
    b' "cohort": {"region": "eu"}, "features": {"amount": 12.5, "country": "DE",'
    b' "is_new": true, "clicks": null}, "score": 0.1}'
)


def test_a_valid_prediction_keeps_its_types():
    event = decode_one(GOOD, LIMITS)
    assert isinstance(event, dict)
    assert event["features"] == {"amount": 12.5, "country": "DE", "is_new": True, "clicks": None}
    assert event["ts"] == 1763712000.5


def test_rfc3339_timestamps_need_a_zone():
    with_zone = GOOD.replace(b"1763712000.5", b'"2025-11-21T08:00:00+01:00"')
    event = decode_one(with_zone, LIMITS)
    assert isinstance(event, dict) and event["ts"] == 1763708400.0
    naive = decode_one(GOOD.replace(b"1763712000.5", b'"2025-11-21T08:00:00"'), LIMITS)
    assert isinstance(naive, Rejected) and naive.reason == "invalid_value"
    assert "timezone" in naive.detail


def test_numbers_as_cohort_values_are_read_as_their_text():
    event = decode_one(GOOD.replace(b'"region": "eu"', b'"region": 7'), LIMITS)
    assert isinstance(event, dict) and event["cohort"] == {"region": "7"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"event_id": "x"}', "missing_field"),
        (GOOD.replace(b"12.5", b"[1]"), "wrong_type"),
        (GOOD.replace(b'"score": 0.1', b'"score": "0.1"'), "wrong_type"),
        (GOOD.replace(b'"score": 0.1', b'"score": true'), "wrong_type"),
        (GOOD.replace(b"1763712000.5", b"-1"), "invalid_value"),
        (GOOD.replace(b"12.5", b"1e999"), "invalid_value"),
        (GOOD.replace(b'"score": 0.1', b'"score": NaN'), "invalid_value"),
        (b"[" * 100_000, "invalid_json"),
        (b" " * (LIMITS.max_message_bytes + 1), "too_large"),
        (None, "invalid_json"),
    ],
)
def test_bad_predictions_are_rejected_with_a_reason(raw, reason):
    result = decode_one(raw, LIMITS)
    assert isinstance(result, Rejected)
    assert result.reason == reason, result.detail


def test_feature_values_are_checked_per_column():
    features = {
        "amount": [1.0, [1, 2], 3, None],
        "country": ["DE", "x" * (LIMITS.max_string_bytes + 1), "FR", {"a": 1}],
        "huge": [10**30, 1, 2, 3],
        "huge_among_others": [None, "x", -(2**60), 1.5],
        "y" * (LIMITS.max_string_bytes + 1): [None, None, None, 5],
    }
    bad = invalid_feature_rows(features, LIMITS)
    assert {row: r.reason for row, r in bad.items()} == {
        0: "invalid_value",
        1: "wrong_type",
        2: "invalid_value",
        3: "wrong_type",  # the first problem found in a row names it
    }
    assert invalid_feature_rows({"y" * 2000: [None, 5]}, LIMITS)[1].reason == "string_too_long"
    assert invalid_feature_rows({"a": [1.0, "x", None, True]}, LIMITS) == {}


def test_a_column_of_floats_only_becomes_a_read_only_array():
    features = {
        "amount": [1.5, 2.0, -3.25],
        "count": [1, 2, 3],  # integers stay as sent (a categorical code may be one)
        "sparse": [1.5, None, 2.5],
        "flag": [True, 1.0, 0.0],
        "lax": [1.0, math.nan, 2.0],  # a laxer parser's NaN: dead-lettered, not converted
    }
    columns, bad = checked_feature_columns(features, LIMITS)
    assert isinstance(columns["amount"], np.ndarray) and columns["amount"].dtype == np.float64
    assert columns["amount"].tolist() == [1.5, 2.0, -3.25]
    assert not columns["amount"].flags.writeable
    assert all(columns[k] is features[k] for k in ("count", "sparse", "flag", "lax"))
    assert {row: r.reason for row, r in bad.items()} == {1: "invalid_value"}


def test_too_many_features():
    many = b'{"event_id": "p", "ts": 1, "model": "m", "model_version": "v", "score": 0.5,'
    many += b' "features": {'
    many += b",".join(b'"f%d": 1' % i for i in range(LIMITS.max_features_per_event + 1)) + b"}}"
    assert decode_one(many, LIMITS).reason == "too_many_features"


def test_feedback_defaults_and_rejections():
    event = decode_feedback(b'{"event_id": "p-1", "ts": 5, "label": 1}', LIMITS)
    assert not isinstance(event, Rejected)
    assert (event.source, event.override, event.label) == ("unknown", False, 1.0)
    assert decode_feedback(b'{"event_id": "p-1", "ts": 5}', LIMITS).reason == "missing_field"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_never_raise(raw):
    for decode in (decode_one, decode_feedback):
        result = decode(raw, LIMITS)
        assert not isinstance(result, Rejected) or result.reason in REASONS


SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
ANYTHING = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=2), max_leaves=3)
PREDICTION_LIKE = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.text(max_size=3), st.integers()),
        "ts": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(),
            st.booleans(),
            st.text(max_size=3),
        ),
        "model": st.one_of(st.just("m"), st.just(""), st.integers()),
        "model_version": st.just("v1"),
        "score": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(),
            st.booleans(),
            st.text(max_size=2),
        ),
        "features": st.one_of(
            st.dictionaries(st.text(max_size=4), SCALAR, max_size=4), st.lists(SCALAR, max_size=2)
        ),
    },
    optional={
        "cohort": st.one_of(
            st.none(),
            st.dictionaries(
                st.text(max_size=3),
                st.one_of(st.text(max_size=3), st.integers(), ANYTHING),
                max_size=2,
            ),
        ),
        "extra": ANYTHING,
    },
)


@settings(max_examples=500, deadline=None)
@given(PREDICTION_LIKE)
def test_what_the_fast_path_accepts_pydantic_accepts_with_the_same_values(obj):
    """The fast path is an optimisation of the pydantic contract, never a second one."""
    if not _fast_prediction(obj, LIMITS):
        return
    event = PredictionEvent.model_validate_json(orjson.dumps(obj))
    assert event.event_id == obj["event_id"]
    assert event.ts == obj["ts"]
    assert event.score == obj["score"]
    assert event.model == obj["model"]
    assert event.features == obj["features"]
    assert event.cohort == (obj.get("cohort") or {})
    assert [type(v) for v in event.features.values()] == [type(v) for v in obj["features"].values()]


FEEDBACK_LIKE = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.text(max_size=3), st.integers()),
        "ts": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-5, 2**70),
            st.booleans(),
            st.text(max_size=3),
        ),
        "label": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**70), 2**70),
            st.booleans(),
            st.none(),
        ),
    },
    optional={
        "source": st.one_of(st.text(max_size=4), st.just(""), st.integers()),
        "override": st.one_of(st.booleans(), st.integers(0, 1), st.none()),
        "extra": ANYTHING,
    },
)


@settings(max_examples=500, deadline=None)
@given(FEEDBACK_LIKE)
def test_the_feedback_fast_path_gives_what_pydantic_gives(obj):
    fast = _fast_feedback(obj, strict_parser=True)
    try:
        slow = FeedbackEvent.model_validate_json(json.dumps(obj))
    except ValidationError:
        slow = None
    if fast is not None:
        assert slow is not None and fast.model_dump() == slow.model_dump()
        assert [type(v) for v in fast.model_dump().values()] == [
            type(v) for v in slow.model_dump().values()
        ]


@settings(max_examples=300, deadline=None)
@given(st.lists(PREDICTION_LIKE, min_size=1, max_size=6), st.booleans())
def test_the_batch_decoder_decides_as_one_event_at_a_time(objects, as_parsed):
    """Checked a column at a time or one by one, every message gets the same verdict."""
    raws = [json.dumps(obj).encode() for obj in objects]
    parsed = list(objects) if as_parsed else [None] * len(raws)
    batch = decode_prediction_envelopes(raws, parsed, LIMITS)
    alone = [decode_prediction_envelope(r, LIMITS, p) for r, p in zip(raws, parsed)]
    assert batch == alone
    if _fast_predictions(list(objects), LIMITS, strict_parser=True):
        assert all(_fast_prediction(obj, LIMITS) for obj in objects)


# Labels each valid or off by one field: a batch's checks must catch every one.
NEARLY_VALID_FEEDBACK = st.fixed_dictionaries(
    {
        "event_id": st.text(max_size=3),
        "ts": st.one_of(st.floats(-1, 2e9), st.integers(-1, 2**70)),
        "label": st.one_of(st.floats(-0.5, 1.5), st.integers(-1, 2), st.booleans()),
    },
    optional={
        "source": st.one_of(st.text(max_size=4), st.integers(0, 1)),
        "override": st.one_of(st.booleans(), st.integers(0, 1)),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(NEARLY_VALID_FEEDBACK | FEEDBACK_LIKE, min_size=1, max_size=6), st.booleans())
def test_the_batch_feedback_decoder_decides_as_one_label_at_a_time(objects, as_parsed):
    """Columns from the batch's checks or from one label at a time: the same labels, of
    the same types, and the same rejections."""
    raws = [json.dumps(obj).encode() for obj in objects]
    parsed = list(objects) if as_parsed else [None] * len(raws)
    columns, rejected = decode_feedbacks(raws, parsed, LIMITS)
    alone = [decode_feedback(r, LIMITS, p) for r, p in zip(raws, parsed)]
    valid = [e.model_dump() for e in alone if isinstance(e, FeedbackEvent)]
    batch = [
        dict(event_id=i, ts=t, label=y, source=s, override=o)
        for i, t, y, s, o in zip(
            columns.event_id, columns.ts, columns.label, columns.source, columns.override
        )
    ]
    assert batch == valid
    assert [list(map(type, e.values())) for e in batch] == [
        list(map(type, e.values())) for e in valid
    ]
    assert columns.rows == [i for i, e in enumerate(alone) if isinstance(e, FeedbackEvent)]
    assert rejected == {i: e for i, e in enumerate(alone) if not isinstance(e, FeedbackEvent)}


NEARLY_VALID = st.builds(
    lambda ts, score, cohort, features: {
        "event_id": "p-1",
        "model": "m",
        "model_version": "v1",
        "ts": ts,
        "score": score,
        "cohort": cohort,
        "features": features,
    },
    st.one_of(st.floats(0, 2e9), st.integers(-1, 2**64), st.floats(allow_nan=False)),
    st.one_of(st.floats(0, 1), st.floats(allow_nan=False), st.integers(), st.booleans()),
    st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from(["region", "", "x" * 1_100]), st.text(max_size=3)),
        st.dictionaries(st.just("region"), st.integers(0, 9) | st.text(max_size=3)),
    ),
    st.dictionaries(st.sampled_from(["a", "b"]), SCALAR, max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(NEARLY_VALID, min_size=1, max_size=5), st.booleans())
def test_the_batch_decoder_decides_nearly_valid_batches_as_one_event_at_a_time(objects, as_parsed):
    raws = [json.dumps(obj).encode() for obj in objects]
    parsed = list(objects) if as_parsed else [None] * len(raws)
    batch = decode_prediction_envelopes(raws, parsed, LIMITS)
    assert batch == [decode_prediction_envelope(r, LIMITS, p) for r, p in zip(raws, parsed)]


feature_rows = st.lists(
    st.dictionaries(st.sampled_from("abcde"), st.one_of(st.none(), st.integers(0, 9)), max_size=5),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(rows=feature_rows, same_keys=st.booleans())
def test_a_batch_becomes_one_column_per_name_of_any_row(rows, same_keys):
    """Rows with the same keys take the transposing path, others a lookup per value;
    both give every name of any row its column, None where a row lacks it."""
    if same_keys:
        rows = [{name: row.get(name) for name in rows[0]} for row in rows]
    names = sorted(set().union(*rows))
    columns = prediction_batch(
        [
            {"ts": 1.0, "score": 0.5, "model_version": "v", "event_id": str(i), "features": row}
            for i, row in enumerate(rows)
        ]
    ).features
    assert list(columns) == names
    assert {name: list(column) for name, column in columns.items()} == {
        name: [row.get(name) for row in rows] for name in names
    }
