"""Upstream health of one feature: frozen, rescaled, missing or retyped, per scope.

Glue between the monitor's window summaries and the checks of :mod:`detectors.upstream`:
it keeps what the reference says about the feature (distinct values, collision,
quantiles) and names, per judged scope, the upstream fault that explains a change,
so the monitor reports ``fix_upstream`` instead of drift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.segments import SegmentStats, segment_quantiles
from detectors.upstream import (
    FrozenCheck,
    FrozenVerdict,
    RescaleCheck,
    ScopeStats,
    histogram_collision,
)
from detectors.upstream.conversions import Snap, snap
from detectors.upstream.interval import CONFIDENCE, factor_interval
from detectors.upstream.pool import RescalePool

RESCALE_PROBS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
# A feature counts as present in the reference when at most this share was null.
PRESENT_NULL_RATE = 0.05
# Values of another type in at least this share of a window's events: the type changed.
RETYPED_SHARE = 0.5
# The reference's quantiles come from a sketch within 1% of the exact ones (the pool's are
# finer): the rescale factor's interval allows for that on either side.
QUANTILE_RESOLUTION = 0.01


# A factor within this many powers of ten of 1 (0.32x to 3.2x) is as likely a genuine
# change (a temperature that scales a frequency, inflation) as a unit change: it counts
# as a rescale only when a common conversion lies within its confidence interval.
MILD_LOG10 = 0.5


def mild_factor(factor: float) -> bool:
    """A positive factor within MILD_LOG10 powers of ten of 1."""
    return factor > 0 and abs(math.log10(factor)) < MILD_LOG10


def _plausible_unit_change(factor: float, conversion: Snap | None) -> bool:
    if not mild_factor(factor):
        return True  # a sign flip, or too big a factor for the world to have moved by
    return conversion is not None


@dataclass(frozen=True)
class HealthVerdict:
    """Per scope: the upstream ``cause`` found ("" when healthy), its ``evidence``, the
    rescale factor estimated on the windows pooled since the scope's condition started,
    and the factor of this window alone (both NaN unless the scope was checked for a
    rescale)."""

    cause: tuple[str, ...]
    evidence: tuple[dict[str, Any], ...]
    rescale_factor: FloatArray
    window_factor: FloatArray

    @property
    def hit(self) -> BoolArray:
        return np.array([bool(c) for c in self.cause], dtype=bool)


class SignalHealth:
    """What the reference says about one feature, and the judge of each window.

    >>> import numpy as np
    >>> from detectors.segments import segment_stats
    >>> rng = np.random.default_rng(5)
    >>> scopes = np.zeros(2_000, dtype=np.intp)
    >>> reference = rng.lognormal(3, 1, 2_000)
    >>> hist = np.array([[200] * 10 + [0]])  # reference deciles, empty null bin
    >>> quantiles = np.quantile(reference, RESCALE_PROBS)[None]
    >>> health = SignalHealth(
    ...     reference, scopes, segment_stats(reference, scopes, 1), hist, quantiles)
    >>> frozen = np.full(2_000, reference[-1])  # the upstream metric stopped updating
    >>> verdict = health.judge(segment_stats(frozen, scopes, 1), np.array([[2_000] + [0] * 10]),
    ...     frozen, scopes, np.array([True]), np.array([True]), np.zeros(1, dtype=np.int64))
    >>> verdict.cause, verdict.evidence[0]["kind"]
    (('frozen_signal',), 'constant')
    """

    def __init__(
        self,
        values: FloatArray,
        scopes: IndexArray,
        stats: SegmentStats,
        histogram: IntArray,
        quantiles: FloatArray | None,
        frozen: FrozenCheck | None = None,
        rescale: RescaleCheck | None = None,
    ) -> None:
        """``quantiles``: the reference's at RESCALE_PROBS per scope (None: categorical)."""
        numeric = quantiles is not None
        self.numeric = numeric
        self.frozen = frozen or FrozenCheck()
        self.rescale = rescale or RescaleCheck()
        n_scopes = histogram.shape[0]
        self.reference = ScopeStats(
            events=stats.events,
            nulls=stats.nulls,
            # Distinct values counted on the reference's bins (at most numeric_bins for a
            # number): the check only asks whether the reference varied over >= 5 values.
            distinct=(histogram[:, :-1] > 0).sum(axis=1).astype(np.int64),
            variance=stats.variance if numeric else np.full(n_scopes, np.nan),
            repeats=stats.repeats,
            pairs=stats.pairs,
            last_value=stats.minimum,
            collision=histogram_collision(histogram),
        )
        self.quantiles = quantiles
        # A mostly-zero feature (a refund amount, a sparse count) has zero quartiles, and
        # its rescale is told on the non-zero values instead (zeros stay zeros).
        self.zero_share = np.full(n_scopes, np.nan)
        self.nonzero_quantiles = np.full((n_scopes, RESCALE_PROBS.size), np.nan)
        if numeric:
            self.zero_share, self.nonzero_quantiles = _nonzero_part(
                values, scopes, np.arange(n_scopes)
            )
        # The windows of each scope since it started to drift, pooled: a rescale's factor
        # is estimated on all of them (see detectors.upstream.pool).
        self.pool = RescalePool(n_scopes)

    def judge(
        self,
        window: SegmentStats,
        histogram: IntArray,
        values: FloatArray,
        scopes: IndexArray,
        judged: BoolArray,
        drifted: BoolArray,
        wrong_type: IntArray,
    ) -> HealthVerdict:
        """Judge the scopes of one window; ``drifted`` scopes are also checked for a
        rescale (a rescale always moves the binned distribution). One feature of
        :func:`judge_features`."""
        return judge_features(
            [self],
            [window],
            [histogram],
            values[None],
            scopes,
            judged,
            drifted[None],
            wrong_type[None],
        )[0]

    def _verdict(
        self,
        frozen: FrozenVerdict,
        window: SegmentStats,
        values: FloatArray,
        scopes: IndexArray,
        judged: BoolArray,
        drifted: BoolArray,
        wrong_type: IntArray,
    ) -> HealthVerdict:
        """Names the fault of each judged scope from its frozen verdict, and checks the
        drifted scopes that are not frozen for a rescale."""
        n = len(judged)
        nonnull = window.events - window.nulls
        causes = ["" for _ in range(n)]
        evidence: list[dict[str, Any]] = [{} for _ in range(n)]
        factor = np.full(n, np.nan)
        ref_null_rate = self.reference.null_rate
        for scope in np.flatnonzero(judged & frozen.frozen):
            details = dict(frozen.evidence[scope])
            details.pop("cur_distinct", None)
            cause = "frozen_signal"
            if details["kind"] == "null_spike":
                if wrong_type[scope] >= RETYPED_SHARE * window.events[scope]:
                    cause, details["kind"] = "schema_change", "type_changed"
                    details["wrong_type_values"] = int(wrong_type[scope])
                elif nonnull[scope] == 0 and ref_null_rate[scope] <= PRESENT_NULL_RATE:
                    cause, details["kind"] = "schema_change", "missing"
            causes[scope] = cause
            evidence[scope] = {"detector": "frozen_check", **details}
        window_factor = np.full(n, np.nan)
        if self.quantiles is not None:
            candidate = judged & drifted & ~frozen.frozen
            # A window that did not drift ends the condition its pool was gathered for.
            self.pool.drop(judged & ~candidate)
            wanted = np.flatnonzero(candidate)
            present = (self.reference.events - self.reference.nulls).astype(np.float64)
            found = (causes, evidence, factor, window_factor)
            if wanted.size:
                reference = (self.quantiles[wanted], present[wanted])
                self._rescales(wanted, reference, values, scopes, *found)
            # Scopes whose quartiles could not be compared, when zeros fill them.
            sparse = wanted[np.isnan(factor[wanted]) & (self.zero_share[wanted] >= 0.25)]
            if sparse.size:
                n_cur = self.pool.counts(sparse)
                zeros = 1.0 - self.pool.counts(sparse, nonzero=True) / np.maximum(n_cur, 1)
                n_ref = present[sparse]
                p = self.zero_share[sparse]
                # Zeros stay zeros under a change of unit: the zero share must hold
                # (four standard errors of the difference, plus 2 points).
                margin = 4 * np.sqrt(p * (1 - p) * (1 / n_ref + 1 / np.maximum(n_cur, 1))) + 0.02
                keep = np.abs(zeros - p) <= margin
                same = sparse[keep]
                reference = (self.nonzero_quantiles[same], np.round(n_ref * (1 - p))[keep])
                self._rescales(
                    same, reference, values, scopes, *found, zero_share=(p[keep], zeros[keep])
                )
        return HealthVerdict(tuple(causes), tuple(evidence), factor, window_factor)

    def _rescales(
        self,
        wanted: IndexArray,
        reference: tuple[FloatArray, FloatArray],
        values: FloatArray,
        scopes: IndexArray,
        causes: list[str],
        evidence: list[dict[str, Any]],
        factor: FloatArray,
        window_factor: FloatArray,
        zero_share: tuple[FloatArray, FloatArray] | None = None,
    ) -> None:
        """Pools the wanted scopes' window (first call of a window) and runs the rescale
        check on their pooled quantiles against the ``reference`` (quantiles and counts),
        naming the rescaled ones; also notes each window's own factor. ``zero_share``
        (reference, current) when the quantiles are the non-zero values' (the window is
        pooled already)."""
        if not wanted.size:
            return
        nonzero = zero_share is not None
        reference_q, reference_n = reference
        own = values if not nonzero else np.where(values == 0, np.nan, values)
        window_q = segment_quantiles(own, scopes, wanted, RESCALE_PROBS)
        alone = self.rescale.judge(reference_q, window_q, RESCALE_PROBS)
        window_factor[wanted] = alone.factor
        if not nonzero:
            # A window whose own interval does not hold the factor pooled so far is a new
            # condition (a drift that turned into a unit change): its pool starts again.
            window_n = np.bincount(scopes[~np.isnan(values)], minlength=len(factor))[wanted]
            own_interval = factor_interval(
                reference_q,
                reference_n,
                window_q,
                window_n,
                RESCALE_PROBS,
                alone.factor,
                alone.offset,
                resolution=QUANTILE_RESOLUTION,
            )
            before = self.pool.factor[wanted]
            with np.errstate(invalid="ignore"):
                held = (own_interval.low <= before) & (before <= own_interval.high)
            apart = np.isfinite(before) & np.isfinite(own_interval.low) & ~held
            restart = np.zeros(len(factor), dtype=bool)
            restart[wanted[apart]] = True
            self.pool.drop(restart)
            self.pool.add(values, scopes, wanted)
        current_q = self.pool.quantiles(wanted, RESCALE_PROBS, nonzero)
        current_n = self.pool.counts(wanted, nonzero)
        rescale = self.rescale.judge(reference_q, current_q, RESCALE_PROBS)
        factor[wanted] = rescale.factor
        if not nonzero:
            self.pool.factor[wanted] = rescale.factor
        interval = factor_interval(
            reference_q,
            reference_n,
            current_q,
            current_n,
            RESCALE_PROBS,
            rescale.factor,
            rescale.offset,
            resolution=QUANTILE_RESOLUTION,
        )
        for i, scope in enumerate(wanted.tolist()):
            if not rescale.rescaled[i]:
                continue
            raw = float(rescale.factor[i])
            affine = rescale.offset[i] != 0.0
            bounds = (float(interval.low[i]), float(interval.high[i]))
            offsets = (float(interval.offset_low[i]), float(interval.offset_high[i]))
            conversion = snap(raw, bounds, offsets if affine else None)
            if not _plausible_unit_change(raw, conversion):
                continue
            causes[scope] = "rescaled_signal"
            # The decision states the conversion's own factor when the interval holds
            # one: the estimate is a few percent off on a few hundred values, and the
            # conversion is what the feed did.
            stated = conversion.factor if conversion else raw
            found: dict[str, Any] = {
                "detector": "rescale_check",
                "factor": round(stated, 6),
                "raw_factor": round(raw, 6),
                "factor_interval": [round(b, 6) for b in bounds],
                "confidence": CONFIDENCE,
                "conversion": conversion.name if conversion else None,
                "nearest_unit": conversion.factor if conversion else None,
                "offset": round(float(rescale.offset[i]), 6),
            }
            if affine:
                found["offset_interval"] = [round(b, 6) for b in offsets]
            if conversion and conversion.others:
                found["conversions_in_interval"] = [conversion.name, *conversion.others]
            evidence[scope] = {
                **found,
                "pooled_windows": int(self.pool.windows[scope]),
                "pooled_values": int(current_n[i]),
                "shape_distance": round(float(rescale.shape_distance[i]), 6),
                "raw_distance": round(float(rescale.raw_distance[i]), 6),
                "reference_quantiles": dict(zip(map(str, RESCALE_PROBS), reference_q[i].tolist())),
                "current_quantiles": dict(zip(map(str, RESCALE_PROBS), current_q[i].tolist())),
            }
            if zero_share is not None:
                evidence[scope]["quantiles_of"] = "non-zero values"
                evidence[scope]["reference_zero_share"] = round(float(zero_share[0][i]), 6)
                evidence[scope]["current_zero_share"] = round(float(zero_share[1][i]), 6)


