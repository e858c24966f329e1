"""Tests for detectors.segments: per-scope summaries and quantiles of a window's values.

Expected values come from independent computations (plain Python loops, numpy per scope),
never from the module's own output.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.segments import (
    SegmentStats,
    segment_order,
    segment_quantiles,
    segment_stats,
    sorted_segment_stats,
    stacked_segment_stats,
)

FAST = settings(max_examples=150, deadline=None)

# ----------------------------------------------------------------------------------------------
# independent reference computations
# ----------------------------------------------------------------------------------------------


def loop_repeats(values: list[float], scopes: list[int], n_scopes: int) -> tuple[list, list]:
    """Plain loop: remember the previous value of each scope (null or not); a pair is two
    consecutive non-null values of a scope, a repeat a pair of equal values."""
    repeats, pairs = [0] * n_scopes, [0] * n_scopes
    previous: dict[int, float] = {}
    for v, s in zip(values, scopes):
        if s in previous:
            p = previous[s]
            if not (math.isnan(p) or math.isnan(v)):
                pairs[s] += 1
                if p == v:
                    repeats[s] += 1
        previous[s] = v
    return repeats, pairs


def check_against_numpy(got: SegmentStats, v: np.ndarray, s: np.ndarray, n_scopes: int) -> None:
    """Every figure of ``got`` against numpy on each scope's values, and the repeats against
    the plain loop."""
    repeats, pairs = loop_repeats(v.tolist(), s.tolist(), n_scopes)
    assert got.repeats.tolist() == repeats
    assert got.pairs.tolist() == pairs
    for name in ("events", "nulls", "repeats", "pairs"):
        arr = getattr(got, name)
        assert arr.dtype == np.int64 and arr.shape == (n_scopes,), name
    for name in ("mean", "variance", "minimum", "maximum"):
        assert getattr(got, name).shape == (n_scopes,), name
    for scope in range(n_scopes):
        x = v[s == scope]
        present = x[~np.isnan(x)]
        assert got.events[scope] == x.size
        assert got.nulls[scope] == x.size - present.size
        if present.size:
            scale = 1.0 + float(np.max(np.abs(present)))
            assert got.mean[scope] == pytest.approx(float(np.mean(present)), abs=1e-12 * scale)
            assert got.variance[scope] == pytest.approx(
                float(np.var(present)), rel=1e-9, abs=1e-12 * scale**2
            )
            assert got.minimum[scope] == float(np.min(present))
            assert got.maximum[scope] == float(np.max(present))
            assert got.constant[scope] == (len(set(present.tolist())) == 1)
        else:
            for name in ("mean", "variance", "minimum", "maximum"):
                assert math.isnan(getattr(got, name)[scope]), name
            assert not got.constant[scope]
        if x.size:
            assert got.null_rate[scope] == (x.size - present.size) / x.size
        else:
            assert math.isnan(got.null_rate[scope])
        if pairs[scope]:
            assert got.repeat_rate[scope] == repeats[scope] / pairs[scope]
        else:
            assert math.isnan(got.repeat_rate[scope])


values_st = st.lists(
    st.one_of(
        st.sampled_from([0.0, 1.0, 2.5, -3.0, math.nan]),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    ),
    min_size=0,
    max_size=80,
)


# ----------------------------------------------------------------------------------------------
# segment_stats
# ----------------------------------------------------------------------------------------------


@FAST
@given(data=st.data(), values=values_st, n_scopes=st.integers(1, 5))
def test_segment_stats_match_a_plain_loop_and_numpy(
    data: st.DataObject, values: list[float], n_scopes: int
) -> None:
    n = len(values)
    scopes = data.draw(st.lists(st.integers(0, n_scopes - 1), min_size=n, max_size=n))
    v, s = np.array(values, dtype=np.float64), np.array(scopes, dtype=np.intp)
    check_against_numpy(segment_stats(v, s, n_scopes), v, s, n_scopes)


@FAST
@given(data=st.data(), values=values_st, n_scopes=st.integers(1, 4))
def test_a_scope_does_not_depend_on_the_others(
    data: st.DataObject, values: list[float], n_scopes: int
) -> None:
    """A window is summarised in one call, so there is no batching to depend on; what must
    not matter is how the other scopes interleave, or whether the pairs come pre-sorted."""
    n = len(values)
    scopes = data.draw(st.lists(st.integers(0, n_scopes - 1), min_size=n, max_size=n))
    v, s = np.array(values, dtype=np.float64), np.array(scopes, dtype=np.intp)
    together = segment_stats(v, s, n_scopes)
    order = segment_order(s)
    presorted = sorted_segment_stats(v[order], s[order], n_scopes)
    for name in ("events", "nulls", "mean", "variance", "minimum", "maximum", "repeats", "pairs"):
        assert np.array_equal(getattr(together, name), getattr(presorted, name), equal_nan=True)
    for scope in range(n_scopes):
        mine = s == scope
        alone = segment_stats(v[mine], np.zeros(int(mine.sum()), dtype=np.intp), 1)
        for name in ("events", "nulls", "minimum", "maximum", "repeats", "pairs"):
            assert np.array_equal(
                getattr(alone, name)[0], getattr(together, name)[scope], equal_nan=True
            ), name
        assert np.allclose(alone.mean[0], together.mean[scope], equal_nan=True)
        assert np.allclose(alone.variance[0], together.variance[scope], equal_nan=True)


@FAST
@given(data=st.data(), values=values_st, n_scopes=st.integers(1, 4), n_features=st.integers(1, 3))
def test_stacked_features_are_summarised_as_one_at_a_time(
    data: st.DataObject, values: list[float], n_scopes: int, n_features: int
) -> None:
    """Features summarised in one call give each feature's own figures, bit for bit
    (the window's decisions must not change with how many features a model has)."""
    n = len(values)
    scopes = data.draw(st.lists(st.integers(0, n_scopes - 1), min_size=n, max_size=n))
    s = np.array(scopes, dtype=np.intp)
    order = segment_order(s)
    rows = np.array([data.draw(st.permutations(values)) for _ in range(n_features)])
    rows = rows.reshape(n_features, n).astype(np.float64)
    stacked = stacked_segment_stats(rows[:, order], s[order], n_scopes)
    for row, got in zip(rows, stacked, strict=True):
        alone = segment_stats(row, s, n_scopes)
        for name in ("events", "nulls", "mean", "variance", "minimum", "maximum", "repeats"):
            assert np.array_equal(getattr(got, name), getattr(alone, name), equal_nan=True)
        assert np.array_equal(got.pairs, alone.pairs)


def test_golden_values() -> None:
    values = np.array([4.0, 1.0, 4.0, np.nan, 4.0, 7.0, 2.0, 2.0, np.nan, 2.0, -1.0, 2.0])
    scopes = np.array([0, 1, 0, 1, 0, 1, 2, 2, 2, 2, 1, 2], dtype=np.intp)
    got = segment_stats(values, scopes, 4)
    # scope 0: 4, 4, 4; scope 1: 1, nan, 7, -1; scope 2: 2, 2, nan, 2, 2; scope 3: empty
    assert got.events.tolist() == [3, 4, 5, 0]
    assert got.nulls.tolist() == [0, 1, 1, 0]
    assert got.repeats.tolist() == [2, 0, 2, 0]
    assert got.pairs.tolist() == [2, 1, 2, 0]  # a null breaks the chain
    assert got.mean[:3].tolist() == pytest.approx([4.0, 7 / 3, 2.0])
    assert got.variance[:3].tolist() == pytest.approx([0.0, 104 / 9, 0.0])
    assert got.minimum[:3].tolist() == [4.0, -1.0, 2.0]
    assert got.maximum[:3].tolist() == [4.0, 7.0, 2.0]
    assert got.constant.tolist() == [True, False, True, False]
    assert got.repeat_rate[:3].tolist() == [1.0, 0.0, 1.0]
    assert got.null_rate[:3].tolist() == [0.0, 0.25, 0.2]
    assert math.isnan(got.repeat_rate[3]) and math.isnan(got.null_rate[3])
    assert np.isnan([got.mean[3], got.variance[3], got.minimum[3], got.maximum[3]]).all()


def test_nulls_are_counted_never_equal_and_never_summarised() -> None:
    values = np.array([np.nan, np.nan, 5.0, np.nan, 5.0, np.nan, np.nan])
    scopes = np.array([0, 0, 1, 1, 1, 2, 2], dtype=np.intp)
    got = segment_stats(values, scopes, 3)
    assert got.events.tolist() == [2, 3, 2]
    assert got.nulls.tolist() == [2, 1, 2]
    assert got.repeats.tolist() == [0, 0, 0]  # NaN == NaN is not a repeat
    assert got.pairs.tolist() == [0, 0, 0]  # 5, nan, 5: no two consecutive values
    assert got.constant.tolist() == [False, True, False]
    assert got.null_rate.tolist() == [1.0, 1 / 3, 1.0]
    assert np.isnan(got.repeat_rate).all()
    assert got.mean[1] == got.minimum[1] == got.maximum[1] == 5.0 and got.variance[1] == 0.0
    for name in ("mean", "variance", "minimum", "maximum"):
        assert np.isnan(getattr(got, name)[[0, 2]]).all(), name


def test_an_empty_window() -> None:
    got = segment_stats(np.zeros(0), np.zeros(0, dtype=np.intp), 2)
    assert got.events.tolist() == [0, 0] and got.pairs.tolist() == [0, 0]
    assert np.isnan(got.mean).all() and np.isnan(got.null_rate).all()
    assert got.constant.tolist() == [False, False]


@pytest.mark.parametrize("value", [0.1, 1e6 + 0.3, -123.456789, 1 / 3])
@pytest.mark.parametrize("n", [1, 7, 1_000])
def test_a_constant_window(value: float, n: int) -> None:
    """``constant`` is exact (minimum == maximum); the variance of a constant window is zero
    up to float rounding of the mean (relative to the value, not to a spread)."""
    got = segment_stats(np.full(n, value), np.zeros(n, dtype=np.intp), 1)
    assert got.constant.tolist() == [True]
    assert got.minimum[0] == got.maximum[0] == value
    assert got.repeats[0] == got.pairs[0] == n - 1
    assert 0.0 <= got.variance[0] <= 1e-24 * value**2 * n


def test_rows_in_several_scopes_are_one_pair_per_scope() -> None:
    """A row in the population and in one cohort is two (value, scope) pairs, in row order:
    each scope sees its own consecutive rows, the population sees all of them."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 3, 200).astype(float)
    rows = np.column_stack([np.zeros(200, dtype=np.intp), rng.integers(1, 4, 200)])
    flat_values, flat_scopes = np.repeat(values, 2), rows.reshape(-1).astype(np.intp)
    got = segment_stats(flat_values, flat_scopes, 4)
    expected = loop_repeats(flat_values.tolist(), flat_scopes.tolist(), 4)
    assert (got.repeats.tolist(), got.pairs.tolist()) == expected
    assert got.pairs[0] == 199
    assert got.events[0] == 200 and got.events[1:].sum() == 200


# ----------------------------------------------------------------------------------------------
# segment_quantiles
# ----------------------------------------------------------------------------------------------

PROBS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])


@FAST
@given(data=st.data(), values=values_st, n_scopes=st.integers(1, 5))
def test_segment_quantiles_match_numpy_inverted_cdf(
    data: st.DataObject, values: list[float], n_scopes: int
) -> None:
    n = len(values)
    scopes = data.draw(st.lists(st.integers(0, n_scopes - 1), min_size=n, max_size=n))
    wanted = data.draw(st.lists(st.integers(0, n_scopes - 1), max_size=n_scopes, unique=True))
    v, s = np.array(values, dtype=np.float64), np.array(scopes, dtype=np.intp)
    w = np.array(wanted, dtype=np.intp)
    got = segment_quantiles(v, s, w, PROBS)
    assert got.shape == (len(wanted), PROBS.size)
    for i, scope in enumerate(wanted):
        x = v[(s == scope) & ~np.isnan(v)]
        if x.size:
            assert got[i].tolist() == np.quantile(x, PROBS, method="inverted_cdf").tolist()
        else:
            assert np.isnan(got[i]).all()


def test_segment_quantiles_are_sample_values() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(0, 1, 1_000)
    values[rng.random(1_000) < 0.1] = np.nan
    scopes = rng.integers(0, 3, 1_000).astype(np.intp)
    got = segment_quantiles(values, scopes, np.array([2, 0], dtype=np.intp), PROBS)
    for row, scope in zip(got, [2, 0]):
        x = np.sort(values[(scopes == scope) & ~np.isnan(values)])
        assert set(row.tolist()) <= set(x.tolist())  # inverted_cdf never interpolates
        # the p-quantile is the smallest value with at least p of the values at or below it
        expected = [x[math.ceil(Fraction(str(p)) * x.size) - 1] for p in PROBS]
        assert row.tolist() == expected
