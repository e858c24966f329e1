"""The incident lifecycle: one order per incident, follow-ups and one resolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.batch import PredictionBatch
from detectors.decision import Decision
from detectors.incidents import IncidentTracker
from detectors.monitor import ModelMonitor, MonitorConfig
from tests.support import feed, sample_decision
from tests.unit.test_monitor import CONFIG, R, W, make_stream


def report(
    cause: str = "covariate_drift",
    feature: str | None = "amount",
    cohort: dict[str, str] | None = None,
    ts: float = 100.0,
    *,
    action: str = "investigate",
    phase: str = "opened",
    version: str = "v1",
    evidence: dict[str, object] | None = None,
) -> Decision:
    """A condition-level report as a monitor emits it (before the tracker)."""
    return sample_decision(
        action=action,
        cause=cause,
        feature=feature,
        cohort=cohort,
        ts=ts,
        confirmed_at=ts,
        model_version=version,
        phase=phase,
        evidence=evidence or {},
    )


def resolution(**kwargs: object) -> Decision:
    return report(action="hold", phase="resolved", **kwargs)  # type: ignore[arg-type]


def phases(decisions: list[Decision]) -> list[tuple[str, str | None, str]]:
    return [(d.action, d.feature, d.phase) for d in decisions]


def test_a_drift_that_spreads_is_one_incident_with_one_resolution() -> None:
    tracker = IncidentTracker("fraud")
    placed = tracker.place(
        [
            report(cohort={"region": "eu"}, ts=100.0),
            report(feature="age", ts=200.0),  # another feature
            report(cohort=None, ts=300.0),  # the population
            resolution(cohort={"region": "eu"}, ts=400.0),
            resolution(feature="age", ts=500.0),
        ]
    )
    assert phases(placed) == [
        ("investigate", "amount", "opened"),
        ("investigate", "age", "updated"),
        ("investigate", "amount", "updated"),
    ]
    last = tracker.place([resolution(cohort=None, ts=600.0)])
    assert phases(last) == [("hold", "amount", "resolved")]
    assert {d.incident_id for d in [*placed, *last]} == {placed[0].incident_id}
    assert tracker.open == {} and tracker.member_of == {}


def test_a_cohort_concept_drift_that_grows_to_the_population_is_one_retrain() -> None:
    tracker = IncidentTracker("fraud")
    concept = {"cause": "concept_drift", "feature": None, "action": "retrain"}
    placed = tracker.place(
        [
            report(**concept, cohort={"region": "eu"}, ts=10.0),  # type: ignore[arg-type]
            report(**concept, cohort=None, ts=20.0),  # type: ignore[arg-type]
        ]
    )
    assert [(d.action, d.cohort, d.phase) for d in placed] == [
        ("retrain", {"region": "eu"}, "opened"),
        ("retrain", None, "updated"),
    ]
    assert placed[0].incident_id == placed[1].incident_id


def test_a_return_after_the_resolution_is_a_new_incident() -> None:
    tracker = IncidentTracker("fraud")
    first = tracker.place([report(ts=1.0), resolution(ts=2.0)])
    again = tracker.place([report(ts=3.0)])
    assert phases([*first, *again]) == [
        ("investigate", "amount", "opened"),
        ("hold", "amount", "resolved"),
        ("investigate", "amount", "opened"),
    ]
    assert again[0].incident_id != first[0].incident_id


def test_each_kind_of_order_is_its_own_incident() -> None:
    tracker = IncidentTracker("fraud")
    placed = tracker.place(
        [
            report(ts=1.0),
            report("frozen_signal", "amount", action="fix_upstream", ts=2.0),
            report("rescaled_signal", "age", action="fix_upstream", ts=3.0),
            report("schema_change", "amount", action="fix_upstream", ts=4.0),  # same input
            report("concept_drift", None, action="retrain", ts=5.0),
            report("concept_drift", None, action="hold", ts=6.0),  # a gate held it
            report("deployment_regression", None, action="rollback", version="v2", ts=7.0),
            report("deployment_regression", None, action="rollback", version="v3", ts=8.0),
            report("label_quality", None, ts=9.0),
            report("trust_decay", None, ts=10.0),
        ]
    )
    assert [d.phase for d in placed] == ["opened"] * 3 + ["updated"] + ["opened"] * 6
    assert len({d.incident_id for d in placed}) == 9


def test_a_grouped_drift_resolves_once_every_feature_did() -> None:
    tracker = IncidentTracker("fraud")
    group = report(feature=None, evidence={"features": ["amount", "age", "flag"]})
    assert phases(tracker.place([group])) == [("investigate", None, "opened")]
    assert tracker.place([resolution(feature="amount"), resolution(feature="age")]) == []
    (last,) = tracker.place([resolution(feature="flag")])
    assert (last.phase, last.incident_id) == ("resolved", tracker_id(group))


def tracker_id(decision: Decision) -> str:
    return IncidentTracker("fraud").place([decision])[0].incident_id


def test_a_transient_shift_is_an_incident_of_its_own() -> None:
    tracker = IncidentTracker("fraud")
    drift = report(ts=1.0)
    hold = report("transient_shift", "age", action="hold", ts=2.0)
    other = report("transient_shift", "flag", action="hold", ts=2.0)
    placed = tracker.place([drift, hold, other])
    assert [d.phase for d in placed] == ["opened", "opened", "opened"]
    assert len({d.incident_id for d in placed}) == 3
    assert ("hold", "transient_shift", "") not in tracker.open  # nothing left to resolve


def test_a_resolution_no_incident_holds_is_left_out() -> None:
    assert IncidentTracker("fraud").place([resolution(ts=5.0)]) == []


def test_incident_ids_are_deterministic_and_depend_on_when_it_opened() -> None:
    assert tracker_id(report(ts=1.0)) == tracker_id(report(ts=1.0))
    assert tracker_id(report(ts=1.0)) != tracker_id(report(ts=2.0))
    (other_model,) = IncidentTracker("risk").place([report(ts=1.0)])
    assert other_model.incident_id != tracker_id(report(ts=1.0))
    assert len(tracker_id(report())) == 32


def test_a_decision_no_tracker_placed_is_an_incident_of_its_own() -> None:
    event = report().to_dict()
    assert event["schema_version"] == 2
    assert (event["incident_id"], event["phase"]) == (event["decision_id"], "opened")


def test_the_resolve_horizon_is_validated() -> None:
    with pytest.raises(ValueError, match="resolve_windows must be >= persistence_windows"):
        MonitorConfig(persistence_windows=4, resolve_windows=3)
    MonitorConfig(persistence_windows=4, resolve_windows=4)


# --- On the monitor: the horizon, in judged windows ---


def shifted(
    windows_on: list[tuple[int, int]], n_windows: int = 40, seed: int = 9
) -> PredictionBatch:
    """A stream whose amount moves by 1.2 sd in the given [from, to) windows after the
    reference, for everybody."""
    n = R + n_windows * W
    base = make_stream(n, seed=seed)
    amount = np.array(base.features["amount"])
    i = np.arange(n)
    on = np.zeros(n, dtype=bool)
    for a, b in windows_on:
        on |= (i >= R + a * W) & (i < R + b * W)
    features = {**base.features, "amount": np.where(on, amount + 1.2, amount).tolist()}
    return PredictionBatch(base.ts, base.score, base.model_version, base.cohorts, features)


def lifecycle(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.action, d.phase) for d in decisions]


def test_a_drift_that_dips_and_comes_back_within_the_horizon_is_one_order() -> None:
    gap = CONFIG.persistence_windows + 1  # closed, but not resolve_windows clear
    assert gap < CONFIG.resolve_windows
    decisions = ModelMonitor("fraud", CONFIG).update(shifted([(3, 9), (9 + gap, 15 + gap)]))
    assert lifecycle(decisions) == [
        ("investigate", "opened"),
        ("investigate", "updated"),
        ("hold", "resolved"),
    ]
    assert len({d.incident_id for d in decisions}) == 1
    assert decisions[-1].evidence["clean_windows"] == CONFIG.resolve_windows


def test_a_drift_that_comes_back_after_the_horizon_is_a_new_incident() -> None:
    gap = CONFIG.resolve_windows + 2
    decisions = ModelMonitor("fraud", CONFIG).update(shifted([(3, 9), (9 + gap, 15 + gap)]))
    assert lifecycle(decisions) == [
        ("investigate", "opened"),
        ("hold", "resolved"),
        ("investigate", "opened"),
        ("hold", "resolved"),
    ]
    first, _, second, _ = decisions
    assert first.incident_id != second.incident_id


def test_a_longer_horizon_holds_the_incident_open_longer() -> None:
    gap = CONFIG.resolve_windows + 2
    longer = MonitorConfig(**{**vars(CONFIG), "resolve_windows": gap + 1})  # type: ignore[arg-type]
    decisions = ModelMonitor("fraud", longer).update(shifted([(3, 9), (9 + gap, 15 + gap)]))
    assert lifecycle(decisions) == [
        ("investigate", "opened"),
        ("investigate", "updated"),
        ("hold", "resolved"),
    ]


def spreading() -> PredictionBatch:
    """amount drifts in eu from window 3, in everybody from window 12 to 20; age drifts
    from window 25 to 31: two incidents, the first with updates."""
    n = R + 45 * W
    base = make_stream(n, seed=17)
    i = np.arange(n)
    region = np.array(base.cohorts["region"])
    amount = np.array(base.features["amount"])
    age = np.array(base.features["age"])
    eu = (region == "eu") & (i >= R + 3 * W) & (i < R + 20 * W)
    everybody = (i >= R + 12 * W) & (i < R + 20 * W)
    amount = np.where(eu | everybody, amount + 1.2, amount)
    age = np.where((i >= R + 25 * W) & (i < R + 31 * W), age + 12.0, age)
    features = {**base.features, "amount": amount.tolist(), "age": age.tolist()}
    return PredictionBatch(base.ts, base.score, base.model_version, base.cohorts, features)


SPREADING = spreading()


def test_the_spreading_stream_has_updates_and_two_incidents() -> None:
    decisions = ModelMonitor("fraud", CONFIG).update(SPREADING)
    ids = [d.incident_id for d in decisions]
    assert [d.phase for d in decisions].count("opened") == 2
    assert "updated" in [d.phase for d in decisions]
    assert [d.phase for d in decisions].count("resolved") == 2
    assert len(set(ids)) == 2
    orders = [d for d in decisions if d.phase == "opened" and d.action != "hold"]
    assert [(d.feature, d.cohort) for d in orders] == [("amount", {"region": "eu"}), ("age", None)]


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SPREADING)), max_size=20))
def test_incidents_do_not_depend_on_how_the_stream_is_cut(cuts: list[int]) -> None:
    whole = ModelMonitor("fraud", CONFIG).update(SPREADING)
    parts = feed(ModelMonitor("fraud", CONFIG), SPREADING, cuts)
    assert [(d.incident_id, d.phase) for d in parts] == [(d.incident_id, d.phase) for d in whole]
