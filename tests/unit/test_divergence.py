from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from detectors.divergence import g_test, js_distance, psi

TOL = 1e-9


# --- Independent reference computations (plain numpy / scipy, one histogram pair) ---


def _smoothed_pair(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Module docstring: bins empty on both sides are dropped, 0.5 added to the others."""
    ref = np.asarray(ref, dtype=float)
    cur = np.asarray(cur, dtype=float)
    keep = [i for i in range(ref.size) if ref[i] + cur[i] > 0]
    r = np.array([ref[i] + 0.5 for i in keep])
    c = np.array([cur[i] + 0.5 for i in keep])
    return r / r.sum(), c / c.sum()


def expected_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    p, q = _smoothed_pair(ref, cur)
    return float(sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q)))


def expected_js(ref: np.ndarray, cur: np.ndarray) -> float:
    p, q = _smoothed_pair(ref, cur)
    return float(jensenshannon(p, q, base=2))


def expected_g(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    ref = np.asarray(ref)
    cur = np.asarray(cur)
    keep = (ref + cur) > 0
    if keep.sum() < 2 or ref.sum() == 0 or cur.sum() == 0:
        return 0.0, 1.0
    table = np.vstack([ref[keep], cur[keep]])
    stat, pvalue, dof, _ = chi2_contingency(table, correction=False, lambda_="log-likelihood")
    assert dof == keep.sum() - 1
    return float(stat), float(pvalue)


def _close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=TOL, abs_tol=TOL)


# --- Golden values ---

GOLDEN = [
    ([250, 250, 250, 250, 0], [240, 260, 255, 245, 0]),
    ([250, 250, 250, 250, 0], [100, 150, 300, 450, 0]),
    ([500, 500, 0], [900, 100, 0]),
    ([300, 300, 400], [30, 31, 39]),
    ([300, 300, 400], [10, 30, 60]),
    ([1000, 0, 5, 40, 0, 7], [0, 3, 0, 40, 0, 1]),  # one-sided empty bins, a both-empty bin
    ([5, 0], [0, 5]),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
    ([2000, 1, 0, 0, 1], [1, 2000, 0, 0, 1]),
    ([17, 0, 0, 3], [17, 0, 0, 3]),  # identical
]


@pytest.mark.parametrize(("ref", "cur"), GOLDEN)
def test_golden_values_match_independent_computation(ref: list[int], cur: list[int]) -> None:
    r = np.array([ref], dtype=np.int64)
    c = np.array([cur], dtype=np.int64)
    assert _close(float(psi(r, c)[0]), expected_psi(np.array(ref), np.array(cur)))
    assert _close(float(js_distance(r, c)[0]), expected_js(np.array(ref), np.array(cur)))
    g, p = g_test(r, c)
    eg, ep = expected_g(np.array(ref), np.array(cur))
    assert _close(float(g[0]), eg)
    assert _close(float(p[0]), ep)


def test_golden_hand_computed_two_bin_psi() -> None:
    # [90, 10] vs [50, 50]: smoothed p = [90.5, 10.5] / 101, q = [50.5, 50.5] / 101.
    p = np.array([90.5, 10.5]) / 101
    q = np.array([50.5, 50.5]) / 101
    by_hand = (q[0] - p[0]) * math.log(q[0] / p[0]) + (q[1] - p[1]) * math.log(q[1] / p[1])
    value = psi(np.array([[90, 10]]), np.array([[50, 50]]))[0]
    assert _close(float(value), by_hand)
    assert 0.85 < by_hand < 0.86  # sanity: a big shift


def test_g_test_not_comparable_rows_have_pvalue_one() -> None:
    ref = np.array([[10, 0, 0], [0, 0, 0], [3, 4, 0], [5, 5, 5]], dtype=np.int64)
    cur = np.array([[7, 0, 0], [0, 0, 0], [0, 0, 0], [5, 5, 5]], dtype=np.int64)
    g, p = g_test(ref, cur)
    # one used bin; nothing at all; empty current side; identical
    assert p.tolist() == [1.0, 1.0, 1.0, pytest.approx(1.0)]
    assert g[:3].tolist() == [0.0, 0.0, 0.0]


def test_empty_rows_do_not_produce_nan_psi_or_js() -> None:
    zero = np.zeros((1, 4), dtype=np.int64)
    assert psi(zero, zero).tolist() == [0.0]
    assert js_distance(zero, zero).tolist() == [0.0]


# --- Hypothesis: agreement and properties ---

N_BINS = st.integers(min_value=2, max_value=12)


@st.composite
def histogram_pairs(draw: st.DrawFn, max_count: int = 500) -> tuple[np.ndarray, np.ndarray]:
    n_bins = draw(N_BINS)
    counts = st.lists(
        st.integers(min_value=0, max_value=max_count), min_size=n_bins, max_size=n_bins
    )
    ref = np.array(draw(counts), dtype=np.int64)
    cur = np.array(draw(counts), dtype=np.int64)
    return ref, cur


@st.composite
def stacked(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n_bins = draw(N_BINS)
    n_rows = draw(st.integers(min_value=1, max_value=6))
    row = st.lists(st.integers(min_value=0, max_value=300), min_size=n_bins, max_size=n_bins)
    ref = np.array([draw(row) for _ in range(n_rows)], dtype=np.int64)
    cur = np.array([draw(row) for _ in range(n_rows)], dtype=np.int64)
    return ref, cur


@settings(max_examples=150, deadline=None)
@given(stacked())
def test_matrix_agrees_with_independent_computation(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = pair
    psis = psi(ref, cur)
    jss = js_distance(ref, cur)
    gs, ps = g_test(ref, cur)
    for i in range(ref.shape[0]):
        if (ref[i] + cur[i]).sum() == 0:
            continue  # nothing to smooth: no independent definition
        assert _close(float(psis[i]), expected_psi(ref[i], cur[i]))
        assert _close(float(jss[i]), expected_js(ref[i], cur[i]))
        eg, ep = expected_g(ref[i], cur[i])
        assert _close(float(gs[i]), eg)
        assert _close(float(ps[i]), ep)


@settings(max_examples=150, deadline=None)
@given(histogram_pairs())
def test_bounds(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = pair[0][None, :], pair[1][None, :]
    assert psi(ref, cur)[0] >= 0.0
    js = js_distance(ref, cur)[0]
    assert 0.0 <= js <= 1.0
    g, p = g_test(ref, cur)
    assert g[0] >= 0.0
    assert 0.0 <= p[0] <= 1.0


@settings(max_examples=100, deadline=None)
@given(histogram_pairs())
def test_identical_histograms(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref = pair[0][None, :]
    assert psi(ref, ref.copy())[0] == 0.0
    assert js_distance(ref, ref.copy())[0] == 0.0
    g, p = g_test(ref, ref.copy())
    assert g[0] == pytest.approx(0.0, abs=1e-9)
    assert p[0] == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(stacked())
def test_rows_are_independent(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = pair
    psis, jss, (gs, ps) = psi(ref, cur), js_distance(ref, cur), g_test(ref, cur)
    for i in range(ref.shape[0]):
        r, c = ref[i : i + 1], cur[i : i + 1]
        assert psis[i] == pytest.approx(psi(r, c)[0], rel=1e-12, abs=1e-15)
        assert jss[i] == pytest.approx(js_distance(r, c)[0], rel=1e-12, abs=1e-15)
        g1, p1 = g_test(r, c)
        assert gs[i] == pytest.approx(g1[0], rel=1e-12, abs=1e-12)
        assert ps[i] == pytest.approx(p1[0], rel=1e-12, abs=1e-300)
    # and the order of rows does not matter
    order = np.arange(ref.shape[0])[::-1]
    np.testing.assert_allclose(psi(ref[order], cur[order]), psis[order], rtol=1e-12, atol=0)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=2, max_value=8).flatmap(
        lambda k: st.tuples(
            st.lists(st.integers(20, 400), min_size=k, max_size=k),
            st.lists(st.integers(20, 400), min_size=k, max_size=k),
        )
    ),
    st.integers(min_value=2, max_value=20),
)
def test_scaling_keeps_psi_but_lowers_pvalue(
    pair: tuple[list[int], list[int]], factor: int
) -> None:
    ref = np.array([pair[0]], dtype=np.int64)
    cur = np.array([pair[1]], dtype=np.int64)
    base_psi = float(psi(ref, cur)[0])
    scaled_psi = float(psi(ref * factor, cur * factor)[0])
    # Only the pseudo-count's relative weight changes (every bin holds >= 20 here).
    assert scaled_psi == pytest.approx(base_psi, rel=0.1, abs=2e-3)
    g1, p1 = g_test(ref, cur)
    gk, pk = g_test(ref * factor, cur * factor)
    # G is homogeneous of degree one in the counts ...
    assert gk[0] == pytest.approx(factor * g1[0], rel=1e-9, abs=1e-9)
    # ... so the same effect on more data is more significant.
    assert pk[0] <= p1[0]
    if g1[0] > 1e-6 and p1[0] > 1e-250:
        assert pk[0] < p1[0]


def test_small_stationary_windows_psi_fires_but_g_test_does_not() -> None:
    """PSI's expectation on same-distribution samples is ~(bins - 1)(1/n + 1/m): a 0.1
    threshold fires on small stationary windows; the G-test's false-positive rate stays
    at alpha."""
    rng = np.random.default_rng(20240601)
    trials, n, m, n_bins = 3000, 200, 2000, 10
    refs = np.empty((trials, n_bins + 1), dtype=np.int64)
    curs = np.empty((trials, n_bins + 1), dtype=np.int64)
    for t in range(trials):
        reference = rng.normal(0.0, 1.0, m)
        current = rng.normal(0.0, 1.0, n)
        edges = np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1])
        refs[t, :n_bins] = np.bincount(np.searchsorted(edges, reference), minlength=n_bins)
        curs[t, :n_bins] = np.bincount(np.searchsorted(edges, current), minlength=n_bins)
        refs[t, n_bins] = curs[t, n_bins] = 0  # an unused null bin, as in the monitor
    psis = psi(refs, curs)
    _, pvalues = g_test(refs, curs)
    false_alarms_g = float(np.mean(pvalues < 0.001))
    false_alarms_psi = float(np.mean(psis >= 0.1))
    assert false_alarms_g < 0.01
    assert false_alarms_psi > 0.015
    assert false_alarms_psi > 5 * false_alarms_g
    # PSI's mean is about (bins - 1) * (1/n + 1/m)
    assert float(psis.mean()) == pytest.approx((n_bins - 1) * (1 / n + 1 / m), rel=0.2)


@settings(max_examples=50, deadline=None)
@given(histogram_pairs(max_count=50))
def test_pseudo_count_keeps_one_sided_bins_finite(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = pair
    assume((ref + cur).sum() > 0)
    values = [psi(ref[None], cur[None])[0], js_distance(ref[None], cur[None])[0]]
    assert all(math.isfinite(float(v)) for v in values)
