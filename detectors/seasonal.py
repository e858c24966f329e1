"""Compare like with like on traffic with a daily cycle.

A window of a few hours and a reference of whole days differ on any stream whose inputs
follow the time of day (bigger baskets in the evening), even when nothing changed. When
the reference covers at least a day of event time, driftgate compares each window with
the reference *at the same hours*: the reference's histogram of every hour of the day
(UTC), mixed in the proportions of the window's hours. A change that is not the cycle
still shows: the evening's window is compared with the reference's evenings.
"""

from __future__ import annotations

import numpy as np

from detectors.arrays import FloatArray, IndexArray, IntArray
from detectors.binning import scope_histograms

DAY_S = 86_400.0
HOURS = 24


def hour_of_day(ts: FloatArray) -> IndexArray:
    """The UTC hour (0-23) of each epoch-seconds event time."""
    return np.asarray(np.floor((ts % DAY_S) / 3600.0), dtype=np.intp) % HOURS


def hourly_histograms(
    bins: IndexArray, hours: IndexArray, scopes: IndexArray, n_scopes: int, n_bins: int
) -> IntArray:
    """Counts per (hour, scope, bin); ``scopes`` has one column per scope a row is in.
    (Each hour of each scope is a scope of its own for :func:`scope_histograms`.)"""
    hour_scopes = hours[:, None] * n_scopes + scopes
    counts = scope_histograms(bins, hour_scopes, HOURS * n_scopes, n_bins)
    return counts.reshape(HOURS, n_scopes, n_bins)


def matched_reference(hourly: IntArray, window_hours: IntArray) -> FloatArray:
    """The reference each window scope should look like, as counts.

    ``hourly`` is the reference's (hour, scope, bin) counts for the scopes judged,
    ``window_hours`` those scopes' events per hour in the window. Each scope's reference
    hours are mixed in the window's proportions. The mixture is scaled to its effective
    number of events, ``1 / sum(w_h**2 / n_h)``: the evidence the reference really holds
    about those hours, so that the G-test stays calibrated when a small cohort has few
    reference events in some hour. An hour the reference never saw in a scope counts as
    that scope's whole-day histogram.

    >>> import numpy as np
    >>> from detectors.divergence import g_test
    >>> hourly = np.zeros((24, 1, 2), dtype=np.int64)
    >>> hourly[:12, 0] = [90, 10]  # mornings mostly in bin 0,
    >>> hourly[12:, 0] = [10, 90]  # afternoons mostly in bin 1
    >>> morning = np.zeros((1, 24), dtype=np.int64)
    >>> morning[0, :12] = 50
    >>> expected = matched_reference(hourly, morning)
    >>> expected.round(1).tolist()  # 90% / 10% of the 1,200 morning events
    [[1080.0, 120.0]]
    >>> float(g_test(expected, np.array([[540, 60]]))[1][0]) > 0.5  # a usual morning
    True
    >>> float(g_test(expected, np.array([[300, 300]]))[1][0]) < 1e-6  # not a morning
    True
    """
    counts = hourly.astype(np.float64)
    pooled = counts.sum(axis=0)
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
