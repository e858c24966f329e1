"""Tests for detectors.outcomes: golden values from straightforward per-scope numpy code
written here (and scipy.stats.mannwhitneyu for AUC), hypothesis properties for batching,
merging and checkpoints, and the judges on simulated label streams."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from detectors.outcomes import (
    CalibrationShift,
    OutcomeStats,
    OutcomeWindow,
    PerformanceDrop,
    RateShift,
    ScopedLossADWIN,
    band_edges_from_reference,
)
from detectors.score_change import ScopedADWIN
from streamer.state.payload import dumps
from tests.support import through_state_codec

FAST = settings(max_examples=100, deadline=None)
CLIP = 1e-6  # the documented log-loss clipping


def calibrated(rng: np.random.Generator, n: int, flipped: float = 0.0) -> tuple[Any, Any]:
    """Scores uniform in [0, 1], labels Bernoulli(score); a share of labels flipped."""
    score = rng.random(n)
    label = (rng.random(n) < score).astype(np.float64)
    flip = rng.random(n) < flipped
    label[flip] = 1.0 - label[flip]
    return score, label


def window(score: Any, label: Any, scopes: Any | None = None, **kw: Any) -> OutcomeWindow:
    scopes = np.zeros((len(score), 1), dtype=np.intp) if scopes is None else scopes
    n_scopes = int(max(scopes.max(), 0)) + 1 if "n_scopes" not in kw else kw.pop("n_scopes")
    out = OutcomeWindow(n_scopes=n_scopes, **kw)
    out.update(np.asarray(score, dtype=np.float64), np.asarray(label, dtype=np.float64), scopes)
    return out


def assert_same_stats(a: OutcomeStats, b: OutcomeStats) -> None:
    for name in OutcomeStats.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y, equal_nan=True), name
        else:
            assert x == y, name


# -- golden values -----------------------------------------------------------------------------


def test_metrics_per_scope_match_direct_computation() -> None:
    rng = np.random.default_rng(42)
    n, n_scopes, n_bands = 3_000, 6, 10
    score = np.round(rng.beta(2, 5, n), 2)  # rounded: many ties for the AUC ranks
    label = (rng.random(n) < score * 1.2).astype(np.float64)
    cohort = rng.choice([1, 2, 3, -1], n, p=[0.5, 0.3, 0.15, 0.05])  # -1: no scope
    channel = rng.choice([4, 5], n)
    scopes = np.column_stack([np.zeros(n, dtype=np.intp), cohort, channel])
    reference = rng.beta(2, 5, 5_000)
    edges = np.quantile(reference, np.arange(1, 10) / 10)
    out = OutcomeWindow(n_scopes=n_scopes, threshold=0.3, n_bands=n_bands)
    out.set_band_edges(band_edges_from_reference(reference, n_bands))
    assert np.allclose(out.band_edges, edges)
    out.update(score, label, scopes)
    stats = out.summary()

    for s in range(n_scopes):
        rows = (scopes == s).any(axis=1)
        p, y = score[rows], label[rows]
        assert stats.n[s] == rows.sum()
        assert stats.positives[s] == y.sum()
        predicted = (p >= 0.3).astype(float)
        assert stats.errors[s] == (predicted != y).sum()
        assert stats.error_rate[s] == pytest.approx((predicted != y).mean())
        clipped = np.clip(p, CLIP, 1 - CLIP)
        losses = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
        assert stats.log_loss[s] == pytest.approx(losses.mean(), rel=1e-12)
        assert stats.log_loss_var[s] == pytest.approx(losses.var(ddof=1), rel=1e-9)
        assert stats.brier[s] == pytest.approx(((p - y) ** 2).mean(), rel=1e-12)
        assert stats.mean_score[s] == pytest.approx(p.mean())
        assert stats.positive_rate[s] == pytest.approx(y.mean())
        u = mannwhitneyu(p[y == 1], p[y == 0]).statistic
        assert stats.auc[s] == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), rel=1e-12)
        band = np.array([(edges <= v).sum() for v in p])  # band k: edges[k-1] <= v < edges[k]
        gaps = []
        for k in range(n_bands):
            inside = band == k
            assert stats.band_counts[s, k] == inside.sum()
            assert stats.band_positives[s, k] == y[inside].sum()
            if inside.any():
                assert stats.band_observed[s, k] == pytest.approx(y[inside].mean())
                assert stats.band_predicted[s, k] == pytest.approx(p[inside].mean())
                gaps.append((inside.sum(), abs(y[inside].mean() - p[inside].mean())))
            else:
                assert math.isnan(stats.band_observed[s, k])
        assert stats.calibration_gap[s] == pytest.approx(max(g for _, g in gaps))
        assert stats.ece[s] == pytest.approx(sum(c * g for c, g in gaps) / rows.sum())


def test_small_golden_example() -> None:
    # Two scopes; scope 1 holds rows 0-3. Worked out by hand.
    score = np.array([0.9, 0.8, 0.3, 0.3, 0.5, 0.1])  # 0.5 sits on the band edge: upper band
    label = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    scopes = np.array([[0, 1], [0, 1], [0, 1], [0, 1], [0, -1], [0, -1]])
    out = window(score, label, scopes, n_bands=2)
    out.set_band_edges([0.5])
    stats = out.summary()
    assert stats.n.tolist() == [6, 4]
    assert stats.positives.tolist() == [3, 2]
    assert stats.errors.tolist() == [2, 2]  # 0.8 -> 1 but 0; 0.3 -> 0 but 1
    # scope 1, positives {0.9, 0.3} vs negatives {0.8, 0.3}: pairs won 2 + 0.5 of 4
    assert stats.auc[1] == pytest.approx(2.5 / 4)
    # population: positives {0.9, 0.3, 0.5} vs negatives {0.8, 0.3, 0.1}: 3 + 1.5 + 2 of 9
    assert stats.auc[0] == pytest.approx(6.5 / 9)
    assert stats.brier[1] == pytest.approx((0.01 + 0.64 + 0.49 + 0.09) / 4)
    expected = -(np.log(0.9) + np.log(0.2) + np.log(0.3) + np.log(0.7)) / 4
    assert stats.log_loss[1] == pytest.approx(expected)
    assert stats.band_counts.tolist() == [[3, 3], [2, 2]]
    assert stats.band_observed[1].tolist() == [0.5, 0.5]
    assert stats.band_predicted[1] == pytest.approx([0.3, 0.85])
    assert stats.calibration_gap[1] == pytest.approx(0.35)


def test_auc_is_nan_without_both_classes_and_empty_scopes_are_nan() -> None:
    stats = window([0.2, 0.7], [1.0, 1.0], n_scopes=3).summary()
    assert math.isnan(stats.auc[0]) and stats.n.tolist() == [2, 0, 0]
    assert math.isnan(stats.log_loss[1]) and math.isnan(stats.calibration_gap[2])
    assert math.isnan(stats.log_loss_var[1])


def test_calibration_bands_tell_calibrated_from_miscalibrated() -> None:
    rng = np.random.default_rng(3)
    score, label = calibrated(rng, 20_000)
    good = window(score, label)
    good.set_band_edges(band_edges_from_reference(score, 10))
    # The same outcomes, scores halved: every band under-predicts by half its rate, so the
    # top band (rate ~0.95) misses by ~0.475 and the weighted gap is E[p] / 2 = 0.25.
    halved = window(score / 2, label)
    halved.set_band_edges(band_edges_from_reference(score / 2, 10))
    good_stats, bad_stats = good.summary(), halved.summary()
    assert good_stats.calibration_gap[0] < 0.05 and good_stats.ece[0] < 0.02
    assert bad_stats.calibration_gap[0] == pytest.approx(0.475, abs=0.02)
    assert bad_stats.ece[0] == pytest.approx(0.25, abs=0.01)
    # Decile edges of the reference: each band holds a tenth of the scores.
    assert np.all(np.abs(good_stats.band_counts[0] - 2_000) <= 1)
    assert good_stats.band_counts.sum() == 20_000


def test_rows_that_are_not_probabilities_and_binary_labels_are_skipped() -> None:
    out = window([0.2, np.nan, 1.5, 0.4, 0.9], [1.0, 1.0, 0.0, 0.5, 0.0])
    assert out.skipped == 3 and out.rows == 2
    assert out.n.tolist() == [2] and out.positives.tolist() == [1]


# -- batching, merging, checkpoints ------------------------------------------------------------

rows_st = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0, float("nan")]),
        st.sampled_from([0.0, 1.0, 1.0, 0.0, 2.0]),
        st.integers(-1, 3),
    ),
    min_size=0,
    max_size=40,
)


def held(window: OutcomeWindow) -> tuple[Any, ...]:
    """What a window holds, whatever spare room its arrays have: settings, band edges, its
    rows in order, the rows it skipped and the counts per scope."""
    rows = window.rows
    held_rows = (window._score[:rows], window._label[:rows], window._scopes[:rows])
    settings = (window.n_scopes, window.threshold, window.n_bands, window.band_edges.tolist())
    counts = (window.skipped, window.n.tolist(), window.positives.tolist())
    return settings, *(column.tolist() for column in held_rows), counts


def as_columns(rows: list[tuple[float, float, int]]) -> tuple[Any, Any, Any]:
    score = np.array([r[0] for r in rows], dtype=np.float64)
    label = np.array([r[1] for r in rows], dtype=np.float64)
    scopes = np.array([[0, r[2]] for r in rows], dtype=np.intp).reshape(len(rows), 2)
    return score, label, scopes


@FAST
@given(rows=rows_st, cuts=st.lists(st.integers(0, 40), max_size=4))
def test_batch_equals_per_event(rows: list[tuple[float, float, int]], cuts: list[int]) -> None:
    score, label, scopes = as_columns(rows)
    edges = [0.2, 0.5, 0.8]
    batched = OutcomeWindow(n_scopes=4, n_bands=4)
    batched.set_band_edges(edges)
    bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
    for a, b in itertools.pairwise(bounds):
        batched.update(score[a:b], label[a:b], scopes[a:b])
    single = OutcomeWindow(n_scopes=4, n_bands=4)
    single.set_band_edges(edges)
    for i in range(len(rows)):
        single.update(score[i : i + 1], label[i : i + 1], scopes[i : i + 1])
    assert_same_stats(batched.summary(), single.summary())
    assert batched.skipped == single.skipped
    assert held(batched) == held(single)


@FAST
@given(first=rows_st, second=rows_st)
def test_merge_equals_concatenation(
    first: list[tuple[float, float, int]], second: list[tuple[float, float, int]]
) -> None:
    a, b, both = (OutcomeWindow(n_scopes=4) for _ in range(3))
    a.update(*as_columns(first))
    b.update(*as_columns(second))
    both.update(*as_columns(first + second))
    merged = a.merge(b)
    assert_same_stats(merged.summary(), both.summary())
    assert merged.skipped == both.skipped
    assert a.rows == sum(1 for r in first if r[1] in (0, 1) and r[0] == r[0])  # unchanged


@FAST
@given(rows=rows_st)
def test_checkpoint_round_trip(rows: list[tuple[float, float, int]]) -> None:
    out = OutcomeWindow(n_scopes=4, threshold=0.4, n_bands=3)
    out.set_band_edges([0.3, 0.6])
    out.update(*as_columns(rows))
    restored = through_state_codec(out)
    assert_same_stats(restored.summary(), out.summary())
    assert held(restored) == held(out)
    # the restored window keeps working like the original
    for window in (out, restored):
        window.update(*as_columns(rows[::-1]))
    assert_same_stats(restored.summary(), out.summary())


def test_merge_rejects_different_windows_and_reset_keeps_edges() -> None:
    a = OutcomeWindow(n_scopes=2)
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(OutcomeWindow(n_scopes=3))
    b = OutcomeWindow(n_scopes=2)
    b.set_band_edges(np.linspace(0.05, 0.95, 9))
    with pytest.raises(ValueError, match="band edges"):
        a.merge(b)
    b.update(np.array([0.5]), np.array([1.0]), np.zeros((1, 1), dtype=np.intp))
    b.reset()
    assert b.rows == 0 and b.n.tolist() == [0, 0]
    assert b.band_edges.tolist() == np.linspace(0.05, 0.95, 9).tolist()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_scopes": 0}, "n_scopes must be an int >= 1"),
        ({"n_scopes": 1, "threshold": 1.0}, r"threshold must be in \(0, 1\)"),
        ({"n_scopes": 1, "n_bands": 0}, "n_bands"),
    ],
)
def test_window_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OutcomeWindow(**kwargs)


def test_window_inputs_are_validated() -> None:
    out = OutcomeWindow(n_scopes=2, n_bands=3)
    with pytest.raises(ValueError, match="edges must be 2 numbers"):
        out.set_band_edges([0.5])
    with pytest.raises(ValueError, match="non-decreasing"):
        out.set_band_edges([0.6, 0.5])
    with pytest.raises(ValueError, match="n_scopes"):
        out.update(np.array([0.5]), np.array([1.0]), np.array([[0, 2]]))
    with pytest.raises(ValueError, match="scopes must be an integer array"):
        out.update(np.array([0.5]), np.array([1.0]), np.array([0]))


# -- PerformanceDrop ---------------------------------------------------------------------------


def stats_of(score: Any, label: Any, scopes: Any | None = None, n_scopes: int = 1) -> OutcomeStats:
    return window(score, label, scopes, n_scopes=n_scopes).summary()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_stationary_labels_do_not_drop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = stats_of(*calibrated(rng, 5_000))
    for n in (300, 2_000, 20_000):
        verdict = PerformanceDrop().judge(reference, stats_of(*calibrated(rng, n)))
        assert verdict.enough_labels.tolist() == [True]
        assert verdict.dropped.tolist() == [False]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_flipped_for_30_percent_drop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = stats_of(*calibrated(rng, 5_000))
    verdict = PerformanceDrop().judge(reference, stats_of(*calibrated(rng, 2_000, flipped=0.3)))
    assert verdict.dropped.tolist() == [True]
    assert verdict.pvalue[0] < 1e-6 and verdict.log_loss_increase[0] > 0.2
    evidence = verdict.evidence(0)
    json.dumps(evidence, allow_nan=False)
    assert evidence["enough_labels"] is True and evidence["current_labels"] == 2_000


def test_welch_z_matches_direct_computation() -> None:
    rng = np.random.default_rng(11)
    ref_score, ref_label = calibrated(rng, 3_000)
    cur_score, cur_label = calibrated(rng, 1_000, flipped=0.1)

    def losses(p: Any, y: Any) -> Any:
        p = np.clip(p, CLIP, 1 - CLIP)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))

    r, c = losses(ref_score, ref_label), losses(cur_score, cur_label)
    z = (c.mean() - r.mean()) / math.sqrt(c.var(ddof=1) / len(c) + r.var(ddof=1) / len(r))
    verdict = PerformanceDrop().judge(
        stats_of(ref_score, ref_label), stats_of(cur_score, cur_label)
    )
    assert verdict.z[0] == pytest.approx(z, rel=1e-9)
    assert verdict.pvalue[0] == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-6)
    assert verdict.log_loss_increase[0] == pytest.approx(c.mean() / r.mean() - 1)


def test_too_few_labels_is_a_state_not_a_verdict() -> None:
    rng = np.random.default_rng(8)
    reference = stats_of(*calibrated(rng, 5_000))
    verdict = PerformanceDrop().judge(reference, stats_of(*calibrated(rng, 150, flipped=0.5)))
    assert verdict.enough_labels.tolist() == [False]
    assert verdict.dropped.tolist() == [False]
    assert math.isnan(verdict.pvalue[0]) and verdict.evidence(0)["pvalue"] is None


def test_a_significant_but_small_loss_increase_is_not_a_drop() -> None:
    rng = np.random.default_rng(9)
    reference = stats_of(*calibrated(rng, 200_000))
    current = stats_of(*calibrated(rng, 200_000, flipped=0.02))
    verdict = PerformanceDrop().judge(reference, current)
    assert verdict.pvalue[0] < 1e-6  # detectable with this many labels ...
    assert verdict.log_loss_increase[0] < 0.1 and verdict.auc_drop[0] < 0.05
    assert verdict.dropped.tolist() == [False]  # ... but below the effect floor


def test_drop_is_reported_in_the_cohort_that_broke() -> None:
    rng = np.random.default_rng(4)
    n = 12_000
    cohort = rng.choice([1, 2], n)
    scopes = np.column_stack([np.zeros(n, dtype=np.intp), cohort])
    ref = stats_of(*calibrated(rng, n), scopes, n_scopes=3)
    score, label = calibrated(rng, n)
    broken = (cohort == 2) & (rng.random(n) < 0.3)
    label[broken] = 1 - label[broken]
    verdict = PerformanceDrop().judge(ref, stats_of(score, label, scopes, n_scopes=3))
    assert verdict.dropped.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_labels": 1}, "min_labels must be an int >= 2"),
        ({"alpha": 0.0}, r"alpha must be in \(0, 1\)"),
        ({"min_effect": -0.1}, "min_effect"),
        ({"min_auc_drop": 1.0}, "min_auc_drop"),
    ],
)
def test_drop_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PerformanceDrop(**kwargs)


# -- RateShift ---------------------------------------------------------------------------------


def test_clicks_doubling_is_flagged_and_stable_clicks_are_not() -> None:
    rng = np.random.default_rng(21)
    judge = RateShift()
    ref_n, cur_n = 5_000, 2_000
    ref_pos = rng.binomial(ref_n, 0.05)
    doubled = judge.judge(ref_pos, ref_n, rng.binomial(cur_n, 0.10), cur_n)
    assert doubled.shifted.tolist() == [True] and doubled.direction.tolist() == [1]
    stable = judge.judge(
        np.full(50, ref_pos), ref_n, rng.binomial(cur_n, ref_pos / ref_n, 50), cur_n
    )
    assert not stable.shifted.any()
    halved = judge.judge(ref_pos, ref_n, rng.binomial(cur_n, 0.015), cur_n)
    assert halved.shifted.tolist() == [True] and halved.direction.tolist() == [-1]


def test_overrides_from_2_to_15_percent_at_1000_events() -> None:
    verdict = RateShift().judge(ref_pos=20, ref_n=1_000, cur_pos=150, cur_n=1_000)
    pooled = 170 / 2_000
    z = (0.15 - 0.02) / math.sqrt(pooled * (1 - pooled) * (2 / 1_000))
    assert verdict.z[0] == pytest.approx(z)
    assert verdict.pvalue[0] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-15)
    assert verdict.effect[0] == pytest.approx(
        2 * math.asin(math.sqrt(0.15)) - 2 * math.asin(math.sqrt(0.02))
    )
    assert verdict.shifted.tolist() == [True] and verdict.direction.tolist() == [1]
    assert (verdict.reference_rate[0], verdict.current_rate[0]) == (0.02, 0.15)


def test_rate_shift_needs_events_and_an_effect() -> None:
    judge = RateShift()
    few = judge.judge(ref_pos=2, ref_n=100, cur_pos=15, cur_n=100)
    assert few.enough_events.tolist() == [False] and few.shifted.tolist() == [False]
    # 50.0% -> 50.6% on ten million events each: significant, h ~ 0.012 < 0.05.
    tiny = judge.judge(5_000_000, 10_000_000, 5_060_000, 10_000_000)
    assert tiny.pvalue[0] < 1e-6 and tiny.shifted.tolist() == [False]
    per_scope = judge.judge([20, 20], [1_000, 1_000], [21, 150], [1_000, 1_000])
    assert per_scope.shifted.tolist() == [False, True]
    with pytest.raises(ValueError, match="positives <= events"):
        judge.judge(5, 4, 1, 10)
    with pytest.raises(ValueError, match="min_effect"):
        RateShift(min_effect=4.0)


# -- ScopedLossADWIN ---------------------------------------------------------------------------


def test_loss_adwin_is_scoped_adwin_on_the_log_loss() -> None:
    rng = np.random.default_rng(13)
    n = 6_000
    score, label = calibrated(rng, n)
    label[3_000:] = 1 - label[3_000:]
    cohort = rng.choice([1, 2, -1], n)
    scopes = np.column_stack([np.zeros(n, dtype=np.intp), cohort])
    ts = np.arange(n, dtype=np.float64)
    detector = ScopedLossADWIN(n_scopes=3)
    changes = detector.update(score, label, scopes, ts)
    # Independent reference: ScopedADWIN fed the losses, with -1 entries left out.
    p = np.clip(score, CLIP, 1 - CLIP)
    losses = -(label * np.log(p) + (1 - label) * np.log(1 - p))
    direct = ScopedADWIN(n_scopes=4)
    expected = direct.update(losses, np.where(scopes < 0, 3, scopes), ts)
    assert changes == [c for c in expected if c.scope < 3]
    assert {c.scope for c in changes} == {0, 1, 2}
    first = min(c.row for c in changes if c.scope == 0)
    assert 3_000 <= first < 3_300
    assert detector.detections.tolist() == direct.detections[:3].tolist()


def test_loss_adwin_is_quiet_on_stationary_labels() -> None:
    rng = np.random.default_rng(17)
    score, label = calibrated(rng, 6_000)
    detector = ScopedLossADWIN(n_scopes=1)
    ts = np.arange(6_000, dtype=np.float64)
    assert detector.update(score, label, np.zeros((6_000, 1), dtype=np.intp), ts) == []
    assert detector.means()[0] == pytest.approx(0.5, abs=0.05)  # E[loss] of uniform p: 1/2


def test_loss_adwin_checkpoint_continues_identically() -> None:
    rng = np.random.default_rng(19)
    score, label = calibrated(rng, 6_000)
    label[4_000:] = 1 - label[4_000:]
    scopes = np.column_stack([np.zeros(6_000, dtype=np.intp), rng.choice([1, -1], 6_000)])
    ts = np.arange(6_000, dtype=np.float64)
    detector = ScopedLossADWIN(n_scopes=2)
    detector.update(score[:3_500], label[:3_500], scopes[:3_500], ts[:3_500])
    restored = through_state_codec(detector)
    rest = (score[3_500:], label[3_500:], scopes[3_500:], ts[3_500:])
    assert detector.update(*rest) == restored.update(*rest) != []
    assert restored.means().tolist() == detector.means().tolist()
    assert restored.detections.tolist() == detector.detections.tolist()
    assert dumps(restored) == dumps(detector)  # every field, river's windows included


def test_calibration_shift_holds_its_false_alarm_rate_with_few_positives_per_band() -> None:
    """A calibrated model on shifted traffic, a rare positive class and a small cohort's
    window (a few positives per band): a 0.001 test fires about once in a thousand, not
    once in twenty as a per-band chi-square over near-empty bands did."""
    rng = np.random.default_rng(0)

    def window(p: np.ndarray, edges: np.ndarray):
        w = OutcomeWindow(n_scopes=1)
        w.set_band_edges(edges)
        w.update(p, (rng.random(len(p)) < p) * 1.0, np.zeros((len(p), 1), np.intp))
        return w.summary()

    def scores(n: int, shift: float) -> np.ndarray:
        return 1 / (1 + np.exp(-(rng.normal(-3.5, 1.2, n) + shift)))

    edges = np.quantile(scores(100_000, 0.0), np.linspace(0.1, 0.9, 9))
    check = CalibrationShift()
    fired = sum(
        bool(
            check.judge(window(scores(1_900, 0.0), edges), window(scores(370, 1.0), edges)).shifted[
                0
            ]
        )
        for _ in range(400)
    )
    assert fired <= 3
