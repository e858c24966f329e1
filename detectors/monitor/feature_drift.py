"""Drift of one feature, per scope: its histograms, their statistics, its two conditions.

Each feature of the reference has a :class:`FeatureDrift`: its bins and reference
histogram per scope, the current window's histogram and values, and two persistent
conditions: ``drift`` (the window's distribution moved: PSI and G-test against the
reference) and ``upstream`` (the input is broken: frozen, rescaled, missing, retyped).
:func:`window_statistics` computes every feature's statistics of a closed window at
once; :meth:`FeatureDrift.judge_window` then records that window's verdicts.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from detectors.arrays import BoolArray, FeatureColumn, FloatArray, IndexArray, IntArray
from detectors.batch import numeric_column
from detectors.binning import Bins, CategoricalBins, NumericBins, scope_histograms
from detectors.cohorts import OTHER
from detectors.divergence import g_test, js_distance, psi
from detectors.monitor.config import MonitorConfig
from detectors.monitor.policy import drift_hit, rescale_is_upstream
from detectors.monitor.snapshot import DistributionSnapshot, FeatureSnapshot
from detectors.persistence import Persistence
from detectors.seasonal import matched_reference
from detectors.segments import SegmentStats, segment_order, stacked_segment_stats
from detectors.signal_health import RESCALE_PROBS, HealthVerdict, SignalHealth, judge_features

_NUMBER = (int, float)

# The reference quantiles kept per scope; the rescale check reads those at RESCALE_PROBS.
QUANTILE_PROBS = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
_RESCALE_COLUMNS = np.searchsorted(QUANTILE_PROBS, RESCALE_PROBS)

# A shift seen in at least this many consecutive windows that reverted before it
# persisted gets an informational hold (transient_shift); one window alone happens by
# chance now and then (a p-value of 0.001 over features x scopes x windows).
TRANSIENT_MIN_WINDOWS = 2
# A shift counts as reverted once its PSI fell this far below the threshold.
REVERTED_PSI_RATIO = 0.5

# Fewer present values than this make a histogram of ~10 bins mostly noise.
MIN_PRESENT_EVENTS = 100


@dataclass
class FeatureDrift:
    """Drift state of one feature across all scopes (arrays indexed by scope)."""

    name: str
    bins: Bins
    reference: IntArray
    current: IntArray
    drift: Persistence
    psi: FloatArray
    js: FloatArray
    pvalue: FloatArray
    psi_history: list[list[float]] = field(default_factory=list)
    wrong_type: int = 0
    reference_stats: SegmentStats | None = None
    window_stats: SegmentStats | None = None
    reference_quantiles: FloatArray | None = None
    health: SignalHealth | None = None
    upstream: Persistence | None = None
    upstream_cause: list[str] = field(default_factory=list)
    upstream_evidence: list[dict[str, Any]] = field(default_factory=list)
    last_health: HealthVerdict | None = None
    window_wrong_type: IntArray | None = None
    # Per scope: the factors of the windows (each on its own) of a rescale in progress.
    rescale_history: list[list[float]] = field(default_factory=list)
    # Per scope: whether the windows just before its rescale pool started looked like
    # the reference (a step, as a unit change is), rather than already moving.
    rescale_step: list[bool] = field(default_factory=list)
    # The window's values as flat (value, scope) pairs, one array per part; the
    # monitor keeps the matching scopes (the same for every feature).
    window_values: list[FloatArray] = field(default_factory=list)
    # (slot, scope, bin) reference counts (detectors.seasonal), kept when the reference
    # covers a day, or from the first days' samples when the feature follows the hour.
    reference_hourly: IntArray | None = None
    # Slots (both day types) of the hours the first day sampled while a drift of this
    # feature was deferred: they may hold a change that began then. None: no such slot.
    suspect_slots: BoolArray | None = None
    # A drift of this feature was reported since: the change is in those slots.
    suspect_confirmed: bool = False
    # Per scope: the last window had too few present values to judge drift on.
    undecided: BoolArray | None = None
    # The code and text of the last value seen outside a categorical's reference
    # categories: a window frozen on it names it (e.g. "unknown").
    last_unseen: tuple[float, str] | None = None
    # The last judged window's histogram per scope (``current`` restarts when a window
    # closes): what a decision's reader is shown beside the reference.
    last_window: IntArray | None = None

    @property
    def kind(self) -> str:
        return "numeric" if isinstance(self.bins, NumericBins) else "categorical"

    @property
    def broken(self) -> bool:
        """An upstream condition is reported for some scope and not yet cleared."""
        return self.upstream is not None and bool(self.upstream.reported.any())

    @property
    def drifting(self) -> bool:
        """A covariate drift is reported for some scope and not yet cleared."""
        return bool(self.drift.reported.any())

    @property
    def moved(self) -> BoolArray:
        """Per scope: the last window drifted or was broken, or a condition is open."""
        moved = self.drift.last | self.drift.open
        if self.upstream is not None:
            moved |= self.upstream.last | self.upstream.open
        return moved

    @property
    def rescale_quantiles(self) -> FloatArray | None:
        """The reference quantiles at RESCALE_PROBS per scope (numeric features)."""
        if self.reference_quantiles is None:
            return None
        return self.reference_quantiles[:, _RESCALE_COLUMNS]

    def upstream_cause_of(self, scope: int) -> str:
        return self.upstream_cause[scope] or "frozen_signal"

    @classmethod
    def fresh(
        cls, name: str, bins: Bins, reference: IntArray, windows: int, resolve_windows: int
    ) -> FeatureDrift:
        n_scopes = reference.shape[0]
        nan = np.full(n_scopes, np.nan)
        return cls(
            name=name,
            bins=bins,
            reference=reference,
            current=np.zeros_like(reference),
            drift=Persistence(n_scopes, windows, resolve_windows),
            psi=nan.copy(),
            js=nan.copy(),
            pvalue=nan.copy(),
            psi_history=[[] for _ in range(n_scopes)],
        )

    def observe(
        self, values: FeatureColumn, rows: IndexArray | None = None
    ) -> tuple[IndexArray, FloatArray]:
        """Each row's bin, and its value as a number: the value itself for a numeric
        feature, the bin index for a categorical one (NaN when missing either way).
        Values of another type are counted, per scope of ``rows`` when given."""
        if isinstance(self.bins, NumericBins):
            column, wrong = numeric_column(values)
            if wrong:
                self.wrong_type += wrong
                if rows is not None and self.window_wrong_type is not None:
                    retyped = np.array([not isinstance(v, _NUMBER) for v in values])
                    retyped &= np.array([v is not None for v in values])
                    self.window_wrong_type += np.bincount(
                        rows[retyped].ravel(), minlength=len(self.window_wrong_type)
                    )
            return self.bins.assign(column), column
        # An array's floats as sent, not numpy scalars: an unseen one is told by its repr.
        raw: Sequence[object] = values.tolist() if isinstance(values, np.ndarray) else values
        bins = self.bins.assign(raw)
        series = bins.astype(np.float64)
        series[bins == self.bins.null_bin] = np.nan
        unseen = np.flatnonzero(bins == self.bins.other_bin)
        if unseen.size:
            # Values outside the reference's categories share one bin, but not one value:
            # as the bin index, "de", "fr" and "us" (a case change) looked like one value
            # frozen. Each gets its own code, past the bin indices, stable across processes.
            texts = [
                v if isinstance(v, str) else repr(v) for v in (raw[i] for i in unseen.tolist())
            ]
            codes = [self.bins.n_bins + zlib.crc32(t.encode("utf-8", "replace")) for t in texts]
            series[unseen] = codes
            self.last_unseen = (float(codes[-1]), texts[-1])
        return bins, series

    def accumulate(self, values: FeatureColumn, rows: IndexArray) -> IndexArray:
        """Add a part of the current window: each row's value and scopes. Returns each
        row's bin."""
        bin_index, series = self.observe(values, rows)
        self.current += scope_histograms(bin_index, rows, len(self.psi), self.bins.n_bins)
        self.window_values.append(np.repeat(series, rows.shape[1]))
        return bin_index

    def drifted(self, psi_threshold: float, alpha: float) -> BoolArray:
        """Per scope: the last judged window moved, by its effect (PSI) and beyond noise
        (G-test)."""
        return (self.psi >= psi_threshold) & (self.pvalue < alpha)

    def category_of(self, code: float) -> str:
        """The category a categorical value's code stands for (see :meth:`observe`)."""
        assert isinstance(self.bins, CategoricalBins)
        if 0 <= code < self.bins.other_bin:
            return self.bins.categories[int(code)]
        if self.last_unseen is not None and self.last_unseen[0] == code:
            return self.last_unseen[1]
        return OTHER

    def judge_window(
        self,
        judged: BoolArray,
        drifted_now: BoolArray,
        health: HealthVerdict,
        window_start: FloatArray,
        psi_threshold: float,
    ) -> None:
        """Record a closed window's verdicts in the judged scopes (after
        :func:`window_statistics`) and start the next window."""
        assert self.upstream is not None and self.window_wrong_type is not None
        assert self.health is not None
        windows = self.drift.windows
        self.last_health = health
        upstream_now = health.hit
        # A pool that started with this window, outside an upstream condition (a pool
        # restarted within one keeps its verdict): did the two windows before it (the one
        # before may hold the onset, part changed) include one that looked like the
        # reference?
        fresh = judged & (self.health.pool.windows == 1)
        fresh &= (self.upstream.streak == 0) & ~self.upstream.open
        for scope in np.flatnonzero(fresh).tolist():
            before = self.psi_history[scope][-2:]
            settled = REVERTED_PSI_RATIO * psi_threshold
            self.rescale_step[scope] = not before or min(before) < settled
        for scope in np.flatnonzero(upstream_now).tolist():
            if health.cause[scope] == "rescaled_signal" and not rescale_is_upstream(
                [*self.rescale_history[scope], float(health.window_factor[scope])],
                float(health.rescale_factor[scope]),
                bool(self.drift.open[scope]),
                self.rescale_step[scope],
                by_hour=self.reference_hourly is not None,
            ):
                upstream_now[scope] = False
        # A window with too few of a sparse feature's values says nothing of its drift.
        decided = judged if self.undecided is None else judged & ~self.undecided
        self.drift.update(decided, drift_hit(drifted_now, upstream_now), window_start)
        up_opened, _ = self.upstream.update(judged, upstream_now, window_start)
        for scope in np.flatnonzero(judged & upstream_now).tolist():
            if not self.upstream.open[scope] or up_opened[scope]:
                self.upstream_cause[scope] = health.cause[scope]
                self.upstream_evidence[scope] = health.evidence[scope]
                factors = self.rescale_history[scope]
                factors.append(float(health.window_factor[scope]))
                del factors[:-windows]
        for scope in np.flatnonzero(judged & ~upstream_now).tolist():
            self.rescale_history[scope].clear()
        for scope in np.flatnonzero(decided).tolist():
            history = self.psi_history[scope]
            history.append(round(float(self.psi[scope]), 6))
            del history[:-windows]
        if self.last_window is None:
            self.last_window = np.zeros_like(self.current)
        self.last_window[judged] = self.current[judged]
        self.current[judged] = 0
        self.window_wrong_type[judged] = 0

    def reverted_peaks(self, still_shifted: BoolArray, psi_threshold: float) -> FloatArray:
        """Per scope, the highest PSI of a shift that reverted in the last window before it
        persisted (0 elsewhere). A shift counts as reverted only once its PSI fell well
        below the threshold (not one hovering around it), and not while the feature is
        broken upstream somewhere (its cohorts then show the fault, diluted, off and on)."""
        assert self.upstream is not None
        condition = self.drift
        settled = self.psi < REVERTED_PSI_RATIO * psi_threshold
        condition.reverted[still_shifted | ~settled] = 0
        if self.upstream.open.any():
            condition.reverted[:] = 0
        peak = np.zeros(len(condition.reverted))
        for scope in np.flatnonzero(condition.reverted).tolist():
            shifted = self.psi_history[scope][-1 - int(condition.reverted[scope]) : -1]
            peak[scope] = max(shifted, default=0.0)
        return peak

    def distribution(self, scope: int, cohort: dict[str, str]) -> DistributionSnapshot:
        """The reference's and the last judged window's histograms of one scope."""
        window = () if self.last_window is None else tuple(self.last_window[scope].tolist())
        return DistributionSnapshot(
            feature=self.name,
            cohort=tuple(cohort.items()),
            bins=bin_labels(self.bins),
            reference=tuple(self.reference[scope].tolist()),
            window=window,
        )

    def snapshot(self) -> FeatureSnapshot:
        n = len(self.psi)
        nan = np.full(n, np.nan)
        health, window = self.last_health, self.window_stats
        factor = health.rescale_factor if health is not None else nan
        nulls = repeats = nan
        if window is not None:
            nulls = np.where(window.events > 0, window.null_rate, np.nan)
            repeats = np.where((window.events > 0) & (window.pairs > 0), window.repeat_rate, np.nan)
        reported = self.upstream.reported if self.upstream is not None else np.zeros(n, bool)
        return FeatureSnapshot(
            name=self.name,
            wrong_type_values=int(self.wrong_type),
            psi=tuple(self.psi.tolist()),
            js_distance=tuple(self.js.tolist()),
            g_test_pvalue=tuple(self.pvalue.tolist()),
            drifted=tuple(self.drift.last.tolist()),
            drift_reported=tuple(self.drift.reported.tolist()),
            upstream_reported=tuple(
                self.upstream_cause_of(scope) if reported[scope] else "" for scope in range(n)
            ),
            rescale_factor=tuple(np.asarray(factor, dtype=np.float64).tolist()),
            null_ratio=tuple(np.asarray(nulls, dtype=np.float64).tolist()),
            repeat_ratio=tuple(np.asarray(repeats, dtype=np.float64).tolist()),
            seasonal=self.reference_hourly is not None,
        )


