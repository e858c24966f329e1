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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import bdtrc

from detectors.arrays import BoolArray, FloatArray, IntArray
from detectors.validation import check_int

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


# A variance this many times smaller than the reference's counts as zero (float rounding of
# a constant column, e.g. in a merged sketch, is ~1e-32 relative).
_VARIANCE_COLLAPSE = 1e-12


def _squared_level(values: NDArray[Any]) -> FloatArray:
    """The square of each scope's window value (a constant column's rounding noise
    scales with it); infinite where unknown or not a number, which then limits nothing."""
    try:
        level = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.full(len(values), np.inf)
    with np.errstate(over="ignore"):
        return np.asarray(np.nan_to_num(level * level, nan=np.inf), dtype=np.float64)


# Probability levels within this of the outermost given level count as inside the grid.
_LEVEL_EPS = 1e-9

_UNIT_BASES = (2.54, 0.3048, 1.609, 3.6, 60.0, 3600.0)
_UNITS: FloatArray = np.unique(
    np.array(
        [10.0**k for k in range(-6, 7)] + list(_UNIT_BASES) + [1.0 / u for u in _UNIT_BASES],
        dtype=np.float64,
    )
)


# -- validation helpers ------------------------------------------------------------------------


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


def _check_unit_interval(name: str, value: object, *, open_low: bool = True) -> float:
    ok = _is_number(value) and math.isfinite(float(value))  # type: ignore[arg-type]
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (0.0 < v <= 1.0) if open_low else (0.0 <= v <= 1.0)
    if not ok:
        allowed = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _check_positive(name: str, value: object) -> float:
    if not (_is_number(value) and math.isfinite(float(value)) and float(value) > 0):  # type: ignore[arg-type]
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _ratio(num: ArrayLike, den: ArrayLike) -> FloatArray:
    n = np.asarray(num, dtype=np.float64)
    d = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(n, d).shape, np.nan)
    np.divide(n, d, out=out, where=d > 0)
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# -- 1. frozen signals -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScopeStats:
    """One window's summary of one feature, one entry per scope.

    ``events`` rows (nulls included), ``nulls``, ``distinct`` non-null values (a capped count is
    fine: only ``<= 1`` and ``>= min_ref_distinct`` matter), ``variance`` (NaN when the feature
    is not numeric), ``repeats``/``pairs`` (consecutive values of the scope that are equal, out
    of the consecutive pairs, as :func:`detectors.segments.segment_stats` counts them),
    ``last_value`` (a non-null value of the window, e.g. the last one or the minimum: the frozen
    value of a constant window; float or object array) and optionally ``collision``: the
    probability that two random non-null values of the window are equal, ``sum(share**2)``, or
    any upper bound of it such as the sum of squared bin shares of the window's histogram
    (NaN = unknown).

    >>> import numpy as np
    >>> from detectors.segments import segment_stats
    >>> rng = np.random.default_rng(1)
    >>> values = np.r_[rng.normal(size=500), np.full(500, 3.5)]
    >>> seg = segment_stats(values, np.repeat([0, 1], 500), n_scopes=2)
    >>> s = ScopeStats(
    ...     events=seg.events,
    ...     nulls=seg.nulls,
    ...     distinct=np.where(seg.constant, 1, np.minimum(seg.events - seg.nulls, 2)),
    ...     variance=seg.variance,
    ...     repeats=seg.repeats,
    ...     pairs=seg.pairs,
    ...     last_value=seg.minimum,
    ... )
    >>> s.distinct.tolist()  # capped: 2 reads "more than one value"
    [2, 1]
    >>> s.repeat_rate.tolist(), s.variance.round(1).tolist()
    ([0.0, 1.0], [0.8, 0.0])
    """

    events: IntArray
    nulls: IntArray
    distinct: IntArray
    variance: FloatArray
    repeats: IntArray
    pairs: IntArray
    last_value: NDArray[Any]
    collision: FloatArray | None = None

    def __post_init__(self) -> None:
        n = np.asarray(self.events).shape
        if len(n) != 1:
            raise ValueError(f"events must be a 1-D array, got shape {n}")
        for name in ("events", "nulls", "distinct", "repeats", "pairs"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != n or (arr.size and arr.dtype.kind not in "iu"):
                raise ValueError(f"{name} must be an int array of shape {n}")
            if arr.size and arr.min() < 0:
                raise ValueError(f"{name} must be >= 0")
            object.__setattr__(self, name, arr.astype(np.int64))
        if np.any(self.nulls > self.events):
            raise ValueError("nulls must be <= events")
        if np.any(self.repeats > self.pairs):
            raise ValueError("repeats must be <= pairs")
        variance = np.asarray(self.variance, dtype=np.float64)
        if variance.shape != n:
            raise ValueError(f"variance must be a float array of shape {n}")
        object.__setattr__(self, "variance", variance)
        last = np.asarray(self.last_value)
        if last.shape != n:
            raise ValueError(f"last_value must be an array of shape {n}")
        object.__setattr__(self, "last_value", last)
        if self.collision is not None:
            coll = np.asarray(self.collision, dtype=np.float64)
            if coll.shape != n:
                raise ValueError(f"collision must be None or a float array of shape {n}")
            object.__setattr__(self, "collision", coll)

    @property
    def n_scopes(self) -> int:
        return int(self.events.shape[0])

    @property
    def null_rate(self) -> FloatArray:
        return _ratio(self.nulls, self.events)

    @property
    def repeat_rate(self) -> FloatArray:
        return _ratio(self.repeats, self.pairs)


def histogram_collision(counts: ArrayLike, null_bin: int | None = -1) -> FloatArray:
    """``sum(share**2)`` of each scope's histogram row, leaving out the null bin (the engine's
    bins put it last).  An upper bound of the exact-value collision for :class:`ScopeStats`.

    >>> import numpy as np
    >>> histogram_collision(np.array([[50, 50, 0, 7], [100, 0, 0, 0], [0, 0, 0, 9]])).tolist()
    [0.5, 1.0, nan]
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"counts must be a (n_scopes, n_bins) array, got shape {c.shape}")
    if null_bin is not None:
        c = np.delete(c, null_bin, axis=1)
    total = c.sum(axis=1, keepdims=True)
    shares = _ratio(c, np.broadcast_to(total, c.shape))
    return np.asarray(np.sum(shares**2, axis=1), dtype=np.float64)


def _jeffreys(k: IntArray, n: IntArray) -> FloatArray:
    return np.asarray((k + 0.5) / (n + 1.0), dtype=np.float64)


def _binom_sf(k: IntArray, n: IntArray, p: FloatArray) -> FloatArray:
    """P(X >= k) for X ~ Binomial(n, p)."""
    p = np.clip(np.nan_to_num(p, nan=1.0), 0.0, 1.0)
    # scipy.special's ufunc, not scipy.stats.binom: the same tail without the ~100 µs of
    # argument handling per call, which dominated a window close.
    with np.errstate(invalid="ignore"):
        tail = bdtrc(k - 1, n, p)
    tail = np.where(k > n, 0.0, np.nan_to_num(tail, nan=0.0))
    return np.asarray(np.where(k <= 0, 1.0, tail), dtype=np.float64)


@dataclass(frozen=True)
class FrozenVerdict:
    """Per scope: ``frozen``, its ``kind`` (``"constant"``, ``"stuck"``, ``"null_spike"`` or
    ``""``), the rates and p-values behind it and a JSON-friendly ``evidence`` dict (the frozen
    value when constant, reference distinct count and variance, reference vs current repeat and
    null rates, ``checks``: every check that fired).

    >>> import numpy as np
    >>> from detectors.segments import segment_stats
    >>> def summary(x):  # one scope, exact distinct count
    ...     s = segment_stats(x, np.zeros(x.size, dtype=np.intp), n_scopes=1)
    ...     distinct = np.array([np.unique(x[~np.isnan(x)]).size])
    ...     return ScopeStats(s.events, s.nulls, distinct, s.variance, s.repeats, s.pairs,
    ...                       last_value=s.minimum)
    >>> rng = np.random.default_rng(2)
    >>> ref = summary(rng.normal(size=1_000))
    >>> x = rng.normal(size=1_000)
    >>> x[rng.random(1_000) < 0.6] = np.nan  # 60% of the events lose the field
    >>> v = FrozenCheck().judge(ref, summary(x))
    >>> v.kind, v.evidence[0]["ref_null_rate"], round(v.evidence[0]["cur_null_rate"], 2)
    (('null_spike',), 0.0, 0.58)
    """

    frozen: BoolArray
    kind: tuple[str, ...]
    ref_repeat_rate: FloatArray
    cur_repeat_rate: FloatArray
    repeat_pvalue: FloatArray
    ref_null_rate: FloatArray
    cur_null_rate: FloatArray
    null_pvalue: FloatArray
    evidence: tuple[dict[str, Any], ...]

    def part(self, start: int, stop: int) -> FrozenVerdict:
        """The verdict of scopes ``start`` to ``stop`` (one feature of a stacked judge)."""
        return FrozenVerdict(
            **{f.name: getattr(self, f.name)[start:stop] for f in fields(FrozenVerdict)}
        )


class FrozenCheck:
    """Tells frozen, stuck and null-spiking scopes apart from drift (see the module docstring).

    Defaults: ``min_events=100`` events in both windows; ``min_ref_distinct=5`` distinct
    reference values and ``max_ref_collision=0.5`` for ``constant`` (a flag, a small count or
    a feature dominated by one value that collapses onto a single value is drift, not a
    frozen feed; set 1.0 to disable); ``alpha=1e-6`` for the binomial tests (thousands of
    feature x scope x window tests a day); for ``stuck``: ``min_repeat_rate=0.8`` (a
    90%-repeat feed stays above it at 100 events), ``min_excess_repeats=0.3`` (at least 30%
    of the pairs that could differ by chance repeat instead) and ``max_ref_repeat_rate=0.5``
    (flags and small counts repeat 0.55-0.6 of the time); for ``null_spike``:
    ``min_null_increase=0.3`` (absolute) and ``max_ref_null_rate=0.5``.

    >>> import numpy as np
    >>> from detectors.segments import segment_stats
    >>> def summary(x, scopes, n):  # exact distinct counts per scope
    ...     s = segment_stats(x, scopes, n)
    ...     distinct = np.array([np.unique(x[(scopes == k) & ~np.isnan(x)]).size
    ...                          for k in range(n)])
    ...     return ScopeStats(s.events, s.nulls, distinct, s.variance, s.repeats, s.pairs,
    ...                       last_value=s.minimum)
    >>> rng = np.random.default_rng(4)
    >>> sc = np.repeat([0, 1, 2], 1_000)
    >>> ref = summary(rng.lognormal(3, 1, 3_000), sc, 3)
    >>> x = rng.lognormal(3, 1, 3_000)
    >>> x[1_000:2_000] = np.repeat(x[1_000:2_000:10], 10)  # scope 1: stale cache
    >>> x[2_000:] = rng.lognormal(4, 1, 1_000)  # scope 2: genuine drift
    >>> v = FrozenCheck().judge(ref, summary(x, sc, 3))
    >>> v.kind, v.cur_repeat_rate.round(2).tolist()
    (('', 'stuck', ''), [0.0, 0.9, 0.0])
    """

    def __init__(
        self,
        min_events: int = 100,
        min_ref_distinct: int = 5,
        max_ref_collision: float = 0.5,
        alpha: float = 1e-6,
        min_repeat_rate: float = 0.8,
        min_excess_repeats: float = 0.3,
        max_ref_repeat_rate: float = 0.5,
        min_null_increase: float = 0.3,
        max_ref_null_rate: float = 0.5,
    ) -> None:
        self.min_events = check_int("min_events", min_events, 2)
        self.min_ref_distinct = check_int("min_ref_distinct", min_ref_distinct, 2)
        self.max_ref_collision = _check_unit_interval("max_ref_collision", max_ref_collision)
        self.alpha = _check_unit_interval("alpha", alpha)
        if self.alpha >= 1.0:
            raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
        self.min_repeat_rate = _check_unit_interval("min_repeat_rate", min_repeat_rate)
        self.min_excess_repeats = _check_unit_interval("min_excess_repeats", min_excess_repeats)
        self.max_ref_repeat_rate = _check_unit_interval(
            "max_ref_repeat_rate", max_ref_repeat_rate, open_low=False
        )
        self.min_null_increase = _check_unit_interval("min_null_increase", min_null_increase)
        self.max_ref_null_rate = _check_unit_interval(
            "max_ref_null_rate", max_ref_null_rate, open_low=False
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"FrozenCheck({args})"

    def judge(self, ref: ScopeStats, cur: ScopeStats) -> FrozenVerdict:
        """Judge every scope of ``cur`` (the current window) against ``ref`` (the reference)."""
        if not isinstance(ref, ScopeStats) or not isinstance(cur, ScopeStats):
            raise TypeError("ref and cur must be ScopeStats")
        if ref.n_scopes != cur.n_scopes:
            raise ValueError(
                f"ref and cur must have the same scopes, got {ref.n_scopes} and {cur.n_scopes}"
            )
        n = ref.n_scopes
        unknown = np.full(n, np.nan)
        ref_coll = unknown if ref.collision is None else ref.collision
        cur_coll = unknown if cur.collision is None else cur.collision
        ref_nonnull = ref.events - ref.nulls
        cur_nonnull = cur.events - cur.nulls
        enough = (ref.events >= self.min_events) & (cur.events >= self.min_events)
        enough_values = enough & (ref_nonnull >= self.min_events) & (cur_nonnull >= self.min_events)

        with np.errstate(invalid="ignore"):
            varied_ref = (
                (ref.distinct >= self.min_ref_distinct)
                & (np.isnan(ref.variance) | (ref.variance > 0))
                & ~(ref_coll > self.max_ref_collision)
            )
            # Collapsed next to the reference's spread *and* next to the window's own
            # level: one sentinel of 2**31 in a cohort's reference makes its variance
            # ~1e15, and every window without one would look collapsed beside that.
            collapsed = (
                np.isfinite(cur.variance)
                & (cur.variance <= _VARIANCE_COLLAPSE * np.nan_to_num(ref.variance, nan=-1.0))
                & (cur.variance <= _VARIANCE_COLLAPSE * _squared_level(cur.last_value))
            )
        constant = enough_values & varied_ref & ((cur.distinct <= 1) | collapsed)

        ref_rr, cur_rr = ref.repeat_rate, cur.repeat_rate
        known_coll = np.nan_to_num(cur_coll, nan=0.0)
        baseline = np.fmax(ref_rr, known_coll)
        # Cohen's-kappa style: the share of the pairs that could differ beyond chance and repeat
        excess = _ratio(cur_rr - baseline, 1.0 - baseline)
        p0 = np.maximum(_jeffreys(ref.repeats, ref.pairs), known_coll)
        repeat_p = _binom_sf(cur.repeats, cur.pairs, p0)
        with np.errstate(invalid="ignore"):
            stuck = (
                enough_values
                & (ref.pairs >= self.min_events)
                & (cur.pairs >= self.min_events)
                & (ref_rr <= self.max_ref_repeat_rate)
                & (cur_rr >= self.min_repeat_rate)
                & (excess >= self.min_excess_repeats)
                & (repeat_p < self.alpha)
            )

        ref_nr, cur_nr = ref.null_rate, cur.null_rate
        null_p = _binom_sf(cur.nulls, cur.events, _jeffreys(ref.nulls, ref.events))
        with np.errstate(invalid="ignore"):
            null_spike = (
                enough
                & (ref_nr < self.max_ref_null_rate)
                & (cur_nr - ref_nr >= self.min_null_increase)
                & (null_p < self.alpha)
            )

        frozen = constant | stuck | null_spike
        # A healthy scope gets no evidence: building it for every scope of every feature
        # each window cost more than the checks themselves.
        kinds = ["" for _ in range(n)]
        evidence: list[dict[str, Any]] = [{} for _ in range(n)]
        for s in np.flatnonzero(frozen).tolist():
            fired = [
                name
                for name, hit in (
                    ("constant", constant[s]),
                    ("stuck", stuck[s]),
                    ("null_spike", null_spike[s]),
                )
                if hit
            ]
            kinds[s] = fired[0]
            ev: dict[str, Any] = {
                "kind": kinds[s],
                "checks": fired,
                "ref_events": int(ref.events[s]),
                "cur_events": int(cur.events[s]),
                "ref_distinct": int(ref.distinct[s]),
                "cur_distinct": int(cur.distinct[s]),
                "ref_variance": _jsonable(float(ref.variance[s])),
                "cur_variance": _jsonable(float(cur.variance[s])),
                "ref_repeat_rate": _jsonable(float(ref_rr[s])),
                "cur_repeat_rate": _jsonable(float(cur_rr[s])),
                "cur_collision": _jsonable(float(cur_coll[s])),
                "excess_repeats": _jsonable(float(excess[s])),
                "repeat_pvalue": float(f"{repeat_p[s]:.6g}"),
                "ref_null_rate": _jsonable(float(ref_nr[s])),
                "cur_null_rate": _jsonable(float(cur_nr[s])),
                "null_pvalue": float(f"{null_p[s]:.6g}"),
            }
            if constant[s]:
                ev["frozen_value"] = _jsonable(cur.last_value[s])
            evidence[s] = ev
        return FrozenVerdict(
            frozen=frozen,
            kind=tuple(kinds),
            ref_repeat_rate=ref_rr,
            cur_repeat_rate=cur_rr,
            repeat_pvalue=repeat_p,
            ref_null_rate=ref_nr,
            cur_null_rate=cur_nr,
            null_pvalue=null_p,
            evidence=tuple(evidence),
        )


# -- 2. rescaled signals -----------------------------------------------------------------------


def nearest_unit(factor: float, rel_tol: float = 0.05) -> float | None:
    """The common unit factor nearest to ``factor`` (within ``rel_tol`` relative), else None.

    Units: ``10**k`` for k in -6..6, 2.54 (in->cm), 0.3048 (ft->m), 1.609 (mi->km), 3.6
    (m/s->km/h), 60, 3600, their reciprocals, and the negatives of all (sign flips).

    >>> nearest_unit(98.7), nearest_unit(-1.02), nearest_unit(1 / 3590) == 1 / 3600
    (100.0, -1.0, True)
    >>> print(nearest_unit(7.0))
    None
    """
    f = float(factor)
    if not math.isfinite(f) or f == 0.0:
        return None
    ratio = np.abs(f) / _UNITS
    best = int(np.argmin(np.abs(np.log(ratio))))
    if abs(ratio[best] - 1.0) > rel_tol:
        return None
    return math.copysign(float(_UNITS[best]), f)


def _check_probs(probs: ArrayLike) -> FloatArray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size < 3:
        raise ValueError(f"probs must be a 1-D array of >= 3 levels, got shape {p.shape}")
    if not (np.all(np.isfinite(p)) and p[0] > 0.0 and p[-1] < 1.0 and np.all(np.diff(p) > 0)):
        raise ValueError(f"probs must be strictly increasing in (0, 1), got {p.tolist()}")
    return p


def _check_quantiles(name: str, q: ArrayLike, k: int) -> FloatArray:
    arr = np.asarray(q, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != k:
        raise ValueError(f"{name} must be a (n_scopes, {k}) array, got shape {arr.shape}")
    return arr


def _valid_rows(q: FloatArray) -> BoolArray:
    with np.errstate(invalid="ignore"):
        return np.asarray(
            np.all(np.isfinite(q), axis=1) & np.all(np.diff(q, axis=1) >= 0, axis=1), dtype=bool
        )


def _interp_levels(q: FloatArray, p: FloatArray, t: FloatArray) -> FloatArray:
    """Each row's quantile function (linear between the given levels) at levels ``t``;
    NaN outside ``[p[0], p[-1]]``."""
    outside = (t < p[0] - _LEVEL_EPS) | (t > p[-1] + _LEVEL_EPS)
    tc = np.clip(t, p[0], p[-1])
    idx = np.clip(np.searchsorted(p, tc, side="right") - 1, 0, p.size - 2)
    w = (tc - p[idx]) / (p[idx + 1] - p[idx])
    out = q[:, idx] + w * (q[:, idx + 1] - q[:, idx])
    out[:, outside] = np.nan
    return np.asarray(out, dtype=np.float64)


def _level_bounds(q: FloatArray, p: FloatArray, x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """For each row's quantile function Q (linear between levels, extended linearly beyond,
    clipped to [0, 1]): the interval of levels where Q equals ``x`` (or where it would)."""
    k = p.size
    dq = np.diff(q, axis=1)
    dp = np.diff(p)

    def level(idx: IntArray) -> FloatArray:
        seg = np.clip(idx - 1, 0, k - 2)
        q0 = np.take_along_axis(q, seg, axis=1)
        dqs = np.take_along_axis(dq, seg, axis=1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            lv = p[seg] + (x - q0) * (dp[seg] / dqs)
        # a flat segment is only ever extrapolated: below the grid -> 0, above -> 1
        lv = np.where(dqs > 0, lv, np.where(idx == 0, 0.0, 1.0))
        return np.asarray(np.clip(lv, 0.0, 1.0), dtype=np.float64)

    below = np.sum(q[:, None, :] < x[:, :, None], axis=2)
    at_or_below = np.sum(q[:, None, :] <= x[:, :, None], axis=2)
    return level(below), level(at_or_below)


def _level_distance(q: FloatArray, p: FloatArray, x: FloatArray, targets: FloatArray) -> FloatArray:
    """max over columns j of the distance from ``targets[j]`` to the levels where the row's
    reference quantile function reaches ``x[:, j]``; NaN where x is not finite."""
    lo, hi = _level_bounds(q, p, np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))
    gap = np.maximum(np.maximum(lo - targets, targets - hi), 0.0)
    out = np.max(gap, axis=1)
    return np.where(np.all(np.isfinite(x), axis=1), out, np.nan).astype(np.float64)


def quantile_distance(ref_q: ArrayLike, cur_q: ArrayLike, probs: ArrayLike) -> FloatArray:
    """Shape distance between quantile rows, no rescaling: per row, the largest gap in
    probability between ``probs[j]`` and the level at which the reference quantile function
    (linear between its quantiles) reaches ``cur_q[:, j]``.  In [0, 1]; NaN for rows with
    non-finite or decreasing quantiles.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> probs = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    >>> ref = np.quantile(rng.normal(0, 1, 5_000), probs)
    >>> same, shifted = np.quantile(rng.normal(0, 1, 5_000), probs), ref + 1
    >>> quantile_distance([ref, ref], [same, shifted], probs).round(2).tolist()
    [0.02, 0.37]
    """
    p = _check_probs(probs)
    r = _check_quantiles("ref_q", ref_q, p.size)
    c = _check_quantiles("cur_q", cur_q, p.size)
    if r.shape != c.shape:
        raise ValueError(f"ref_q and cur_q must have the same shape, got {r.shape}, {c.shape}")
    valid = _valid_rows(r) & _valid_rows(c)
    out = np.full(r.shape[0], np.nan)
    if valid.any():
        out[valid] = _level_distance(r[valid], p, c[valid], p)
    return out


def _nanmedian_rows(x: FloatArray) -> FloatArray:
    """Row medians ignoring NaN; NaN for rows without a value (and no warning)."""
    s = np.sort(x, axis=1)  # NaN sorts last
    n_valid = np.sum(~np.isnan(x), axis=1)
    lo = np.clip((n_valid - 1) // 2, 0, None)[:, None]
    hi = np.clip(n_valid // 2, 0, None)[:, None]
    if x.shape[1] == 0:
        return np.full(x.shape[0], np.nan)
    m = 0.5 * (np.take_along_axis(s, lo, axis=1) + np.take_along_axis(s, hi, axis=1))[:, 0]
    return np.where(n_valid > 0, m, np.nan).astype(np.float64)


@dataclass(frozen=True)
class RescaleVerdict:
    """Per scope: ``rescaled``, the fitted ``factor`` and ``offset`` (cur ~ factor * ref +
    offset; offset is exactly 0 when the pure-scale fit was kept), the common ``unit`` factor
    it matches (None unless rescaled), ``spread_ratio`` (the robust slope of the affine fit),
    ``shape_distance`` after un-rescaling and ``raw_distance`` before (both in probability,
    see :func:`quantile_distance`).  NaN where a row could not be judged.

    >>> import numpy as np
    >>> rng = np.random.default_rng(8)
    >>> probs = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    >>> ref = np.quantile(rng.gamma(9, 2, 5_000), probs)
    >>> cur = np.quantile(rng.gamma(9, 2, 500) * 3.6, probs)  # m/s became km/h
    >>> v = RescaleCheck().judge(ref[None], cur[None], probs)
    >>> v.rescaled.tolist(), v.unit, round(float(v.factor[0]), 2)
    ([True], (3.6,), 3.58)
    """

    rescaled: BoolArray
    factor: FloatArray
    offset: FloatArray
    unit: tuple[float | None, ...]
    spread_ratio: FloatArray
    shape_distance: FloatArray
    raw_distance: FloatArray


class RescaleCheck:
    """Tells a rescaled signal (unit change, sign flip) apart from drift, on quantiles.

    A scope is ``rescaled`` when, on valid rows (finite, non-decreasing quantiles, reference and
    current IQR > 0): the un-rescaled current quantiles match the reference
    (``shape_distance <= tolerance``), the raw ones do not (``raw_distance >=
    min_raw_distance``), the factor and the spread ratio both differ from 1 by at least
    ``min_factor_change`` and agree within ``spread_tolerance`` (a location shift changes the
    ratio of the medians but not the spread), and the fit has no offset or its factor is a
    common unit (``offset_needs_unit``: an affine change with an arbitrary factor, e.g. a
    variance change around a non-zero mean, is drift).

    Defaults: ``tolerance=0.1`` (the shape distance of a true rescale is sampling noise,
    ~0.02-0.06 with 500-event windows); ``min_raw_distance=0.2`` (a change the drift test
    would see: a +1 sd shift of a normal is ~0.35, two healthy 500-event windows < 0.1);
    ``min_factor_change=0.2``; ``spread_tolerance=0.25`` (the spread ratio of 500-event
    windows is 5-10% noisy); ``unit_tolerance=0.05``.  The factor's precision is about
    ``1.2 * cv * sqrt(1/n + 1/m)`` relative for windows of n and m events (cv of the feature,
    in log space for skewed ones): within 5% at 500 events needs a cv up to ~0.3-0.4, so on
    heavy-tailed features the unit may be missed (``unit`` None) on small windows.

    >>> import numpy as np
    >>> rng = np.random.default_rng(6)
    >>> probs = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    >>> ref = np.quantile(rng.normal(50, 10, 5_000), probs)
    >>> percent = np.quantile(rng.normal(50, 10, 500) / 100, probs)  # now a fraction
    >>> shifted = np.quantile(rng.normal(60, 10, 500), probs)  # genuine drift
    >>> v = RescaleCheck().judge(np.vstack([ref, ref]), np.vstack([percent, shifted]), probs)
    >>> v.rescaled.tolist(), v.unit, v.factor.round(2).tolist()
    ([True, False], (0.01, None), [0.01, 1.02])
    """

    def __init__(
        self,
        tolerance: float = 0.1,
        min_raw_distance: float = 0.2,
        min_factor_change: float = 0.2,
        spread_tolerance: float = 0.25,
        unit_tolerance: float = 0.05,
        offset_needs_unit: bool = True,
    ) -> None:
        self.tolerance = _check_unit_interval("tolerance", tolerance)
        self.min_raw_distance = _check_unit_interval(
            "min_raw_distance", min_raw_distance, open_low=False
        )
        self.min_factor_change = _check_positive("min_factor_change", min_factor_change)
        self.spread_tolerance = _check_positive("spread_tolerance", spread_tolerance)
        self.unit_tolerance = _check_unit_interval("unit_tolerance", unit_tolerance)
        if not isinstance(offset_needs_unit, (bool, np.bool_)):
            raise ValueError(f"offset_needs_unit must be True or False, got {offset_needs_unit!r}")
        self.offset_needs_unit = bool(offset_needs_unit)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"RescaleCheck({args})"

    def judge(self, ref_q: ArrayLike, cur_q: ArrayLike, probs: ArrayLike) -> RescaleVerdict:
        """``ref_q``/``cur_q``: (n_scopes, k) quantiles of the reference and current window at
        ``probs`` (k strictly increasing levels in (0, 1), e.g. 0.05 ... 0.95)."""
        p = _check_probs(probs)
        r = _check_quantiles("ref_q", ref_q, p.size)
        c = _check_quantiles("cur_q", cur_q, p.size)
        if r.shape != c.shape:
            raise ValueError(f"ref_q and cur_q must have the same shape, got {r.shape}, {c.shape}")
        n = r.shape[0]
        factor, offset, spread = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        shape, raw = np.full(n, np.nan), np.full(n, np.nan)
        valid = _valid_rows(r) & _valid_rows(c)
        if valid.any():
            iqr_levels = np.array([max(0.25, p[0]), min(0.75, p[-1])])
            ref_iqr = np.diff(_interp_levels(r[valid], p, iqr_levels), axis=1)[:, 0]
            cur_iqr = np.diff(_interp_levels(c[valid], p, iqr_levels), axis=1)[:, 0]
            valid[valid] = (ref_iqr > 0) & (cur_iqr > 0)
        if valid.any():
            fit = self._fit(r[valid], c[valid], p)
            factor[valid], offset[valid], spread[valid], shape[valid] = fit
            raw[valid] = _level_distance(r[valid], p, c[valid], p)
        units = [
            nearest_unit(float(f), self.unit_tolerance) if np.isfinite(f) else None for f in factor
        ]
        with np.errstate(invalid="ignore", divide="ignore"):
            ref_scale = np.diff(_interp_levels(r, p, np.array([p[0], p[-1]])), axis=1)[:, 0]
            no_offset = np.abs(offset) <= self.tolerance * np.abs(factor) * ref_scale
            consistent = (factor * spread > 0) & (
                np.abs(np.log(np.abs(factor) / np.abs(spread))) <= math.log1p(self.spread_tolerance)
            )
            # an offset is only explained by a unit that is not +-1: on a symmetric feature a
            # flip plus an offset is the same as a location shift
            has_unit = np.array([u is not None and abs(u) != 1.0 for u in units], dtype=bool)
            rescaled = (
                valid
                & (shape <= self.tolerance)
                & (raw >= self.min_raw_distance)
                & (np.abs(factor - 1.0) >= self.min_factor_change)
                & (np.abs(spread - 1.0) >= self.min_factor_change)
                & consistent
                & (no_offset | has_unit | (not self.offset_needs_unit))
            )
        return RescaleVerdict(
            rescaled=np.asarray(rescaled, dtype=bool),
            factor=factor,
            offset=offset,
            unit=tuple(u if hit else None for u, hit in zip(units, rescaled.tolist())),
            spread_ratio=spread,
            shape_distance=shape,
            raw_distance=raw,
        )

    def _fit(
        self, r: FloatArray, c: FloatArray, p: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Best (factor, offset, spread ratio, shape distance) per row over the direct and the
        flipped orientation.  The pure scale (median ratio of the quantiles) is kept when it
        agrees with the spread ratio (Theil-Sen slope of the quantile pairs) and fits within
        ``tolerance`` or about as well as the affine fit, which absorbs sampling noise with
        its extra parameter and so always fits a little better; it is also far more precise
        on features away from zero."""
        slack = self.tolerance / 4.0
        i, j = np.triu_indices(p.size, 1)
        results = []
        for flipped in (False, True):
            ro = _interp_levels(r, p, 1.0 - p) if flipped else r
            targets = 1.0 - p if flipped else p
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                ratios = np.where(np.isfinite(ro) & (ro != 0), c / ro, np.nan)
                a_pure = _nanmedian_rows(ratios)
                dr = ro[:, j] - ro[:, i]
                slopes = np.where(np.isfinite(dr) & (dr != 0), (c[:, j] - c[:, i]) / dr, np.nan)
                a_aff = _nanmedian_rows(slopes)
                b_aff = _nanmedian_rows(c - a_aff[:, None] * ro)
            sign_ok = (a_aff < 0) if flipped else (a_aff > 0)
            a_aff = np.where(sign_ok, a_aff, np.nan)
            a_pure = np.where((a_pure < 0) if flipped else (a_pure > 0), a_pure, np.nan)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                d_pure = _level_distance(r, p, c / a_pure[:, None], targets)
                d_aff = _level_distance(r, p, (c - b_aff[:, None]) / a_aff[:, None], targets)
            results.append((a_pure, d_pure, a_aff, b_aff, d_aff))
        (ap_d, dp_d, aa_d, ba_d, da_d), (ap_f, dp_f, aa_f, ba_f, da_f) = results
        inf = np.inf
        # the direct orientation wins unless the flip fits clearly better: a symmetric feature
        # looks the same flipped (around 0) or flipped and shifted (anywhere), and calling it
        # unflipped is the conservative reading
        margin = self.tolerance / 2.0
        pure_flip = np.nan_to_num(dp_f, nan=inf) < np.nan_to_num(dp_d, nan=inf) - margin
        # (a flipped affine fit only when the direct one fails: a flip plus an offset is what
        # any location shift of a symmetric feature looks like)
        da_d_ = np.nan_to_num(da_d, nan=inf)
        aff_flip = (da_d_ > self.tolerance) & (np.nan_to_num(da_f, nan=inf) < da_d_ - margin)
        a_pure = np.where(pure_flip, ap_f, ap_d)
        d_pure = np.where(pure_flip, dp_f, dp_d)
        spread_pure = np.where(pure_flip, aa_f, aa_d)
        a_aff = np.where(aff_flip, aa_f, aa_d)
        b_aff = np.where(aff_flip, ba_f, ba_d)
        d_aff = np.where(aff_flip, da_f, da_d)
        with np.errstate(invalid="ignore", divide="ignore"):
            # the pure factor agrees with the spread ratio when it is within spread_tolerance
            # of it and closer to it than the spread ratio is to 1 (a location shift moves the
            # ratio of the medians, not the spread)
            mismatch = np.abs(np.log(a_pure / spread_pure))
            from_one = np.where(spread_pure < 0, inf, np.abs(np.log(np.abs(spread_pure))))
            agrees = (mismatch <= math.log1p(self.spread_tolerance)) & (mismatch <= 0.5 * from_one)
        d_pure_ = np.nan_to_num(d_pure, nan=inf)
        use_pure = agrees & (
            d_pure_ <= np.fmax(np.nan_to_num(d_aff, nan=inf) + slack, self.tolerance)
        )
        factor = np.where(use_pure, a_pure, a_aff)
        offset = np.where(use_pure, 0.0, b_aff)
        offset = np.where(np.isfinite(factor), offset, np.nan)
        spread = np.where(use_pure, spread_pure, a_aff)
        shape = np.where(use_pure, d_pure, d_aff)
        return factor, offset, spread, shape


