"""Upstream faults that must not be mistaken for drift: frozen, rescaled and renamed signals.

Everything is columnar: one row (or one array entry) per scope, a scope being the whole
population or one cohort value, so one call judges every scope of a feature.  Pure numpy/scipy:
no I/O, no clock.  The engine summarises each window per scope with
:func:`detectors.segments.segment_stats`, and :mod:`detectors.signal_health` turns those
summaries into :class:`ScopeStats`.

**Frozen signals** (:class:`FrozenCheck` on :class:`ScopeStats`).  A scope is frozen when its
current window is

* ``constant``: at most one distinct non-null value (or a variance collapsed to zero) while the
  reference was a varied signal: at least ``min_ref_distinct`` distinct values, a positive
  variance and no dominant value (reference collision ``sum(share**2)`` at most
  ``max_ref_collision``, when known).  Under the reference marginal a window of ``n`` equal
  values has probability at most ``collision ** ((n - 1) / 2)``, ~1e-15 at n=100.
* ``stuck``: consecutive values repeat far more often than chance (a sample-and-hold feed, a
  stale cache): a repeat rate of at least ``min_repeat_rate``, a one-sided binomial test of
  the current repeats against ``p0 = max(reference repeat rate, current collision)`` at
  ``alpha``, an effect floor on the excess repeats ``(rate - p0) / (1 - p0)`` (Cohen's kappa
  for consecutive values) and a reference repeat rate of at most ``max_ref_repeat_rate``.
  Flags, small counts and other low-cardinality features repeat a lot in the reference too
  (Bernoulli(0.3): 0.58, Poisson(0.3): 0.60), so they are never called stuck; the current
  collision (the window's ``sum(share**2)``, or the sum of squared bin shares of its
  histogram, :func:`histogram_collision`, an upper bound of it) is the repeat rate that
  independent values would show, so values concentrating on one category or on zero (drift)
  are not called stuck.
* ``null_spike``: the null rate jumps (same style of test, with an absolute effect floor).

**Rescaled signals** (:class:`RescaleCheck` on quantiles).  Fits ``cur = a * ref + b`` on the
quantile pairs (both orientations, since a sign flip maps the reference ``q_p`` to the current
``q_{1-p}``; pure scale ``b = 0`` is preferred when it fits as well), then measures the *shape
distance*: the largest gap, in probability, between the target level of each un-rescaled
current quantile and the level where the reference quantile function (linear between the
given quantiles) reaches it.  It is a Kolmogorov-type distance on the quantile grid: scale
free, in [0, 1], and its sampling noise does not depend on the distribution (about
``sqrt(p (1 - p) (1/n + 1/m))`` per quantile), whereas gaps divided by the reference IQR are
dominated by tail noise on skewed features (~0.5 IQR at the 95th percentile of a
lognormal(0, 1) with 500 events).

**Renamed features** (:func:`match_renamed`, :func:`match_renamed_categorical`): pairs a feature
that went missing with a new feature name whose distribution matches (same distance, no
rescale; total variation for categories).

One module each: :mod:`~detectors.upstream.scope_stats` (the window summaries),
:mod:`~detectors.upstream.frozen`, :mod:`~detectors.upstream.quantiles` (the shape
distance), :mod:`~detectors.upstream.rescale`, :mod:`~detectors.upstream.pool` (the
windows of a condition pooled, so a small cohort's factor is measured on all of them),
:mod:`~detectors.upstream.interval` (the factor's confidence interval),
:mod:`~detectors.upstream.conversions` (the table of common conversions a factor snaps
to) and :mod:`~detectors.upstream.rename`.
"""

from __future__ import annotations

from detectors.upstream.frozen import FrozenCheck, FrozenVerdict
from detectors.upstream.quantiles import quantile_distance
from detectors.upstream.rename import match_renamed, match_renamed_categorical
from detectors.upstream.rescale import RescaleCheck, RescaleVerdict, nearest_unit
from detectors.upstream.scope_stats import ScopeStats, histogram_collision

__all__ = [
    "FrozenCheck",
    "FrozenVerdict",
    "RescaleCheck",
    "RescaleVerdict",
    "ScopeStats",
    "histogram_collision",
    "match_renamed",
    "match_renamed_categorical",
    "nearest_unit",
    "quantile_distance",
]