def bin_labels(bins: Bins) -> tuple[str, ...]:
    """Each bin's label, in bin order.

    >>> bin_labels(NumericBins(edges=np.array([1.0, 2.5])))
    ('< 1', '[1, 2.5)', '>= 2.5', 'null')
    >>> bin_labels(CategoricalBins(categories=("DE", "FR")))
    ('DE', 'FR', 'other', 'null')
    """
    if isinstance(bins, CategoricalBins):
        return (*bins.categories, "other", "null")
    edges = [f"{edge:.4g}" for edge in bins.edges.tolist()]
    if not edges:
        return ("values", "null")
    inner = [f"[{low}, {high})" for low, high in pairwise(edges)]
    return (f"< {edges[0]}", *inner, f">= {edges[-1]}", "null")


def _psi_of_present_values(
    reference: FloatArray, current: FloatArray, states: Sequence[FeatureDrift], threshold: float
) -> tuple[FloatArray, BoolArray]:
    """PSI of each stacked row (a block of rows per feature), or of its present values
    alone when that is larger: a feature absent from 95% of events whose values moved
    moves 5% of the histogram, under any threshold, and the values are what the model
    reads (a change in how often it is absent shows in the whole histogram's PSI). Also
    the rows left undecided: enough events on both sides but, nulls apart, too few
    values to compare, and no drift in the whole histogram either; those windows count
    neither way (a small cohort without nulls is judged on its whole histogram, as ever)."""
    whole = psi(reference, current)
    rows = len(whole) // max(len(states), 1)
    null_bins = np.repeat([state.bins.null_bin for state in states], rows)
    at = np.arange(len(whole))
    sized = (reference.sum(axis=1) >= MIN_PRESENT_EVENTS) & (
        current.sum(axis=1) >= MIN_PRESENT_EVENTS
    )
    reference, current = reference.copy(), current.copy()
    reference[at, null_bins] = current[at, null_bins] = 0.0
    enough = (reference.sum(axis=1) >= MIN_PRESENT_EVENTS) & (
        current.sum(axis=1) >= MIN_PRESENT_EVENTS
    )
    combined = np.where(enough, np.maximum(whole, psi(reference, current)), whole)
    return combined, sized & ~enough & (whole < threshold)


