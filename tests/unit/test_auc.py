"""Tests for detectors.outcomes.auc: golden AUCs worked out by hand, the Hanley-McNeil
error against its formula and against the spread of AUCs over simulated samples,
hypothesis invariants, and the drop judge's size and power."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from detectors.outcomes import AucDrop, OutcomeWindow, auc_by_scope, hanley_mcneil_se

FAST = settings(max_examples=100, deadline=None)


def _auc(score: Any, label: Any) -> float:
    score = np.asarray(score, dtype=np.float64)
    scope = np.zeros(len(score), dtype=np.intp)
    return float(auc_by_scope(scope, score, np.asarray(label, dtype=np.float64), 1)[0])


def _stats(score: Any, label: Any) -> Any:
    window = OutcomeWindow(n_scopes=1)
    window.update(
        np.asarray(score, float), np.asarray(label, float), np.zeros((len(score), 1), int)
    )
    return window.summary()


# -- golden values -----------------------------------------------------------------------------


def test_a_perfect_ranking_is_one_a_reversed_one_zero_and_all_ties_one_half() -> None:
    label = [0, 0, 0, 1, 1]
    assert _auc([0.1, 0.2, 0.3, 0.8, 0.9], label) == 1.0
    assert _auc([0.9, 0.8, 0.7, 0.2, 0.1], label) == 0.0
    assert _auc([0.4] * 5, label) == 0.5


def test_a_small_example_worked_out_by_hand() -> None:
    # positives {0.8, 0.4, 0.4}, negatives {0.5, 0.4, 0.1}: pairs (pos > neg) count 1, a
    # tie 1/2. 0.8 beats all three (3); each 0.4 beats 0.1 (1) and ties 0.4 (0.5), and
    # loses to 0.5: 3 + 1.5 + 1.5 = 6 of 9 pairs.
    assert _auc([0.8, 0.4, 0.4, 0.5, 0.4, 0.1], [1, 1, 1, 0, 0, 0]) == pytest.approx(6 / 9)


def test_scopes_are_ranked_apart_and_a_scope_without_both_classes_is_nan() -> None:
    score = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.7])
    label = np.array([1, 0, 1, 0, 1, 1.0])
    scope = np.array([0, 0, 1, 1, 2, 2], dtype=np.intp)
    auc = auc_by_scope(scope, score, label, 4)
    assert auc[:2].tolist() == [1.0, 0.0]
    assert np.isnan(auc[2]) and np.isnan(auc[3])  # only positives; no rows


def test_hanley_mcneil_error_worked_out_by_hand() -> None:
    # A = 0.8, 20 positives, 80 negatives: Q1 = 0.8/1.2 = 0.66667, Q2 = 1.28/1.8 = 0.71111;
    # variance (0.16 + 19 x 0.026667 + 79 x 0.071111) / 1600 = 6.28444 / 1600.
    se = hanley_mcneil_se(np.array([0.8]), np.array([20]), np.array([80]))
    assert se[0] == pytest.approx(np.sqrt(6.28444 / 1600), rel=1e-5)
    assert hanley_mcneil_se(np.array([1.0]), np.array([5]), np.array([5]))[0] == 0.0


def test_hanley_mcneil_error_matches_the_spread_of_simulated_aucs() -> None:
    rng = np.random.default_rng(12)
    aucs, errors = [], []
    for _ in range(400):
        label = (rng.random(600) < 0.1).astype(float)
        score = rng.normal(label * 1.2, 1.0)  # binormal, AUC ~0.8
        aucs.append(_auc(score, label))
        errors.append(hanley_mcneil_se(np.array([aucs[-1]]), label.sum(), (1 - label).sum())[0])
    assert np.std(aucs) == pytest.approx(np.mean(errors), rel=0.15)


# -- invariants --------------------------------------------------------------------------------

rows = st.lists(
    st.tuples(st.integers(0, 20).map(lambda v: v / 20), st.booleans(), st.integers(0, 2)),
    min_size=1,
    max_size=60,
)


@FAST
@given(rows)
def test_auc_is_the_mann_whitney_u_within_bounds(data: list[tuple[float, bool, int]]) -> None:
    score = np.array([d[0] for d in data])
    label = np.array([float(d[1]) for d in data])
    scope = np.array([d[2] for d in data], dtype=np.intp)
    auc = auc_by_scope(scope, score, label, 3)
    for s in range(3):
        p, y = score[scope == s], label[scope == s]
        if (y == 1).any() and (y == 0).any():
            u = mannwhitneyu(p[y == 1], p[y == 0]).statistic
            assert auc[s] == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()))
            assert 0.0 <= auc[s] <= 1.0
            # Flipping the labels mirrors the AUC; a monotone rescoring keeps it.
            flipped = auc_by_scope(scope, score, 1 - label, 3)[s]
            assert auc[s] + flipped == pytest.approx(1.0)
            assert auc_by_scope(scope, score**3 + 2, label, 3)[s] == pytest.approx(auc[s])
        else:
            assert np.isnan(auc[s])


@FAST
@given(rows, st.integers(1, 5))
def test_auc_and_its_error_do_not_depend_on_batching(
    data: list[tuple[float, bool, int]], parts: int
) -> None:
    score = np.array([d[0] for d in data])
    label = np.array([float(d[1]) for d in data])
    scopes = np.column_stack([np.zeros(len(data), int), [d[2] for d in data]])
    whole, batched = OutcomeWindow(n_scopes=3), OutcomeWindow(n_scopes=3)
    whole.update(score, label, scopes)
    for chunk in np.array_split(np.arange(len(data)), parts):
        batched.update(score[chunk], label[chunk], scopes[chunk])
    a, b = whole.summary(), batched.summary()
    assert np.array_equal(a.auc, b.auc, equal_nan=True)
    verdict_a, verdict_b = AucDrop(min_labels=1).judge(a, a), AucDrop(min_labels=1).judge(b, a)
    assert np.array_equal(verdict_a.z, verdict_b.z, equal_nan=True)


# -- the drop judge ----------------------------------------------------------------------------


def _draw(rng: np.random.Generator, n: int, separation: float) -> Any:
    label = (rng.random(n) < 0.05).astype(float)
    return _stats(1 / (1 + np.exp(-rng.normal(label * separation - 3, 1.0))), label)


def test_the_drop_judge_holds_its_level_on_same_model_windows() -> None:
    rng = np.random.default_rng(3)
    reference = _draw(rng, 5_000, 1.5)
    hits = [bool(AucDrop().judge(reference, _draw(rng, 1_000, 1.5)).dropped[0]) for _ in range(300)]
    assert sum(hits) <= 2  # alpha 0.001 over 300 windows: 0.3 expected


def test_the_drop_judge_sees_a_collapsed_ranking_and_not_a_small_dip() -> None:
    rng = np.random.default_rng(4)
    reference = _draw(rng, 5_000, 1.5)  # AUC ~0.85
    collapsed = AucDrop().judge(reference, _draw(rng, 2_000, 0.1))  # AUC ~0.53
    assert collapsed.dropped.tolist() == [True]
    assert collapsed.current_auc[0] < 0.6 < 0.8 < collapsed.reference_auc[0]
    # A real but immaterial dip, measured on many labels: significant, not 0.05 worse.
    dip = AucDrop().judge(_draw(rng, 200_000, 1.5), _draw(rng, 200_000, 1.4))
    assert dip.pvalue[0] < 0.001 and dip.dropped.tolist() == [False]


def test_a_window_with_few_positives_is_not_judged() -> None:
    reference = _stats(np.linspace(0, 1, 1_000), np.r_[np.zeros(990), np.ones(10)])
    current = _stats(np.linspace(0, 1, 1_000), np.r_[np.ones(9), np.zeros(991)])
    verdict = AucDrop().judge(reference, current)
    assert verdict.judged.tolist() == [False] and verdict.dropped.tolist() == [False]
    assert np.isnan(verdict.z[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_labels": 0}, "min_labels"), ({"alpha": 1.5}, "alpha"), ({"min_drop": 1.0}, "min_drop")],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AucDrop(**kwargs)
