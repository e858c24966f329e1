"""Deployments: is a new model version worse than the one it replaced?

A shift that starts with a version change is about the deployment, not the world, and
the fix is a rollback, not a retrain. Every ``model_version`` other than the one the
reference was built on (the incumbent) is watched from its first prediction:

- **scores**: its score histogram per scope, on the reference's score deciles, against
  the incumbent's reference scores on the same cohorts (PSI and G-test, as for
  features). A scope is judged only when its inputs did not move in the same window,
  so a score shift is the model's doing. A shift that persists is a regression
  (``rollback``/``deployment_regression``); windows that match clear the scores.
- **outcomes**: trusted-label windows whose labels are mostly the new version's are
  compared with the reference's outcomes (the incumbent's). A version stays under
  suspicion until that many clean label windows cleared it, so a drop in outcomes
  that starts with it is a rollback question first (see :class:`OutcomeMonitor` and
  :mod:`detectors.monitor.policy`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.binning import NumericBins, scope_histograms
from detectors.cohorts import CohortScopes
from detectors.decision import Decision
from detectors.divergence import g_test, psi
from detectors.monitor.policy import CLEARED, OPENED, inputs_moved
from detectors.monitor.snapshot import DeploymentSnapshot
from detectors.persistence import Persistence, announce

if TYPE_CHECKING:
    from detectors.monitor.feature_drift import FeatureDrift


@dataclass
class VersionWatch:
    """What is known about one new version."""

    version: str
    first_seen: float
    current: IntArray
    scores: Persistence
    psi: FloatArray
    pvalue: FloatArray
    psi_history: list[list[float]] = field(default_factory=list)
    # Scopes a rollback was reported for, by the scores or by the outcomes.
    reported: set[tuple[tuple[str, str], ...]] = field(default_factory=set)
    clean_label_windows: int = 0

    def cleared_by_labels(self, windows: int) -> bool:
        return self.clean_label_windows >= windows


class DeploymentWatch:
    """Watches the model versions that came after the reference's.

    >>> import numpy as np
    >>> from detectors.cohorts import CohortScopes
    >>> scopes = CohortScopes.from_reference({}, [], 1)
    >>> rng = np.random.default_rng(5)
    >>> reference = rng.beta(1, 12, 10_000)  # a fraud model's scores, mostly low
    >>> watch = DeploymentWatch("fraud", scopes, reference, np.zeros((10_000, 1), np.intp), "v1")
    >>> decisions = []
    >>> for k in range(8):
    ...     version = "v1" if k < 4 else "v2"
    ...     # v2 forgot to undo its training set's negative downsampling: scores x5
    ...     score = rng.beta(1, 12, 2_000) * (1 if version == "v1" else 5)
    ...     watch.observe([version] * 2_000, np.clip(score, 0, 1), np.zeros((2_000, 1), np.intp),
    ...                   np.full(2_000, float(k)))
    ...     decisions += watch.close(np.zeros(1, bool), np.full(1, k), np.full(1, k + 0.9))
    >>> [(d.action, d.cause, d.model_version) for d in decisions]
    [('rollback', 'deployment_regression', 'v2')]
    """

    def __init__(
        self,
        model: str,
        scopes: CohortScopes,
        reference_scores: FloatArray,
        reference_rows: IndexArray,
        incumbent: str,
        *,
        n_bins: int = 10,
        psi_threshold: float = 0.2,
        alpha: float = 0.001,
        windows: int = 3,
        resolve_windows: int | None = None,
        min_events: int = 200,
        max_versions: int = 20,
    ) -> None:
        if max_versions < 1:
            raise ValueError(f"max_versions must be >= 1, got {max_versions}")
        if windows < 1:
            raise ValueError(f"windows must be >= 1, got {windows}")
        if min_events < 1:
            raise ValueError(f"min_events must be >= 1, got {min_events}")
        self.model = model
        self.scopes = scopes
        self.incumbent = incumbent
        self.psi_threshold = psi_threshold
        self.alpha = alpha
        self.windows = windows
        self.resolve_windows = resolve_windows
        self.min_events = min_events
        self.max_versions = max_versions
        self.bins = NumericBins.from_reference(np.asarray(reference_scores, np.float64), n_bins)
        self.reference = scope_histograms(
            self.bins.assign(np.asarray(reference_scores, np.float64)),
            reference_rows,
            scopes.n_scopes,
            self.bins.n_bins,
        )
        self._reset()

    def _reset(self) -> None:
        self.versions: dict[str, VersionWatch] = {}
        # Versions past max_versions are not watched (a producer writing a build id per
        # event must not grow the state): their predictions are only counted.
        self.unwatched_events = 0

    def _watch(self, version: str, first_seen: float) -> VersionWatch:
        n = self.scopes.n_scopes
        watch = self.versions.get(version)
        if watch is None:
            watch = VersionWatch(
                version=version,
                first_seen=first_seen,
                current=np.zeros((n, self.bins.n_bins), dtype=np.int64),
                scores=Persistence(n, self.windows, self.resolve_windows),
                psi=np.full(n, np.nan),
                pvalue=np.full(n, np.nan),
                psi_history=[[] for _ in range(n)],
            )
            self.versions[version] = watch
        return watch

    def observe(
        self, versions: Sequence[str], scores: FloatArray, rows: IndexArray, ts: FloatArray
    ) -> None:
        """Add a part of the current window (each row's version, score, scopes, time)."""
        distinct = set(versions)
        distinct.discard(self.incumbent)
        if not distinct:
            return
        column = np.asarray(versions, dtype=object)
        for version in sorted(distinct):
            mine = column == version
            if version not in self.versions and len(self.versions) >= self.max_versions:
                self.unwatched_events += int(mine.sum())
                continue
            watch = self._watch(version, float(ts[mine].min()))
            bins = self.bins.assign(np.asarray(scores, np.float64)[mine])
            watch.current += scope_histograms(
                bins, rows[mine], self.scopes.n_scopes, self.bins.n_bins
            )

    def report_window(
        self, features: Iterable[FeatureDrift], window_start: FloatArray, window_end: FloatArray
    ) -> list[Decision]:
        """New versions' scores against the incumbent's in the window that closed, in the
        scopes whose inputs did not move (there, a score shift is the model's doing); a
        rollback found by the labels first is not reported again."""
        moved = inputs_moved(features, self.scopes.n_scopes)
        return [d for d in self.close(moved, window_start, window_end) if self.first_report(d)]

    def close(
        self, inputs_moved: BoolArray, window_start: FloatArray, window_end: FloatArray
    ) -> list[Decision]:
        """Judge every watched version's scores in the window that closed; a scope whose
        inputs moved in it is not comparable and keeps its scores for the next."""
        decisions: list[Decision] = []
        enough_reference = self.reference.sum(axis=1) >= self.min_events
        for watch in self.versions.values():
            events = watch.current.sum(axis=1)
            judged = (events >= self.min_events) & ~inputs_moved & enough_reference
            if not judged.any():
                continue
            watch.psi[judged] = psi(self.reference[judged], watch.current[judged])
            watch.pvalue[judged] = g_test(self.reference[judged], watch.current[judged])[1]
            hit = (watch.psi >= self.psi_threshold) & (watch.pvalue < self.alpha)
            watch.scores.update(judged, hit, window_start)
            for scope in np.flatnonzero(judged).tolist():
                history = watch.psi_history[scope]
                history.append(round(float(watch.psi[scope]), 6))
                del history[: -self.windows]
            for scope in announce(self.scopes, watch.scores, np.nan_to_num(watch.psi)):
                decisions.append(self._decision(watch, scope, window_end, events, resolved=False))
            for scope in watch.scores.settle():
                decisions.append(self._decision(watch, scope, window_end, events, resolved=True))
            watch.current[judged] = 0
        return decisions

    def label_window(self, version: str | None, judged: bool, dropped: bool) -> None:
        """One closed label window whose labels were mostly ``version``'s: judged (enough
        trusted labels for the population) and whether its outcomes dropped."""
        watch = self.versions.get(version) if version is not None else None
        if watch is None or not judged:
            return
        watch.clean_label_windows = 0 if dropped else watch.clean_label_windows + 1

    def first_report(self, decision: Decision) -> bool:
        """False for a rollback of a version and scope already reported (the scores and
        the outcomes can both find the same regression); any other decision is True."""
        if decision.action != "rollback" or decision.model_version is None:
            return True
        watch = self.versions.get(decision.model_version)
        if watch is None:
            return True
        key = tuple(sorted((decision.cohort or {}).items()))
        if key in watch.reported:
            return False
        watch.reported.add(key)
        return True

    def suspects(self) -> tuple[str, ...]:
        """Versions whose outcomes have not cleared them yet: a drop in outcomes on
        their labels is a rollback question, not a retrain."""
        return tuple(
            sorted(v for v, w in self.versions.items() if not w.cleared_by_labels(self.windows))
        )

    def regressed(self) -> tuple[str, ...]:
        """Versions with a score regression reported and not cleared."""
        return tuple(sorted(v for v, w in self.versions.items() if w.scores.reported.any()))

    def snapshot(self) -> DeploymentSnapshot:
        return DeploymentSnapshot(
            incumbent=self.incumbent,
            watched=tuple(sorted(self.versions)),
            suspects=self.suspects(),
            regressed=self.regressed(),
            unwatched_events=self.unwatched_events,
        )

    def _decision(
        self,
        watch: VersionWatch,
        scope: int,
        window_end: FloatArray,
        events: IntArray,
        *,
        resolved: bool,
    ) -> Decision:
        condition = watch.scores
        evidence: dict[str, Any] = {
            "detector": "score_psi_and_g_test_against_incumbent",
            "incumbent_version": self.incumbent,
            "version_first_seen": watch.first_seen,
            "psi": round(float(watch.psi[scope]), 6),
            "psi_threshold": self.psi_threshold,
            "g_test_pvalue": float(f"{watch.pvalue[scope]:.6g}"),
            "alpha": self.alpha,
            "psi_history": list(watch.psi_history[scope]),
            **condition.evidence(scope, resolved),
            "window_events": int(events[scope]),
            "reference_events": int(self.reference[scope].sum()),
        }
        end = float(window_end[scope])
        start = float(condition.judged_start[scope])
        return Decision(
            model=self.model,
            model_version=watch.version,
            action=CLEARED if resolved else OPENED["score_regression"],
            cause="deployment_regression",
            feature=None,
            cohort=self.scopes.labels[scope] or None,
            ts=end,
            window_start=start,
            window_end=end,
            window_events=int(events[scope]),
            confirmed_at=end,
            evidence=evidence,
            phase="resolved" if resolved else "opened",
        )
