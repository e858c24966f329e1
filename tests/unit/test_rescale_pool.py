"""The pooled rescale factor: the conversion table and its snap, the interval, the pool,
and a unit change in a small cohort through the monitor.

Expected values are literals of the conversions (1.609344 km per mile, ...) and textbook
variances of sample medians, never the modules' own output.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.batch import PredictionBatch
from detectors.monitor import ModelMonitor, MonitorConfig
from detectors.upstream.conversions import CONVERSIONS, SCALES, snap
from detectors.upstream.interval import factor_interval
from detectors.upstream.pool import RescalePool
from tests.support import feed

PROBS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
KM_TO_MI = 1 / 1.609344

# --- the conversion table -------------------------------------------------------------------


def test_the_table_holds_the_common_conversions_exactly() -> None:
    table = {c.name: (c.factor, c.offset) for c in CONVERSIONS}
    assert table["km_to_mi"][0] == pytest.approx(0.621371, rel=1e-6)
    assert table["mi_to_km"] == (1.609344, 0.0)
    assert table["kg_to_lb"][0] == pytest.approx(2.20462, rel=1e-5)
    assert table["lb_to_kg"] == (0.45359237, 0.0)
    assert table["ft_to_m"] == (0.3048, 0.0) and table["in_to_cm"] == (2.54, 0.0)
    assert table["fraction_to_percent"] == (100.0, 0.0)
    assert table["percent_to_fraction"] == (0.01, 0.0)
    for name, factor in [("min_to_s", 60), ("h_to_s", 3_600), ("d_to_s", 86_400)]:
        assert table[name] == (factor, 0.0)
    assert table["kib_to_bytes"] == (1_024, 0.0)
    assert {10.0**k for k in range(-6, 7)} <= set(SCALES.tolist())
    # Celsius to Fahrenheit and back: 100 C is 212 F, -40 is -40
    c_to_f, f_to_c = table["c_to_f"], table["f_to_c"]
    assert 100 * c_to_f[0] + c_to_f[1] == pytest.approx(212.0)
    assert -40 * f_to_c[0] + f_to_c[1] == pytest.approx(-40.0)
    assert len(table) == len(CONVERSIONS)  # one name each


@pytest.mark.parametrize("conversion", [c for c in CONVERSIONS if c.offset == 0 and c.factor > 0])
def test_every_pure_conversion_snaps_from_a_tight_interval(conversion) -> None:
    f = conversion.factor * 1.004
    found = snap(f, (f * 0.99, f * 1.01))
    assert found is not None and found.name == conversion.name
    assert found.factor == conversion.factor and found.others == ()


@pytest.mark.parametrize(
    ("factor", "interval", "name"),
    [
        (0.60, (0.52, 0.69), "km_to_mi"),  # wide but holding 0.621371 and nothing else
        (0.60, (0.58, 0.62), None),  # 0.621371 just outside
        (0.64, (0.6214, 0.66), None),
        (0.64, (0.6213, 0.66), "km_to_mi"),
        (1.5, (1.4, 1.6), None),  # 1.609344 outside: no snap
        (-0.63, (-0.7, -0.55), "sign_flip+km_to_mi"),
        (-1.02, (-1.1, -0.95), "sign_flip"),
        (1.02, (0.95, 1.1), None),  # +1 is no conversion
        (0.63, (-0.1, 1.2), None),  # an interval across zero says nothing
    ],
)
def test_snap_only_when_the_interval_holds_the_conversion(factor, interval, name) -> None:
    found = snap(factor, interval)
    assert (found.name if found else None) == name


def test_an_interval_holding_two_conversions_names_both_nearest_first() -> None:
    found = snap(1_020.0, (950.0, 1_100.0))
    assert found is not None
    assert (found.name, found.others) == ("kib_to_bytes", ("x1e+3",))


def test_affine_conversions_need_an_offset_that_fits() -> None:
    assert snap(1.8, (1.75, 1.85), (30.0, 34.0)).name == "c_to_f"
    assert snap(0.55, (0.5, 0.6), (-19.0, -16.0)).name == "f_to_c"
    assert snap(1.8, (1.75, 1.85), (40.0, 44.0)) is None  # an offset, but not 32
    assert snap(1.8, (1.75, 1.85)) is None  # a pure scale of 1.8 is no conversion


# --- the interval ---------------------------------------------------------------------------


def _pure_interval(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float, float]:
    r, c = np.quantile(ref, PROBS), np.quantile(cur, PROBS)
    factor = float(np.median(c / r))
    i = factor_interval([r], [ref.size], [c], [cur.size], PROBS, [factor], [0.0])
    return float(i.low[0]), float(i.high[0]), float(i.log_se[0])


def test_the_interval_has_the_width_of_the_log_ratio_of_medians() -> None:
    """Lognormal(s): the log of a sample median has variance (pi / 2) s^2 / n."""
    rng = np.random.default_rng(4)
    s, n, m = 0.8, 1_200, 750
    expected = math.sqrt(math.pi / 2) * s * math.sqrt(1 / n + 1 / m)
    ses = [_pure_interval(rng.lognormal(3, s, n), rng.lognormal(3, s, m))[2] for _ in range(50)]
    # the density between the quartiles is an average, below the peak: a little wider
    assert expected <= float(np.median(ses)) <= 1.3 * expected


def test_the_99_percent_interval_holds_the_true_factor_nearly_always() -> None:
    rng = np.random.default_rng(5)
    held = []
    for _ in range(300):
        low, high, _ = _pure_interval(
            rng.lognormal(3, 0.8, 1_200), rng.lognormal(3, 0.8, 500) * KM_TO_MI
        )
        held.append(low <= KM_TO_MI <= high)
    assert float(np.mean(held)) >= 0.97


def test_an_affine_interval_holds_the_factor_and_offset_of_celsius_to_fahrenheit() -> None:
    rng = np.random.default_rng(6)
    ref = rng.normal(20, 5, 2_000)
    cur = rng.normal(20, 5, 2_000) * 1.8 + 32
    r, c = np.quantile(ref, PROBS), np.quantile(cur, PROBS)
    slope = (c[4] - c[2]) / (r[4] - r[2])
    offset = float(np.median(c - slope * r))
    i = factor_interval([r], [2_000], [c], [2_000], PROBS, [slope], [offset])
    assert i.low[0] <= 1.8 <= i.high[0]
    assert i.offset_low[0] <= 32.0 <= i.offset_high[0]
    found = snap(slope, (i.low[0], i.high[0]), (i.offset_low[0], i.offset_high[0]))
    assert found is not None and found.name == "c_to_f"


def test_the_interval_needs_the_quartiles_and_their_neighbours() -> None:
    with pytest.raises(ValueError, match=r"probs must hold 0\.5"):
        factor_interval([[1, 2, 3]], [10], [[1, 2, 3]], [10], [0.1, 0.25, 0.75], [1.0], [0.0])


# --- the pool -------------------------------------------------------------------------------


def test_pooling_windows_narrows_the_interval() -> None:
    rng = np.random.default_rng(7)
    ref = rng.lognormal(3, 0.8, 1_200)
    r = np.quantile(ref, PROBS)
    pool = RescalePool(n_scopes=1)
    scope = np.array([0])
    widths = []
    for _ in range(8):
        window = rng.lognormal(3, 0.8, 250) * KM_TO_MI
        pool.add(window, np.zeros(250, dtype=np.intp), scope)
        c = pool.quantiles(scope, PROBS)
        factor = np.median(c / r, axis=1)
        i = factor_interval([r], [1_200], c, pool.counts(scope), PROBS, factor, [0.0])
        widths.append(float(np.log(i.high[0] / i.low[0])))
    # one window against eight: the current side's variance is 8x smaller
    assert widths[-1] < 0.75 * widths[0]
    assert all(b < a for a, b in itertools.pairwise(widths))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_the_pool_does_not_depend_on_how_a_window_was_cut(cuts: list[int]) -> None:
    rng = np.random.default_rng(8)
    values = np.round(rng.lognormal(3, 0.8, 600), 1)
    values[::7] = 0.0
    scopes = rng.integers(0, 2, 600).astype(np.intp)
    whole, parts = RescalePool(2), RescalePool(2)
    whole.add(values, scopes, np.array([0, 1]))
    bounds = [0, *sorted(cuts), 600]
    for a, b in itertools.pairwise(bounds):
        parts.add(values[a:b], scopes[a:b], np.array([0, 1]))
    for nonzero in (False, True):
        np.testing.assert_array_equal(
            whole.quantiles(np.array([0, 1]), PROBS, nonzero),
            parts.quantiles(np.array([0, 1]), PROBS, nonzero),
        )
        np.testing.assert_array_equal(
            whole.counts(np.array([0, 1]), nonzero), parts.counts(np.array([0, 1]), nonzero)
        )


# --- through the monitor --------------------------------------------------------------------

SMALL = MonitorConfig(
    reference_events=4_000, window_events=600, min_window_events=150, min_reference_events=100
)
N = 4_000 + 24 * 600
ONSET = 4_000 + 6 * 600


@functools.lru_cache(maxsize=1)
def small_cohort_stream() -> PredictionBatch:
    """A distance served in miles from ONSET on in "latam", 14% of the traffic: ~85
    events a window, judged every second window on the rows carried over."""
    rng = np.random.default_rng(9)
    region = rng.choice(["eu", "us", "latam"], size=N, p=[0.46, 0.4, 0.14])
    distance = rng.lognormal(2.0, 0.8, N) + np.where(region == "us", 3.0, 0.0)
    moved = (np.arange(N) >= ONSET) & (region == "latam")
    distance = np.where(moved, distance * KM_TO_MI, distance)
    return PredictionBatch(
        ts=1_700_000_000.0 + np.arange(N, dtype=float),
        score=rng.beta(2, 5, N),
        model_version=["v1"] * N,
        cohorts={"region": region.tolist()},
        features={"distance": np.round(distance, 4).tolist(), "age": rng.normal(40, 9, N).tolist()},
    )


@functools.lru_cache(maxsize=1)
def whole_stream_decisions() -> list[dict]:
    return [d.to_dict() for d in ModelMonitor("m", SMALL).update(small_cohort_stream())]


def test_a_unit_change_in_a_cohort_under_a_window_is_one_rescaled_signal() -> None:
    decisions = whole_stream_decisions()
    acted = [d for d in decisions if d["action"] != "hold"]
    assert [(d["action"], d["cause"], d["scope"]["cohort"]) for d in acted] == [
        ("fix_upstream", "rescaled_signal", {"region": "latam"})
    ]
    evidence = acted[0]["evidence"]
    assert evidence["conversion"] == "km_to_mi"
    low, high = evidence["factor_interval"]
    assert low <= KM_TO_MI <= high and low <= evidence["factor"] <= high
    assert evidence["pooled_windows"] >= SMALL.persistence_windows


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=N), max_size=12))
def test_batch_cuts_do_not_change_the_pooled_factor(cuts: list[int]) -> None:
    decisions = feed(ModelMonitor("m", SMALL), small_cohort_stream(), cuts)
    assert [d.to_dict() for d in decisions] == whole_stream_decisions()
