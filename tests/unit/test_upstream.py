"""Tests for detectors.upstream: frozen, rescaled and renamed signals.

Expected values come from independent computations (plain Python loops, numpy, the truth a
scenario was generated with), never from the module's own output.
"""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.segments import segment_stats
from detectors.upstream import (
    FrozenCheck,
    RescaleCheck,
    ScopeStats,
    histogram_collision,
    match_renamed,
    match_renamed_categorical,
    nearest_unit,
    quantile_distance,
)

FAST = settings(max_examples=120, deadline=None)
PROBS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
SEEDS = range(4)

# ----------------------------------------------------------------------------------------------
# window summaries and independent reference computations
# ----------------------------------------------------------------------------------------------


def scope_stats(
    values: np.ndarray, scopes: np.ndarray, n_scopes: int, numeric: bool = True
) -> ScopeStats:
    """ScopeStats of one window as the engine builds them from segment_stats, with exact
    figures per scope: distinct non-null values, the last non-null value and the collision
    ``sum(share**2)`` of the non-null values.  ``scopes`` is one scope per row, or ``(n, d)``
    when each row belongs to ``d`` scopes (one (value, scope) pair per scope, in row order)."""
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(scopes, dtype=np.intp)
    if s.ndim == 2:
        v, s = np.repeat(v, s.shape[1]), s.reshape(-1)
    seg = segment_stats(v, s, n_scopes)
    distinct = np.zeros(n_scopes, dtype=np.int64)
    last = np.full(n_scopes, np.nan)
    collision = np.full(n_scopes, np.nan)
    for scope in range(n_scopes):
        x = v[(s == scope) & ~np.isnan(v)]
        if x.size:
            _, counts = np.unique(x, return_counts=True)
            distinct[scope] = counts.size
            last[scope] = x[-1]
            collision[scope] = float(np.sum((counts / x.size) ** 2))
    return ScopeStats(
        events=seg.events,
        nulls=seg.nulls,
        distinct=distinct,
        variance=seg.variance if numeric else np.full(n_scopes, np.nan),
        repeats=seg.repeats,
        pairs=seg.pairs,
        last_value=last,
        collision=collision,
    )


def one_scope(values: np.ndarray, numeric: bool = True) -> ScopeStats:
    return scope_stats(values, np.zeros(values.size, dtype=np.intp), 1, numeric)


def held(rng: np.random.Generator, n: int, hold: float) -> np.ndarray:
    """A lognormal feed that repeats its previous value with probability ``hold``."""
    fresh = rng.lognormal(3, 1, n)
    keep = rng.random(n) < hold
    keep[0] = False
    source = np.maximum.accumulate(np.where(keep, 0, np.arange(n)))
    return fresh[source]


def scalar_distance(ref: np.ndarray, cur: np.ndarray, probs: np.ndarray) -> float:
    """quantile_distance for strictly increasing quantiles with cur inside the ref range:
    the level where ref's piecewise-linear quantile function reaches cur, via np.interp."""
    levels = np.interp(cur, ref, probs)
    return float(np.max(np.abs(levels - probs)))


# ----------------------------------------------------------------------------------------------
# histogram collision
# ----------------------------------------------------------------------------------------------


def test_histogram_collision_leaves_out_the_null_bin() -> None:
    counts = np.array([[30, 10, 0, 60], [0, 0, 0, 0], [5, 5, 5, 5]])
    got = histogram_collision(counts)
    assert got[0] == pytest.approx(0.75**2 + 0.25**2)
    assert math.isnan(got[1])
    assert got[2] == pytest.approx(3 * (1 / 3) ** 2)
    assert histogram_collision(counts, null_bin=None)[2] == pytest.approx(0.25)


# ----------------------------------------------------------------------------------------------
# frozen signals
# ----------------------------------------------------------------------------------------------


def frozen_at_last(rng: np.random.Generator, ref: np.ndarray, n: int) -> np.ndarray:
    return np.full(n, ref[-1])


def stuck_feed(rng: np.random.Generator, ref: np.ndarray, n: int) -> np.ndarray:
    return held(rng, n, 0.9)


