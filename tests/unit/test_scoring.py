"""Matching decisions to incidents, on hand-made truths and decisions (hand-computed values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from evaluation.scoring import (
    RetrainCount,
    ScoredDecision,
    Tally,
    Truth,
    by_scenario,
    count_retrains,
    score,
)
from evaluation.simulate import SCENARIOS
from streamer import cli

# 50 events a second from ts 0: event i happens at i / 50 s, so ts t is event 50 t.
MARKS = [[0, 0.0], [50_000, 1_000.0], [99_999, 1_999.98]]


def _incident(name: str, feature: str | None, start: int, action: str, cause: str, **extra: Any):
    return {
        "name": name,
        "kind": "whatever",
        "feature": feature,
        "cohort": extra.get("cohort"),
        "start_event": start,
        "end_event": extra.get("end"),
        "start_ts": start / 50,
        "end_ts": None if extra.get("end") is None else extra["end"] / 50,
        "expected_action": action,
        "expected_cause": cause,
    }


def _truth(*incidents: dict[str, Any], scenario: str = "s", events: int | None = None) -> Truth:
    data = {"scenario": scenario, "events": 100_000, "seed": 7, "incidents": list(incidents)}
    return Truth.from_dict({**data, "event_times": MARKS}, events)


def _decision(action: str, cause: str, feature: str | None, event: int, **extra: Any):
    evidence: dict[str, Any] = {}
    if "features" in extra:
        evidence["features"] = extra["features"]
    if extra.get("resolved"):
        evidence["resolved"] = True
    incident = {k: extra[k] for k in ("incident_id", "phase") if k in extra}
    return ScoredDecision.from_dict(
        {
            **incident,
            "decision_id": extra.get("id", f"{action}-{event}"),
            "action": action,
            "cause": cause,
            "scope": {"feature": feature, "cohort": extra.get("cohort")},
            "evidence": evidence,
            "ts": event / 50,
        }
    )


EU = {"region": "eu"}
AMOUNT = _incident("amount", "amount", 50_000, "investigate", "covariate_drift")
FROZEN_EU = _incident("balance", "balance", 50_000, "fix_upstream", "frozen_signal", cohort=EU)
CONCEPT = _incident("concept", None, 50_000, "retrain", "concept_drift")
CAMPAIGN = _incident("campaign", "amount", 50_000, "hold", "transient_shift", cohort=EU, end=54_000)


def test_decisions_match_incidents_by_scope_and_time():
    truth = _truth(AMOUNT, FROZEN_EU)
    decisions = [
        _decision("investigate", "covariate_drift", "amount", 55_000),
        _decision("fix_upstream", "frozen_signal", "balance", 52_500, cohort=EU),
        _decision("investigate", "covariate_drift", "amount", 75_000),  # again: a duplicate
        _decision("investigate", "covariate_drift", "balance", 60_000),  # not the cohort
        _decision("investigate", "covariate_drift", "amount", 40_000),  # before the onset
        _decision("hold", "concept_drift", None, 65_000),  # a gated hold orders nothing
        _decision("retrain", "concept_drift", None, 70_000),
    ]
    scored = score(truth, decisions)
    amount, frozen = scored.results
    assert amount.detected and frozen.detected
    # Events of the incident up to and including the deciding one, and event time.
    assert (amount.delay_events, amount.delay_seconds) == (5_001, 100.0)
    assert (frozen.delay_events, frozen.delay_seconds) == (2_501, 50.0)
    assert (amount.duplicates, frozen.duplicates) == (1, 0)
    assert [d.decision_id for d in scored.false_decisions] == [
        "investigate-40000",
        "investigate-60000",
        "retrain-70000",
    ]
    assert scored.retrains == RetrainCount(orders=1, wrong=1)
    tally = Tally.of([scored])
    assert (tally.recall, tally.action_accuracy, tally.cause_accuracy) == (1.0, 1.0, 1.0)
    assert tally.false_per_million == pytest.approx(30.0)  # 3 in 100,000 events
    assert tally.duplicates_per_incident == 0.5
    assert tally.median_delay_events == 3_751
    assert tally.median_delay_seconds == 75.0


def test_a_grouped_decision_counts_for_each_feature_it_lists():
    truth = _truth(
        AMOUNT, _incident("clicks", "clicks_7d", 50_000, "investigate", "covariate_drift")
    )
    grouped = _decision(
        "investigate", "covariate_drift", None, 56_000, features=["clicks_7d", "amount", "age"]
    )
    scored = score(truth, [grouped])
    assert [r.detected for r in scored.results] == [True, True]
    assert scored.false_decisions == ()
    # ... but not for an incident without a feature (an outcome of the whole model).
    assert not score(_truth(CONCEPT), [grouped]).results[0].detected


def test_a_wrong_diagnosis_is_detected_with_the_wrong_action_and_cause():
    scored = score(
        _truth(CONCEPT),
        [
            _decision("investigate", "label_quality", None, 58_000),
            _decision("retrain", "concept_drift", None, 60_000),
        ],
    )
    (result,) = scored.results
    assert result.detected
    assert not result.action_correct and not result.cause_correct
    assert result.duplicates == 1
    assert scored.retrains == RetrainCount(orders=1, wrong=0)
    tally = Tally.of([scored])
    assert (tally.recall, tally.action_accuracy, tally.cause_accuracy) == (1.0, 0.0, 0.0)


def test_a_right_action_with_the_wrong_cause():
    (result,) = score(
        _truth(FROZEN_EU),
        [_decision("fix_upstream", "rescaled_signal", "balance", 53_000, cohort=EU)],
    ).results
    assert result.action_correct and not result.cause_correct


def test_a_transient_incident_allows_nothing_but_holds():
    hold = _decision("hold", "transient_shift", "amount", 56_000, cohort=EU)
    ok = score(_truth(CAMPAIGN), [hold])
    (result,) = ok.results
    assert result.detected and result.action_correct and result.cause_correct
    assert result.transient_actions == 0

    acted = _decision("investigate", "covariate_drift", "amount", 55_000, cohort=EU)
    (result,) = score(_truth(CAMPAIGN), [acted, hold]).results
    assert result.detected and not result.action_correct and not result.cause_correct
    assert result.transient_actions == 1
    # Even when the hold comes first, a later order during the incident is a wrong action.
    later = _decision("retrain", "concept_drift", "amount", 57_000, cohort=EU)
    (result,) = score(_truth(CAMPAIGN), [hold, later]).results
    assert result.cause_correct and not result.action_correct
    assert result.transient_actions == 1


def test_decisions_long_after_an_incident_ended_belong_to_nothing():
    # The campaign ends at 54,000; decisions until 64,000 (10,000 events of grace) are its.
    late = _decision("investigate", "covariate_drift", "amount", 64_500, cohort=EU)
    scored = score(_truth(CAMPAIGN), [late])
    assert not scored.results[0].detected
    assert [d.decision_id for d in scored.false_decisions] == ["investigate-64500"]


def test_a_resolving_hold_is_bookkeeping():
    scored = score(
        _truth(AMOUNT),
        [
            _decision("investigate", "covariate_drift", "amount", 56_000),
            _decision("hold", "covariate_drift", "amount", 80_000, resolved=True),
        ],
    )
    assert scored.results[0].duplicates == 0
    assert scored.false_decisions == ()
    # A resolving hold is not a detection either.
    only = score(
        _truth(AMOUNT), [_decision("hold", "covariate_drift", "amount", 80_000, resolved=True)]
    )
    assert not only.results[0].detected


def test_retrains_are_right_only_during_concept_drift():
    truth = _truth(
        _incident("concept", None, 50_000, "retrain", "concept_drift", end=60_000), AMOUNT
    )
    # 49,999: before; 50,000 and 69,999: during (with 10,000 events of grace); 70,000: after.
    assert count_retrains(truth, [49_999, 50_000, 69_999, 70_000]) == RetrainCount(4, 2)
    assert count_retrains(_truth(AMOUNT), [60_000]) == RetrainCount(1, 1)


def test_orders_are_counted_per_incident_id():
    truth = _truth(CONCEPT, AMOUNT)
    one_incident = [
        _decision("retrain", "concept_drift", None, 56_000, incident_id="c1", phase="opened"),
        _decision("retrain", "concept_drift", None, 60_000, incident_id="c1", phase="updated"),
        _decision("hold", "concept_drift", None, 80_000, incident_id="c1", phase="resolved"),
    ]
    repeated = [  # one drift, two investigations
        _decision("investigate", "covariate_drift", "amount", 56_000, incident_id="a1"),
        _decision("investigate", "covariate_drift", "amount", 70_000, incident_id="a2"),
    ]
    scored = score(truth, [*one_incident, *repeated])
    concept, amount = scored.results
    assert (concept.orders, concept.repeated_orders, concept.duplicates) == (1, 0, 2)
    assert (amount.orders, amount.repeated_orders) == (2, 1)
    tally = Tally.of([scored])
    assert (tally.orders, tally.ordered_incidents, tally.repeated_orders) == (3, 2, 1)
    assert tally.orders_per_incident == pytest.approx(1.5)
    assert scored.retrains == RetrainCount(orders=1, wrong=0)  # the update is no order


def test_without_incident_ids_every_decision_is_an_order():
    truth = _truth(CONCEPT)
    retrains = [_decision("retrain", "concept_drift", None, e) for e in (56_000, 60_000)]
    (result,) = score(truth, retrains).results
    assert (result.orders, result.repeated_orders) == (2, 1)
    assert score(truth, retrains).retrains == RetrainCount(orders=2, wrong=0)


def test_an_update_outside_every_incident_is_no_false_decision():
    truth = _truth(_incident("eu", None, 50_000, "retrain", "concept_drift", cohort=EU))
    decisions = [
        _decision("retrain", "concept_drift", None, 56_000, cohort=EU, incident_id="c"),
        # the drop grew to the population: the same incident, no second order
        _decision("retrain", "concept_drift", None, 60_000, incident_id="c", phase="updated"),
        _decision("investigate", "covariate_drift", "age", 60_000, incident_id="x"),
    ]
    scored = score(truth, decisions)
    assert [d.incident_id for d in scored.false_decisions] == ["x"]
    assert scored.results[0].orders == 1


def test_a_prefix_of_the_stream_drops_the_incidents_it_does_not_reach():
    late = _incident("late", "age_days", 90_000, "investigate", "covariate_drift")
    truth = _truth(AMOUNT, late, events=60_000)
    assert [i.name for i in truth.incidents] == ["amount"]
    scored = score(truth, [_decision("investigate", "covariate_drift", "age_days", 59_000)])
    assert Tally.of([scored]).false_per_million == pytest.approx(1e6 / 60_000)


def test_runs_add_up_per_scenario_and_overall():
    hit = score(
        _truth(AMOUNT, scenario="a"),
        [_decision("investigate", "covariate_drift", "amount", 52_000)],
    )
    miss = score(_truth(AMOUNT, scenario="a"), [])
    quiet = score(_truth(scenario="b"), [_decision("investigate", "covariate_drift", "x", 10_000)])
    tallies = by_scenario([hit, miss, quiet])
    assert list(tallies) == ["a", "b"]
    assert (tallies["a"].runs, tallies["a"].incidents, tallies["a"].recall) == (2, 2, 0.5)
    assert tallies["a"].median_delay_events == 2_001
    assert tallies["b"].recall is None and tallies["b"].false_decisions == 1
    overall = Tally.of([hit, miss, quiet])
    assert overall.false_per_million == pytest.approx(1e6 / 300_000)


def test_a_benign_change_is_not_an_incident_and_decisions_about_it_are_false():
    healthy = _incident("healthy_deployment", None, 50_000, "none", "none")
    truth = _truth(healthy)
    assert truth.incidents == ()
    scored = score(truth, [_decision("rollback", "deployment_regression", None, 52_000)])
    assert [d.action for d in scored.false_decisions] == ["rollback"]


def test_a_truth_without_event_times_is_refused():
    with pytest.raises(ValueError, match="event_times"):
        Truth.from_dict({"scenario": "s", "events": 10, "incidents": []})
    with pytest.raises(ValueError, match="start_ts"):
        Truth.from_dict(
            {"events": 10, "event_times": MARKS, "incidents": [{**AMOUNT, "start_ts": None}]}
        )


def test_simulate_writes_the_incidents_event_times_as_streamed(tmp_path: Path):
    stream, truth_path = tmp_path / "s.jsonl", tmp_path / "t.json"
    args = ["simulate", "covariate_shift", "--events", "3000", "--seed", "2"]
    assert cli.main([*args, "--out", str(stream), "--truth", str(truth_path)]) == 0
    records = [orjson.loads(line) for line in stream.read_bytes().splitlines()]
    ts = {r["value"]["event_id"]: r["value"]["ts"] for r in records if r["topic"] == "predictions"}
    truth = orjson.loads(truth_path.read_bytes())
    (incident,) = truth["incidents"]
    _, (expected,) = SCENARIOS["covariate_shift"](3_000)
    assert incident["start_event"] == expected.start_event == 1_500
    assert incident["start_ts"] == ts["p-1500"]
    assert incident["end_ts"] is None
    assert truth["event_times"] == [[i, ts[f"p-{i}"]] for i in (0, 1_000, 2_000, 2_999)]


def test_score_command_reads_the_files_and_reports(tmp_path: Path, capsys):
    truth = {
        "scenario": "s",
        "events": 100_000,
        "seed": 7,
        "incidents": [AMOUNT],
        "event_times": MARKS,
    }
    (tmp_path / "t.json").write_bytes(orjson.dumps(truth))
    event = {
        "decision_id": "d1",
        "action": "investigate",
        "cause": "covariate_drift",
        "scope": {"feature": "amount", "cohort": None},
        "evidence": {},
        "ts": 1_100.0,
    }
    (tmp_path / "d.jsonl").write_bytes(orjson.dumps(event) + b"\n\n")
    files = ["--truth", str(tmp_path / "t.json"), "--decisions", str(tmp_path / "d.jsonl")]
    assert cli.main(["score", *files, "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["overall"]["recall"] == 1.0
    assert report["overall"]["median_delay_events"] == 5_001
    # 100,000 events over the 1,999.98 s between the first and the last mark
    assert report["overall"]["rate_per_s"] == pytest.approx(100_000 / 1_999.98)
    assert report["runs"][0]["incidents"][0]["decision_id"] == "d1"
    assert cli.main(["score", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["scenario", "runs", "rate", "(/s)", "incidents"]
    assert [line.split()[:3] for line in lines[1:]] == [["s", "1", "50"], ["overall", "1", "50"]]
    assert cli.main(["score", *files, "--truth", str(tmp_path / "t.json")]) == 2
    (tmp_path / "bad.jsonl").write_bytes(b'{"action": "retrain"}\n')
    assert cli.main(["score", "--truth", files[1], "--decisions", str(tmp_path / "bad.jsonl")]) == 2
