"""The decision policy on the streams that test it: deployments, campaigns, daily cycles."""

from __future__ import annotations

import pytest

from evaluation.simulate import SCENARIOS, Incident, generate, write_replay
from tests.support import replay_service

pytestmark = pytest.mark.slow

EVENTS = 200_000


def _replay(tmp_path, scenario: str, seed: int, events: int = EVENTS, extra=()):
    spec, incidents = SCENARIOS[scenario](events)
    incidents = [*incidents, *extra]
    path = tmp_path / f"{scenario}.jsonl"
    records = list(generate(spec, events, seed=seed, incidents=incidents))
    write_replay(path, records)
    service, decisions = replay_service(path, tmp_path / "decisions.jsonl")
    predictions = [r["value"] for r in records if r["topic"] == "predictions"]
    return service, decisions, predictions, incidents


def _keys(decisions):
    return [(d.action, d.cause, d.model_version, d.feature, d.cohort) for d in decisions]


def test_a_broken_deployment_is_rolled_back_not_retrained(tmp_path):
    _, decisions, predictions, (incident,) = _replay(tmp_path, "deployment_regression", 5)
    assert _keys(decisions) == [("rollback", "deployment_regression", "v2", None, None)]
    (rollback,) = decisions
    onset_ts = predictions[incident.start_event]["ts"]
    assert onset_ts <= rollback.evidence["version_first_seen"] <= rollback.ts
    # within three windows and a bit of the new version's traffic
    assert rollback.ts <= predictions[incident.start_event + 10_000]["ts"]


def test_a_healthy_deployment_gives_no_decision(tmp_path):
    service, decisions, _, _ = _replay(tmp_path, "healthy_deployment", 6)
    assert [d.to_dict() for d in decisions] == []
    watch = service.engine.monitors["fraud"].deployments
    assert "v2" in watch.versions and watch.regressed() == ()
    # its trusted labels cleared it, so a later drop in outcomes would be a retrain
    assert watch.suspects() == ()


def test_a_campaign_shorter_than_the_persistence_horizon_is_only_a_hold(tmp_path):
    _, decisions, predictions, (incident,) = _replay(tmp_path, "campaign", 7)
    assert _keys(decisions) == [
        ("hold", "transient_shift", "v1", incident.feature, incident.cohort)
    ]
    (hold,) = decisions
    assert hold.evidence["reverted"] is True
    assert 1 <= hold.evidence["persisted_windows"] < hold.evidence["persistence_windows"]
    assert hold.ts >= predictions[incident.end_event]["ts"]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_week_with_a_daily_cycle_gives_no_decision(tmp_path, seed):
    events = 7 * 21_600  # a quarter of an event a second
    service, decisions, _, _ = _replay(tmp_path, "daily_cycle", seed, events)
    assert [d.to_dict() for d in decisions] == []
    monitor = service.engine.monitors["fraud"]
    assert monitor.seasonal
    assert monitor.reference_end - monitor.reference_start >= 86_400


def test_a_shift_on_top_of_a_daily_cycle_is_still_found(tmp_path):
    events = 7 * 21_600
    shift = Incident(
        name="amount_shift",
        kind="covariate_shift",
        feature="amount",
        cohort=None,
        start_event=events // 2,
        magnitude=0.5,
    )
    _, decisions, predictions, _ = _replay(tmp_path, "daily_cycle", 3, events, [shift])
    found = [d for d in decisions if d.action == "investigate"]
    assert [(d.cause, d.feature, d.cohort) for d in found] == [("covariate_drift", "amount", None)]
    assert found[0].ts <= predictions[shift.start_event + 10_000]["ts"]
    assert {d.action for d in decisions} <= {"investigate", "hold"}
