"""One model's monitor: reference, tumbling windows, drift per feature and scope.

The monitor is fed :class:`PredictionBatch` columns and returns decisions. It keeps
the first ``reference_events`` predictions as the reference, fixes bins, cohorts and
features on it, then compares every window (``window_events`` predictions, or
``window_s`` seconds of event time) against it, scope by scope: first whether an input
is broken upstream (frozen, rescaled, missing, retyped, renamed), then whether it
drifted. Joined labels go to its :class:`OutcomeMonitor`. Batches are split exactly at
window boundaries, so the result does not depend on how the stream was cut into batches.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.batch import PredictionBatch, numeric_column
from detectors.binning import Bins, CategoricalBins, NumericBins, scope_histograms
from detectors.cohorts import OTHER, POPULATION, CohortScopes, Dimension
from detectors.decision import Action, Cause, Decision
from detectors.divergence import g_test, js_distance, psi
from detectors.join import Joined, JoinStore
from detectors.monitor.deployment import DeploymentWatch
from detectors.monitor.outcome_monitor import Gates, OutcomeMonitor
from detectors.new_features import NewFeature, NewFeatures
from detectors.outcomes import band_edges_from_reference
from detectors.persistence import Persistence, announce, transient
from detectors.score_change import ScopedADWIN, ScopedPageHinkley
from detectors.seasonal import (
    DAY_S,
    HOURS,
    hour_of_day,
    hourly_histograms,
    matched_reference,
)
from detectors.segments import (
    SegmentStats,
    segment_order,
    sorted_segment_stats,
    stacked_segment_stats,
)
from detectors.signal_health import (
    RESCALE_PROBS,
    HealthVerdict,
    SignalHealth,
    judge_features,
    mild_factor,
)
from detectors.sketches import NumericSketch
from detectors.upstream import match_renamed, nearest_unit

OVERFLOW_FEATURE = "__other__"
_NUMBER = (int, float)


@dataclass(frozen=True)
class MonitorConfig:
    """Detection settings; the defaults are what driftgate runs with out of the box.

    The window is counted in the model's predictions (``window_events``), or, with
    ``window_s`` > 0, is a tumbling window of event time: aligned to multiples of
    ``window_s`` since the epoch (restarts and replays agree), it is the one that holds
    its first row, and closes before the first row at or past its end; after a gap, one
    window closes and the next is the one holding the new row. Late rows (event time
    before the window's start) go into the current window and are counted. A scope (a
    cohort value) whose share of a window is under ``min_window_events`` carries its
    events over to the next window instead of being judged on too few.
    """

    reference_events: int = 10_000
    # A reference that covers whole days compares like with like on traffic with a daily
    # cycle: it grows to reference_span_s of event time when that fits in
    # reference_max_events (slow streams); a faster stream keeps reference_events, since a
    # day of it would blind the monitor for too long and part of a day helps little.
    reference_span_s: float = 86_400.0
    reference_max_events: int = 50_000
    window_events: int = 2_000
    window_s: float = 0.0
    # One event dated far ahead would open a window no later event reaches: a window by
    # event time also closes once it holds this many predictions, and the next one is the
    # one holding the next row, so the monitor keeps judging and goes back to the events'
    # own time after one full window. The reference may hold as many predictions (its
    # default reference_max_events), so this adds no new memory ceiling.
    window_max_events: int = 50_000
    min_window_events: int = 200
    min_reference_events: int = 200
    numeric_bins: int = 10
    max_categories: int = 20
    psi_threshold: float = 0.2
    alpha: float = 0.001
    persistence_windows: int = 3
    adwin_delta: float = 0.002
    cohort_dimensions: tuple[tuple[str, ...], ...] = ()
    max_cohort_values: int = 20
    max_cohort_dimensions: int = 8
    max_features: int = 200
    reference_labels: int = 5_000
    label_window_labels: int = 1_000
    min_labels: int = 200
    untrusted_sources: tuple[str, ...] = ("click", "implicit", "proxy")
    max_versions: int = 20

    def __post_init__(self) -> None:
        positive = (
            "reference_events",
            "reference_max_events",
            "window_events",
            "window_max_events",
            "min_window_events",
            "min_reference_events",
            "max_categories",
            "persistence_windows",
            "max_cohort_values",
            "max_cohort_dimensions",
            "max_features",
            "reference_labels",
            "label_window_labels",
            "min_labels",
            "max_versions",
        )
        for name in (*positive, "numeric_bins"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            if value < (2 if name == "numeric_bins" else 1):
                low = 2 if name == "numeric_bins" else 1
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.reference_max_events < self.reference_events:
            raise ValueError(
                f"reference_max_events must be >= reference_events ({self.reference_events}), "
                f"got {self.reference_max_events}"
            )
        if not 0 <= self.reference_span_s < float("inf"):
            raise ValueError(
                f"reference_span_s must be a finite number >= 0 (0: count only), "
                f"got {self.reference_span_s}"
            )
        window_s = self.window_s
        if isinstance(window_s, bool) or not (
            isinstance(window_s, int | float) and 0 <= window_s < float("inf")
        ):
            raise ValueError(
                f"window_s must be a finite number of seconds >= 0 (0: windows of "
                f"window_events predictions), got {window_s!r}"
            )
        if not (0 < self.psi_threshold < float("inf")):
            raise ValueError(f"psi_threshold must be a finite number > 0, got {self.psi_threshold}")
        for name in ("alpha", "adwin_delta"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if any(isinstance(d, str) for d in self.cohort_dimensions):
            raise ValueError(
                "cohort_dimensions must be a list of lists of attribute names, "
                "e.g. [[region], [region, channel]]"
            )
        dims = tuple(tuple(d) for d in self.cohort_dimensions)
        if any(not d or not all(isinstance(a, str) and a for a in d) for d in dims):
            raise ValueError("cohort_dimensions must be lists of attribute names")
        object.__setattr__(self, "cohort_dimensions", dims)
        if isinstance(self.untrusted_sources, str) or not all(
            isinstance(source, str) for source in self.untrusted_sources
        ):
            raise ValueError("untrusted_sources must be a list of label source names")
        object.__setattr__(self, "untrusted_sources", tuple(self.untrusted_sources))


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
    rescale_history: list[list[float]] = field(default_factory=list)
    # The window's values as flat (value, scope) pairs, one array per part; the
    # monitor keeps the matching scopes (the same for every feature).
    window_values: list[FloatArray] = field(default_factory=list)
    # (hour, scope, bin) reference counts, kept when the reference covers a day.
    reference_hourly: IntArray | None = None
    # Per scope: the last window had too few present values to judge drift on.
    undecided: BoolArray | None = None
    # The code and text of the last value seen outside a categorical's reference
    # categories: a window frozen on it names it (e.g. "unknown").
    last_unseen: tuple[float, str] | None = None

    @property
    def kind(self) -> str:
        return "numeric" if isinstance(self.bins, NumericBins) else "categorical"

    @classmethod
    def fresh(cls, name: str, bins: Bins, reference: IntArray, windows: int) -> FeatureDrift:
        n_scopes = reference.shape[0]
        nan = np.full(n_scopes, np.nan)
        return cls(
            name=name,
            bins=bins,
            reference=reference,
            current=np.zeros_like(reference),
            drift=Persistence(n_scopes, windows),
            psi=nan.copy(),
            js=nan.copy(),
            pvalue=nan.copy(),
            psi_history=[[] for _ in range(n_scopes)],
        )

    def observe(
        self, values: Sequence[object], rows: IndexArray | None = None
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
        bins = self.bins.assign(values)
        series = bins.astype(np.float64)
        series[bins == self.bins.null_bin] = np.nan
        unseen = np.flatnonzero(bins == self.bins.other_bin)
        if unseen.size:
            # Values outside the reference's categories share one bin, but not one value:
            # as the bin index, "de", "fr" and "us" (a case change) looked like one value
            # frozen. Each gets its own code, past the bin indices, stable across processes.
            texts = [
                v if isinstance(v, str) else repr(v) for v in (values[i] for i in unseen.tolist())
            ]
            codes = [self.bins.n_bins + zlib.crc32(t.encode("utf-8", "replace")) for t in texts]
            series[unseen] = codes
            self.last_unseen = (float(codes[-1]), texts[-1])
        return bins, series

    def category_of(self, code: float) -> str:
        """The category a categorical value's code stands for (see :meth:`observe`)."""
        assert isinstance(self.bins, CategoricalBins)
        if 0 <= code < self.bins.other_bin:
            return self.bins.categories[int(code)]
        if self.last_unseen is not None and self.last_unseen[0] == code:
            return self.last_unseen[1]
        return OTHER


