"""Compare like with like on traffic with a daily cycle.

A window of a few hours and a reference of whole days differ on any stream whose inputs
follow the time of day (bigger baskets in the evening), even when nothing changed. When
the reference covers at least a day of event time, driftgate compares each window with
the reference *at the same hours*: the reference's histogram of every hour of the day
(UTC), mixed in the proportions of the window's hours. A change that is not the cycle
still shows: the evening's window is compared with the reference's evenings.

Weekends are told apart from weekdays: the reference's histograms are kept per *slot*, an
hour of a weekday (slots 0-23) or of a weekend day (Saturday and Sunday UTC, slots
24-47). A slot the reference has not seen yet in a scope (a reference of one day holds
one day type for each hour) is compared as the same hour of the other day type.
"""

from __future__ import annotations

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.binning import scope_histograms

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
HOURS = 24
SLOTS = 2 * HOURS  # (day type, hour): weekday hours, then weekend hours
# Hours either side a thin slot may borrow (widen_thin_slots): 7 hours of a cycle at most.
MAX_WIDEN_HOURS = 3
# 1970-01-01 was a Thursday: the Monday before it starts the weeks.
_MONDAY_S = -3 * DAY_S


def hour_of_day(ts: FloatArray) -> IndexArray:
    """The UTC hour (0-23) of each epoch-seconds event time."""
    return np.asarray(np.floor((ts % DAY_S) / 3600.0), dtype=np.intp) % HOURS


def is_weekend(ts: FloatArray) -> BoolArray:
    """Whether each epoch-seconds event time falls on a Saturday or a Sunday (UTC).

    >>> import numpy as np
    >>> is_weekend(np.array([1_763_712_000.0, 1_763_712_000.0 + 86_400.0])).tolist()
    [False, True]
    """
    return np.asarray((ts - _MONDAY_S) % WEEK_S >= 5 * DAY_S, dtype=np.bool_)


def slot_of(ts: FloatArray) -> IndexArray:
    """The slot of each event time: its UTC hour, plus 24 on a weekend.

    >>> import numpy as np
    >>> friday_23h = 1_763_683_200.0 + 23 * 3_600.0  # Friday 2025-11-21, 23:00
    >>> slot_of(np.array([friday_23h, friday_23h + 3_600.0])).tolist()
    [23, 24]
    """
    return hour_of_day(ts) + HOURS * is_weekend(ts).astype(np.intp)


def slot_histograms(
    bins: IndexArray, slots: IndexArray, scopes: IndexArray, n_scopes: int, n_bins: int
) -> IntArray:
    """Counts per (slot, scope, bin); ``scopes`` has one column per scope a row is in.
    (Each slot of each scope is a scope of its own for :func:`scope_histograms`.)"""
    slot_scopes = slots[:, None] * n_scopes + scopes
    counts = scope_histograms(bins, slot_scopes, SLOTS * n_scopes, n_bins)
    return counts.reshape(SLOTS, n_scopes, n_bins)


def unseen_slots(hourly: IntArray) -> BoolArray:
    """(slot, scope): the slots of each scope that ``hourly`` (slot, scope, bin) has no
    events in."""
    return np.asarray(hourly.sum(axis=2) == 0, dtype=np.bool_)


def _other_day_type(hourly: IntArray) -> IntArray:
    """``hourly`` with each unseen slot of a scope filled with the same hour of the other
    day type: a weekday's hour is likelier like a weekend's same hour than like the day."""
    other = np.concatenate([hourly[HOURS:], hourly[:HOURS]])
    return np.where(unseen_slots(hourly)[:, :, None], other, hourly)


