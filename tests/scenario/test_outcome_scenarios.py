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
