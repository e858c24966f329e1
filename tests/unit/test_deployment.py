"""Deployments: a new version's scores and outcomes against the incumbent's."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.cohorts import CohortScopes
from detectors.join import JoinStore
from detectors.monitor.deployment import DeploymentWatch
from detectors.monitor.outcome_monitor import OutcomeMonitor
from detectors.monitor.policy import Gates

N = 2_000
SCOPES = CohortScopes.from_reference({"region": ["eu"] * 5 + ["us"] * 5}, [("region",)], 5)
EU, US = 1, 2


def _rows(region: np.ndarray) -> np.ndarray:
    return SCOPES.assign({"region": list(region)}, len(region))


def _watch(rng: np.random.Generator) -> DeploymentWatch:
    region = rng.choice(["eu", "us"], 20_000)
    return DeploymentWatch("m", SCOPES, rng.beta(1, 12, 20_000), _rows(region), "v1")


def _window(
    watch: DeploymentWatch,
    rng: np.random.Generator,
    k: int,
    version: str,
    factor_eu: float = 1.0,
    factor_us: float = 1.0,
    moved: np.ndarray | None = None,
) -> list:
    region = rng.choice(["eu", "us"], N)
    score = rng.beta(1, 12, N) * np.where(region == "eu", factor_eu, factor_us)
    watch.observe([version] * N, np.clip(score, 0, 1), _rows(region), np.full(N, float(k)))
    moved = np.zeros(SCOPES.n_scopes, bool) if moved is None else moved
    n = SCOPES.n_scopes
    return watch.close(moved, np.full(n, float(k)), np.full(n, k + 0.9))


def test_incumbent_traffic_is_not_watched() -> None:
    rng = np.random.default_rng(1)
    watch = _watch(rng)
    for k in range(6):
        assert _window(watch, rng, k, "v1", factor_eu=4.0) == []
    assert watch.versions == {}


def test_a_regressed_version_gets_one_rollback_for_the_population() -> None:
    rng = np.random.default_rng(2)
    watch = _watch(rng)
    decisions = [d for k in range(8) for d in _window(watch, rng, k, "v2", 4.0, 4.0)]
    assert [(d.action, d.cause, d.model_version, d.cohort) for d in decisions] == [
        ("rollback", "deployment_regression", "v2", None)
    ]
    (rollback,) = decisions
    evidence = rollback.evidence
    assert evidence["incumbent_version"] == "v1"
    assert evidence["persisted_windows"] == 3 and evidence["first_seen"] == 0.0
    assert evidence["psi"] >= evidence["psi_threshold"] and evidence["g_test_pvalue"] < 0.001
    assert rollback.window_events == N
    assert watch.regressed() == ("v2",)


def test_a_regression_in_one_cohort_is_scoped_to_it() -> None:
    rng = np.random.default_rng(3)
    watch = _watch(rng)
    decisions = [d for k in range(8) for d in _window(watch, rng, k, "v2", factor_eu=6.0)]
    assert [(d.action, d.cohort) for d in decisions] == [("rollback", {"region": "eu"})]


def test_a_healthy_version_stays_suspect_until_its_outcomes_clear_it() -> None:
    rng = np.random.default_rng(4)
    watch = _watch(rng)
    assert [d for k in range(5) for d in _window(watch, rng, k, "v2")] == []
    assert watch.regressed() == ()
    # clean scores do not clear it: only its outcomes do
    assert watch.suspects() == ("v2",)
    for _ in range(3):
        watch.label_window("v2", judged=True, dropped=False)
    assert watch.suspects() == ()


def test_scores_are_not_judged_where_the_inputs_moved() -> None:
    rng = np.random.default_rng(5)
    watch = _watch(rng)
    moved = np.ones(SCOPES.n_scopes, bool)
    assert [d for k in range(6) for d in _window(watch, rng, k, "v2", 4.0, 4.0, moved)] == []
    assert np.isnan(watch.versions["v2"].psi).all()


def test_a_label_drop_resets_the_clean_label_windows() -> None:
    rng = np.random.default_rng(6)
    watch = _watch(rng)
    _window(watch, rng, 0, "v2")
    for dropped in (False, False, True, False, False):
        watch.label_window("v2", judged=True, dropped=dropped)
    watch.label_window("v2", judged=False, dropped=False)  # too few labels: no verdict
    watch.label_window("v9", judged=True, dropped=False)  # never seen: ignored
    assert watch.versions["v2"].clean_label_windows == 2
    assert watch.suspects() == ("v2",)


def test_first_report_lets_one_rollback_per_version_and_scope_through() -> None:
    rng = np.random.default_rng(7)
    watch = _watch(rng)
    (rollback,) = [d for k in range(8) for d in _window(watch, rng, k, "v2", 4.0, 4.0)]
    assert watch.first_report(rollback)
    assert not watch.first_report(rollback)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"windows": 0}, "windows"), ({"min_events": 0}, "min_events")]
)
def test_invalid_arguments_name_themselves(kwargs: dict, message: str) -> None:
    rng = np.random.default_rng(8)
    with pytest.raises(ValueError, match=message):
        DeploymentWatch("m", SCOPES, rng.random(100), np.zeros((100, 1), np.intp), "v1", **kwargs)


def _outcomes_after_flip(gates: Gates, label_version: str) -> list:
    """Labels say the relation flipped after six windows; the labels are
    ``label_version``'s predictions."""
    rng = np.random.default_rng(9)
    scopes = CohortScopes.from_reference({}, [], 1)
    outcomes = OutcomeMonitor(
        "m", scopes, np.linspace(0.1, 0.9, 9), reference_labels=2_000, window_labels=1_000
    )
    store, decisions = JoinStore(), []
    for i in range(12):
        ids = [f"p{i}-{j}" for j in range(1_000)]
        score = rng.random(1_000)
        truth = score if i < 6 else 1 - score
        version = "v1" if i < 6 else label_version
        store.add_predictions(
            ids, np.full(1_000, float(i)), score, [version] * 1_000, np.zeros((1_000, 1), np.intp)
        )
        joined = store.join(
            ids,
            np.full(1_000, i + 0.5),
            (rng.random(1_000) < truth) * 1.0,
            ["chargeback"] * 1_000,
            np.zeros(1_000, dtype=bool),
        )
        decisions += outcomes.update(joined, gates, "v1")
    return decisions