QUANTILE_PROBS = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
_RESCALE_COLUMNS = np.searchsorted(QUANTILE_PROBS, RESCALE_PROBS)


def _sketch_quantiles(values: FloatArray, scopes: IndexArray, n_scopes: int) -> FloatArray:
    """Reference quantiles per scope, from a mergeable sketch (1% relative error)."""
    sketch = NumericSketch(n_scopes)
    sketch.update(values, scopes)
    return np.array(
        [[sketch.quantile(scope, float(q)) for q in QUANTILE_PROBS] for scope in range(n_scopes)]
    )


# A shift seen in at least this many consecutive windows that reverted before it
# persisted gets an informational hold (transient_shift); one window alone happens by
# chance now and then (a p-value of 0.001 over features x scopes x windows).
TRANSIENT_MIN_WINDOWS = 2
REVERTED_PSI_RATIO = 0.5

# This many features starting to drift in one scope in the same window are one event
# (a new traffic source, a pipeline change): one decision lists them all.
GROUP_FEATURES = 3
GROUPED = {("investigate", "covariate_drift"), ("hold", "transient_shift")}


def _grouped(decisions: list[Decision]) -> list[Decision]:
    """Drift decisions of one window: one per scope when GROUP_FEATURES or more
    features opened (or reverted) together, with the features (strongest first) in the
    evidence."""
    opened: dict[tuple[str, str, str], list[Decision]] = {}
    for d in decisions:
        if (d.action, d.cause) in GROUPED:
            key = (d.action, d.cause, repr(sorted((d.cohort or {}).items())))
            opened.setdefault(key, []).append(d)
    groups = [g for g in opened.values() if len(g) >= GROUP_FEATURES]
    if not groups:
        return decisions
    members = {id(d) for g in groups for d in g}
    out = [d for d in decisions if id(d) not in members]
    for group in groups:
        group = sorted(group, key=lambda d: -float(d.evidence["psi"]))
        first = group[0]
        evidence = {
            **{k: v for k, v in first.evidence.items() if k not in ("psi", "g_test_pvalue")},
            "features": [d.feature for d in group],
            "psi": {str(d.feature): d.evidence["psi"] for d in group},
            "first_seen": min(float(d.evidence["first_seen"]) for d in group),
        }
        if "g_test_pvalue" in first.evidence:
            evidence["g_test_pvalue"] = {str(d.feature): d.evidence["g_test_pvalue"] for d in group}
        for name in ("feature_kind", "js_distance", "psi_history"):
            evidence.pop(name, None)
        out.append(dataclasses.replace(first, feature=None, evidence=evidence))
    return out