def window_statistics(
    states: Sequence[FeatureDrift],
    judged: BoolArray,
    hour_events: IntArray,
    config: MonitorConfig,
) -> None:
    """PSI, JS distance and G-test of every feature and judged scope in one call each:
    histograms are padded with empty bins (which every statistic ignores) to stack.
    ``hour_events`` (scope x slot) weighs the reference of a seasonal feature, whose
    slots hold ``min_reference_events`` where they can (see ``matched_reference``)."""
    threshold, min_events = config.psi_threshold, config.min_reference_events
    if not states:
        return
    width = max(state.bins.n_bins for state in states)
    rows = int(judged.sum())
    # Float: a reference matched to the window's hours holds expected counts.
    reference = np.zeros((len(states) * rows, width), dtype=np.float64)
    current = np.zeros_like(reference)
    for i, state in enumerate(states):
        block = slice(i * rows, (i + 1) * rows)
        if state.reference_hourly is not None:
            expected = matched_reference(
                state.reference_hourly[:, judged], hour_events[judged], min_events
            )
            # A scope whose window began before the feature became seasonal has no
            # hours counted, and one the day's sample missed has no hourly reference.
            unmatched = (hour_events[judged].sum(axis=1) == 0) | (expected.sum(axis=1) == 0)
            expected[unmatched] = state.reference[judged][unmatched]
            reference[block, : state.bins.n_bins] = expected
        else:
            reference[block, : state.bins.n_bins] = state.reference[judged]
        current[block, : state.bins.n_bins] = state.current[judged]
    combined, undecided = _psi_of_present_values(reference, current, states, threshold)
    stats = (combined, js_distance(reference, current))
    pvalue = g_test(reference, current)[1]
    for i, state in enumerate(states):
        block = slice(i * rows, (i + 1) * rows)
        state.psi[judged] = stats[0][block]
        state.undecided = np.zeros(len(state.psi), dtype=bool)
        state.undecided[judged] = undecided[block]
        if state.suspect_slots is not None:
            # Once a drift of the feature was reported, windows mostly of hours compared
            # with a reference that holds the change say nothing of it: they would clear
            # it while it lasts, and find it in reverse once it is over.
            state.suspect_confirmed |= bool(state.drift.reported.any())
            if state.suspect_confirmed:
                suspect = hour_events[:, state.suspect_slots].sum(axis=1)
                state.undecided |= 2 * suspect > hour_events.sum(axis=1)
        state.js[judged] = stats[1][block]
        state.pvalue[judged] = pvalue[block]


def upstream_checks(
    states: Sequence[FeatureDrift],
    scopes: IndexArray,
    carried: BoolArray,
    judged: BoolArray,
    drifted: BoolArray,
    n_scopes: int,
) -> list[HealthVerdict]:
    """Each feature's health verdict of a closed window (frozen, rescaled, missing,
    retyped) in the judged scopes, ``drifted`` holding each feature's drifted scopes. The
    window's values are (value, scope) pairs, ``scopes`` their scopes; the features keep
    the ``carried`` pairs, of scopes still short of a window, for the next window."""
    order = segment_order(scopes)
    values = np.array([np.concatenate(state.window_values) for state in states])
    stacked = stacked_segment_stats(values[:, order], scopes[order], n_scopes) if states else []
    healths = [state.health for state in states if state.health is not None]
    assert len(healths) == len(states)
    verdicts = judge_features(
        healths,
        stacked,
        [state.current for state in states],
        values,
        scopes,
        judged,
        drifted,
        np.array([state.window_wrong_type for state in states]),
    )
    for i, state in enumerate(states):
        state.window_stats = stacked[i]
        state.window_values = [values[i, carried]]
    return verdicts
