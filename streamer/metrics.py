"""Prometheus metrics, read from the engine's state at scrape time.

The detectors never touch Prometheus: when Prometheus scrapes, this collector takes
each monitor's snapshot (:meth:`ModelMonitor.snapshot`, plain read-only figures) under
the service lock, so a scrape sees whole batches, and reads nothing else of the monitors.
A figure that is not finite (not measured, or overflowed) is left out, not exported.
Series per model: features x scopes for each per-feature family, where
scopes = 1 + sum over cohort dimensions of (kept values + 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import get_args

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from detectors.decision import Action, Cause
from detectors.monitor import MonitorSnapshot
from streamer.engine import FEEDBACK, PREDICTIONS
from streamer.event_order import EventOrder
from streamer.service import Service

# Counters that alerts and rates are computed from are exported at 0 before their first
# event: Prometheus sees no increase in a series that appears already at 1, so an
# `increase(driftgate_decisions_total{action="retrain"}[15m]) > 0` alert would miss the
# first retrain decision, and a consumer stalled from its start would have no rate.
_DECISION_KINDS = frozenset((a, c) for a in get_args(Action) for c in get_args(Cause))
_INPUT_KINDS = frozenset((PREDICTIONS, FEEDBACK))


def scope_label(cohort: Mapping[str, str]) -> str:
    """``all`` for the population, else ``region=eu`` or ``region=eu,channel=web``."""
    return ",".join(f"{k}={v}" for k, v in cohort.items()) or "all"


def _add_finite(key: list[str], *figures: tuple[GaugeMetricFamily, float]) -> None:
    """Add each family's figure for ``key``, unless it is not finite: NaN is a figure not
    measured, and Prometheus would take +Inf, but a figure that overflowed is no
    measurement either."""
    for family, value in figures:
        if math.isfinite(value):
            family.add_metric(key, value)


class EngineCollector(Collector):
    def __init__(self, service: Service) -> None:
        self.service = service

    def describe(self) -> list[Metric]:
        # An empty describe() stops the registry from calling collect() at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        with self.service.lock:
            yield from self._collect()

    def _collect(self) -> Iterator[Metric]:
        service = self.service
        engine = service.engine
        counters = engine.counters
        consumed = CounterMetricFamily(
            "driftgate_events_consumed", "Records read, by input topic.", labels=["topic"]
        )
        for topic in sorted(counters.consumed.keys() | _INPUT_KINDS):
            consumed.add_metric([topic], counters.consumed[topic])
        yield consumed
        rejected = CounterMetricFamily(
            "driftgate_events_rejected",
            "Records dead-lettered instead of processed, by topic and reason.",
            labels=["topic", "reason"],
        )
        for (topic, reason), n in sorted(counters.rejected.items()):
            rejected.add_metric([topic, reason], n)
        yield rejected
        decisions = CounterMetricFamily(
            "driftgate_decisions",
            "Decisions emitted, by action and cause.",
            labels=["action", "cause"],
        )
        for action, cause in sorted(counters.decisions.keys() | _DECISION_KINDS):
            decisions.add_metric([action, cause], counters.decisions[(action, cause)])
        yield decisions
        latency = service.latency
        buckets = []
        cumulative = 0
        for bound, count in zip((*latency.bounds, math.inf), latency.counts):
            cumulative += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
        histogram = HistogramMetricFamily(
            "driftgate_batch_processing_seconds", "Seconds spent processing each polled batch."
        )
        histogram.add_metric([], buckets, sum_value=latency.total)
        yield histogram
        lag = GaugeMetricFamily(
            "driftgate_consumer_lag_records",
            "Records between the consumer's position and the end of each partition.",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(service.lag.items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        yield from self._join()
        yield from _merge(engine.order)
        snapshots = [monitor.snapshot() for _, monitor in sorted(engine.monitors.items())]
        yield from self._monitors(snapshots)
        yield from self._health_and_outcomes(snapshots)
        yield from _version_outcomes(snapshots)

    def _join(self) -> Iterator[Metric]:
        store = self.service.engine.join
        joined = CounterMetricFamily(
            "driftgate_labels_joined", "Feedback events joined to their prediction."
        )
        joined.add_metric([], store.joined)
        yield joined
        unmatched = CounterMetricFamily(
            "driftgate_labels_unmatched",
            "Feedback that joined no prediction, by reason.",
            labels=["reason"],
        )
        for reason, n in (
            ("unknown", store.unknown),
            ("expired", store.expired),
            ("evicted", store.evicted_labels),
            ("duplicate", store.duplicate),
        ):
            unmatched.add_metric([reason], n)
        yield unmatched
        entries = GaugeMetricFamily(
            "driftgate_join_store_entries", "Predictions kept for labels still to come."
        )
        entries.add_metric([], store.size)
        yield entries
        bounds, cumulative, total = store.delay_histogram()
        delay = HistogramMetricFamily(
            "driftgate_label_delay_seconds", "Event time between a prediction and its label."
        )
        delay.add_metric(
            [],
            [
                ("+Inf" if math.isinf(b) else repr(float(b)), int(c))
                for b, c in zip(bounds, cumulative)
            ],
            sum_value=total,
        )
        yield delay

    def _monitors(self, snapshots: Sequence[MonitorSnapshot]) -> Iterator[Metric]:
        labels = ["model", "feature", "scope"]
        psi = GaugeMetricFamily(
            "driftgate_feature_psi",
            "PSI of the last judged window against the reference.",
            labels=labels,
        )
        js = GaugeMetricFamily(
            "driftgate_feature_js_distance",
            "Jensen-Shannon distance (base 2) of the last judged window.",
            labels=labels,
        )
        pvalue = GaugeMetricFamily(
            "driftgate_feature_g_test_pvalue",
            "G-test p-value of the last judged window (sample-size aware).",
            labels=labels,
        )
        drifted = GaugeMetricFamily(
            "driftgate_feature_drifted", "1 when the last judged window drifted.", labels=labels
        )
        open_condition = GaugeMetricFamily(
            "driftgate_feature_drift_open",
            "1 while a persistent drift condition is open for the feature and scope.",
            labels=labels,
        )
        wrong_type = CounterMetricFamily(
            "driftgate_feature_wrong_type_values",
            "Values of a numeric feature that arrived as another type.",
            labels=["model", "feature"],
        )
        unknown = CounterMetricFamily(
            "driftgate_unknown_feature_values",
            "Values of features the reference never had.",
            labels=["model", "feature"],
        )
        window = GaugeMetricFamily(
            "driftgate_window_events",
            "Events in the current window per scope.",
            labels=["model", "scope"],
        )
        score_changes = CounterMetricFamily(
            "driftgate_score_changes",
            "Changes in the score mean found by ADWIN.",
            labels=["model", "scope"],
        )
        # A family of its own, not a detector label on driftgate_score_changes: that
        # label would rename the family's existing series and make sums over it count
        # both detectors.
        score_shifts = CounterMetricFamily(
            "driftgate_score_shifts",
            "Changes in the score mean found by the Page-Hinkley test.",
            labels=["model", "scope"],
        )
        score_mean = GaugeMetricFamily(
            "driftgate_score_mean",
            "ADWIN's estimate of the current score mean.",
            labels=["model", "scope"],
        )
        progress = GaugeMetricFamily(
            "driftgate_reference_progress_ratio",
            "Share of the reference window collected (1 once the reference is built).",
            labels=["model"],
        )
        age = GaugeMetricFamily(
            "driftgate_reference_age_seconds",
            "Event time between the end of the reference and the newest prediction.",
            labels=["model"],
        )
        first_day = GaugeMetricFamily(
            "driftgate_reference_first_day_remaining_seconds",
            "Event time until the first day is sampled, on a stream whose reference covers "
            "less than a day; then features that follow the hour are compared hour by hour.",
            labels=["model"],
        )
        first_week = GaugeMetricFamily(
            "driftgate_reference_first_week_remaining_seconds",
            "Event time until the first week is sampled; until then, windows in hours of "
            "a day type the reference has not seen may be deferred where weekends differ.",
            labels=["model"],
        )
        seasonal = GaugeMetricFamily(
            "driftgate_feature_seasonal",
            "1 when the feature's windows are compared with the same hours of the reference.",
            labels=["model", "feature"],
        )
        events = CounterMetricFamily(
            "driftgate_predictions", "Predictions processed per model.", labels=["model"]
        )
        for snapshot in snapshots:
            model = snapshot.model
            progress.add_metric([model], snapshot.reference_progress)
            events.add_metric([model], snapshot.events)
            if snapshot.reference_age_s is not None:
                age.add_metric([model], snapshot.reference_age_s)
            if snapshot.first_day_remaining_s is not None:
                first_day.add_metric([model], snapshot.first_day_remaining_s)
            if snapshot.first_week_remaining_s is not None:
                first_week.add_metric([model], snapshot.first_week_remaining_s)
            scope_names = [scope_label(dict(s.cohort)) for s in snapshot.scopes]
            for figures, name in zip(snapshot.scopes, scope_names):
                window.add_metric([model, name], float(figures.window_events))
                score_changes.add_metric([model, name], float(figures.score_changes))
                score_shifts.add_metric([model, name], float(figures.score_shifts))
                score_mean.add_metric([model, name], figures.score_mean)
            for feature in snapshot.features:
                wrong_type.add_metric([model, feature.name], feature.wrong_type_values)
                seasonal.add_metric([model, feature.name], float(feature.seasonal))
                for scope, name in enumerate(scope_names):
                    if math.isnan(feature.psi[scope]):  # never judged in this scope
                        continue
                    key = [model, feature.name, name]
                    _add_finite(
                        key,
                        (psi, feature.psi[scope]),
                        (js, feature.js_distance[scope]),
                        (pvalue, feature.g_test_pvalue[scope]),
                    )
                    drifted.add_metric(key, float(feature.drifted[scope]))
                    open_condition.add_metric(key, float(feature.drift_reported[scope]))
            for name, n in snapshot.unknown_features:
                unknown.add_metric([model, name], n)
        yield from (events, progress, age, first_day, first_week, seasonal, window)
        yield from (score_changes, score_shifts, score_mean)
        yield from (psi, js, pvalue, drifted, open_condition, wrong_type, unknown)

    def _health_and_outcomes(self, snapshots: Sequence[MonitorSnapshot]) -> Iterator[Metric]:
        labels = ["model", "feature", "scope"]
        upstream = GaugeMetricFamily(
            "driftgate_feature_upstream_open",
            "1 while a frozen, rescaled or schema condition is reported for the feature.",
            labels=[*labels, "cause"],
        )
        factor = GaugeMetricFamily(
            "driftgate_feature_rescale_factor",
            "Estimated factor of a rescaled feature (current = factor x reference).",
            labels=labels,
        )
        nulls = GaugeMetricFamily(
            "driftgate_feature_null_ratio",
            "Share of missing values in the last window.",
            labels=labels,
        )
        repeats = GaugeMetricFamily(
            "driftgate_feature_repeat_ratio",
            "Share of values equal to the previous one (same scope) in the last window.",
            labels=labels,
        )
        conditions = GaugeMetricFamily(
            "driftgate_open_conditions",
            "Conditions reported and not yet cleared.",
            labels=["model", "cause"],
        )
        outcome_labels = ["model", "scope"]
        families = {
            name: GaugeMetricFamily(f"driftgate_outcome_{name}", text, labels=outcome_labels)
            for name, text in (
                ("labels", "Trusted labels in the last closed label window."),
                ("log_loss", "Log loss of trusted labels in the last label window."),
                ("error_ratio", "Error rate at the threshold, last label window."),
                ("brier", "Brier score of trusted labels, last label window."),
                ("auc", "ROC AUC of trusted labels, last label window."),
                ("auc_se", "Standard error of that AUC (Hanley & McNeil)."),
                ("calibration_gap", "Largest |observed - predicted| over risk bands."),
                ("override_ratio", "Share of feedback overriding the model, last window."),
                ("untrusted_positive_ratio", "Positive rate of untrusted labels, last window."),
                (
                    "enough_labels",
                    "1 when the last label window had enough trusted labels to judge; 0 means "
                    "no verdict, not a good one.",
                ),
            )
        }
        unused_labels = CounterMetricFamily(
            "driftgate_labels_before_reference",
            "Labels of predictions made while the model's reference was collected (their "
            "cohorts were not known): not used for outcomes.",
            labels=["model"],
        )
        loss_changes = CounterMetricFamily(
            "driftgate_loss_changes",
            "Changes in the trusted labels' log loss found by ADWIN.",
            labels=outcome_labels,
        )
        for snapshot in snapshots:
            model = snapshot.model
            unused_labels.add_metric([model], snapshot.labels_before_reference)
            names = [scope_label(dict(s.cohort)) for s in snapshot.scopes]
            for feature in snapshot.features:
                for scope, name in enumerate(names):
                    key = [model, feature.name, name]
                    cause = feature.upstream_reported[scope]
                    if cause:
                        upstream.add_metric([*key, cause], 1.0)
                    _add_finite(
                        key,
                        (factor, feature.rescale_factor[scope]),
                        (nulls, feature.null_ratio[scope]),
                        (repeats, feature.repeat_ratio[scope]),
                    )
            outcomes = snapshot.outcomes
            if outcomes is not None:
                for scope, name in enumerate(names):
                    loss_changes.add_metric([model, name], float(outcomes.loss_changes[scope]))
                    _add_finite(
                        [model, name],
                        (families["override_ratio"], outcomes.override_ratio[scope]),
                        (
                            families["untrusted_positive_ratio"],
                            outcomes.untrusted_positive_ratio[scope],
                        ),
                        (families["enough_labels"], float(outcomes.enough_labels[scope])),
                        (families["labels"], outcomes.labels[scope]),
                        (families["log_loss"], outcomes.log_loss[scope]),
                        (families["error_ratio"], outcomes.error_ratio[scope]),
                        (families["brier"], outcomes.brier[scope]),
                        (families["auc"], outcomes.auc[scope]),
                        (families["auc_se"], outcomes.auc_se[scope]),
                        (families["calibration_gap"], outcomes.calibration_gap[scope]),
                    )
            for cause, n in snapshot.reported:
                conditions.add_metric([model, cause], n)
        yield from (upstream, factor, nulls, repeats, conditions, loss_changes, unused_labels)
        yield from families.values()


def _version_outcomes(snapshots: Sequence[MonitorSnapshot]) -> Iterator[Metric]:
    """Each new version's last comparison window: its own labels' figures and the
    incumbent's of the same period (``side``), per scope."""
    labels = ["model", "scope", "version", "side"]
    families = {
        name: GaugeMetricFamily(f"driftgate_version_outcome_{name}", text, labels=labels)
        for name, text in (
            ("labels", "Trusted labels in the version's last comparison window."),
            ("log_loss", "Log loss of those labels."),
            ("auc", "ROC AUC of those labels."),
        )
    }
    open_regression = GaugeMetricFamily(
        "driftgate_version_outcome_regression_open",
        "1 while a rollback found on the version's labels (worse than the incumbent's of "
        "the same period) is reported and not cleared.",
        labels=["model", "scope", "version"],
    )
    for snapshot in snapshots:
        if snapshot.outcomes is None:
            continue
        names = [scope_label(dict(s.cohort)) for s in snapshot.scopes]
        for version in snapshot.outcomes.versions:
            for scope, name in enumerate(names):
                key = [snapshot.model, name, version.version]
                open_regression.add_metric(key, float(version.regression_reported[scope]))
                for side, counts, loss, auc in (
                    ("version", version.labels, version.log_loss, version.auc),
                    (
                        "incumbent",
                        version.incumbent_labels,
                        version.incumbent_log_loss,
                        version.incumbent_auc,
                    ),
                ):
                    _add_finite(
                        [*key, side],
                        (families["labels"], counts[scope]),
                        (families["log_loss"], loss[scope]),
                        (families["auc"], auc[scope]),
                    )
    yield from families.values()
    yield open_regression


def _merge(order: EventOrder) -> Iterator[Metric]:
    """The event-time merge of the input partitions (streamer/event_order.py)."""
    buffered = GaugeMetricFamily(
        "driftgate_merge_buffered_events",
        "Events the event-time merge holds until every input partition has passed them.",
    )
    buffered.add_metric([], order.buffered)
    yield buffered
    for name, value, text in (
        ("late", order.late, "Events that arrived after later ones were judged."),
        ("duplicate", order.duplicates, "Rows forwarded again and dropped by offset."),
    ):
        family = CounterMetricFamily(f"driftgate_merge_{name}_events", text)
        family.add_metric([], value)
        yield family
    forced = CounterMetricFamily(
        "driftgate_merge_forced_releases",
        "Times the merge released everything because limits.max_buffered_events waited.",
    )
    forced.add_metric([], order.forced)
    yield forced
    watermark = GaugeMetricFamily(
        "driftgate_merge_watermark_seconds",
        "The newest event time each input partition delivered (epoch seconds).",
        labels=["topic", "partition"],
    )
    for (topic, partition), seconds in sorted(order.watermarks.items()):
        if math.isfinite(seconds):
            watermark.add_metric([topic, str(partition)], seconds)
    yield watermark
