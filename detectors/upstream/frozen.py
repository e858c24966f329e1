"""Frozen signals: a feed stuck on one value, repeating itself, or losing its values.

See :mod:`detectors.upstream` for what ``constant``, ``stuck`` and ``null_spike`` mean
and why the thresholds are what they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import bdtrc

from detectors.arrays import BoolArray, FloatArray, IntArray
from detectors.upstream.checks import check_unit_interval
from detectors.upstream.scope_stats import ScopeStats, ratio
from detectors.validation import check_int

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


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


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
        self.max_ref_collision = check_unit_interval("max_ref_collision", max_ref_collision)
        self.alpha = check_unit_interval("alpha", alpha)
        if self.alpha >= 1.0:
            raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
        self.min_repeat_rate = check_unit_interval("min_repeat_rate", min_repeat_rate)
        self.min_excess_repeats = check_unit_interval("min_excess_repeats", min_excess_repeats)
        self.max_ref_repeat_rate = check_unit_interval(
            "max_ref_repeat_rate", max_ref_repeat_rate, open_low=False
        )
        self.min_null_increase = check_unit_interval("min_null_increase", min_null_increase)
        self.max_ref_null_rate = check_unit_interval(
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
        excess = ratio(cur_rr - baseline, 1.0 - baseline)
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
