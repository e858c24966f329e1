"""Outcomes per model version: a canary's labels against the incumbent's of the same period."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from detectors.cohorts import CohortScopes
from detectors.join import Joined, JoinStore
from detectors.monitor.outcome_monitor import OutcomeMonitor
from detectors.monitor.policy import Gates, concept_route
from detectors.monitor.version_outcomes import VersionOutcomes

SCOPES = CohortScopes.from_reference({"region": ["eu"] * 2 + ["us"] * 8}, [("region",)], 5)
EU = 1
EDGES = np.linspace(0.1, 0.9, 9)
N = 2_000


def _labels(
    seed: int,
    windows: int,
    *,
    share: float = 0.3,
    broken: str | None = None,
    flip_from: int | None = None,
) -> list[Joined]:
    """``windows`` batches of N joined labels; from the 4th, v2 serves ``share`` of the
    traffic. ``broken``: where v2 ranks at random ("all" or "eu"); ``flip_from``: the
    batch from which the world changes for every version (labels no longer follow the
    score)."""
    rng = np.random.default_rng(seed)
    store, out = JoinStore(), []
    for i in range(windows):
        ids = [f"p{i}-{j}" for j in range(N)]
        region = rng.choice(["eu", "us"], N, p=[0.15, 0.85])
        score = rng.beta(1, 5, N)
        truth = score if flip_from is None or i < flip_from else rng.beta(1, 5, N)
        label = (rng.random(N) < truth) * 1.0
        canary = (rng.random(N) < share) & (i >= 3)
        if broken is not None:
            where = canary & ((region == "eu") if broken == "eu" else True)
            score[where] = rng.permutation(score[where])
        rows = SCOPES.assign({"region": list(region)}, N)
        versions = np.where(canary, "v2", "v1").tolist()
        store.add_predictions(ids, np.full(N, float(i)), score, versions, rows)
        out.append(
            store.join(ids, np.full(N, i + 0.5), label, ["chargeback"] * N, np.zeros(N, bool))
        )
    return out


def _watch(**kwargs: Any) -> VersionOutcomes:
    return VersionOutcomes("m", SCOPES, EDGES, "v1", window_labels=1_000, **kwargs)


def _keys(decisions: list) -> list[tuple]:
    return [(d.action, d.cause, d.model_version, d.cohort) for d in decisions]


def test_a_canary_that_ranks_at_random_is_rolled_back_once() -> None:
    watch = _watch()
    decisions = [d for joined in _labels(1, 20, broken="all") for d in watch.update(joined)]
    assert _keys(decisions) == [("rollback", "deployment_regression", "v2", None)]
    evidence = decisions[0].evidence
    assert evidence["detector"] == "outcomes_against_incumbent_same_period"
    assert evidence["incumbent_version"] == "v1"
    assert evidence["version_auc"] < 0.65 < 0.75 < evidence["incumbent_auc"]
    assert evidence["persisted_windows"] == 3 == evidence["persistence_windows"]
    assert watch.regressing() == ("v2",)
    (snapshot,) = watch.snapshot()
    assert snapshot.version == "v2" and snapshot.regression_reported[0]
    assert snapshot.auc[0] < snapshot.incumbent_auc[0]


def test_a_healthy_canary_gives_nothing() -> None:
    watch = _watch()
    decisions = [d for joined in _labels(2, 20) for d in watch.update(joined)]
    assert decisions == []
    assert watch.regressing() == ()
    assert watch.snapshot()[0].windows >= 5  # it was judged, and found as good


def test_a_change_of_the_world_is_no_version_s_fault() -> None:
    watch = _watch()
    decisions = [d for joined in _labels(3, 20, flip_from=8) for d in watch.update(joined)]
    assert decisions == [] and watch.regressing() == ()


def test_a_regression_in_one_small_cohort_is_that_cohort_s() -> None:
    watch = _watch()
    labels = _labels(4, 40, share=0.5, broken="eu")
    decisions = [d for joined in labels for d in watch.update(joined)]
    assert _keys(decisions) == [("rollback", "deployment_regression", "v2", {"region": "eu"})]


@pytest.mark.parametrize("size", [1, 7, 333, 5_000])
def test_decisions_do_not_depend_on_batching(size: int) -> None:
    labels = Joined.concat(_labels(1, 12, broken="all"))
    whole, batched = _watch(), _watch()
    expected = [d.to_dict() for d in whole.update(labels)]
    got = [
        d.to_dict()
        for start in range(0, len(labels), size)
        for d in batched.update(labels.take(np.arange(start, min(start + size, len(labels)))))
    ]
    assert got == expected and expected
    assert repr(batched.snapshot()) == repr(whole.snapshot())  # NaN-aware


def test_without_an_incumbent_or_past_max_versions_nothing_is_compared() -> None:
    labels = Joined.concat(_labels(1, 12, broken="all"))
    alone = VersionOutcomes("m", SCOPES, EDGES, None, window_labels=1_000)
    assert alone.update(labels) == [] and alone.versions == {}
    # Every other v2 label is a v3's: one version is watched, the other only counted.
    versions = tuple("v3" if v == "v2" and k % 2 else v for k, v in enumerate(labels.version))
    full = _watch(max_versions=1)
    full.update(dataclasses.replace(labels, version=versions))
    assert list(full.versions) == ["v2"]
    assert full.unwatched_labels == versions.count("v3") > 0


def test_the_incumbent_is_not_blamed_for_a_canary_dragging_the_mixed_window_down() -> None:
    """A mixed window of labels (70% v1, 30% a v2 ranking at random): only the rollback."""
    outcomes = OutcomeMonitor(
        "m", SCOPES, EDGES, reference_labels=4_000, window_labels=1_000, incumbent="v1"
    )
    decisions = [
        d
        for joined in _labels(5, 30, share=0.45, broken="all")
        for d in outcomes.update(joined, Gates(suspect_versions=("v2",)), "v1")
    ]
    # The mixed window may find the drop too, and reports it as the same rollback (the
    # model monitor keeps the first: DeploymentWatch.first_report).
    assert {k for k in _keys(decisions) if k[0] != "hold"} == {
        ("rollback", "deployment_regression", "v2", None)
    }
    assert not any(d.action == "retrain" or d.cause == "concept_drift" for d in decisions)
    assert outcomes.snapshot().versions[0].regression_reported[0]


def test_a_drop_while_a_version_is_worse_than_the_incumbent_is_its_rollback() -> None:
    route = concept_route(Gates(regressing_versions=("v2",)), "v1", "v1")
    assert (route.action, route.cause, route.version) == ("rollback", "deployment_regression", "v2")
    assert route.why["regressing_versions"] == ["v2"]
    # A broken input still holds everything.
    held = concept_route(Gates(broken_inputs=("amount",), regressing_versions=("v2",)), "v1", "v1")
    assert (held.action, held.cause) == ("hold", "concept_drift")
