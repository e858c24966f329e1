from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.config import LimitsConfig
from streamer.decode import REASONS, Rejected, decode_feedback, decode_prediction
from streamer.events import PredictionEvent

LIMITS = LimitsConfig()
GOOD = (
    b'{"event_id": "p-1", "ts": 1763712000.5, "model": "fraud", "model_version": "v1",'
    b' "cohort": {"region": "eu"}, "features": {"amount": 12.5, "country": "DE",'
    b' "is_new": true, "clicks": null}, "score": 0.1}'
)


def test_a_valid_prediction_keeps_its_types():
    event = decode_prediction(GOOD, LIMITS)
    assert isinstance(event, PredictionEvent)
    assert event.features == {"amount": 12.5, "country": "DE", "is_new": True, "clicks": None}
    assert event.ts == 1763712000.5


def test_rfc3339_timestamps_need_a_zone():
    with_zone = GOOD.replace(b"1763712000.5", b'"2025-11-21T08:00:00+01:00"')
    event = decode_prediction(with_zone, LIMITS)
    assert isinstance(event, PredictionEvent) and event.ts == 1763708400.0
    naive = decode_prediction(GOOD.replace(b"1763712000.5", b'"2025-11-21T08:00:00"'), LIMITS)
    assert isinstance(naive, Rejected) and naive.reason == "invalid_value"
    assert "timezone" in naive.detail


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"event_id": "x"}', "missing_field"),
        (GOOD.replace(b"12.5", b"[1]"), "wrong_type"),
        (GOOD.replace(b'"score": 0.1', b'"score": "0.1"'), "wrong_type"),
        (GOOD.replace(b"12.5", b"1e999"), "invalid_value"),
        (GOOD.replace(b'"score": 0.1', b'"score": NaN'), "invalid_value"),
        (b"[" * 100_000, "invalid_json"),
        (b" " * (LIMITS.max_message_bytes + 1), "too_large"),
        (None, "invalid_json"),
    ],
)
def test_bad_predictions_are_rejected_with_a_reason(raw, reason):
    result = decode_prediction(raw, LIMITS)
    assert isinstance(result, Rejected)
    assert result.reason == reason, result.detail


def test_limits_on_features_and_strings():
    many = b'{"event_id": "p", "ts": 1, "model": "m", "model_version": "v", "score": 0.5,'
    many += b' "features": {'
    many += b",".join(b'"f%d": 1' % i for i in range(LIMITS.max_features_per_event + 1)) + b"}}"
    assert decode_prediction(many, LIMITS).reason == "too_many_features"
    long = GOOD.replace(b'"DE"', b'"' + b"x" * (LIMITS.max_string_bytes + 1) + b'"')
    assert decode_prediction(long, LIMITS).reason == "string_too_long"


def test_feedback_defaults_and_rejections():
    event = decode_feedback(b'{"event_id": "p-1", "ts": 5, "label": 1}', LIMITS)
    assert not isinstance(event, Rejected)
    assert (event.source, event.override, event.label) == ("unknown", False, 1.0)
    assert decode_feedback(b'{"event_id": "p-1", "ts": 5}', LIMITS).reason == "missing_field"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_never_raise(raw):
    for decode in (decode_prediction, decode_feedback):
        result = decode(raw, LIMITS)
        assert not isinstance(result, Rejected) or result.reason in REASONS
