"""The reference: the predictions every window is compared with, and what is fitted on it.

:class:`ReferenceCollector` keeps a model's first ``reference_events`` predictions (or,
on a slow stream, up to a whole day of them: see :class:`MonitorConfig`);
:func:`fit_reference` fixes on them the cohort scopes, the features (the
``max_features`` present in most events), each feature's bins and reference histogram
per scope, its summary statistics and quantiles for the upstream checks, and, when the
reference covers a day, its histograms per hour of day.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from detectors.arrays import FeatureColumn, FloatArray, IndexArray, IntArray
from detectors.batch import PredictionBatch, missing_values, numeric_column
from detectors.binning import Bins, CategoricalBins, NumericBins, scope_histograms
from detectors.cohorts import CohortScopes, Dimension
from detectors.monitor.config import MonitorConfig
from detectors.monitor.feature_drift import QUANTILE_PROBS, FeatureDrift
from detectors.persistence import Persistence
from detectors.seasonal import DAY_S, slot_histograms, slot_of
from detectors.segments import segment_order, sorted_segment_stats
from detectors.signal_health import SignalHealth
from detectors.sketches import NumericSketch


class ReferenceCollector:
    """Takes the stream's first predictions until the reference is complete.

    >>> import numpy as np
    >>> from detectors.batch import PredictionBatch
    >>> collector = ReferenceCollector(MonitorConfig(reference_events=300, reference_span_s=0))
    >>> ts = np.arange(500, dtype=float)
    >>> take = collector.take(ts)
    >>> batch = PredictionBatch(ts=ts[:take], score=np.zeros(take), model_version=["v1"] * take,
    ...                         cohorts={}, features={})
    >>> take, collector.add(batch), collector.progress
    (300, True, 1.0)
    """

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self._reset()

    def _reset(self) -> None:
        self._parts: list[PredictionBatch] = []
        # Predictions of the stream taken (none for a pinned reference).
        self.rows = 0
        # Rows the reference may take: reference_events, or up to reference_max_events
        # while it grows to a whole day.
        self._target = self.config.reference_events
        self._first_ts = math.nan

    @property
    def progress(self) -> float:
        """Share of the reference collected (of its day, while it grows to one)."""
        if self._target > self.config.reference_events:
            return min(1.0, self._span() / self.config.reference_span_s)
        return self.rows / self.config.reference_events

    def take(self, ts: FloatArray) -> int:
        """How many of the next rows (event times ``ts``) go into the reference."""
        if math.isnan(self._first_ts):
            self._first_ts = float(ts[0])
        take = min(len(ts), self._target - self.rows)
        if self._target > self.config.reference_events:
            # Growing to a whole day: stop at the first row that completes it.
            reached = np.flatnonzero(
                np.maximum.accumulate(ts[:take]) - self._first_ts >= self.config.reference_span_s
            )
            if reached.size:
                take = int(reached[0]) + 1
        return take

    def add(self, part: PredictionBatch) -> bool:
        """Keep the rows :meth:`take` allowed; True once the reference is complete."""
        self._parts.append(part)
        self._bound_names()
        self.rows += len(part)
        return self._complete()

    def pin(self, batch: PredictionBatch) -> None:
        """Use ``batch`` as the whole reference (``rows`` stays 0: none of the stream)."""
        self._parts = [batch]

    def collected(self) -> PredictionBatch:
        """The reference, handed over once: the collector keeps no copy."""
        reference = PredictionBatch.concat(self._parts)
        self._parts = []
        return reference

    def _bound_names(self) -> None:
        """Keep the reference's candidate features to the 2 x max_features present in
        most events so far: parts carrying different never-seen names would otherwise
        be padded to names x reference rows when they are joined."""
        limit = 2 * self.config.max_features
        names = {name for part in self._parts for name in part.features}
        if len(names) <= limit:
            return
        present: dict[str, int] = {}
        for part in self._parts:
            for name, column in part.features.items():
                present[name] = present.get(name, 0) + len(column) - missing_values(column)
        keep = set(sorted(present, key=lambda name: (-present[name], name))[:limit])
        self._parts = [
            dataclasses.replace(
                part, features={k: v for k, v in part.features.items() if k in keep}
            )
            for part in self._parts
        ]

    def _span(self) -> float:
        last = max(float(part.ts.max()) for part in self._parts)
        return last - self._first_ts

    def _complete(self) -> bool:
        """Done at the target; at reference_events, decide whether to grow to a day."""
        config = self.config
        rows, span = self.rows, self._span()
        if rows == config.reference_events == self._target:
            if 0 < span < config.reference_span_s:
                day = rows * config.reference_span_s / span
                if day <= config.reference_max_events:
                    self._target = config.reference_max_events
                    return False
            return True
        growing = self._target > config.reference_events
        return rows >= self._target or (growing and span >= config.reference_span_s)


@dataclass(frozen=True)
class Reference:
    """What was fitted on a reference."""

    batch: PredictionBatch
    scopes: CohortScopes
    rows: IndexArray  # each reference row's scopes
    scope_events: IntArray  # reference rows per scope
    features: dict[str, FeatureDrift]
    # Covers a day: windows are compared with the reference at the same hours.
    seasonal: bool
    incumbent: str  # the model version most of the reference's predictions came from
    # Each reference row's bin per feature (what a day's sample starts from).
    row_bins: dict[str, IndexArray]

    @property
    def start(self) -> float:
        return float(self.batch.ts[0])

    @property
    def end(self) -> float:
        return float(self.batch.ts[-1])


def fit_reference(reference: PredictionBatch, config: MonitorConfig) -> Reference:
    """Fix scopes, features, bins and reference statistics on ``reference``."""
    seasonal = float(reference.ts.max() - reference.ts.min()) >= DAY_S
    scopes = CohortScopes.from_reference(
        reference.cohorts, _dimensions(reference, config), config.max_cohort_values
    )
    n_scopes = scopes.n_scopes
    rows = scopes.assign(reference.cohorts, len(reference))
    flat_scopes = rows.ravel()
    order = segment_order(flat_scopes)
    slots = slot_of(reference.ts) if seasonal else None
    presence = {
        name: len(values) - missing_values(values) for name, values in reference.features.items()
    }
    ranked = sorted(presence, key=lambda k: (-presence[k], k))[: config.max_features]
    features = {}
    row_bins = {}
    for name in ranked:
        bins = infer_bins(reference.features[name], config)
        state = FeatureDrift.fresh(
            name,
            bins,
            np.zeros((n_scopes, bins.n_bins), dtype=np.int64),
            config.persistence_windows,
            config.resolve_windows,
        )
        row_bins[name] = _fit_feature(state, reference.features[name], rows, order, slots)
        features[name] = state
    versions = Counter(reference.model_version)
    return Reference(
        batch=reference,
        scopes=scopes,
        rows=rows,
        scope_events=np.bincount(flat_scopes, minlength=n_scopes).astype(np.int64),
        features=features,
        seasonal=seasonal,
        incumbent=max(versions, key=lambda v: (versions[v], v)),
        row_bins=row_bins,
    )


def _fit_feature(
    state: FeatureDrift,
    values: FeatureColumn,
    rows: IndexArray,
    order: IndexArray,
    slots: IntArray | None,
) -> IndexArray:
    """A fresh feature's reference: histograms, statistics, quantiles, health checks.
    Returns each reference row's bin."""
    n_scopes, bins = len(state.psi), state.bins
    flat_scopes = rows.ravel()
    bin_index, series = state.observe(values)
    state.reference = scope_histograms(bin_index, rows, n_scopes, bins.n_bins)
    if slots is not None:
        state.reference_hourly = slot_histograms(bin_index, slots, rows, n_scopes, bins.n_bins)
    flat = np.repeat(series, rows.shape[1])
    state.reference_stats = sorted_segment_stats(flat[order], flat_scopes[order], n_scopes)
    if isinstance(bins, NumericBins):
        state.reference_quantiles = _sketch_quantiles(flat, flat_scopes, n_scopes)
    state.health = SignalHealth(
        flat, flat_scopes, state.reference_stats, state.reference, state.rescale_quantiles
    )
    state.upstream = Persistence(n_scopes, state.drift.windows, state.drift.resolve_windows)
    state.upstream_cause = [""] * n_scopes
    state.upstream_evidence = [{} for _ in range(n_scopes)]
    state.rescale_history = [[] for _ in range(n_scopes)]
    state.rescale_step = [True] * n_scopes
    state.window_wrong_type = np.zeros(n_scopes, dtype=np.int64)
    return bin_index


