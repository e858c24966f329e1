"""The reference a window of a seasonal feature is compared with (detectors/seasonal.py):
its own hours, widened where a scope's hour holds too few events to judge by."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from detectors.divergence import g_test
from detectors.seasonal import HOURS, SLOTS, matched_reference, widen_thin_slots

UNIFORM = [100] * 10


def _reference() -> np.ndarray:
    hourly = np.zeros((SLOTS, 1, 10), dtype=np.int64)
    hourly[:, 0] = UNIFORM
    return hourly


def _window_in(slot: int, events: int) -> np.ndarray:
    window = np.zeros((1, SLOTS), dtype=np.int64)
    window[0, slot] = events
    return window


def test_a_thin_lopsided_hour_is_judged_with_its_neighbours():
    # A small cohort's hour 5 holds 70 events of the sample, none in the top three bins
    # (what an unlucky sample of 70 can be); a usual window of 250 events at that hour
    # is not a drift, as every other hour of the reference says.
    hourly = _reference()
    hourly[5, 0] = [10] * 7 + [0] * 3
    expected = matched_reference(hourly, _window_in(5, 250), min_events=200)
    assert g_test(expected, np.array([[25.0] * 10]))[1][0] > 0.01
    # alone, that hour would call the usual window a drift
    assert g_test(hourly[5].astype(float), np.array([[25.0] * 10]))[1][0] < 1e-4


def test_an_hour_holding_enough_is_its_own_reference():
    hourly = _reference()
    hourly[5, 0] = [300] * 5 + [100] * 5  # the cycle's own shape at that hour
    expected = matched_reference(hourly, _window_in(5, 250), min_events=200)
    assert np.allclose(expected[0] / expected[0].sum(), hourly[5, 0] / hourly[5, 0].sum())


def test_widening_stays_within_the_day_type():
    hourly = _reference()
    hourly[HOURS:, 0] = [0] * 9 + [100]  # weekends all in the last bin
    hourly[0, 0] = [1] * 10  # a thin weekday midnight
    widened = widen_thin_slots(hourly, np.full((SLOTS, 1), 5_000))
    assert widened[0, 0, :9].sum() > 0 and widened[0, 0, 9] < widened[0, 0, :9].sum()
    # borrowed from weekday hours 21-23 and 1-3 (around midnight), not from Saturday's
    assert widened[0, 0].tolist() == [1 + 600] * 10


@given(
    counts=st.lists(st.integers(0, 50), min_size=SLOTS * 3, max_size=SLOTS * 3),
    needed=st.integers(0, 400),
)
def test_widening_only_adds_and_keeps_what_held_enough(counts, needed):
    hourly = np.array(counts, dtype=np.int64).reshape(SLOTS, 1, 3)
    widened = widen_thin_slots(hourly, np.full((SLOTS, 1), needed))
    assert (widened >= hourly).all()
    held = hourly.sum(axis=2) >= needed
    assert (widened[held] == hourly[held]).all()


def test_a_thin_hour_next_to_an_unseen_one_is_widened_with_its_own_day_type_only():
    # A first day from Friday 08:00: weekday hours 8-23 and weekend hours 0-7 seen, the
    # weekend in the last bin. Sunday 07:00's window, thinner in the reference than the
    # window needs, is widened with weekend hours 4-6; not with weekend hour 8, unseen,
    # which the other day type (Friday 08:00) would stand in for.
    hourly = np.zeros((SLOTS, 1, 10), dtype=np.int64)
    hourly[8:HOURS, 0] = UNIFORM
    hourly[HOURS : HOURS + 8, 0] = [0] * 9 + [100]
    expected = matched_reference(hourly, _window_in(HOURS + 7, 250), min_events=200)
    assert expected[0, :9].sum() == 0 and expected[0, 9] > 0
    # An unseen hour still stands in for the other day type's: Saturday 08:00 as Friday's.
    unseen = matched_reference(hourly, _window_in(HOURS + 8, 250), min_events=200)
    assert np.allclose(unseen[0] / unseen[0].sum(), 0.1)