# Window-to-window spread (max / min) of a rescale factor that is still one factor.
STEADY_FACTOR_RATIO = 1.25


# Fewer present values than this make a histogram of ~10 bins mostly noise.
MIN_PRESENT_EVENTS = 100


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


def _steady(history: Sequence[float], factor: float) -> bool:
    factors = [f for f in (*history, factor) if math.isfinite(f) and f != 0]
    if not factors:
        return True
    if len({math.copysign(1.0, f) for f in factors}) > 1:
        return False
    sizes = [abs(f) for f in factors]
    return max(sizes) <= STEADY_FACTOR_RATIO * min(sizes)


def _infer_bins(values: Sequence[object], config: MonitorConfig) -> Bins:
    numbers = sum(1 for v in values if isinstance(v, int | float))
    strings = sum(1 for v in values if isinstance(v, str))
    if strings > numbers:
        return CategoricalBins.from_reference(values, config.max_categories)
    column, _ = numeric_column(values)
    return NumericBins.from_reference(column, config.numeric_bins)


class ModelMonitor:
    """Drift monitor of one model, fed columns, returning decisions.

    >>> import numpy as np
    >>> from detectors.batch import PredictionBatch
    >>> rng = np.random.default_rng(11)
    >>> n = 30_000
    >>> amount = rng.lognormal(3, 1, n)
    >>> amount[20_000:] += amount.std()  # the world changed: bigger baskets
    >>> batch = PredictionBatch(
    ...     ts=np.arange(n, dtype=float), score=rng.random(n), model_version=["v1"] * n,
    ...     cohorts={"region": list(rng.choice(["eu", "us"], n))},
    ...     features={"amount": amount.tolist(), "age": rng.normal(40, 9, n).tolist()},
    ... )
    >>> monitor = ModelMonitor("fraud")
    >>> [(d.action, d.cause, d.feature, d.cohort) for d in monitor.update(batch)]
    [('investigate', 'covariate_drift', 'amount', None)]
    """

    def __init__(self, model: str, config: MonitorConfig | None = None) -> None:
        self.model = model
        self.config = config or MonitorConfig()
        self._reset()

    def _reset(self) -> None:
        self._reference_parts: list[PredictionBatch] = []
        self._reference_rows = 0
        # Rows the reference may take: reference_events, or up to reference_max_events
        # while it grows to a whole day.
        self._reference_target = self.config.reference_events
        self._reference_first_ts = math.nan
        self.scopes: CohortScopes | None = None
        self.features: dict[str, FeatureDrift] = {}
        self.new_features = NewFeatures(self.config.max_features, self.config.persistence_windows)
        self._renamed: dict[str, str] = {}
        self.score_changes: ScopedADWIN | None = None
        self.score_shifts: ScopedPageHinkley | None = None
        self.deployments: DeploymentWatch | None = None
        self.outcomes: OutcomeMonitor | None = None
        self.labels_before_reference = 0
        self.events = 0
        self.windows = 0
        self.model_version: str | None = None
        self.last_ts: float | None = None
        self.reference_start: float | None = None
        self.reference_end: float | None = None
        self._in_window = 0
        # End of the current window by event time, set by its first row.
        self._window_end = math.inf
        self._scope_events = np.zeros(0, dtype=np.int64)
        self._window_scopes: list[IndexArray] = []
        self._scope_start = np.zeros(0)
        self._scope_end = np.zeros(0)
        # Windows are compared with the reference at the same hours once it covers a day.
        self.seasonal = False
        self._hour_events = np.zeros((0, HOURS), dtype=np.int64)
        self.reference_scope_events = np.zeros(0, dtype=np.int64)

    @property
    def warm(self) -> bool:
        return self.scopes is not None

    @property
    def reference_progress(self) -> float:
        if self.warm:
            return 1.0
        if self._reference_target > self.config.reference_events:
            return min(1.0, self._reference_span() / self.config.reference_span_s)
        return self._reference_rows / self.config.reference_events

    @property
    def scope_events(self) -> IntArray:
        """Events per scope in the current (possibly carried-over) window."""
        return self._scope_events.copy()

    def update(self, batch: PredictionBatch, join: JoinStore | None = None) -> list[Decision]:
        """Process predictions in order; with a ``join`` store, also keep them (with their
        scopes) for the labels to come, and judge the labels that were waiting for them."""
        decisions: list[Decision] = []
        position = 0
        n = len(batch)
        config = self.config
        full = config.window_max_events if config.window_s else config.window_events
        while position < n:
            if not self.warm:
                take = self._reference_take(batch.ts[position:])
                part = batch.slice(position, position + take)
                self._observe(part)
                self._reference_parts.append(part)
                self._bound_reference_names()
                # Cohort scopes are not known before the reference is built.
                decisions.extend(self._store(part, np.zeros((take, 1), dtype=np.intp), join))
                self._reference_rows += take
                position += take
                self.events += take
                if self._reference_complete():
                    self._fit_reference()
                continue
            take = self._window_take(batch.ts[position:], full)
            if not take:
                decisions.extend(self._close_window())
                continue
            part = batch.slice(position, position + take)
            self._observe(part)
            rows = self._accumulate(part)
            decisions.extend(self._store(part, rows, join))
            position += take
            self.events += take
            self._in_window += take
            if self._in_window == full:
                decisions.extend(self._close_window())
        return decisions

    def _window_take(self, ts: FloatArray, full: int) -> int:
        """How many of the next rows (event times ``ts``) the current window takes, up to
        ``full`` in all; 0 when the first of them is at or past the end of a window by
        event time, which then closes before that row is taken."""
        room = min(len(ts), full - self._in_window)
        width = self.config.window_s
        if not width:
            return room
        opening = self._in_window == 0
        if opening:
            # np.floor: a NaN or infinite time (possible outside the decoder) only leaves
            # the window to close when full, rather than raise.
            self._window_end = float((np.floor(ts[0] / width) + 1.0) * width)
        # Even where rounding puts the end at the opening row's time, the row is taken:
        # every window holds at least one row.
        past = np.flatnonzero(ts[int(opening) : room] >= self._window_end)
        return int(past[0]) + int(opening) if past.size else room

    def _reference_take(self, ts: FloatArray) -> int:
        """How many of the next rows (event times ``ts``) go into the reference."""
        if math.isnan(self._reference_first_ts):
            self._reference_first_ts = float(ts[0])
        take = min(len(ts), self._reference_target - self._reference_rows)
        if self._reference_target > self.config.reference_events:
            # Growing to a whole day: stop at the first row that completes it.
            reached = np.flatnonzero(
                np.maximum.accumulate(ts[:take]) - self._reference_first_ts
                >= self.config.reference_span_s
            )
            if reached.size:
                take = int(reached[0]) + 1
        return take

    def _bound_reference_names(self) -> None:
        """Keep the reference's candidate features to the 2 x max_features present in
        most events so far: parts carrying different never-seen names would otherwise
        be padded to names x reference rows when they are joined."""
        limit = 2 * self.config.max_features
        names = {name for part in self._reference_parts for name in part.features}
        if len(names) <= limit:
            return
        present: dict[str, int] = {}
        for part in self._reference_parts:
            for name, column in part.features.items():
                present[name] = present.get(name, 0) + len(column) - list(column).count(None)
        keep = set(sorted(present, key=lambda name: (-present[name], name))[:limit])
        self._reference_parts = [
            dataclasses.replace(
                part, features={k: v for k, v in part.features.items() if k in keep}
            )
            for part in self._reference_parts
        ]

    def _reference_span(self) -> float:
        last = max(float(part.ts.max()) for part in self._reference_parts)
        return last - self._reference_first_ts

    def _reference_complete(self) -> bool:
        """Done at the target; at reference_events, decide whether to grow to a day."""
        config = self.config
        rows, span = self._reference_rows, self._reference_span()
        if rows == config.reference_events == self._reference_target:
            if 0 < span < config.reference_span_s:
                day = rows * config.reference_span_s / span
                if day <= config.reference_max_events:
                    self._reference_target = config.reference_max_events
                    return False
            return True
        growing = self._reference_target > config.reference_events
        return rows >= self._reference_target or (growing and span >= config.reference_span_s)

    def _store(
        self, part: PredictionBatch, rows: IndexArray, join: JoinStore | None
    ) -> list[Decision]:
        if join is None or not part.event_id:
            return []
        waiting = join.add_predictions(
            part.event_id, part.ts, part.score, part.model_version, rows, [self.model] * len(part)
        )
        return self.update_labels(waiting) if len(waiting) else []

    def update_labels(self, joined: Joined) -> list[Decision]:
        """Judge outcomes on labels joined to this model's predictions."""
        if self.outcomes is None or self.reference_end is None:
            self.labels_before_reference += len(joined)
            return []
        # Predictions made while the reference was collected were stored without their
        # cohorts (not known yet): their labels would only blur the per-cohort figures.
        # A pinned reference took none from the stream, whatever its event times.
        fresh = joined.prediction_ts > (self.reference_end if self._reference_rows else -math.inf)
        self.labels_before_reference += int((~fresh).sum())
        joined = joined.take(fresh)
        gates = Gates(
            broken_inputs=tuple(
                sorted(
                    n for n, f in self.features.items() if f.upstream and f.upstream.announced.any()
                )
            ),
            drifting_inputs=tuple(
                sorted(n for n, f in self.features.items() if f.drift.announced.any())
            ),
            suspect_versions=self.deployments.suspects() if self.deployments else (),
            regressed_versions=self.deployments.regressed() if self.deployments else (),
        )
        decisions = self.outcomes.update(joined, gates, self.model_version)
        if self.deployments is None:
            return decisions
        for verdict in self.outcomes.version_verdicts:
            self.deployments.label_window(*verdict)
        self.outcomes.version_verdicts.clear()
        # A regression the scores already reported is not reported again by the labels.
        return [d for d in decisions if self.deployments.first_report(d)]

    def _observe(self, part: PredictionBatch) -> None:
        # Parts end at window boundaries, so a decision carries the version and time of
        # its window's last event, whatever the batching.
        self.model_version = part.model_version[-1]
        self.last_ts = float(part.ts[-1])

    def _dimensions(self, reference: PredictionBatch) -> list[Dimension]:
        if self.config.cohort_dimensions:
            return list(self.config.cohort_dimensions)
        present = sorted(k for k, v in reference.cohorts.items() if any(x is not None for x in v))
        return [(k,) for k in present[: self.config.max_cohort_dimensions]]

    def _fit_reference(self) -> None:
        reference = PredictionBatch.concat(self._reference_parts)
        self._reference_parts = []
        self.reference_start = float(reference.ts[0])
        self.reference_end = float(reference.ts[-1])
        self.seasonal = float(reference.ts.max() - reference.ts.min()) >= DAY_S
        hours = hour_of_day(reference.ts)
        scopes = CohortScopes.from_reference(
            reference.cohorts, self._dimensions(reference), self.config.max_cohort_values
        )
        self.scopes = scopes
        n_scopes = scopes.n_scopes
        rows = scopes.assign(reference.cohorts, len(reference))
        self.reference_scope_events = np.bincount(rows.ravel(), minlength=n_scopes).astype(np.int64)
        flat_scopes = rows.ravel()
        order = segment_order(flat_scopes)
        presence = {
            name: sum(v is not None for v in values) for name, values in reference.features.items()
        }
        ranked = sorted(presence, key=lambda k: (-presence[k], k))[: self.config.max_features]
        for name in ranked:
            values = reference.features[name]
            bins = _infer_bins(values, self.config)
            state = FeatureDrift.fresh(
                name,
                bins,
                np.zeros((n_scopes, bins.n_bins), dtype=np.int64),
                self.config.persistence_windows,
            )
            bin_index, series = state.observe(values)
            state.reference = scope_histograms(bin_index, rows, n_scopes, bins.n_bins)
            if self.seasonal:
                state.reference_hourly = hourly_histograms(
                    bin_index, hours, rows, n_scopes, bins.n_bins
                )
            flat = np.repeat(series, rows.shape[1])
            state.reference_stats = sorted_segment_stats(flat[order], flat_scopes[order], n_scopes)
            rescale_quantiles = None
            if isinstance(bins, NumericBins):
                state.reference_quantiles = _sketch_quantiles(flat, flat_scopes, n_scopes)
                rescale_quantiles = state.reference_quantiles[:, _RESCALE_COLUMNS]
            state.health = SignalHealth(
                flat, flat_scopes, state.reference_stats, state.reference, rescale_quantiles
            )
            state.upstream = Persistence(n_scopes, self.config.persistence_windows)
            state.upstream_cause = [""] * n_scopes
            state.upstream_evidence = [{} for _ in range(n_scopes)]
            state.rescale_history = [[] for _ in range(n_scopes)]
            state.window_wrong_type = np.zeros(n_scopes, dtype=np.int64)
            self.features[name] = state
        config = self.config
        self.outcomes = OutcomeMonitor(
            self.model,
            scopes,
            band_edges_from_reference(reference.score),
            reference_labels=config.reference_labels,
            window_labels=config.label_window_labels,
            min_labels=config.min_labels,
            windows=config.persistence_windows,
            untrusted_sources=config.untrusted_sources,
        )
        self.score_changes = ScopedADWIN(n_scopes, self.config.adwin_delta)
        self.score_changes.update(reference.score, rows, reference.ts)
        self.score_shifts = ScopedPageHinkley(n_scopes)
        self.score_shifts.update(reference.score, rows, reference.ts)
        versions = Counter(reference.model_version)
        self.deployments = DeploymentWatch(
            self.model,
            scopes,
            reference.score,
            rows,
            max(versions, key=lambda v: (versions[v], v)),
            n_bins=config.numeric_bins,
            psi_threshold=config.psi_threshold,
            alpha=config.alpha,
            windows=config.persistence_windows,
            min_events=config.min_window_events,
            max_versions=config.max_versions,
        )
        self._scope_events = np.zeros(n_scopes, dtype=np.int64)
        self._window_scopes = []
        self._scope_start = np.full(n_scopes, np.nan)
        self._scope_end = np.full(n_scopes, np.nan)
        self._hour_events = np.zeros((n_scopes, HOURS), dtype=np.int64)

    def pin_reference(self, batch: PredictionBatch) -> None:
        """Fit the reference on ``batch`` (a known-good period, say training-time traffic)
        instead of on the first events, so that windows are judged from the first event
        on. The reference window, and whether windows are compared hour by hour, follow
        from the batch's own event times.

        >>> import numpy as np
        >>> from detectors.batch import PredictionBatch
        >>> rng = np.random.default_rng(3)
        >>> def traffic(n, shift=0.0):
        ...     return PredictionBatch(
        ...         ts=np.arange(n, dtype=float), score=rng.random(n), model_version=["v1"] * n,
        ...         cohorts={}, features={"amount": (rng.lognormal(3, 1, n) + shift).tolist()},
        ...     )
        >>> monitor = ModelMonitor("fraud")
        >>> monitor.pin_reference(traffic(10_000))
        >>> [(d.action, d.cause, d.feature) for d in monitor.update(traffic(6_000, shift=30.0))]
        [('investigate', 'covariate_drift', 'amount')]
        >>> monitor.windows, monitor.events
        (3, 6000)
        """
        if self.events or self.warm:
            raise ValueError(f"{self.model}: a reference can be pinned only before any event")
        if not len(batch):
            raise ValueError(f"{self.model}: cannot pin an empty reference")
        # _reference_rows stays 0: no prediction of the stream went into this reference.
        self._reference_parts = [batch]
        self._fit_reference()

    def _accumulate(self, part: PredictionBatch) -> IndexArray:
        """Add a part of the current window; returns each row's scopes."""
        assert self.scopes is not None and self.score_changes is not None
        n_scopes = self.scopes.n_scopes
        rows = self.scopes.assign(part.cohorts, len(part))
        counts = np.bincount(rows.ravel(), minlength=n_scopes)
        # A window's span is the earliest and latest event time of its rows, whatever
        # their order and the batch cuts (rows may come late).
        flat_ts = np.repeat(part.ts, rows.shape[1])
        first = np.full(n_scopes, np.inf)
        np.minimum.at(first, rows.ravel(), flat_ts)
        last = np.full(n_scopes, -np.inf)
        np.maximum.at(last, rows.ravel(), flat_ts)
        present = counts > 0
        starting = (self._scope_events == 0) & present
        self._scope_start[starting] = first[starting]
        self._scope_end[starting] = last[starting]
        going_on = present & ~starting
        self._scope_start[going_on] = np.minimum(self._scope_start[going_on], first[going_on])
        self._scope_end[going_on] = np.maximum(self._scope_end[going_on], last[going_on])
        self._scope_events += counts
        if self.seasonal:
            # Events per (scope, hour): the hour of day is the "bin".
            self._hour_events += scope_histograms(hour_of_day(part.ts), rows, n_scopes, HOURS)
        empty: list[object] = [None] * len(part)
        self._window_scopes.append(rows.ravel())
        for name, state in self.features.items():
            bin_index, series = state.observe(part.features.get(name, empty), rows)
            state.current += scope_histograms(bin_index, rows, n_scopes, state.bins.n_bins)
            state.window_values.append(np.repeat(series, rows.shape[1]))
        unknown = part.features.keys() - self.features.keys()
        if unknown:
            self.new_features.observe({n: part.features[n] for n in sorted(unknown)}, len(part))
        self.score_changes.update(part.score, rows, part.ts)
        assert self.score_shifts is not None
        self.score_shifts.update(part.score, rows, part.ts)
        assert self.deployments is not None
        self.deployments.observe(part.model_version, part.score, rows, part.ts)
        return rows

    def _close_window(self) -> list[Decision]:
        assert self.scopes is not None
        self._in_window = 0
        self.windows += 1
        config = self.config
        judgeable = self.reference_scope_events >= config.min_reference_events
        judged = (self._scope_events >= config.min_window_events) & judgeable
        decisions: list[Decision] = []
        if not judged.any():
            return decisions
        self._window_statistics(judged)
        scopes = np.concatenate(self._window_scopes)
        order = segment_order(scopes)
        # Rows carry over for scopes still short of a window, not for those too small in
        # the reference to ever be judged (they would pile up for good).
        keep = ~judged[scopes] & judgeable[scopes]
        self._window_scopes = [scopes[keep]]
        states = list(self.features.values())
        values = np.array([np.concatenate(state.window_values) for state in states])
        if states:
            stacked = stacked_segment_stats(values[:, order], scopes[order], self.scopes.n_scopes)
        drifted = np.array(
            [(s.psi >= config.psi_threshold) & (s.pvalue < config.alpha) for s in states]
        )
        healths = [state.health for state in states if state.health is not None]
        assert len(healths) == len(states)
        verdicts = judge_features(
            healths,
            stacked if states else [],
            [state.current for state in states],
            values,
            scopes,
            judged,
            drifted,
            np.array([state.window_wrong_type for state in states]),
        )
        for i, state in enumerate(states):
            state.window_stats = stacked[i]
            state.window_values = [values[i, keep]]
            decisions.extend(self._judge(state, judged, drifted[i], verdicts[i]))
        decisions = _grouped(decisions)
        decisions.extend(self._deployment_decisions())
        for feature in self.new_features.close(int(self._scope_events[POPULATION])):
            if feature.name not in self._renamed.values():
                decisions.append(self._new_feature_decision(feature))
        done = judged | ~judgeable
        self._scope_events[done] = 0
        self._hour_events[done] = 0
        self._scope_start[done] = np.nan
        return decisions

    def _deployment_decisions(self) -> list[Decision]:
        """New versions' scores against the incumbent's, in the scopes whose inputs did
        not move (there, a score shift is the model's doing)."""
        assert self.deployments is not None and self.scopes is not None
        moved = np.zeros(self.scopes.n_scopes, dtype=bool)
        for state in self.features.values():
            moved |= state.drift.last | state.drift.open
            if state.upstream is not None:
                moved |= state.upstream.last | state.upstream.open
        return [
            decision
            for decision in self.deployments.close(moved, self._scope_start, self._scope_end)
            if self.deployments.first_report(decision)
        ]

    def _window_statistics(self, judged: BoolArray) -> None:
        """PSI, JS distance and G-test of every feature and judged scope in one call each:
        histograms are padded with empty bins (which every statistic ignores) to stack."""
        states = list(self.features.values())
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
                    state.reference_hourly[:, judged], self._hour_events[judged]
                )
                reference[block, : state.bins.n_bins] = expected
            else:
                reference[block, : state.bins.n_bins] = state.reference[judged]
            current[block, : state.bins.n_bins] = state.current[judged]
        combined, undecided = _psi_of_present_values(
            reference, current, states, self.config.psi_threshold
        )
        stats = (combined, js_distance(reference, current))
        pvalue = g_test(reference, current)[1]
        for i, state in enumerate(states):
            block = slice(i * rows, (i + 1) * rows)
            state.psi[judged] = stats[0][block]
            state.undecided = np.zeros(len(state.psi), dtype=bool)
            state.undecided[judged] = undecided[block]
            state.js[judged] = stats[1][block]
            state.pvalue[judged] = pvalue[block]

    def _judge(
        self, state: FeatureDrift, judged: BoolArray, drifted_now: BoolArray, health: HealthVerdict
    ) -> list[Decision]:
        assert self.scopes is not None
        assert state.upstream is not None and state.window_wrong_type is not None
        config = self.config
        state.last_health = health
        upstream_now = health.hit
        for scope in np.flatnonzero(upstream_now).tolist():
            if health.cause[scope] != "rescaled_signal":
                continue
            if not _steady(state.rescale_history[scope], float(health.rescale_factor[scope])):
                upstream_now[scope] = False  # a unit change has one factor; this wanders
            elif state.drift.open[scope] and mild_factor(float(health.rescale_factor[scope])):
                # A unit change is a step away from the reference. A feature already in a
                # confirmed drift that then looks mildly scaled is that drift going on: the
                # peak of a multiplicative daily cycle the reference did not cover is a
                # steady factor of 1.6 for an hour, and no reason to fix the feed. A factor
                # of 1,000 is not something the world drifts into.
                upstream_now[scope] = False
        # A broken input explains its own shift: it is reported as upstream, not drift.
        # A window with too few of a sparse feature's values says nothing of its drift.
        decided = judged if state.undecided is None else judged & ~state.undecided
        _, cleared = state.drift.update(decided, drifted_now & ~upstream_now, self._scope_start)
        up_opened, up_cleared = state.upstream.update(judged, upstream_now, self._scope_start)
        for scope in np.flatnonzero(judged & upstream_now).tolist():
            if not state.upstream.open[scope] or up_opened[scope]:
                state.upstream_cause[scope] = health.cause[scope]
                state.upstream_evidence[scope] = health.evidence[scope]
                factors = state.rescale_history[scope]
                factors.append(float(health.rescale_factor[scope]))
                del factors[: -config.persistence_windows]
        for scope in np.flatnonzero(judged & ~upstream_now).tolist():
            state.rescale_history[scope].clear()
        for scope in np.flatnonzero(decided).tolist():
            history = state.psi_history[scope]
            history.append(round(float(state.psi[scope]), 6))
            del history[: -config.persistence_windows]
        state.current[judged] = 0
        state.window_wrong_type[judged] = 0
        decisions: list[Decision] = []
        strength = state.psi
        for scope in announce(self.scopes, state.upstream, strength):
            decisions.append(self._upstream_decision(state, scope, "fix_upstream"))
        for scope in np.flatnonzero(up_cleared & state.upstream.announced).tolist():
            state.upstream.announced[scope] = False
            decisions.append(self._upstream_decision(state, scope, "hold"))
        for scope in announce(self.scopes, state.drift, strength):
            decisions.append(self._decision(state, scope, "investigate"))
        for scope in np.flatnonzero(cleared & state.drift.announced).tolist():
            state.drift.announced[scope] = False
            decisions.append(self._decision(state, scope, "hold"))
        decisions.extend(self._transients(state, drifted_now))
        return decisions

    def _transients(self, state: FeatureDrift, still_shifted: BoolArray) -> list[Decision]:
        """``hold``/``transient_shift`` for shifts that reverted before they persisted:
        nothing to act on, but worth knowing (a campaign, a short outage). A shift counts
        as reverted only once its PSI fell well below the threshold (not one hovering
        around it), and not while the feature is broken upstream somewhere (its cohorts
        then show the fault, diluted, off and on)."""
        assert self.scopes is not None and state.upstream is not None
        condition = state.drift
        settled = state.psi < REVERTED_PSI_RATIO * self.config.psi_threshold
        condition.reverted[still_shifted | ~settled] = 0
        if state.upstream.open.any():
            condition.reverted[:] = 0
        peak = np.zeros(len(condition.reverted))
        for scope in np.flatnonzero(condition.reverted).tolist():
            shifted = state.psi_history[scope][-1 - int(condition.reverted[scope]) : -1]
            peak[scope] = max(shifted, default=0.0)
        evidence = {
            "detector": "binned_psi_and_g_test",
            "feature_kind": state.kind,
            "psi_threshold": self.config.psi_threshold,
            "reference_window": {"start": self.reference_start, "end": self.reference_end},
        }
        return [
            self._emit(
                state,
                condition,
                scope,
                "hold",
                "transient_shift",
                {
                    **evidence,
                    "psi": round(float(peak[scope]), 6),
                    "psi_history": list(state.psi_history[scope]),
                },
            )
            for scope in transient(self.scopes, condition, peak, TRANSIENT_MIN_WINDOWS)
        ]

    def _decision(self, state: FeatureDrift, scope: int, action: Action) -> Decision:
        """A covariate drift decision (``investigate``, or ``hold`` once it cleared)."""
        config = self.config
        evidence: dict[str, Any] = {
            "detector": "binned_psi_and_g_test",
            "feature_kind": state.kind,
            "psi": round(float(state.psi[scope]), 6),
            "psi_threshold": config.psi_threshold,
            "g_test_pvalue": float(f"{state.pvalue[scope]:.6g}"),
            "alpha": config.alpha,
            "js_distance": round(float(state.js[scope]), 6),
            "psi_history": list(state.psi_history[scope]),
            "reference_window": {"start": self.reference_start, "end": self.reference_end},
        }
        broken = sorted(
            name
            for name, other in self.features.items()
            if other.upstream is not None and other.upstream.announced.any()
        )
        if broken:
            evidence["inputs_broken"] = broken
        return self._emit(state, state.drift, scope, action, "covariate_drift", evidence)

    def _upstream_decision(self, state: FeatureDrift, scope: int, action: Action) -> Decision:
        """A frozen, rescaled or schema decision (``fix_upstream``, or ``hold`` once
        the signal recovered)."""
        assert state.upstream is not None
        cause = state.upstream_cause[scope] or "frozen_signal"
        evidence = {"feature_kind": state.kind, **state.upstream_evidence[scope]}
        frozen_value = evidence.get("frozen_value")
        if isinstance(state.bins, CategoricalBins) and isinstance(frozen_value, float):
            evidence["frozen_value"] = state.category_of(frozen_value)
        if evidence.get("kind") == "missing" and action == "fix_upstream":
            renamed = self._rename_of(state, scope)
            if renamed:
                evidence["kind"] = "renamed"
                evidence["renamed_to"], evidence["shape_distance"] = renamed
        factors = [f for f in state.rescale_history[scope] if math.isfinite(f) and f != 0]
        if cause == "rescaled_signal" and factors:
            # One window's quantiles are noisy (a few % at 2,000 events); the geometric
            # mean over the windows the condition persisted is the better estimate.
            sign = math.copysign(1.0, factors[-1])
            factor = sign * math.exp(sum(math.log(abs(f)) for f in factors) / len(factors))
            evidence["window_factors"] = [round(f, 6) for f in factors]
            evidence["factor"] = round(factor, 6)
            evidence["nearest_unit"] = nearest_unit(factor)
        return self._emit(state, state.upstream, scope, action, cause, evidence)  # type: ignore[arg-type]

    def _rename_of(self, state: FeatureDrift, scope: int) -> tuple[str, float] | None:
        """The new feature name whose values match a vanished feature's reference."""
        if state.reference_quantiles is None or scope != POPULATION:
            return None
        reference = {state.name: state.reference_quantiles[scope, _RESCALE_COLUMNS]}
        appeared = {}
        for name in self.new_features.totals:
            values = self.new_features.values(name)
            values = values[~np.isnan(values)]
            if values.size >= self.config.min_window_events:
                appeared[name] = np.quantile(values, RESCALE_PROBS, method="inverted_cdf")
        pairs = match_renamed(reference, appeared, RESCALE_PROBS)
        if not pairs:
            return None
        _, new, distance = pairs[0]
        self._renamed[state.name] = new
        return new, round(distance, 6)

    def _new_feature_decision(self, feature: NewFeature) -> Decision:
        start, end = float(self._scope_start[POPULATION]), float(self._scope_end[POPULATION])
        return Decision(
            model=self.model,
            model_version=self.model_version,
            action="fix_upstream",
            cause="schema_change",
            feature=feature.name,
            cohort=None,
            ts=end,
            window_start=start,
            window_end=end,
            window_events=int(self._scope_events[POPULATION]),
            confirmed_at=end,
            evidence={
                "detector": "new_features",
                "kind": "new_feature",
                "share_of_events": feature.share,
                "min_share": self.new_features.min_share,
                "persisted_windows": self.new_features.windows,
                "reference_features": sorted(self.features),
            },
        )

    def _emit(
        self,
        state: FeatureDrift,
        condition: Persistence,
        scope: int,
        action: Action,
        cause: Cause,
        evidence: dict[str, Any],
    ) -> Decision:
        assert self.scopes is not None
        reverted = cause == "transient_shift"
        # A reverted streak was reset by the window that ended it: report its length.
        streak = condition.reverted[scope] if reverted else condition.streak[scope]
        evidence = {
            **evidence,
            "persisted_windows": int(streak),
            "persistence_windows": self.config.persistence_windows,
            "first_seen": float(condition.first_seen[scope]),
            "window_events": int(self._scope_events[scope]),
            "reference_events": int(self.reference_scope_events[scope]),
        }
        if reverted:
            evidence["reverted"] = True
        elif action == "hold":
            evidence["resolved"] = True
            evidence["clean_windows"] = int(condition.clean_streak[scope])
        end = float(self._scope_end[scope])
        return Decision(
            model=self.model,
            model_version=self.model_version,
            action=action,
            cause=cause,
            feature=state.name,
            cohort=self.scopes.labels[scope] or None,
            ts=end,
            window_start=float(self._scope_start[scope]),
            window_end=end,
            window_events=int(self._scope_events[scope]),
            confirmed_at=end,
            evidence=evidence,
        )