def infer_bins(values: FeatureColumn, config: MonitorConfig) -> Bins:
    """Categorical bins for a feature of mostly strings, numeric ones otherwise."""
    if isinstance(values, np.ndarray):  # floats only
        return NumericBins.from_reference(numeric_column(values)[0], config.numeric_bins)
    # Their types counted in one C-level pass: a wide model's reference holds millions.
    types = Counter(map(type, values))
    if _instances(types, str) > _instances(types, int, float):
        return CategoricalBins.from_reference(values, config.max_categories)
    column, _ = numeric_column(values)
    return NumericBins.from_reference(column, config.numeric_bins)


def _instances(types: Counter[type], *kinds: type) -> int:
    """How many of the values whose ``types`` were counted are instances of ``kinds``."""
    return sum(n for kind, n in types.items() if issubclass(kind, kinds))


def _dimensions(reference: PredictionBatch, config: MonitorConfig) -> list[Dimension]:
    if config.cohort_dimensions:
        return list(config.cohort_dimensions)
    present = sorted(k for k, v in reference.cohorts.items() if any(x is not None for x in v))
    return [(k,) for k in present[: config.max_cohort_dimensions]]


def _sketch_quantiles(values: FloatArray, scopes: IndexArray, n_scopes: int) -> FloatArray:
    """Reference quantiles per scope, from a mergeable sketch (1% relative error)."""
    sketch = NumericSketch(n_scopes)
    sketch.update(values, scopes)
    probs = np.asarray(QUANTILE_PROBS, dtype=np.float64)
    return sketch.scope_quantiles(np.arange(n_scopes), probs)