# -- 3. renamed features -----------------------------------------------------------------------


def _greedy_pairs(
    candidates: list[tuple[float, str, str]], tolerance: float
) -> list[tuple[str, str, float]]:
    used_missing: set[str] = set()
    used_appeared: set[str] = set()
    out: list[tuple[str, str, float]] = []
    for d, m, a in sorted(candidates):
        if d < tolerance and m not in used_missing and a not in used_appeared:
            used_missing.add(m)
            used_appeared.add(a)
            out.append((m, a, d))
    return out


def _stack_quantiles(named: Mapping[str, ArrayLike], k: int) -> FloatArray:
    rows = []
    for name, q in named.items():
        row = np.asarray(q, dtype=np.float64)
        if row.shape != (k,):
            raise ValueError(f"quantiles of {name!r} must have shape ({k},), got {row.shape}")
        rows.append(row)
    return np.asarray(np.stack(rows), dtype=np.float64)


def match_renamed(
    missing: Mapping[str, ArrayLike],
    appeared: Mapping[str, ArrayLike],
    probs: ArrayLike,
    tolerance: float = 0.1,
) -> list[tuple[str, str, float]]:
    """Pair features that went missing (their reference quantiles at ``probs``) with new
    feature names (their current quantiles) of the same distribution, unrescaled.

    Returns ``(missing_name, new_name, distance)``, best first, at most one pair per name, only
    pairs with :func:`quantile_distance` (the larger of both directions) under ``tolerance``.
    Features with invalid quantiles (NaN, decreasing) are never paired.  Features that carry
    little information (flags, constants) can match each other by chance: confirm a pair with
    other evidence (e.g. the new name appearing when the old one vanished).

    >>> import numpy as np
    >>> rng = np.random.default_rng(9)
    >>> probs = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    >>> missing = {"amount": np.quantile(rng.lognormal(3, 1, 5_000), probs)}
    >>> appeared = {"amount_eur": np.quantile(rng.lognormal(3, 1, 500), probs),
    ...             "age": np.quantile(rng.normal(40, 9, 500), probs)}
    >>> [(m, a) for m, a, _ in match_renamed(missing, appeared, probs)]
    [('amount', 'amount_eur')]
    """
    p = _check_probs(probs)
    tol = _check_unit_interval("tolerance", tolerance)
    m_names, a_names = list(missing), list(appeared)
    if not m_names or not a_names:
        return []
    m_q = _stack_quantiles(missing, p.size)
    a_q = _stack_quantiles(appeared, p.size)
    left = np.repeat(m_q, len(a_names), axis=0)
    right = np.tile(a_q, (len(m_names), 1))
    d = np.fmax(quantile_distance(left, right, p), quantile_distance(right, left, p))
    d = np.where(_valid_rows(left) & _valid_rows(right), d, np.nan)
    candidates = [
        (float(d[x * len(a_names) + y]), m, a)
        for x, m in enumerate(m_names)
        for y, a in enumerate(a_names)
        if np.isfinite(d[x * len(a_names) + y])
    ]
    return _greedy_pairs(candidates, tol)


