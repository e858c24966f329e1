"""One model's monitor: reference, tumbling windows, drift per feature and scope.

The monitor is fed :class:`PredictionBatch` columns and returns decisions. It keeps
the first ``reference_events`` predictions as the reference, fixes bins, cohorts and
features on it, then compares every window (``window_events`` predictions, or
``window_s`` seconds of event time) against it, scope by scope: first whether an input
is broken upstream (frozen, rescaled, missing, retyped, renamed), then whether it
drifted. Joined labels go to its :class:`OutcomeMonitor`. Batches are split exactly at
window boundaries, so the result does not depend on how the stream was cut into batches.

:class:`ModelMonitor` only coordinates; each concern has its module in this package:
``reference`` (collecting and fitting the reference), ``windows`` (the window clock),
``feature_drift`` (each feature's statistics and conditions), ``input_decisions`` (what
is reported on the inputs), ``outcome_monitor`` (labels), ``deployment`` (new model
versions), ``policy`` (which action for which situation) and ``snapshot`` (what the
monitor says of itself, for the metrics). Every decision leaves through the model's
:class:`IncidentTracker`, which gives it its incident and phase.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from detectors.arrays import IndexArray, IntArray
from detectors.batch import PredictionBatch
from detectors.cohorts import POPULATION, CohortScopes
from detectors.decision import Decision
from detectors.incidents import IncidentTracker
from detectors.join import Joined, JoinStore
from detectors.monitor import policy
from detectors.monitor.config import MonitorConfig
from detectors.monitor.deployment import DeploymentWatch
from detectors.monitor.feature_drift import FeatureDrift, upstream_checks, window_statistics
from detectors.monitor.first_day import FirstDay
from detectors.monitor.first_week import FirstWeek, reported_now
from detectors.monitor.input_decisions import InputDecisions, grouped
from detectors.monitor.outcome_monitor import OutcomeMonitor
from detectors.monitor.reference import ReferenceCollector, fit_reference
from detectors.monitor.snapshot import (
    DistributionSnapshot,
    MonitorSnapshot,
    ScopeSnapshot,
    scope_snapshots,
)
from detectors.monitor.windows import ScopeWindows, WindowClock
from detectors.new_features import NewFeatures
from detectors.outcomes import band_edges_from_reference
from detectors.score_change import ScopedADWIN, ScopedPageHinkley


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
    >>> [(f.name, f.drift_reported) for f in monitor.snapshot().features]
    [('age', (False, False, False, False)), ('amount', (True, False, False, False))]
    """

    def __init__(self, model: str, config: MonitorConfig | None = None) -> None:
        self.model = model
        self.config = config or MonitorConfig()
        self._reset()

    def _reset(self) -> None:
        self._collector = ReferenceCollector(self.config)
        self._clock = WindowClock(self.config)
        # Set when the reference is fitted.
        self.scopes: CohortScopes | None = None
        self._window: ScopeWindows | None = None
        self.features: dict[str, FeatureDrift] = {}
        self.score_changes: ScopedADWIN | None = None
        self.score_shifts: ScopedPageHinkley | None = None
        self.deployments: DeploymentWatch | None = None
        self.outcomes: OutcomeMonitor | None = None
        self.reference_start: float | None = None
        self.reference_end: float | None = None
        self.reference_scope_events: IntArray = np.zeros(0, dtype=np.int64)
        # Windows are compared with the reference at the same hours once it covers a day.
        self.seasonal = False
        self._first_day: FirstDay | None = None  # sampled until it is over
        self._first_week: FirstWeek | None = None  # likewise
        self.new_features = NewFeatures(self.config.max_features, self.config.persistence_windows)
        # Vanished feature -> the new name it was found renamed to.
        self._renamed: dict[str, str] = {}
        self.labels_before_reference = 0
        self.events = 0
        self.windows = 0
        self.model_version: str | None = None
        self.last_ts: float | None = None
        self.incidents = IncidentTracker(self.model)

    @property
    def warm(self) -> bool:
        return self.scopes is not None

    @property
    def reference_progress(self) -> float:
        return 1.0 if self.warm else self._collector.progress

    @property
    def scope_events(self) -> IntArray:
        """Events per scope in the current (possibly carried-over) window."""
        if self._window is None:
            return np.zeros(0, dtype=np.int64)
        return self._window.events.copy()

    def update(self, batch: PredictionBatch, join: JoinStore | None = None) -> list[Decision]:
        """Process predictions in order; with a ``join`` store, also keep them (with their
        scopes) for the labels to come, and judge the labels that were waiting for them."""
        decisions: list[Decision] = []
        position = 0
        while position < len(batch):
            if not self.warm:
                take = self._collector.take(batch.ts[position:])
                part = batch.slice(position, position + take)
                self._observe(part)
                complete = self._collector.add(part)
                # Cohort scopes are not known before the reference is built.
                decisions.extend(self._store(part, np.zeros((take, 1), dtype=np.intp), join))
                position += take
                self.events += take
                if complete:
                    self._fit(self._collector.collected())
                continue
            take = self._clock.take(batch.ts[position:])
            if not take:
                decisions.extend(self._close_window())
                continue
            part = batch.slice(position, position + take)
            self._observe(part)
            rows = self._accumulate(part)
            decisions.extend(self._store(part, rows, join))
            position += take
            self.events += take
            if self._clock.add(take):
                decisions.extend(self._close_window())
        return self.incidents.place(decisions)

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
        # The collector took no prediction of the stream for this reference.
        self._fit(batch)

    def update_labels(self, joined: Joined) -> list[Decision]:
        """Judge outcomes on labels joined to this model's predictions."""
        return self.incidents.place(self._judge_labels(joined))

    def _judge_labels(self, joined: Joined) -> list[Decision]:
        if self.outcomes is None or self.reference_end is None:
            self.labels_before_reference += len(joined)
            return []
        assert self.deployments is not None
        # Predictions made while the reference was collected were stored without their
        # cohorts (not known yet): their labels would only blur the per-cohort figures.
        # A pinned reference took none from the stream, whatever its event times.
        collected = self._collector.rows
        fresh = joined.prediction_ts > (self.reference_end if collected else -math.inf)
        self.labels_before_reference += int((~fresh).sum())
        joined = joined.take(fresh)
        watch = self.deployments
        gates = policy.gates(self.features.values(), watch.suspects(), watch.regressed())
        decisions = self.outcomes.update(joined, gates, self.model_version)
        for verdict in self.outcomes.version_verdicts:
            watch.label_window(*verdict)
        self.outcomes.version_verdicts.clear()
        # A regression the scores already reported is not reported again by the labels.
        return [d for d in decisions if watch.first_report(d)]

    def distribution(
        self, feature: str, cohort: Mapping[str, str] | None
    ) -> DistributionSnapshot | None:
        """A feature's reference and last judged window in one scope (``None`` for the
        population), or None when the reference has no such feature or scope."""
        state, scopes = self.features.get(feature), self.scopes
        scope = None if scopes is None else scopes.scope_of(cohort or {})
        if state is None or scopes is None or scope is None:
            return None
        return state.distribution(scope, scopes.labels[scope])

    def snapshot(self) -> MonitorSnapshot:
        """What the monitor says of itself now, for whoever reports on it."""
        scopes: tuple[ScopeSnapshot, ...] = ()
        if self.scopes is not None:
            assert self._window is not None
            assert self.score_changes is not None and self.score_shifts is not None
            scopes = scope_snapshots(
                self.scopes.labels, self._window.events, self.score_changes, self.score_shifts
            )
        ended, last = self.reference_end, self.last_ts
        age = None if ended is None or last is None else max(0.0, last - ended)
        return MonitorSnapshot(
            model=self.model,
            events=self.events,
            windows=self.windows,
            reference_progress=self.reference_progress,
            reference_age_s=age,
            first_day_remaining_s=self._first_day.remaining_s if self._first_day else None,
            first_week_remaining_s=self._first_week.remaining_s if self._first_week else None,
            labels_before_reference=self.labels_before_reference,
            scopes=scopes,
            features=tuple(self.features[name].snapshot() for name in sorted(self.features)),
            unknown_features=tuple(sorted(self.new_features.totals.items())),
            outcomes=self.outcomes.snapshot() if self.outcomes is not None else None,
            deployment=self.deployments.snapshot() if self.deployments is not None else None,
        )

    def _store(
        self, part: PredictionBatch, rows: IndexArray, join: JoinStore | None
    ) -> list[Decision]:
        if join is None or not part.event_id:
            return []
        waiting = join.add_predictions(
            part.event_id, part.ts, part.score, part.model_version, rows, [self.model] * len(part)
        )
        return self._judge_labels(waiting) if len(waiting) else []

    def _observe(self, part: PredictionBatch) -> None:
        # Parts end at window boundaries, so a decision carries the version and time of
        # its window's last event, whatever the batching.
        self.model_version = part.model_version[-1]
        self.last_ts = float(part.ts[-1])

    def _fit(self, batch: PredictionBatch) -> None:
        reference = fit_reference(batch, self.config)
        self.reference_start, self.reference_end = reference.start, reference.end
        self.seasonal = reference.seasonal
        self.scopes = scopes = reference.scopes
        self.reference_scope_events = reference.scope_events
        self.features = reference.features
        config = self.config
        n_scopes, rows = scopes.n_scopes, reference.rows
        self.outcomes = OutcomeMonitor(
            self.model,
            scopes,
            band_edges_from_reference(batch.score),
            reference_labels=config.reference_labels,
            window_labels=config.label_window_labels,
            min_labels=config.min_labels,
            windows=config.persistence_windows,
            resolve_windows=config.resolve_windows,
            untrusted_sources=config.untrusted_sources,
            incumbent=reference.incumbent,
            max_versions=config.max_versions,
        )
        self.score_changes = ScopedADWIN(n_scopes, config.adwin_delta)
        self.score_changes.update(batch.score, rows, batch.ts)
        self.score_shifts = ScopedPageHinkley(n_scopes)
        self.score_shifts.update(batch.score, rows, batch.ts)
        self.deployments = DeploymentWatch(
            self.model,
            scopes,
            batch.score,
            rows,
            reference.incumbent,
            n_bins=config.numeric_bins,
            psi_threshold=config.psi_threshold,
            alpha=config.alpha,
            windows=config.persistence_windows,
            resolve_windows=config.resolve_windows,
            min_events=config.min_window_events,
            max_versions=config.max_versions,
        )
        self._window = ScopeWindows(n_scopes, reference.seasonal)
        if FirstDay.needed(reference, config, pinned=not self._collector.rows):
            self._first_day = FirstDay(reference, config)
        self._first_week = FirstWeek.sample_for(reference, config, pinned=not self._collector.rows)

    def _accumulate(self, part: PredictionBatch) -> IndexArray:
        """Add a part of the current window; returns each row's scopes."""
        assert self.scopes is not None and self._window is not None
        assert self.score_changes is not None and self.score_shifts is not None
        assert self.deployments is not None
        rows = self.scopes.assign(part.cohorts, len(part))
        self._window.add(rows, part.ts)
        empty: list[object] = [None] * len(part)
        bins = {
            name: state.accumulate(part.features.get(name, empty), rows)
            for name, state in self.features.items()
        }
        for sample in (self._first_day, self._first_week):
            if sample is not None:
                sample.add(part.ts, rows, bins)
        unknown = part.features.keys() - self.features.keys()
        if unknown:
            self.new_features.observe({n: part.features[n] for n in sorted(unknown)}, len(part))
        self.score_changes.update(part.score, rows, part.ts)
        self.score_shifts.update(part.score, rows, part.ts)
        self.deployments.observe(part.model_version, part.score, rows, part.ts)
        return rows

    def _close_window(self) -> list[Decision]:
        assert self.scopes is not None and self._window is not None
        assert self.deployments is not None
        self._clock.restart()
        self.windows += 1
        week = self._first_week  # none on a checkpoint of state format 1
        if week is not None:
            self.seasonal = week.update(self.features, self._window)
            self._first_week = None if week.complete else week
        if self._first_day is not None and self._first_day.complete:
            reported = week.reported if week else reported_now(self.features)
            self.seasonal = self._first_day.make_seasonal(self.features, self._window, reported)
            self._first_day = None
        config, window = self.config, self._window
        judgeable = self.reference_scope_events >= config.min_reference_events
        judged = (window.events >= config.min_window_events) & judgeable
        if not judged.any():
            return []
        states = list(self.features.values())
        window_statistics(states, judged, window.hour_events, config)
        # Rows carry over for scopes still short of a window, not for those too small in
        # the reference to ever be judged (they would pile up for good).
        scopes, carried = window.take_pairs(~judged & judgeable)
        drifted = np.array([state.drifted(config.psi_threshold, config.alpha) for state in states])
        verdicts = upstream_checks(states, scopes, carried, judged, drifted, self.scopes.n_scopes)
        if self._first_day is not None:
            drifted = self._first_day.defer_slow(
                states, drifted, verdicts, judged, window.start, window.end
            )
        if self._first_week is not None:
            drifted = self._first_week.defer_unseen(states, drifted, verdicts, judged, window)
        report = InputDecisions(
            model=self.model,
            model_version=self.model_version,
            config=config,
            scopes=self.scopes,
            window=window,
            reference_events=self.reference_scope_events,
            reference_window={"start": self.reference_start, "end": self.reference_end},
            features=self.features,
            new_features=self.new_features,
            renamed=self._renamed,
        )
        decisions = []
        for i, state in enumerate(states):
            state.judge_window(judged, drifted[i], verdicts[i], window.start, config.psi_threshold)
            decisions.extend(report.of_feature(state, drifted[i]))
        decisions = grouped(decisions)
        decisions.extend(self.deployments.report_window(states, window.start, window.end))
        for feature in self.new_features.close(int(window.events[POPULATION])):
            if feature.name not in self._renamed.values():
                decisions.append(report.of_new_feature(feature))
        window.restart(judged | ~judgeable)
        return decisions
