"""Read-only snapshots of a model's monitor, for whoever reports on it (the metrics).

A snapshot is built from the monitor's state when asked (:meth:`ModelMonitor.snapshot`)
and holds plain numbers and tuples, so its readers depend on what the monitor says,
not on how its detectors keep their state. Figures per scope are tuples in the order of
:attr:`MonitorSnapshot.scopes`; NaN means "not measured" (a scope never judged, a
window without values), never zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from detectors.arrays import IntArray
from detectors.score_change import ScopedADWIN, ScopedPageHinkley


@dataclass(frozen=True)
class ScopeSnapshot:
    """One scope: the population (``cohort == ()``) or a cohort value."""

    cohort: tuple[tuple[str, str], ...]
    window_events: int  # in the current window, carried-over events included
    score_changes: int  # changes in the score mean found by ADWIN
    score_shifts: int  # ... and by the Page-Hinkley test
    score_mean: float  # ADWIN's estimate of the current score mean


@dataclass(frozen=True)
class FeatureSnapshot:
    """One feature of the reference, with its last judged window per scope."""

    name: str
    wrong_type_values: int
    psi: tuple[float, ...]  # NaN in a scope never judged
    js_distance: tuple[float, ...]
    g_test_pvalue: tuple[float, ...]
    drifted: tuple[bool, ...]  # the last judged window drifted
    drift_reported: tuple[bool, ...]  # a covariate drift reported and not yet cleared
    # The cause of the upstream condition reported and not yet cleared; "" where none.
    upstream_reported: tuple[str, ...]
    rescale_factor: tuple[float, ...]  # NaN unless the last window was checked for one
    null_ratio: tuple[float, ...]  # of the last window; NaN when it had no events
    repeat_ratio: tuple[float, ...]  # NaN when it had no consecutive values
    seasonal: bool = False  # windows are compared with the reference's same hours


@dataclass(frozen=True)
class DistributionSnapshot:
    """One feature's histogram in one scope, bin by bin: the reference's and the last
    judged window's (empty before the first), for a reader to show side by side."""

    feature: str
    cohort: tuple[tuple[str, str], ...]
    bins: tuple[str, ...]  # each bin's label, e.g. "[1.5, 2.7)", "other", "null"
    reference: tuple[int, ...]
    window: tuple[int, ...]


@dataclass(frozen=True)
class VersionOutcomeSnapshot:
    """A new version's last comparison window against the incumbent's labels of the same
    period, per scope (NaN: not judged)."""

    version: str
    windows: int  # comparison windows closed
    labels: tuple[float, ...]
    log_loss: tuple[float, ...]
    auc: tuple[float, ...]
    incumbent_labels: tuple[float, ...]
    incumbent_log_loss: tuple[float, ...]
    incumbent_auc: tuple[float, ...]
    regression_reported: tuple[bool, ...]  # a rollback on outcomes reported, not cleared


@dataclass(frozen=True)
class OutcomeSnapshot:
    """The label side: the last closed label window per scope, and its conditions."""

    # Reported and not yet cleared, per cause (concept_drift, label_quality, trust_decay).
    reported: tuple[tuple[str, int], ...]
    loss_changes: tuple[int, ...]  # changes in the trusted labels' log loss (ADWIN)
    # Of the last closed label window; NaN before the first one.
    labels: tuple[float, ...]
    log_loss: tuple[float, ...]
    error_ratio: tuple[float, ...]
    brier: tuple[float, ...]
    auc: tuple[float, ...]
    calibration_gap: tuple[float, ...]
    override_ratio: tuple[float, ...]
    untrusted_positive_ratio: tuple[float, ...]
    enough_labels: tuple[bool, ...]  # False: no verdict, not a good one
    # Hanley-McNeil standard error of ``auc``.
    auc_se: tuple[float, ...] = ()
    versions: tuple[VersionOutcomeSnapshot, ...] = ()


@dataclass(frozen=True)
class DeploymentSnapshot:
    """Model versions after the reference's (the incumbent's)."""

    incumbent: str
    watched: tuple[str, ...]
    suspects: tuple[str, ...]  # not yet cleared by their own outcomes
    regressed: tuple[str, ...]  # a score regression reported and not cleared
    unwatched_events: int  # predictions of versions past max_versions


@dataclass(frozen=True)
class MonitorSnapshot:
    """One model's monitor. Until its reference is built it has no scopes, features,
    outcomes or deployments yet: only the reference's progress."""

    model: str
    events: int
    windows: int
    reference_progress: float  # 1 once the reference is built
    # Event time between the end of the reference and the newest prediction.
    reference_age_s: float | None
    # Event time until the first day's sample is complete, while one is taken (a fast
    # stream whose reference covers less than a day; see detectors.monitor.first_day).
    first_day_remaining_s: float | None
    # Event time until the first week's sample is complete, while one is taken (a
    # reference taken from the stream; see detectors.monitor.first_week).
    first_week_remaining_s: float | None
    labels_before_reference: int
    scopes: tuple[ScopeSnapshot, ...]
    features: tuple[FeatureSnapshot, ...]  # by name
    unknown_features: tuple[tuple[str, int], ...]  # values of names outside the reference
    outcomes: OutcomeSnapshot | None
    deployment: DeploymentSnapshot | None

    @property
    def reported(self) -> tuple[tuple[str, int], ...]:
        """Conditions reported and not yet cleared, per cause, sorted: covariate drift
        (counted once there are features), the upstream causes that have any, and the
        outcome causes (once labels are judged)."""
        counts: Counter[str] = Counter()
        for feature in self.features:
            counts.update(cause for cause in feature.upstream_reported if cause)
            counts["covariate_drift"] += sum(feature.drift_reported)
        if self.outcomes is not None:
            counts.update(dict(self.outcomes.reported))
        return tuple(sorted(counts.items()))


def scope_snapshots(
    labels: Sequence[Mapping[str, str]],
    window_events: IntArray,
    changes: ScopedADWIN,
    shifts: ScopedPageHinkley,
) -> tuple[ScopeSnapshot, ...]:
    """Each scope's window and score detectors, in scope order."""
    means = changes.means()
    return tuple(
        ScopeSnapshot(
            cohort=tuple(label.items()),
            window_events=int(window_events[scope]),
            score_changes=int(changes.detections[scope]),
            score_shifts=int(shifts.detections[scope]),
            score_mean=float(means[scope]),
        )
        for scope, label in enumerate(labels)
    )
