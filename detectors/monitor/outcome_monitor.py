"""Outcomes of one model: joined labels, per scope, against the reference's.

Windows count joined labels. Each window is judged three ways, each with its own
persistence: trusted-label performance (``concept_drift``: ``retrain``, unless a gate
holds it; log loss or ROC AUC worse, and calibration moved), the positive rate of
untrusted labels moving alone (``label_quality``) and the override rate rising
(``trust_decay``). A scope with too few labels is not judged:
missing labels never become a verdict. The action each condition asks for is chosen by
:mod:`detectors.monitor.policy`. Each new version's trusted labels are also compared with
the incumbent's of the same period (:mod:`~detectors.monitor.version_outcomes`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import compress
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.arrays import BoolArray, FloatArray
from detectors.cohorts import POPULATION, CohortScopes
from detectors.decision import Action, Cause, Decision
from detectors.join import Joined
from detectors.monitor import policy
from detectors.monitor.policy import CLEARED, OPENED, Gates
from detectors.monitor.snapshot import OutcomeSnapshot
from detectors.monitor.version_outcomes import VersionOutcomes
from detectors.outcomes import (
    AucDrop,
    CalibrationShift,
    OutcomeStats,
    OutcomeWindow,
    PerformanceDrop,
    RateShift,
    ScopedLossADWIN,
    hanley_mcneil_se,
)
from detectors.persistence import Persistence, announce


def _counts(rows: NDArray[np.intp], weights: FloatArray, n_scopes: int) -> FloatArray:
    member = rows >= 0
    flat = rows[member]
    spread = np.broadcast_to(weights[:, None], rows.shape)[member]
    return np.bincount(flat, weights=spread, minlength=n_scopes).astype(np.float64)


class _Window:
    """Labels of one window: trusted outcomes, untrusted positives, overrides."""

    def __init__(self, n_scopes: int, band_edges: FloatArray) -> None:
        self.trusted = OutcomeWindow(n_scopes)
        self.trusted.set_band_edges(band_edges)
        self.untrusted_n = np.zeros(n_scopes)
        self.untrusted_pos = np.zeros(n_scopes)
        self.trusted_n = np.zeros(n_scopes)
        self.trusted_pos = np.zeros(n_scopes)
        self.feedback_n = np.zeros(n_scopes)
        self.overrides = np.zeros(n_scopes)
        self.labels = 0
        self.start = np.inf
        self.end = -np.inf
        # Trusted labels per model version of their prediction.
        self.versions: dict[str, int] = {}

    def carry(self, judged: BoolArray) -> None:
        """Start the next window: judged scopes afresh, the others keep their labels."""
        self.trusted.keep_scopes(~judged)
        for counts in (
            self.untrusted_n,
            self.untrusted_pos,
            self.trusted_n,
            self.trusted_pos,
            self.feedback_n,
            self.overrides,
        ):
            counts[judged] = 0
        self.labels = 0
        self.start, self.end = np.inf, -np.inf
        self.versions = {}

    def add(self, joined: Joined, trusted: BoolArray, n_scopes: int) -> None:
        rows = joined.scopes
        ones = np.ones(len(joined))
        self.trusted.update(joined.score[trusted], joined.label[trusted], rows[trusted])
        self.trusted_n += _counts(rows[trusted], ones[trusted], n_scopes)
        self.trusted_pos += _counts(rows[trusted], joined.label[trusted], n_scopes)
        self.untrusted_n += _counts(rows[~trusted], ones[~trusted], n_scopes)
        self.untrusted_pos += _counts(rows[~trusted], joined.label[~trusted], n_scopes)
        self.feedback_n += _counts(rows, ones, n_scopes)
        self.overrides += _counts(rows, joined.override.astype(np.float64), n_scopes)
        self.labels += len(joined)
        for version, count in Counter(compress(joined.version, trusted)).items():
            self.versions[version] = self.versions.get(version, 0) + count
        if len(joined):
            self.start = min(self.start, float(joined.feedback_ts.min()))
            self.end = max(self.end, float(joined.feedback_ts.max()))


class OutcomeMonitor:
    """Outcome conditions of one model, per scope.

    >>> import numpy as np
    >>> from detectors.cohorts import POPULATION, CohortScopes
    >>> from detectors.join import JoinStore
    >>> scopes = CohortScopes.from_reference({}, [], 1)
    >>> rng = np.random.default_rng(1)
    >>> outcomes = OutcomeMonitor("fraud", scopes, np.linspace(0.1, 0.9, 9),
    ...     reference_labels=2_000, window_labels=1_000, min_labels=200, windows=3)
    >>> store, decisions = JoinStore(), []
    >>> for i in range(12):
    ...     ids = [f"p{i}-{j}" for j in range(1_000)]
    ...     score = rng.random(1_000)
    ...     truth = score if i < 6 else 1 - score  # the relationship flips
    ...     _ = store.add_predictions(ids, np.full(1_000, float(i)), score, ["v1"] * 1_000,
    ...                               np.zeros((1_000, 1), dtype=np.intp))
    ...     joined = store.join(ids, np.full(1_000, i + 0.5), (rng.random(1_000) < truth) * 1.0,
    ...                         ["chargeback"] * 1_000, np.zeros(1_000, dtype=bool))
    ...     decisions += outcomes.update(joined, Gates(), "v1")
    >>> [(d.action, d.cause, d.cohort) for d in decisions]
    [('retrain', 'concept_drift', None)]
    """

    def __init__(
        self,
        model: str,
        scopes: CohortScopes,
        band_edges: FloatArray,
        *,
        reference_labels: int = 5_000,
        window_labels: int = 1_000,
        min_labels: int = 200,
        windows: int = 3,
        resolve_windows: int | None = None,
        untrusted_sources: Sequence[str] = ("click", "implicit", "proxy"),
        incumbent: str | None = None,
        max_versions: int = 20,
    ) -> None:
        for name, value in (
            ("reference_labels", reference_labels),
            ("window_labels", window_labels),
            ("min_labels", min_labels),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.model = model
        self.scopes = scopes
        self.band_edges = np.asarray(band_edges, dtype=np.float64)
        self.reference_labels = reference_labels
        self.window_labels = window_labels
        self.min_labels = min_labels
        self.windows = windows
        self.resolve_windows = resolve_windows
        self.untrusted_sources = frozenset(untrusted_sources)
        # The reference's version: new versions' labels are compared with its labels.
        self.incumbent = incumbent
        self.max_versions = max_versions
        self._reset()

    def _reset(self) -> None:
        n = self.scopes.n_scopes
        self.reference = _Window(n, self.band_edges)
        self.current = _Window(n, self.band_edges)
        self.warm = False
        self.performance = PerformanceDrop(min_labels=self.min_labels)
        self.calibration = CalibrationShift(min_labels=self.min_labels)
        self.auc = AucDrop(min_labels=self.min_labels)
        self.by_version = VersionOutcomes(
            self.model,
            self.scopes,
            self.band_edges,
            self.incumbent,
            window_labels=self.window_labels,
            min_labels=self.min_labels,
            windows=self.windows,
            max_versions=self.max_versions,
        )
        self.rates = RateShift(min_events=self.min_labels)
        self.concept = Persistence(n, self.windows, self.resolve_windows)
        self.label_quality = Persistence(n, self.windows, self.resolve_windows)
        self.trust = Persistence(n, self.windows, self.resolve_windows)
        self.evidence: dict[str, list[dict[str, Any]]] = {
            cause: [{} for _ in range(n)]
            for cause in ("concept_drift", "label_quality", "trust_decay")
        }
        # Each scope's effect in the last window it was judged in, per cause: a cohort
        # short of labels carries them over and sits out a window, and must not then
        # count as unaffected when the population's change is placed (announce).
        self.last_effect: dict[str, FloatArray] = {
            cause: np.zeros(n) for cause in ("concept_drift", "label_quality", "trust_decay")
        }
        # What each scope's open concept condition was reported as: a drop in outcomes
        # is a retrain, a hold, or a rollback when it came with a new version.
        self.concept_route: list[tuple[Action, Cause, str | None]] = [
            ("retrain", "concept_drift", None) for _ in range(n)
        ]
        # (version, judged, dropped) of each closed window, by its labels' main version.
        self.version_verdicts: list[tuple[str | None, bool, bool]] = []
        self.labels = 0
        # The last closed window's figures, for metrics.
        self.last_stats: OutcomeStats | None = None
        self.last_override_rate = np.full(n, np.nan)
        self.last_untrusted_rate = np.full(n, np.nan)
        self.enough_labels = np.zeros(n, dtype=bool)
        # River's ADWIN on each trusted label's log loss, per scope (for metrics).
        self.loss_changes = ScopedLossADWIN(n)

    def update(self, joined: Joined, gates: Gates, version: str | None) -> list[Decision]:
        """Add joined labels (rows in order); returns the decisions of closed windows."""
        n_scopes = self.scopes.n_scopes
        width = 1 + len(self.scopes.dimensions)
        decisions: list[Decision] = []
        position = 0
        while position < len(joined):
            target = self.reference if not self.warm else self.current
            limit = self.reference_labels if not self.warm else self.window_labels
            take = min(len(joined) - position, limit - target.labels)
            part = joined.take(np.arange(position, position + take))
            part = _with_width(part, width)
            trusted = np.array([s not in self.untrusted_sources for s in part.source], dtype=bool)
            target.add(part, trusted, n_scopes)
            decisions.extend(self.by_version.update(part.take(trusted)))
            self.loss_changes.update(
                part.score[trusted],
                part.label[trusted],
                part.scopes[trusted],
                part.feedback_ts[trusted],
            )
            position += take
            self.labels += take
            if target.labels >= limit:
                if not self.warm:
                    self.warm = True
                else:
                    decisions.extend(self._close(gates, version))
        return decisions

    def _close(self, gates: Gates, version: str | None) -> list[Decision]:
        ref, cur = self.reference, self.current
        ref_stats, cur_stats = ref.trusted.summary(), cur.trusted.summary()
        performance = self.performance.judge(ref_stats, cur_stats)
        calibration = self.calibration.judge(ref_stats, cur_stats)
        ranking = self.auc.judge(ref_stats, cur_stats)
        # Worse outcomes alone can be a covariate shift (a still-right model scoring
        # harder traffic); a concept change also moves the outcomes within risk bands.
        # Worse is a higher log loss, or a lower AUC: a ranking that collapsed costs
        # little log loss on a rare class.
        concept_hit = (performance.dropped | ranking.dropped) & calibration.shifted
        self.last_stats = cur_stats
        self.enough_labels = performance.enough_labels
        trusted_rate = self.rates.judge(
            ref.trusted_pos, ref.trusted_n, cur.trusted_pos, cur.trusted_n
        )
        untrusted = self.rates.judge(
            ref.untrusted_pos, ref.untrusted_n, cur.untrusted_pos, cur.untrusted_n
        )
        overrides = self.rates.judge(ref.overrides, ref.feedback_n, cur.overrides, cur.feedback_n)
        self.last_override_rate = overrides.current_rate
        self.last_untrusted_rate = untrusted.current_rate
        start = np.full(self.scopes.n_scopes, cur.start)
        decisions: list[Decision] = []

        def judge(
            condition: Persistence,
            cause: Cause,
            judged: BoolArray,
            hit: BoolArray,
            strength: FloatArray,  # this window's effect per scope, NaN where not measured
            evidence: Callable[[int], dict[str, Any]],
            action: Action,
            routes: list[tuple[Action, Cause, str | None]] | None = None,
            route: tuple[Cause, str | None] | None = None,
        ) -> None:
            """``route``: the cause and version to report the condition as, kept in
            ``routes`` per scope so that its closing hold (and its report when it comes
            back before that) says the same."""
            reported = route or (cause, version)
            condition.update(judged, hit, start)
            for scope in np.flatnonzero(judged & hit).tolist():
                self.evidence[cause][scope] = evidence(scope)
            effect = self.last_effect[cause]
            measured = judged & np.isfinite(strength)
            effect[measured] = strength[measured]
            for scope in announce(self.scopes, condition, effect):
                if routes is not None and not condition.returned[scope]:
                    routes[scope] = (action, *reported)
                said = routes[scope] if routes is not None else (action, *reported)
                decisions.append(self._decision(condition, scope, said[0], cause, said[1:]))
            for scope in condition.settle():
                opened = routes[scope][1:] if routes is not None else reported
                decisions.append(
                    self._decision(condition, scope, CLEARED, cause, opened, resolved=True)
                )

        # The version most of the window's trusted labels were predicted by.
        main_version = max(cur.versions, key=lambda v: (cur.versions[v], v), default=None)
        gates = dataclasses.replace(gates, regressing_versions=self.by_version.regressing())
        concept = policy.concept_route(gates, main_version, version)

        def concept_evidence(scope: int) -> dict[str, Any]:
            details = performance.evidence(scope)
            details["calibration_chi2"] = float(f"{calibration.statistic[scope]:.6g}")
            details["calibration_pvalue"] = float(f"{calibration.pvalue[scope]:.6g}")
            details.update(ranking.evidence(scope))
            details["labels_by_version"] = dict(sorted(cur.versions.items()))
            if gates.drifting_inputs:
                details["drifting_inputs"] = list(gates.drifting_inputs)
            details.update(concept.why)
            return details

        judge(
            self.concept,
            "concept_drift",
            performance.enough_labels,
            concept_hit,
            performance.log_loss_increase,
            concept_evidence,
            concept.action,
            self.concept_route,
            (concept.cause, concept.version),
        )
        self.version_verdicts.append(
            (
                main_version,
                bool(performance.enough_labels[POPULATION]),
                bool(performance.dropped[POPULATION]),
            )
        )
        quality_hit = untrusted.shifted & ~trusted_rate.shifted & ~concept_hit
        if not policy.label_quality_judged(gates):
            quality_hit = np.zeros_like(quality_hit)
        judge(
            self.label_quality,
            "label_quality",
            untrusted.enough_events,
            quality_hit,
            np.abs(untrusted.effect),
            lambda s: (
                _rate_evidence("untrusted_positive_rate", untrusted, s)
                | _rate_evidence("trusted_positive_rate", trusted_rate, s)
                | {"untrusted_sources": sorted(self.untrusted_sources)}
            ),
            OPENED["label_quality"],
        )
        judge(
            self.trust,
            "trust_decay",
            overrides.enough_events,
            overrides.shifted & (overrides.direction > 0),
            overrides.effect,
            lambda s: _rate_evidence("override_rate", overrides, s),
            OPENED["trust_decay"],
        )
        # A scope with too few labels keeps them for the next window instead of being
        # judged on too few (or never, for a small cohort).
        self.current.carry(cur.feedback_n >= self.min_labels)
        return decisions

    def snapshot(self) -> OutcomeSnapshot:
        stats = self.last_stats
        unmeasured = np.full(self.scopes.n_scopes, np.nan)
        return OutcomeSnapshot(
            reported=(
                ("concept_drift", int(self.concept.reported.sum())),
                ("label_quality", int(self.label_quality.reported.sum())),
                ("trust_decay", int(self.trust.reported.sum())),
            ),
            loss_changes=tuple(self.loss_changes.detections.tolist()),
            labels=_figures(stats.n if stats is not None else unmeasured),
            log_loss=_figures(stats.log_loss if stats is not None else unmeasured),
            error_ratio=_figures(stats.error_rate if stats is not None else unmeasured),
            brier=_figures(stats.brier if stats is not None else unmeasured),
            auc=_figures(stats.auc if stats is not None else unmeasured),
            auc_se=_figures(
                hanley_mcneil_se(stats.auc, stats.positives, stats.n - stats.positives)
                if stats is not None
                else unmeasured
            ),
            calibration_gap=_figures(stats.calibration_gap if stats is not None else unmeasured),
            override_ratio=_figures(self.last_override_rate),
            untrusted_positive_ratio=_figures(self.last_untrusted_rate),
            enough_labels=tuple(self.enough_labels.tolist()),
            versions=self.by_version.snapshot(),
        )

    def _decision(
        self,
        condition: Persistence,
        scope: int,
        action: Action,
        cause: Cause,
        reported: tuple[Cause, str | None],
        resolved: bool = False,
    ) -> Decision:
        """A decision on ``condition`` (named ``cause``), reported as ``reported``'s
        (cause, model version)."""
        evidence = {**self.evidence[cause][scope], **condition.evidence(scope, resolved)}
        window = self.current
        return Decision(
            model=self.model,
            model_version=reported[1],
            action=action,
            cause=reported[0],
            feature=None,
            cohort=self.scopes.labels[scope] or None,
            ts=window.end,
            window_start=window.start,
            window_end=window.end,
            window_events=window.labels,
            confirmed_at=window.end,
            evidence=evidence,
            phase="resolved" if resolved else "opened",
        )


def _rate_evidence(name: str, verdict: Any, scope: int) -> dict[str, Any]:
    def number(values: FloatArray) -> float | None:
        value = float(values[scope])
        return None if np.isnan(value) else float(f"{value:.6g}")

    return {
        f"reference_{name}": number(verdict.reference_rate),
        f"current_{name}": number(verdict.current_rate),
        f"{name}_z": number(verdict.z),
        f"{name}_pvalue": number(verdict.pvalue),
        f"{name}_effect_h": number(verdict.effect),
    }


def _figures(values: NDArray[Any]) -> tuple[float, ...]:
    return tuple(np.asarray(values, dtype=np.float64).tolist())


def _with_width(joined: Joined, width: int) -> Joined:
    """Scope rows of exactly ``width`` columns (the store pads across models)."""
    rows = joined.scopes
    if rows.shape[1] == width:
        return joined
    fixed = np.full((len(joined), width), -1, dtype=np.intp)
    keep = min(width, rows.shape[1])
    fixed[:, :keep] = rows[:, :keep]
    return dataclasses.replace(joined, scopes=fixed)