def _nonzero_part(
    values: FloatArray, scopes: IndexArray, wanted: IndexArray
) -> tuple[FloatArray, FloatArray]:
    """Per wanted scope: the share of zeros among the non-missing values, and the
    quantiles (at RESCALE_PROBS) of the non-zero ones."""
    if not wanted.size:
        return np.empty(0), np.empty((0, RESCALE_PROBS.size))
    present = ~np.isnan(values)
    zeros = np.bincount(scopes[present & (values == 0)], minlength=int(wanted.max()) + 1)
    counts = np.bincount(scopes[present], minlength=int(wanted.max()) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(counts[wanted] > 0, zeros[wanted] / counts[wanted], np.nan)
    nonzero = present & (values != 0)
    return share, segment_quantiles(values[nonzero], scopes[nonzero], wanted, RESCALE_PROBS)


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _stacked(parts: Sequence[ScopeStats | SegmentStats], names: tuple[str, ...]) -> list[Any]:
    return [np.concatenate([getattr(part, name) for part in parts]) for name in names]


def judge_features(
    healths: Sequence[SignalHealth],
    windows: Sequence[SegmentStats],
    histograms: Sequence[IntArray],
    values: FloatArray,
    scopes: IndexArray,
    judged: BoolArray,
    drifted: BoolArray,
    wrong_type: IntArray,
) -> list[HealthVerdict]:
    """:meth:`SignalHealth.judge` of every feature of a window, with one frozen check
    over all features x scopes: per feature, one call on a dozen scopes cost more in
    numpy's per-call overhead than the arithmetic. Row f of ``values`` (features x
    pairs), ``drifted`` and ``wrong_type`` (features x scopes) is feature f's.

    >>> import numpy as np
    >>> from detectors.segments import segment_stats
    >>> rng = np.random.default_rng(5)
    >>> scopes = np.zeros(2_000, dtype=np.intp)
    >>> hist = np.array([[200] * 10 + [0]])
    >>> def health(reference):
    ...     q = np.quantile(reference, RESCALE_PROBS)[None]
    ...     return SignalHealth(reference, scopes, segment_stats(reference, scopes, 1), hist, q)
    >>> a, b = rng.lognormal(3, 1, 2_000), rng.normal(50, 5, 2_000)
    >>> now = np.array([rng.lognormal(3, 1, 2_000), np.full(2_000, b[-1])])  # b froze
    >>> verdicts = judge_features(
    ...     [health(a), health(b)], [segment_stats(v, scopes, 1) for v in now],
    ...     [hist, np.array([[2_000] + [0] * 10])], now, scopes, np.array([True]),
    ...     np.array([[False], [True]]), np.zeros((2, 1), dtype=np.int64))
    >>> [v.cause for v in verdicts]
    [('',), ('frozen_signal',)]
    """
    if not healths:
        return []
    check = healths[0].frozen
    if any(repr(h.frozen) != repr(check) for h in healths):
        raise ValueError("features judged together must share one FrozenCheck configuration")
    n_scopes = len(judged)
    reference = ScopeStats(*_stacked([h.reference for h in healths], _names(ScopeStats)))
    stacked = SegmentStats(*_stacked(windows, _names(SegmentStats)))
    numeric = np.repeat([h.numeric for h in healths], n_scopes)
    current = ScopeStats(
        events=stacked.events,
        nulls=stacked.nulls,
        # Exact distinct counts are not needed: only "at most one value" matters here.
        distinct=np.where(stacked.constant, 1, np.minimum(stacked.events - stacked.nulls, 2)),
        variance=np.where(numeric, stacked.variance, np.nan),
        repeats=stacked.repeats,
        pairs=stacked.pairs,
        last_value=stacked.minimum,
        collision=_collisions(histograms),
    )
    frozen = check.judge(reference, current)
    return [
        health._verdict(
            frozen.part(f * n_scopes, (f + 1) * n_scopes),
            window,
            values[f],
            scopes,
            judged,
            drifted[f],
            wrong_type[f],
        )
        for f, (health, window) in enumerate(zip(healths, windows, strict=True))
    ]


def _collisions(histograms: Sequence[IntArray]) -> FloatArray:
    """:func:`histogram_collision` of each histogram, stacked: one call per histogram
    width (padding rows to one width would change numpy's summation order, and so the
    last bits of the figures)."""
    n_scopes = histograms[0].shape[0]
    out = np.empty(len(histograms) * n_scopes)
    widths: dict[int, list[int]] = {}
    for f, histogram in enumerate(histograms):
        widths.setdefault(histogram.shape[1], []).append(f)
    for members in widths.values():
        rows = np.concatenate([np.arange(f * n_scopes, (f + 1) * n_scopes) for f in members])
        out[rows] = histogram_collision(np.concatenate([histograms[f] for f in members]))
    return out
