"""Delayed labels with the default config: concept drift, proxy labels, overrides."""

from __future__ import annotations

import pytest

from detectors.decision import Decision
from evaluation.simulate import SCENARIOS, generate, write_replay
from tests.support import replay_service

pytestmark = pytest.mark.slow

EVENTS = 160_000


def _run(tmp_path, scenario: str, seed: int) -> tuple[list[Decision], list[dict], list]:
    spec, incidents = SCENARIOS[scenario](EVENTS)
    records = list(generate(spec, EVENTS, seed=seed, incidents=incidents))
    write_replay(tmp_path / "stream.jsonl", records)
    _, decisions = replay_service(tmp_path / "stream.jsonl", tmp_path / "decisions.jsonl")
    predictions = [r["value"] for r in records if r["topic"] == "predictions"]
    return decisions, predictions, incidents


@pytest.mark.parametrize(
    "scenario", ["concept", "cohort_concept", "click_inflation", "rising_overrides"]
)
def test_outcome_incidents_get_their_action_cause_and_scope(tmp_path, scenario):
    decisions, predictions, (incident,) = _run(tmp_path, scenario, seed=21)
    found = [(d.action, d.cause, d.feature, d.cohort) for d in decisions]
    assert found == [(incident.expected_action, incident.expected_cause, None, incident.cohort)]
    onset = predictions[incident.start_event]["ts"]
    deadline = predictions[incident.start_event + 40_000]["ts"]
    assert onset <= decisions[0].ts <= deadline
    if scenario == "click_inflation":
        assert decisions[0].evidence["untrusted_sources"] == ["click", "implicit", "proxy"]


def test_stationary_traffic_with_delayed_labels_gives_no_decision(tmp_path):
    decisions, predictions, _ = _run(tmp_path, "labelled_stationary", seed=22)
    assert len(predictions) == EVENTS
    assert [d.to_dict() for d in decisions] == []


def test_labels_join_across_the_delay(tmp_path):
    spec, _ = SCENARIOS["labelled_stationary"](20_000)
    records = list(generate(spec, 20_000, seed=3))
    write_replay(tmp_path / "s.jsonl", records)
    service, _ = replay_service(tmp_path / "s.jsonl", tmp_path / "d.jsonl")
    engine = service.engine
    feedback = sum(r["topic"] == "feedback" for r in records)
    assert engine.join.joined == feedback
    assert engine.join.unknown == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_canary_whose_labels_regress_is_rolled_back_and_the_incumbent_is_not_blamed(
    tmp_path, seed
):
    """v2 serves 30% of the traffic with the incumbent's score distribution in every
    cohort, ranking at random within them: the scores cannot see it, its labels can."""
    decisions, predictions, (incident,) = _run(tmp_path, "canary_label_regression", seed)
    orders = [(d.action, d.cause, d.model_version, d.feature, d.cohort) for d in decisions]
    assert orders == [("rollback", "deployment_regression", "v2", None, None)]
    evidence = decisions[0].evidence
    assert evidence["detector"] == "outcomes_against_incumbent_same_period"
    assert evidence["version_auc"] < evidence["incumbent_auc"] - 0.1
    onset = predictions[incident.start_event]["ts"]
    # Labels come an hour late and v2 gets 0.3 of them: 3 windows of 1,000 of its own
    # labels take ~3 hours of a 1 label/s stream; 60,000 events are 8.3 hours.
    assert onset < decisions[0].ts <= predictions[incident.start_event + 60_000]["ts"]