def test_an_outcome_drop_on_the_incumbent_is_a_retrain() -> None:
    decisions = _outcomes_after_flip(Gates(), "v1")
    assert [(d.action, d.cause, d.model_version) for d in decisions] == [
        ("retrain", "concept_drift", "v1")
    ]


def test_an_outcome_drop_on_a_suspect_version_is_its_rollback() -> None:
    decisions = _outcomes_after_flip(Gates(suspect_versions=("v2",)), "v2")
    assert [(d.action, d.cause, d.model_version) for d in decisions] == [
        ("rollback", "deployment_regression", "v2")
    ]
    assert decisions[0].evidence["labels_by_version"] == {"v2": 1_000}


def test_no_retrain_while_a_version_regressed() -> None:
    decisions = _outcomes_after_flip(Gates(regressed_versions=("v2",)), "v1")
    assert [(d.action, d.cause) for d in decisions] == [("hold", "concept_drift")]
    assert decisions[0].evidence["gate"] == "deployment_under_suspicion"


def test_versions_past_the_cap_are_counted_not_watched() -> None:
    rng = np.random.default_rng(10)
    region = rng.choice(["eu", "us"], 20_000)
    watch = DeploymentWatch(
        "m", SCOPES, rng.beta(1, 12, 20_000), _rows(region), "v1", max_versions=3
    )
    for k in range(10):  # a build id per batch
        _window(watch, rng, k, f"build-{k}")
    assert sorted(watch.versions) == ["build-0", "build-1", "build-2"]
    assert watch.unwatched_events == 7 * N
