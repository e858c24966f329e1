"""Detection on realistic streams with the default configuration."""

from __future__ import annotations

import pytest

from evaluation.simulate import SCENARIOS, generate, write_replay
from tests.support import replay_service

pytestmark = pytest.mark.slow

EVENTS = 200_000


def _replay(tmp_path, scenario: str, seed: int):
    spec, incidents = SCENARIOS[scenario](EVENTS)
    path = tmp_path / f"{scenario}.jsonl"
    records = list(generate(spec, EVENTS, seed=seed, incidents=incidents))
    write_replay(path, records)
    _, decisions = replay_service(path, tmp_path / "decisions.jsonl")
    predictions = [r["value"] for r in records if r["topic"] == "predictions"]
    return decisions, predictions, incidents


@pytest.mark.parametrize("seed", [1, 2])
def test_stationary_traffic_gives_no_decision(tmp_path, seed):
    decisions, predictions, _ = _replay(tmp_path, "stationary", seed)
    assert len(predictions) == EVENTS
    assert [d.to_dict() for d in decisions] == []


def test_a_one_sd_shift_in_one_cohort_is_found_for_that_cohort_within_20000_events(tmp_path):
    decisions, predictions, (incident,) = _replay(tmp_path, "cohort_covariate_shift", 3)
    deadline_ts = predictions[incident.start_event + 20_000]["ts"]
    onset_ts = predictions[incident.start_event]["ts"]
    found = [
        d
        for d in decisions
        if (d.action, d.cause, d.feature, d.cohort)
        == ("investigate", "covariate_drift", incident.feature, incident.cohort)
    ]
    assert found, [d.to_dict() for d in decisions]
    assert onset_ts <= found[0].ts <= deadline_ts
    others = [d for d in decisions if d not in found]
    assert others == [], [d.to_dict() for d in others]


def test_a_population_shift_is_reported_once_for_the_population(tmp_path):
    decisions, predictions, (incident,) = _replay(tmp_path, "covariate_shift", 4)
    keys = [(d.action, d.feature, d.cohort) for d in decisions]
    assert keys == [("investigate", incident.feature, None)]
    assert decisions[0].ts <= predictions[incident.start_event + 20_000]["ts"]
