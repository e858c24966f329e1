"""Scope choice: the narrowest scope that explains a condition, and no more."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.cohorts import CohortScopes
from detectors.persistence import Persistence, announce, transient

REGIONS = ["us", "eu", "apac", "latam", "uk", "ca"]
SCOPES = CohortScopes.from_reference({"region": REGIONS * 10}, [("region",)], 10)
# scope 0 is the population, then one per region, then __other__
EU = SCOPES.labels.index({"region": "eu"})


def _condition(hits: list[bool], windows: int = 3) -> Persistence:
    condition = Persistence(SCOPES.n_scopes, windows)
    judged = np.ones(SCOPES.n_scopes, dtype=bool)
    for _ in range(windows):
        condition.update(judged, np.array(hits, dtype=bool), np.zeros(SCOPES.n_scopes))
    return condition


def test_a_change_in_most_cohorts_is_the_populations_even_if_one_looks_stronger() -> None:
    # Everybody's outcomes dropped; one small cohort's noisy figure is three times the
    # population's (before, that kept the population from ever being reported).
    condition = _condition([True, True, True, True, True, False, True, False])
    effect = np.array([1.2, 1.0, 1.3, 1.1, 1.0, 0.4, 3.7, 0.0])
    assert announce(SCOPES, condition, effect) == [0]
    # ...and the cohorts are not reported again
    assert announce(SCOPES, condition, effect) == []


def test_a_change_in_one_cohort_is_that_cohorts() -> None:
    hits = [scope in (0, EU) for scope in range(SCOPES.n_scopes)]
    condition = _condition(hits)
    effect = np.array([0.3, 0.01, 0.02, 0.0, 0.01, 0.03, 0.02, 0.0])
    effect[EU] = 2.0
    chosen = announce(SCOPES, condition, effect)
    assert [SCOPES.labels[s] for s in chosen] == [{"region": "eu"}]


def test_a_reverted_change_in_most_cohorts_is_the_populations() -> None:
    condition = Persistence(SCOPES.n_scopes, 3)
    judged = np.ones(SCOPES.n_scopes, dtype=bool)
    start = np.zeros(SCOPES.n_scopes)
    for hit in (True, True, False):
        condition.update(judged, np.full(SCOPES.n_scopes, hit), start)
    peak = np.array([0.9, 0.8, 0.7, 0.9, 0.6, 0.7, 0.8, 0.0])
    assert transient(SCOPES, condition, peak, min_windows=2) == [0]
    assert transient(SCOPES, condition, peak, min_windows=3) == []


def _windows(condition: Persistence, hits: list[bool], times: int) -> None:
    judged = np.ones(SCOPES.n_scopes, dtype=bool)
    for _ in range(times):
        condition.update(judged, np.array(hits, dtype=bool), np.zeros(SCOPES.n_scopes))


def test_a_report_stands_until_resolve_windows_clear_and_a_return_is_reported_again() -> None:
    eu_only = [scope == EU for scope in range(SCOPES.n_scopes)]
    clear = [False] * SCOPES.n_scopes
    effect = np.zeros(SCOPES.n_scopes)
    effect[EU] = 2.0
    condition = Persistence(SCOPES.n_scopes, 3, resolve_windows=6)
    _windows(condition, eu_only, 3)
    assert announce(SCOPES, condition, effect) == [EU]
    _windows(condition, clear, 4)  # closed (its gates are off), not resolved
    assert not condition.open[EU] and not condition.reported[EU]
    assert condition.settle() == []
    _windows(condition, eu_only, 3)  # back within the horizon
    assert condition.returned[EU]
    assert announce(SCOPES, condition, effect) == [EU]  # reported again: an update
    _windows(condition, clear, 5)
    assert condition.settle() == []
    _windows(condition, clear, 1)
    assert condition.settle() == [EU]
    assert not condition.announced.any()
    _windows(condition, eu_only, 3)  # after the resolution: a new report
    assert not condition.returned[EU]
    assert announce(SCOPES, condition, effect) == [EU]


def test_a_cohort_back_while_the_population_is_reported_is_not_reported_again() -> None:
    eu_only = [scope == EU for scope in range(SCOPES.n_scopes)]
    clear = [False] * SCOPES.n_scopes
    condition = Persistence(SCOPES.n_scopes, 3, resolve_windows=6)
    _windows(condition, eu_only, 3)
    effect = np.zeros(SCOPES.n_scopes)
    effect[EU] = 2.0
    assert announce(SCOPES, condition, effect) == [EU]
    _windows(condition, clear, 3)
    everybody = [True] * SCOPES.n_scopes
    _windows(condition, everybody, 3)
    effect[:] = 1.0
    chosen = announce(SCOPES, condition, effect)
    assert chosen == [0]  # the population; eu came back, and the population covers it
    assert condition.announced[EU]  # its report stands until it resolves


def test_resolve_windows_is_at_least_the_persistence() -> None:
    with pytest.raises(ValueError, match="resolve_windows must be >= windows"):
        Persistence(SCOPES.n_scopes, 3, resolve_windows=2)
