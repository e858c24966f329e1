"""The first day's sample: bounded, even over each hour, independent of the batch cuts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.day_sample import DaySample, has_cycle
from detectors.seasonal import DAY_S


def _day(rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(0.0, DAY_S, int(rate * DAY_S)))
    rows = np.stack([np.zeros(len(ts), np.intp), rng.integers(1, 3, len(ts))], axis=1)
    bins = {"amount": rng.integers(0, 5, len(ts)).astype(np.intp)}
    return ts, rows, bins


def _sample(cuts: list[int], ts, rows, bins, cap: int = 50) -> DaySample:
    sample = DaySample(start_ts=0.0, cap_per_hour=cap, n_scopes=3, features=["amount"])
    edges = [0, *sorted(set(cuts)), len(ts)]
    for a, b in itertools.pairwise(edges):
        sample.add(ts[a:b], rows[a:b], {k: v[a:b] for k, v in bins.items()})
    return sample


def test_each_hour_keeps_between_half_its_cap_and_its_cap_whatever_the_rate():
    for rate in (0.2, 2.0, 20.0):
        ts, rows, bins = _day(rate)
        per_hour = _sample([], ts, rows, bins).rows_per_hour()
        seen = np.bincount((ts // 3600).astype(int), minlength=24)
        assert (per_hour <= 50).all()
        assert (per_hour >= np.minimum(seen, 25)).all(), (rate, per_hour, seen)


def test_the_sample_of_an_hour_spreads_over_the_whole_hour():
    ts = np.arange(0.0, 3600.0, 0.1)  # 36,000 rows in hour 0
    rows = np.zeros((len(ts), 1), np.intp)
    bins = {"amount": (ts // 900).astype(np.intp)}  # one bin per quarter hour
    sample = DaySample(start_ts=0.0, cap_per_hour=100, n_scopes=1, features=["amount"])
    sample.add(ts, rows, bins)
    quarters = sample.hourly("amount", 4)[0, 0]
    assert quarters.sum() > 50
    assert quarters.max() - quarters.min() <= 1


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 17_280), max_size=8))
def test_the_sample_does_not_depend_on_the_batch_cuts(cuts):
    ts, rows, bins = _day(0.2, seed=4)
    whole = _sample([], ts, rows, bins)
    cut = _sample(cuts, ts, rows, bins)
    assert np.array_equal(whole.hourly("amount", 5), cut.hourly("amount", 5))


def test_rows_past_the_day_complete_it_and_are_not_sampled():
    sample = DaySample(start_ts=100.0, cap_per_hour=10, n_scopes=1, features=["x"])
    one = np.zeros((2, 1), np.intp)
    sample.add(np.array([200.0, 100.0 + DAY_S]), one, {"x": one[:, 0]})
    assert sample.complete and sample.remaining_s == 0.0
    assert sample.rows_per_hour().sum() == 1


def test_invalid_arguments_are_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match="cap_per_hour must be >= 2"):
        DaySample(start_ts=0.0, cap_per_hour=1, n_scopes=1, features=[])
    with pytest.raises(ValueError, match="start_ts must be a finite"):
        DaySample(start_ts=float("nan"), cap_per_hour=10, n_scopes=1, features=[])


def test_a_flat_day_has_no_cycle_and_an_evening_peak_has_one():
    rng = np.random.default_rng(1)
    flat = rng.multinomial(1_000, [0.2] * 5, size=24)[:, None, :]
    assert not has_cycle(flat, 0.2, 0.001, 200)
    evening = flat.copy()
    evening[17:21, 0] = rng.multinomial(1_000, [0.05, 0.05, 0.2, 0.3, 0.4], size=4)
    assert has_cycle(evening, 0.2, 0.001, 200)
    # Hours with too few rows say nothing.
    assert not has_cycle(evening // 100, 0.2, 0.001, 200)
