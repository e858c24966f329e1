"""Traffic that follows the time of day, on a stream too fast for a day to fit in the
reference: the first day is sampled, then windows are compared with the same hours."""

from __future__ import annotations

import pytest

from benchmarks.daily_cycles import amount_shift
from evaluation.simulate import Incident, TrafficSpec, generate, write_replay
from tests.support import replay_service

pytestmark = pytest.mark.slow

# 2 predictions/s: the default reference (10,000) covers 83 minutes, a day 172,800 events.
RATE = 2.0
DAY = int(RATE * 86_400)
WINDOW = 2_000  # the default window_events


def _replay(tmp_path, incidents: list[Incident], seed: int = 0):
    spec = TrafficSpec(events_per_second=RATE, daily_cycle=0.5)
    records = list(generate(spec, 2 * DAY, seed=seed, incidents=incidents))
    path = tmp_path / "cycle.jsonl"
    write_replay(path, records)
    _, decisions = replay_service(path, tmp_path / "decisions.jsonl")
    predictions = [r["value"] for r in records if r["topic"] == "predictions"]
    return decisions, predictions


def _shift(start_event: int) -> Incident:
    return amount_shift(start_event, magnitude=0.5)


def test_two_days_of_a_daily_cycle_give_no_decision(tmp_path):
    decisions, predictions = _replay(tmp_path, [])
    assert len(predictions) == 2 * DAY
    assert [d.to_dict() for d in decisions] == []


def test_a_shift_on_top_of_the_cycle_is_found_within_5_windows(tmp_path):
    onset = DAY + DAY // 2
    decisions, predictions = _replay(tmp_path, [_shift(onset)], seed=1)
    keys = [(d.action, d.cause, d.feature, d.cohort) for d in decisions]
    assert keys == [("investigate", "covariate_drift", "amount", None)], keys
    assert predictions[onset]["ts"] <= decisions[0].ts <= predictions[onset + 5 * WINDOW]["ts"]


def test_a_shift_during_the_first_day_is_found_once_the_day_is_in_the_reference(tmp_path):
    # Eight hours in, when the cycle has already moved the amounts for hours: the step is
    # not told from the cycle that day, and is then seen in the hours before its onset.
    onset = int(RATE * 8 * 3_600)
    decisions, predictions = _replay(tmp_path, [_shift(onset)], seed=2)
    found = [
        d
        for d in decisions
        if (d.action, d.cause, d.feature) == ("investigate", "covariate_drift", "amount")
    ]
    assert found, [d.to_dict() for d in decisions]
    assert predictions[onset]["ts"] <= found[0].ts <= predictions[onset + DAY]["ts"]
    assert all(d.action in ("investigate", "hold") for d in decisions)
