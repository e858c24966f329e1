"""Frozen, rescaled and renamed inputs are named as such, with the default config."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import orjson
import pytest

from detectors.decision import Decision
from evaluation.simulate import SCENARIOS, generate, write_replay
from tests.support import ELEC2, open_csv, replay_service

pytestmark = pytest.mark.slow

EVENTS = 160_000


def _replay(path: Path, out: Path) -> list[Decision]:
    return replay_service(path, out)[1]


@pytest.mark.parametrize("scenario", ["frozen", "cohort_frozen", "rescaled", "renamed"])
def test_upstream_faults_get_their_cause_and_scope_within_10000_events(tmp_path, scenario):
    spec, incidents = SCENARIOS[scenario](EVENTS)
    records = list(generate(spec, EVENTS, seed=11, incidents=incidents))
    write_replay(tmp_path / "stream.jsonl", records)
    decisions = _replay(tmp_path / "stream.jsonl", tmp_path / "decisions.jsonl")
    predictions = [r["value"] for r in records if r["topic"] == "predictions"]
    expected = {(i.expected_action, i.expected_cause, i.feature, str(i.cohort)) for i in incidents}
    found = {(d.action, d.cause, d.feature, str(d.cohort)) for d in decisions if d.action != "hold"}
    assert found == expected, [d.to_dict() for d in decisions]
    assert not any(d.action == "retrain" for d in decisions)
    # Broken inputs break the model's outcomes too; that retrain is held, and says why.
    for held in (d for d in decisions if d.action == "hold"):
        assert held.evidence.get("gate") == "upstream_condition_active", held.to_dict()
    for incident in incidents:
        onset = predictions[incident.start_event]["ts"]
        deadline = predictions[incident.start_event + 10_000]["ts"]
        (decision,) = [d for d in decisions if d.feature == incident.feature]
        assert onset <= decision.ts <= deadline
        if incident.kind == "rescale":
            factor = decision.evidence["factor"]
            assert factor == pytest.approx(incident.magnitude, rel=0.05)
            assert decision.evidence["nearest_unit"] == incident.magnitude
        if incident.kind == "rename":
            assert decision.evidence["renamed_to"] == incident.new_name


# The default reference (10,000 predictions), then 10 windows of 2,000 before the change
# and 10 after: the 5% cohort (~100 predictions a window) is judged every second window.
COHORT_UNIT_EVENTS = 40_000
KM_TO_MI = 1 / 1.609344


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scenario", ["cohort_unit_change_12", "cohort_unit_change_5"])
def test_a_unit_change_in_a_small_cohort_is_one_rescaled_signal(tmp_path, scenario, seed):
    """Kilometres served as miles in one market of 12% (or 5%) of the traffic: one
    fix_upstream for that market, with the factor and its conversion, and nothing else
    (no covariate drift there or in the population, before or after)."""
    spec, (incident,) = SCENARIOS[scenario](COHORT_UNIT_EVENTS)
    records = list(generate(spec, COHORT_UNIT_EVENTS, seed=seed, incidents=[incident]))
    write_replay(tmp_path / "stream.jsonl", records)
    decisions = _replay(tmp_path / "stream.jsonl", tmp_path / "decisions.jsonl")
    acted = [d for d in decisions if d.action != "hold"]
    assert [(d.action, d.cause, d.feature, d.cohort) for d in acted] == [
        ("fix_upstream", "rescaled_signal", "session_seconds", incident.cohort)
    ], [d.to_dict() for d in decisions]
    (decision,) = acted
    predictions = [r["value"] for r in records if r["topic"] == "predictions"]
    assert decision.ts >= predictions[incident.start_event]["ts"]
    evidence = decision.evidence
    assert evidence["factor"] == pytest.approx(0.6214, rel=0.05)
    # the estimate itself, a few percent off on a few hundred values, and its interval
    low, high = evidence["factor_interval"]
    assert low <= KM_TO_MI <= high and low <= evidence["raw_factor"] <= high
    assert evidence["raw_factor"] == pytest.approx(KM_TO_MI, rel=0.1)
    assert evidence["conversion"] == "km_to_mi"
    assert evidence["nearest_unit"] == pytest.approx(KM_TO_MI, rel=1e-9)
    # pooled over the windows since the change: more values than any one window holds
    assert evidence["pooled_windows"] >= 2
    assert evidence["pooled_values"] > evidence["window_events"]


def test_a_feed_that_comes_back_gets_a_resolving_hold(tmp_path):
    spec, (incident,) = SCENARIOS["frozen"](EVENTS)
    incident = dataclasses.replace(incident, start_event=60_000, end_event=90_000)
    write_replay(tmp_path / "s.jsonl", generate(spec, EVENTS, seed=12, incidents=[incident]))
    decisions = _replay(tmp_path / "s.jsonl", tmp_path / "decisions.jsonl")
    found = [(d.action, d.cause, d.feature, d.cohort) for d in decisions]
    assert found == [
        ("fix_upstream", "frozen_signal", "balance", None),
        ("hold", "frozen_signal", "balance", None),
    ]
    assert decisions[1].evidence["resolved"] is True
    assert decisions[0].decision_id != decisions[1].decision_id


def _elec2_stream(path: Path) -> int:
    with open_csv(ELEC2) as source, path.open("wb") as out:
        rows = csv.DictReader(source)
        for i, row in enumerate(rows):
            label = row.pop("class")
            event = {
                "event_id": f"e{i}",
                "ts": 912_470_400.0 + 1_800.0 * i,  # half-hourly from 1 Dec 1998 (illustrative)
                "model": "elec2",
                "model_version": "v1",
                "features": {k: float(v) for k, v in row.items()},
                "score": 0.6 if label == "UP" else 0.4,
            }
            out.write(orjson.dumps({"topic": "predictions", "value": event}) + b"\n")
    return i + 1


def test_elec2_features_constant_in_the_reference_are_not_called_frozen(tmp_path):
    """vicprice, vicdemand and transfer are constant for the first 17,424 rows (filled-in
    values), like the reference, and vary after that: reported, but never as frozen."""
    rows = _elec2_stream(tmp_path / "elec2.jsonl")
    assert rows == 45_312
    decisions = _replay(tmp_path / "elec2.jsonl", tmp_path / "decisions.jsonl")
    revived = {"vicprice", "vicdemand", "transfer"}
    alive_ts = 912_470_400.0 + 1_800.0 * 17_424
    named = [
        (d, {d.feature} if d.feature else set(d.evidence.get("features", ()))) for d in decisions
    ]
    reported = set().union(*(f for d, f in named if d.action != "hold")) & revived
    assert reported == revived
    assert all(d.ts >= alive_ts for d, f in named if f & revived)
    assert not [d.to_dict() for d in decisions if d.cause == "frozen_signal"]