def _shares(name: str, d: Mapping[str, float]) -> dict[str, float] | None:
    if not isinstance(d, Mapping):
        raise ValueError(f"shares of {name!r} must be a dict of category -> share")
    for cat, v in d.items():
        if not (_is_number(v) and math.isfinite(float(v)) and float(v) >= 0):
            raise ValueError(
                f"share of {cat!r} in {name!r} must be a finite number >= 0, got {v!r}"
            )
    total = float(sum(float(v) for v in d.values()))
    return {str(c): float(v) / total for c, v in d.items()} if total > 0 else None


def match_renamed_categorical(
    missing: Mapping[str, Mapping[str, float]],
    appeared: Mapping[str, Mapping[str, float]],
    tolerance: float = 0.1,
) -> list[tuple[str, str, float]]:
    """Categorical :func:`match_renamed`: category shares (or counts; normalised) of the
    features that went missing vs the new ones, paired when the total variation distance
    ``0.5 * sum |p - q|`` is under ``tolerance``; best first, at most one pair per name.

    >>> import numpy as np
    >>> rng = np.random.default_rng(10)
    >>> def shares(x):
    ...     cats, counts = np.unique(x, return_counts=True)
    ...     return dict(zip(cats.tolist(), (counts / counts.sum()).tolist()))
    >>> channel = ["web", "app", "store"]
    >>> missing = {"channel": shares(rng.choice(channel, 5_000, p=[0.6, 0.3, 0.1]))}
    >>> appeared = {"sales_channel": shares(rng.choice(channel, 500, p=[0.6, 0.3, 0.1])),
    ...             "device": shares(rng.choice(["ios", "android"], 500))}
    >>> [(m, a) for m, a, _ in match_renamed_categorical(missing, appeared)]
    [('channel', 'sales_channel')]
    """
    tol = _check_unit_interval("tolerance", tolerance)
    m_shares = {k: _shares(k, v) for k, v in missing.items()}
    a_shares = {k: _shares(k, v) for k, v in appeared.items()}
    candidates: list[tuple[float, str, str]] = []
    for m, ps in m_shares.items():
        for a, qs in a_shares.items():
            if ps is None or qs is None:
                continue
            cats = ps.keys() | qs.keys()
            tv = 0.5 * sum(abs(ps.get(c, 0.0) - qs.get(c, 0.0)) for c in cats)
            candidates.append((float(tv), m, a))
    return _greedy_pairs(candidates, tol)