def null_spike(rng: np.random.Generator, ref: np.ndarray, n: int) -> np.ndarray:
    x = rng.lognormal(3, 1, n)
    x[rng.random(n) < 0.5] = np.nan
    return x


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("n_ref", "n_cur"), [(200, 200), (5_000, 5_000), (5_000, 200)])
@pytest.mark.parametrize(
    ("make", "kind"),
    [(frozen_at_last, "constant"), (stuck_feed, "stuck"), (null_spike, "null_spike")],
)
def test_upstream_faults_are_caught(make, kind: str, n_ref: int, n_cur: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.lognormal(3, 1, n_ref)
    ref[rng.random(n_ref) < 0.02] = np.nan  # a few nulls are normal
    ref[-1] = rng.lognormal(3, 1)
    verdict = FrozenCheck().judge(one_scope(ref), one_scope(make(rng, ref, n_cur)))
    assert verdict.frozen.tolist() == [True]
    assert verdict.kind == (kind,)
    evidence = verdict.evidence[0]
    json.dumps(evidence)  # JSON-friendly
    if kind == "constant":
        assert evidence["frozen_value"] == ref[-1]
        assert evidence["ref_distinct"] >= 5 and evidence["ref_variance"] > 0
    if kind == "stuck":
        assert evidence["cur_repeat_rate"] > 0.8 > 0.5 > evidence["ref_repeat_rate"]
    if kind == "null_spike":
        assert evidence["cur_null_rate"] - evidence["ref_null_rate"] > 0.3


HEALTHY = {
    "lognormal": (lambda rng, n: rng.lognormal(3, 1, n), True),
    "flag": (lambda rng, n: (rng.random(n) < 0.3).astype(float), True),
    "poisson_0.3": (lambda rng, n: rng.poisson(0.3, n).astype(float), True),
    "poisson_1": (lambda rng, n: rng.poisson(1.0, n).astype(float), True),
    "categorical_3": (lambda rng, n: rng.choice([0.0, 1.0, 2.0], n, p=[0.5, 0.3, 0.2]), False),
    "constant_in_reference": (lambda rng, n: np.full(n, 7.0), True),
    "rounded_normal": (lambda rng, n: np.round(rng.normal(10, 2, n)), True),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("n_ref", "n_cur"), [(200, 200), (5_000, 5_000), (5_000, 200)])
@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_features_are_not_frozen(name: str, n_ref: int, n_cur: int, seed: int) -> None:
    make, numeric = HEALTHY[name]
    rng = np.random.default_rng(seed)
    ref = one_scope(make(rng, n_ref), numeric)
    cur = one_scope(make(rng, n_cur), numeric)
    verdict = FrozenCheck().judge(ref, cur)
    assert verdict.frozen.tolist() == [False], verdict.evidence[0]
    assert verdict.kind == ("",)


DRIFTS = {
    "location_shift": (
        lambda rng, n: rng.lognormal(3, 1, n),
        lambda rng, n: rng.lognormal(4, 1, n),
        True,
    ),
    "category_takes_over": (
        lambda rng, n: rng.choice([0.0, 1.0, 2.0], n, p=[0.4, 0.3, 0.3]),
        lambda rng, n: rng.choice([0.0, 1.0, 2.0], n, p=[0.96, 0.02, 0.02]),
        False,
    ),
    "more_zeros": (
        lambda rng, n: np.where(rng.random(n) < 0.5, 0.0, rng.lognormal(0, 1, n)),
        lambda rng, n: np.where(rng.random(n) < 0.93, 0.0, rng.lognormal(0, 1, n)),
        True,
    ),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [200, 5_000])
@pytest.mark.parametrize("name", sorted(DRIFTS))
def test_genuine_drift_is_not_frozen(name: str, n: int, seed: int) -> None:
    make_ref, make_cur, numeric = DRIFTS[name]
    rng = np.random.default_rng(seed)
    verdict = FrozenCheck().judge(
        one_scope(make_ref(rng, n), numeric), one_scope(make_cur(rng, n), numeric)
    )
    assert verdict.frozen.tolist() == [False], verdict.evidence[0]


@pytest.mark.parametrize("sentinel", [2.0**31 - 1, -1e300, 1e300])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_sentinel_in_the_reference_does_not_make_healthy_windows_constant(
    sentinel: float, seed: int
) -> None:
    """One 2**31 - 1 among 1,200 reference values: the reference's variance is ~1e15, and a
    window without the sentinel is 1e-15 of it, yet it varies like the reference did."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(0.0, 1.0, 1_200)
    ref[rng.integers(1_200)] = sentinel
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # squaring 1e300 must not warn either
        reference = one_scope(ref)
        healthy = FrozenCheck().judge(reference, one_scope(rng.normal(0.0, 1.0, 271)))
        frozen = FrozenCheck().judge(reference, one_scope(np.full(271, 0.37)))
    assert healthy.frozen.tolist() == [False]
    assert frozen.frozen.tolist() == [True] and frozen.kind == ("constant",)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_dominant_value_taking_over_is_not_frozen(seed: int) -> None:
    """75% zeros in the reference, all zeros now: a window of 200 zeros has probability
    0.75**200 under the reference, so something changed, but a value that already dominated
    taking over is drift; a varied feature freezing is not."""
    rng = np.random.default_rng(seed)
    ref = np.where(rng.random(5_000) < 0.75, 0.0, rng.lognormal(0, 1, 5_000))
    assert one_scope(ref).distinct[0] >= 5
    verdict = FrozenCheck().judge(one_scope(ref), one_scope(np.zeros(200)))
    assert verdict.frozen.tolist() == [False]
    permissive = FrozenCheck(max_ref_collision=1.0).judge(one_scope(ref), one_scope(np.zeros(200)))
    assert permissive.kind == ("constant",)


def test_long_frozen_run_is_stuck_even_when_it_dominates_the_window() -> None:
    rng = np.random.default_rng(0)
    cur = rng.lognormal(3, 1, 2_000)
    cur[:1_800] = cur[0]  # frozen for 90% of the window, then back
    verdict = FrozenCheck().judge(one_scope(rng.lognormal(3, 1, 2_000)), one_scope(cur))
    assert verdict.kind == ("stuck",)


def test_scopes_are_judged_independently_in_one_call() -> None:
    rng = np.random.default_rng(1)
    n = 1_000
    rows = np.column_stack([np.zeros(4 * n, dtype=np.intp), np.repeat([1, 2, 3, 4], n)])
    ref = scope_stats(rng.lognormal(3, 1, 4 * n), rows, 5)
    x = rng.lognormal(3, 1, 4 * n)
    x[n : 2 * n] = 12.5  # cohort 2 frozen
    x[2 * n : 3 * n] = held(rng, n, 0.95)  # cohort 3 stuck
    verdict = FrozenCheck().judge(ref, scope_stats(x, rows, 5))
    assert verdict.kind == ("", "", "constant", "stuck", "")
    assert verdict.evidence[2]["frozen_value"] == 12.5


def test_too_few_events_are_not_judged() -> None:
    rng = np.random.default_rng(2)
    verdict = FrozenCheck().judge(
        one_scope(rng.lognormal(3, 1, 5_000)), one_scope(np.full(50, 3.0))
    )
    assert verdict.frozen.tolist() == [False]
    assert FrozenCheck(min_events=20).judge(
        one_scope(rng.lognormal(3, 1, 5_000)), one_scope(np.full(50, 3.0))
    ).kind == ("constant",)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_events": 1}, "min_events must be an int >= 2"),
        ({"min_events": 10.5}, "min_events must be an int >= 2"),
        ({"alpha": 0.0}, r"alpha must be a number in \(0, 1"),
        ({"alpha": 1.0}, r"alpha must be a number in \(0, 1\)"),
        ({"min_repeat_rate": 1.5}, r"min_repeat_rate must be a number in \(0, 1\]"),
        ({"max_ref_null_rate": -0.1}, r"max_ref_null_rate must be a number in \[0, 1\]"),
        ({"max_ref_collision": True}, r"max_ref_collision must be a number in \(0, 1\]"),
    ],
)
def test_frozen_check_arguments_are_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FrozenCheck(**kwargs)


def test_scope_stats_are_validated() -> None:
    ok = {
        "events": np.array([10]),
        "nulls": np.array([1]),
        "distinct": np.array([3]),
        "variance": np.array([1.0]),
        "repeats": np.array([2]),
        "pairs": np.array([9]),
        "last_value": np.array([4.0]),
    }
    ScopeStats(**ok)
    for change, match in [
        ({"nulls": np.array([11])}, "nulls must be <= events"),
        ({"repeats": np.array([10])}, "repeats must be <= pairs"),
        ({"distinct": np.array([3, 4])}, "distinct must be an int array"),
        ({"events": np.array([-1])}, "events must be >= 0"),
        ({"collision": np.array([0.1, 0.2])}, "collision must be None"),
    ]:
        with pytest.raises(ValueError, match=match):
            ScopeStats(**{**ok, **change})
    two_scopes = scope_stats(np.array([1.0, 2.0]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="same scopes"):
        FrozenCheck().judge(ScopeStats(**ok), two_scopes)


# ----------------------------------------------------------------------------------------------
# rescaled signals
# ----------------------------------------------------------------------------------------------


def quantiles(x: np.ndarray) -> np.ndarray:
    return np.quantile(x, PROBS)


RESCALES = {
    # name: (generator, true factor, expected unit)
    "percent_to_fraction_x100": (lambda rng, n: rng.normal(50, 10, n), 100.0, 100.0),
    "grams_to_kilos": (lambda rng, n: rng.gamma(16, 30, n), 0.001, 0.001),
    "inches_to_cm": (lambda rng, n: rng.lognormal(3, 0.25, n), 2.54, 2.54),
    "sign_flip": (lambda rng, n: rng.normal(5, 1, n), -1.0, -1.0),
    "seconds_to_hours": (lambda rng, n: rng.lognormal(8, 0.25, n), 1 / 3600, 1 / 3600),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_ref", [500, 5_000])
@pytest.mark.parametrize("name", sorted(RESCALES))
def test_rescales_are_detected_with_their_unit(name: str, n_ref: int, seed: int) -> None:
    make, truth, unit = RESCALES[name]
    rng = np.random.default_rng(seed)
    ref = quantiles(make(rng, n_ref))
    cur = quantiles(make(rng, 500) * truth)
    verdict = RescaleCheck().judge(ref[None], cur[None], PROBS)
    assert verdict.rescaled.tolist() == [True]
    assert abs(verdict.factor[0] / truth - 1) < 0.05
    if unit in (0.001, 1000.0):
        # 1,000 and 1,024 are 2.4% apart, closer than 500 events measure a factor: the
        # nearest unit may be either (the decision's snap names both, test_conversions)
        assert verdict.unit[0] in (unit, unit * 1.024, unit / 1.024)
    else:
        assert verdict.unit[0] == pytest.approx(unit, rel=1e-12)
    assert verdict.shape_distance[0] <= 0.1 < verdict.raw_distance[0]
    assert verdict.offset[0] == 0.0  # a unit change has no offset: the pure-scale fit is kept


@pytest.mark.parametrize("seed", SEEDS)
def test_zero_centred_symmetric_rescale_keeps_the_plain_sign(seed: int) -> None:
    """x100 and x-100 give the same quantiles on a zero-centred symmetric feature: the
    unflipped reading is the one reported."""
    rng = np.random.default_rng(seed)
    ref = quantiles(rng.normal(0, 1, 5_000))
    verdict = RescaleCheck().judge(ref[None], quantiles(rng.normal(0, 1, 500) * 100)[None], PROBS)
    assert verdict.rescaled.tolist() == [True]
    assert 80 < verdict.factor[0] < 125


NOT_RESCALES = {
    "location_+1sd_normal": (
        lambda rng, n: rng.normal(50, 10, n),
        lambda rng, n: rng.normal(60, 10, n),
    ),
    "location_+1sd_near_zero": (
        lambda rng, n: rng.normal(5, 1, n),
        lambda rng, n: rng.normal(6, 1, n),
    ),
    "location_+1sd_lognormal": (
        lambda rng, n: rng.lognormal(3, 0.5, n),
        lambda rng, n: rng.lognormal(3, 0.5, n) + 11.0,
    ),
    "normal_to_uniform_same_mean_sd": (
        lambda rng, n: rng.normal(50, 10, n),
        lambda rng, n: rng.uniform(50 - 10 * math.sqrt(3), 50 + 10 * math.sqrt(3), n),
    ),
    "spread_x1.5_around_the_mean": (
        lambda rng, n: rng.normal(50, 10, n),
        lambda rng, n: rng.normal(50, 15, n),
    ),
    "unchanged_lognormal": (
        lambda rng, n: rng.lognormal(0, 1, n),
        lambda rng, n: rng.lognormal(0, 1, n),
    ),
    "unchanged_zero_centred": (
        lambda rng, n: rng.normal(0, 1, n),
        lambda rng, n: rng.normal(0, 1, n),
    ),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_ref", [500, 5_000])
@pytest.mark.parametrize("name", sorted(NOT_RESCALES))
def test_drift_is_not_a_rescale(name: str, n_ref: int, seed: int) -> None:
    make_ref, make_cur = NOT_RESCALES[name]
    rng = np.random.default_rng(seed)
    verdict = RescaleCheck().judge(
        quantiles(make_ref(rng, n_ref))[None], quantiles(make_cur(rng, 500))[None], PROBS
    )
    assert verdict.rescaled.tolist() == [False]
    assert verdict.unit == (None,)


@pytest.mark.parametrize("name", ["location_+1sd_normal", "normal_to_uniform_same_mean_sd"])
def test_same_spread_changes_report_a_factor_near_one(name: str) -> None:
    make_ref, make_cur = NOT_RESCALES[name]
    rng = np.random.default_rng(11)
    verdict = RescaleCheck().judge(
        quantiles(make_ref(rng, 5_000))[None], quantiles(make_cur(rng, 500))[None], PROBS
    )
    assert abs(verdict.factor[0] - 1) < 0.2
    assert abs(verdict.spread_ratio[0] - 1) < 0.2


def test_degenerate_rows_are_not_rescaled_and_do_not_warn() -> None:
    rng = np.random.default_rng(3)
    good = quantiles(rng.normal(50, 10, 1_000))
    zero_iqr = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0])  # 80% zeros
    constant = np.full(7, 4.2)
    with_nan = good.copy()
    with_nan[3] = np.nan
    with_inf = good.copy()
    with_inf[-1] = np.inf
    decreasing = good[::-1].copy()
    ref = np.vstack([zero_iqr, good, with_nan, good, good, decreasing, constant])
    cur = np.vstack([zero_iqr * 100, constant, good * 100, with_nan, with_inf, good, constant])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verdict = RescaleCheck().judge(ref, cur, PROBS)
        distance = quantile_distance(ref, cur, PROBS)
        pairs = match_renamed({"a": with_nan, "b": constant}, {"c": constant}, PROBS)
    assert verdict.rescaled.tolist() == [False] * 7
    assert verdict.unit == (None,) * 7
    assert np.isnan(verdict.factor).all()
    assert np.isnan(distance[2:6]).all()
    assert pairs == [("b", "c", 0.0)]


def test_rows_are_judged_independently() -> None:
    rng = np.random.default_rng(4)
    refs = [quantiles(rng.normal(50, 10, 2_000)) for _ in range(4)]
    flipped = -refs[2][::-1]  # quantiles of -X
    broken = refs[3].copy()
    broken[2] = np.nan
    curs = [refs[0] * 100, quantiles(rng.normal(60, 10, 500)), flipped, refs[3], broken]
    refs.append(refs[3])
    together = RescaleCheck().judge(np.vstack(refs), np.vstack(curs), PROBS)
    for i in range(5):
        alone = RescaleCheck().judge(refs[i][None], curs[i][None], PROBS)
        assert together.rescaled[i] == alone.rescaled[0]
        assert np.array_equal(together.factor[i], alone.factor[0], equal_nan=True)
        assert together.unit[i] == alone.unit[0]
    assert together.rescaled.tolist() == [True, False, True, False, False]
    assert together.unit[:3] == (100.0, None, -1.0)


@FAST
@given(
    log_factor=st.floats(math.log(0.001), math.log(1000)),
    negative=st.booleans(),
    mu=st.floats(-3, 3),
    sigma=st.floats(0.3, 1.5),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_factor_is_scale_free(
    log_factor: float, negative: bool, mu: float, sigma: float, sign: float
) -> None:
    """Judging (ref, a * ref) gives factor a exactly, whatever a, for an asymmetric ref."""
    from scipy.stats import norm

    a = (-1.0 if negative else 1.0) * math.exp(log_factor)
    ref = sign * np.exp(mu + sigma * norm.ppf(PROBS))  # lognormal quantiles (maybe negated)
    ref = np.sort(ref)
    # quantiles of a * X: a * Q(p) when a > 0, a * Q(1 - p) when a < 0
    cur = a * ref if a > 0 else a * ref[::-1]
    verdict = RescaleCheck().judge(ref[None], cur[None], PROBS)
    assert verdict.factor[0] == pytest.approx(a, rel=1e-9)
    assert verdict.offset[0] == 0.0
    assert verdict.shape_distance[0] == pytest.approx(0.0, abs=1e-9)
    if abs(a - 1) < 0.2:
        assert not verdict.rescaled[0]
    if a < 0 or abs(math.log(abs(a))) > math.log(20):
        assert verdict.rescaled[0]
        unit = nearest_unit(a)
        assert verdict.unit[0] == unit


def test_nearest_unit() -> None:
    assert nearest_unit(1000 * 0.97) == 1000.0
    assert nearest_unit(1000 * 1.03) == 1024.0  # binary prefixes are in the table too
    assert nearest_unit(-0.0101) == -0.01
    assert nearest_unit(1 / 0.3048) == pytest.approx(1 / 0.3048)
    assert nearest_unit(1.609) == 1.609344
    assert nearest_unit(2.54 * 1.06) is None  # 6% off
    assert nearest_unit(7.0) is None
    assert nearest_unit(0.0) is None
    assert nearest_unit(math.nan) is None
    assert nearest_unit(-3600 * 0.97) == -3600.0


def test_quantile_distance_matches_an_independent_interpolation() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        ref = quantiles(rng.lognormal(0, 1, 3_000))
        cur = quantiles(rng.lognormal(rng.normal(0, 0.1), 1, 3_000))
        inside = np.clip(cur, ref[0], ref[-1])
        expected = scalar_distance(ref, inside, PROBS)
        assert quantile_distance(ref[None], inside[None], PROBS)[0] == pytest.approx(expected)
    assert quantile_distance(ref[None], ref[None], PROBS)[0] == 0.0
    # far outside the reference range the distance saturates at the target level
    assert quantile_distance(ref[None], (ref + 1e6)[None], PROBS)[0] == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        ([0.1, 0.5], "probs must be a 1-D array of >= 3"),
        ([0.5, 0.1, 0.9], "strictly increasing"),
        ([0.0, 0.5, 0.9], r"strictly increasing in \(0, 1\)"),
    ],
)
def test_probs_are_validated(probs: list, match: str) -> None:
    q = np.zeros((1, len(probs)))
    with pytest.raises(ValueError, match=match):
        RescaleCheck().judge(q, q, probs)


def test_rescale_check_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"tolerance must be a number in \(0, 1\]"):
        RescaleCheck(tolerance=0)
    with pytest.raises(ValueError, match="min_factor_change must be a finite number > 0"):
        RescaleCheck(min_factor_change=-1)
    with pytest.raises(ValueError, match="offset_needs_unit must be True or False"):
        RescaleCheck(offset_needs_unit="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"cur_q must be a \(n_scopes, 7\) array"):
        RescaleCheck().judge(np.zeros((2, 7)), np.zeros((2, 6)), PROBS)


# ----------------------------------------------------------------------------------------------
# renamed features
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_renamed_feature_pairs_with_its_new_name(seed: int) -> None:
    rng = np.random.default_rng(seed)
    missing = {
        "amount": quantiles(rng.lognormal(3, 1, 5_000)),
        "age": quantiles(rng.normal(40, 9, 5_000)),
        "gone_for_good": quantiles(rng.exponential(2, 5_000)),
    }
    appeared = {
        "customer_age": quantiles(rng.normal(40, 9, 500)),
        "unrelated_score": quantiles(rng.normal(0.5, 0.2, 500)),
        "amount_v2": quantiles(rng.lognormal(3, 1, 500)),
        "amount_cents": quantiles(rng.lognormal(3, 1, 500) * 100),  # rescaled: no rename
    }
    pairs = match_renamed(missing, appeared, PROBS)
    assert sorted((m, a) for m, a, _ in pairs) == [("age", "customer_age"), ("amount", "amount_v2")]
    distances = [d for _, _, d in pairs]
    assert distances == sorted(distances) and all(d < 0.1 for d in distances)


def test_each_name_is_paired_at_most_once_best_first() -> None:
    rng = np.random.default_rng(6)
    base = quantiles(rng.normal(10, 2, 50_000))
    missing = {"x": base, "y": base + 0.02}
    appeared = {"x2": base + 0.01}  # both match, x matches best
    pairs = match_renamed(missing, appeared, PROBS)
    assert [(m, a) for m, a, _ in pairs] == [("x", "x2")]


def test_renamed_categorical_feature_pairs_by_total_variation() -> None:
    missing = {
        "channel": {"web": 600, "app": 300, "store": 100},
        "country": {"DE": 0.5, "FR": 0.5},
    }
    appeared = {
        "sales_channel": {"web": 0.58, "app": 0.33, "store": 0.09},
        "device": {"ios": 0.5, "android": 0.5},
        "market": {"DE": 0.62, "FR": 0.38},  # TV 0.12: too far
    }
    pairs = match_renamed_categorical(missing, appeared)
    assert [(m, a) for m, a, _ in pairs] == [("channel", "sales_channel")]
    expected_tv = 0.5 * (abs(0.6 - 0.58) + abs(0.3 - 0.33) + abs(0.1 - 0.09))
    assert pairs[0][2] == pytest.approx(expected_tv)
    assert match_renamed_categorical(missing, appeared, tolerance=0.2)[1][:2] == (
        "country",
        "market",
    )


def test_rename_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        match_renamed_categorical({"a": {"x": -1.0}}, {"b": {"x": 1.0}})
    with pytest.raises(ValueError, match=r"quantiles of 'a' must have shape \(7,\)"):
        match_renamed({"a": np.zeros(6)}, {"b": np.zeros(7)}, PROBS)
    assert match_renamed({}, {"b": np.zeros(7)}, PROBS) == []
    assert match_renamed_categorical({"a": {}}, {"b": {"x": 1.0}}) == []


# ----------------------------------------------------------------------------------------------
# all features of a window in one call
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_features_judged_together_get_the_verdicts_they_get_alone(seed: int) -> None:
    """judge_features stacks every feature's scopes into one frozen check: each feature's
    causes, evidence and rescale factors must be those of judging it on its own."""
    from detectors.binning import NumericBins
    from detectors.signal_health import RESCALE_PROBS, SignalHealth, judge_features

    rng = np.random.default_rng(seed)
    n_scopes, n = 3, 3_000
    scopes = rng.integers(0, n_scopes, n).astype(np.intp)
    reference = {
        "healthy": rng.lognormal(3, 1, n),
        "frozen": rng.normal(50, 5, n),
        "stuck": rng.normal(0, 1, n),
        "rescaled": rng.lognormal(2, 0.5, n),
        "flag": (rng.random(n) < 0.3).astype(float),
    }
    window = {
        "healthy": rng.lognormal(3, 1, n),
        "frozen": np.where(scopes == 1, 42.0, rng.normal(50, 5, n)),
        "stuck": np.zeros(n),
        "rescaled": rng.lognormal(2, 0.5, n) * 1000.0,
        "flag": np.where(rng.random(n) < 0.4, np.nan, (rng.random(n) < 0.3).astype(float)),
    }
    for scope in range(n_scopes):  # a stale cache: each scope's value changes every 10th row
        rows = np.flatnonzero(scopes == scope)
        window["stuck"][rows] = np.repeat(rng.normal(0, 1, rows.size // 10 + 1), 10)[: rows.size]
    healths, histograms, stats = [], [], []
    for name, ref in reference.items():
        bins = NumericBins.from_reference(ref, 10)
        hist = np.zeros((n_scopes, bins.n_bins), dtype=np.int64)
        np.add.at(hist, (scopes, bins.assign(ref)), 1)
        cur = np.zeros_like(hist)
        np.add.at(cur, (scopes, bins.assign(window[name])), 1)
        quantiles = None
        if name != "flag":
            quantiles = np.array(
                [np.quantile(ref[scopes == s], RESCALE_PROBS) for s in range(n_scopes)]
            )
        healths.append(
            SignalHealth(ref, scopes, segment_stats(ref, scopes, n_scopes), hist, quantiles)
        )
        histograms.append(cur)
        stats.append(segment_stats(window[name], scopes, n_scopes))
    values = np.array(list(window.values()))
    judged = np.array([True, True, False])
    drifted = np.ones((len(healths), n_scopes), dtype=bool)
    wrong_type = np.zeros((len(healths), n_scopes), dtype=np.int64)
    # Each health pools the windows it judged: judge the same window on fresh copies.
    fresh = copy.deepcopy(healths)
    together = judge_features(
        healths, stats, histograms, values, scopes, judged, drifted, wrong_type
    )
    for f, health in enumerate(fresh):
        alone = health.judge(
            stats[f], histograms[f], values[f], scopes, judged, drifted[f], wrong_type[f]
        )
        assert together[f].cause == alone.cause
        assert together[f].evidence == alone.evidence
        np.testing.assert_array_equal(together[f].rescale_factor, alone.rescale_factor)
        np.testing.assert_array_equal(together[f].window_factor, alone.window_factor)
    causes = {name: v.cause for name, v in zip(reference, together, strict=True)}
    # The faults were caught where they were injected, and scope 2 was not judged.
    assert causes["frozen"][1] == "frozen_signal" and causes["frozen"][2] == ""
    assert causes["stuck"][:2] == ("frozen_signal", "frozen_signal")
    assert causes["rescaled"][:2] == ("rescaled_signal", "rescaled_signal")
    assert causes["healthy"] == ("", "", "")


def test_features_judged_together_must_share_one_frozen_check() -> None:
    from detectors.signal_health import SignalHealth, judge_features

    scopes = np.zeros(200, dtype=np.intp)
    values = np.arange(200.0)
    hist = np.array([[20] * 10 + [0]])
    stats = segment_stats(values, scopes, 1)
    a = SignalHealth(values, scopes, stats, hist, None)
    b = SignalHealth(values, scopes, stats, hist, None, frozen=FrozenCheck(alpha=0.01))
    with pytest.raises(ValueError, match="share one FrozenCheck"):
        judge_features(
            [a, b],
            [stats, stats],
            [hist, hist],
            np.array([values, values]),
            scopes,
            np.array([True]),
            np.zeros((2, 1), dtype=bool),
            np.zeros((2, 1), dtype=np.int64),
        )


def _zero_inflated(
    rng: np.random.Generator, n: int, zeros: float, factor: float = 1.0, shift: float = 0.0
) -> np.ndarray:
    x = rng.lognormal(3, 1, n) * factor + shift
    x[rng.random(n) < zeros] = 0.0
    return x


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"factor": 0.01}, "rescaled_signal"),  # cents became dollars
        ({"factor": 1_000.0}, "rescaled_signal"),
        ({"zeros": 0.7}, ""),  # more events carry an amount: the world moved
        ({"shift": 60.0}, ""),  # the amounts moved, not by a factor
        ({}, ""),
    ],
)
def test_a_mostly_zero_amount_is_judged_on_its_non_zero_values(
    change: dict, cause: str, seed: int
) -> None:
    """90% zeros: every quartile is 0, so the rescale check compares the quantiles of the
    non-zero values, provided the share of zeros held (a unit change keeps zeros)."""
    from detectors.binning import NumericBins
    from detectors.signal_health import RESCALE_PROBS, SignalHealth

    rng = np.random.default_rng(seed)
    reference = _zero_inflated(rng, 10_000, 0.9)
    ref_scopes = np.zeros(reference.size, dtype=np.intp)
    bins = NumericBins.from_reference(reference, 10)
    histogram = np.bincount(bins.assign(reference), minlength=bins.n_bins)[None]
    health = SignalHealth(
        reference,
        ref_scopes,
        segment_stats(reference, ref_scopes, 1),
        histogram,
        np.quantile(reference, RESCALE_PROBS)[None],
    )
    window = _zero_inflated(rng, 2_000, **{"zeros": 0.9, **change})
    scopes = np.zeros(window.size, dtype=np.intp)
    current = np.bincount(bins.assign(window), minlength=bins.n_bins)[None]
    verdict = health.judge(
        segment_stats(window, scopes, 1),
        current,
        window,
        scopes,
        np.array([True]),
        np.array([True]),
        np.zeros(1, dtype=np.int64),
    )
    assert verdict.cause == (cause,)
    if cause:
        evidence = verdict.evidence[0]
        assert evidence["quantiles_of"] == "non-zero values"
        assert evidence["factor"] == pytest.approx(change["factor"], rel=0.15)
        assert evidence["reference_zero_share"] == pytest.approx(0.9, abs=0.01)