def matched_reference(hourly: IntArray, window_hours: IntArray, min_events: int = 0) -> FloatArray:
    """The reference each window scope should look like, as counts.

    ``hourly`` is the reference's (slot, scope, bin) counts for the scopes judged,
    ``window_hours`` those scopes' events per slot in the window. Each scope's reference
    slots are mixed in the window's proportions; a slot unseen in a scope is its other
    day type's same hour, and a thin one is widened (:func:`widen_thin_slots`). The
    mixture is scaled to its effective number of events, ``1 / sum(w_h**2 / n_h)``: the
    evidence the reference really holds about those hours, so that the G-test stays
    calibrated when a small cohort has few reference events in some hour. An hour the
    reference never saw in a scope, on either day type nor within ``MAX_WIDEN_HOURS`` of
    it, counts as that scope's whole-reference histogram.

    >>> import numpy as np
    >>> from detectors.divergence import g_test
    >>> hourly = np.zeros((48, 1, 2), dtype=np.int64)
    >>> hourly[:12, 0] = [90, 10]  # weekday mornings mostly in bin 0,
    >>> hourly[12:24, 0] = [10, 90]  # afternoons mostly in bin 1 (no weekend seen yet)
    >>> morning = np.zeros((1, 48), dtype=np.int64)
    >>> morning[0, :12] = 50
    >>> expected = matched_reference(hourly, morning)
    >>> expected.round(1).tolist()  # 90% / 10% of the 1,200 morning events
    [[1080.0, 120.0]]
    >>> float(g_test(expected, np.array([[540, 60]]))[1][0]) > 0.5  # a usual morning
    True
    >>> float(g_test(expected, np.array([[300, 300]]))[1][0]) < 1e-6  # not a morning
    True
    >>> weekend_morning = np.roll(morning, 24, axis=1)  # compared as a weekday's
    >>> matched_reference(hourly, weekend_morning).round(1).tolist()
    [[1080.0, 120.0]]
    """
    pooled = hourly.sum(axis=0).astype(np.float64)
    needed = np.maximum(min_events, 2 * window_hours.T)  # (slot, scope)
    # Widened with the hours the scope has seen, then an unseen slot borrowed: a seen
    # hour next to an unseen one is not mixed with the other day type's (a first day
    # that began on Friday 08:00 made Sunday 07:00 half Friday 08:00's).
    unseen = unseen_slots(hourly)
    widened = widen_thin_slots(hourly, np.where(unseen, 0, needed))
    counts = _other_day_type(widened).astype(np.float64)
    pooled_n = pooled.sum(axis=1)
    per_hour = counts.sum(axis=2)  # (hour, scope)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled_p = pooled / pooled_n[:, None]
        hour_p = counts / per_hour[:, :, None]
        weights = window_hours / window_hours.sum(axis=1, keepdims=True)
    seen = per_hour > 0
    hour_p = np.where(seen[:, :, None], hour_p, pooled_p[None])
    hour_n = np.where(seen, per_hour, pooled_n[None, :])
    weights = np.nan_to_num(weights)
    mixed = np.einsum("sh,hsb->sb", weights, np.nan_to_num(hour_p))
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(weights > 0, weights**2 / hour_n.T, 0.0).sum(axis=1)
        effective = np.where(spread > 0, 1.0 / spread, 0.0)
    return np.asarray(mixed * effective[:, None], dtype=np.float64)


def widen_thin_slots(hourly: IntArray, needed: IntArray) -> IntArray:
    """``hourly`` (slot, scope, bin) with each slot of a scope holding fewer than
    ``needed`` (slot, scope) events replaced by the sum of it and its neighbouring hours
    of the same day type, one more hour either side at a time (up to ``MAX_WIDEN_HOURS``)
    until they hold that many.

    A slot's reference is one sample, judged against every window of its hour: a small
    cohort's slot holds a few dozen events of the first week's sample, and where that
    sample happens to be off, every window of that hour is "drifted" against it, so that
    persisting over windows is no evidence (a `region=ca` of 7% of 5 events/s: 72
    reference events, three windows of ~250 at p < 0.001 on a Monday, and nothing
    changed). Twice the window's events in the reference keeps the windows' tests from
    all repeating its error. Neighbouring hours of a daily cycle lie either side of the
    hour, so their mean is the hour's to first order.

    >>> import numpy as np
    >>> hourly = np.zeros((48, 1, 2), dtype=np.int64)
    >>> hourly[:24, 0] = [50, 50]
    >>> hourly[5, 0] = [10, 0]  # one thin, lopsided hour
    >>> needed = np.full((48, 1), 100)
    >>> widen_thin_slots(hourly, needed)[5, 0].tolist()  # with hours 4 and 6
    [110, 100]
    >>> widen_thin_slots(hourly, needed)[6, 0].tolist()  # held enough already
    [50, 50]
    """
    widened = hourly
    by_type = hourly.reshape(2, HOURS, *hourly.shape[1:])
    total = by_type.copy()
    for k in range(1, MAX_WIDEN_HOURS + 1):
        thin = (widened.sum(axis=2) < needed)[:, :, None]
        if not thin.any():
            break
        total = total + np.roll(by_type, k, axis=1) + np.roll(by_type, -k, axis=1)
        widened = np.where(thin, total.reshape(hourly.shape), widened)
    return np.asarray(widened, dtype=hourly.dtype)
