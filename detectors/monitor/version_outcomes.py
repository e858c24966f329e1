"""Outcomes per model version: each new version's labels against the incumbent's, same period.

A canary serves a share of the traffic while the incumbent serves the rest, so the world
is the same for both: comparing their outcomes over the same period separates a worse
version from a changed world, which a window mixing both versions' labels cannot do (a
canary's bad labels would drag it down and the incumbent would be blamed).

Every trusted label is keyed by the version that made its prediction. For each version
other than the incumbent (the reference's), a comparison window holds its next
``window_labels`` labels and the incumbent's labels that arrived meanwhile (at most
``max_incumbent_labels`` of them, the first). When it is full, each scope where both
sides have ``min_labels`` labels is judged: the version regressed there when its per-label
log loss is worse than the incumbent's (one-sided Welch z, ``alpha``, and material, see
:class:`~detectors.outcomes.PerformanceDrop`) or its ROC AUC is lower (Hanley-McNeil z,
``alpha``, and at least 0.05 lower, :class:`~detectors.outcomes.AucDrop`): a ranking that
collapsed is a regression even when the version's calibration in the large holds. A
regression that persists ``windows`` comparison windows is a ``rollback`` of the version
(``deployment_regression``); :meth:`ModelMonitor.update_labels` drops it when the scores
already reported the same rollback. A scope short of labels keeps them for the next
window. Once the incumbent no longer serves, there is nothing to compare in the same
period, and the version is judged against the reference as before (:mod:`.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.arrays import BoolArray, FloatArray
from detectors.cohorts import POPULATION, CohortScopes
from detectors.decision import Decision
from detectors.join import Joined
from detectors.monitor.policy import CLEARED, OPENED
from detectors.monitor.snapshot import VersionOutcomeSnapshot
from detectors.outcomes import AucDrop, AucVerdict, DropVerdict, OutcomeWindow, PerformanceDrop
from detectors.outcomes.stats import valid_rows
from detectors.persistence import Persistence, announce
from detectors.validation import check_int


@dataclass
class _Comparison:
    """One version's comparison window and its condition."""

    version: str
    mine: OutcomeWindow
    theirs: OutcomeWindow
    condition: Persistence
    start: float = np.inf
    end: float = -np.inf
    windows: int = 0
    labels: int = 0  # the version's labels added since the window opened (not carried)
    # The last judged window's verdicts (for the evidence and the metrics).
    performance: DropVerdict | None = None
    auc: AucVerdict | None = None
    evidence: list[dict[str, Any]] | None = None

    def add(self, joined: Joined, mine: BoolArray, theirs: BoolArray, cap: int) -> None:
        self.mine.update(joined.score[mine], joined.label[mine], joined.scopes[mine])
        self.labels += int(mine.sum())
        room = np.flatnonzero(theirs)[: max(0, cap - self.theirs.rows)]
        self.theirs.update(joined.score[room], joined.label[room], joined.scopes[room])
        if mine.any():
            stamps = joined.feedback_ts[mine]
            self.start = min(self.start, float(stamps.min()))
            self.end = max(self.end, float(stamps.max()))


class VersionOutcomes:
    """Each new model version's trusted outcomes against the incumbent's, same period.

    >>> import numpy as np
    >>> from detectors.cohorts import CohortScopes
    >>> from detectors.join import JoinStore
    >>> scopes = CohortScopes.from_reference({}, [], 1)
    >>> rng = np.random.default_rng(8)
    >>> versions = VersionOutcomes("fraud", scopes, np.linspace(0.1, 0.9, 9), "v1",
    ...                            window_labels=1_000, min_labels=200, windows=3)
    >>> store, decisions = JoinStore(), []
    >>> for i in range(16):
    ...     ids = [f"p{i}-{j}" for j in range(2_000)]
    ...     score = rng.beta(1, 4, 2_000)
    ...     label = (rng.random(2_000) < score) * 1.0
    ...     canary = (rng.random(2_000) < 0.5) & (i >= 4)  # v2 takes half the traffic ...
    ...     score[canary] = rng.permutation(score[canary])  # ... and ranks at random
    ...     version = np.where(canary, "v2", "v1").tolist()
    ...     _ = store.add_predictions(ids, np.full(2_000, float(i)), score, version,
    ...                               np.zeros((2_000, 1), dtype=np.intp))
    ...     joined = store.join(ids, np.full(2_000, i + 0.5), label, ["chargeback"] * 2_000,
    ...                         np.zeros(2_000, dtype=bool))
    ...     decisions += versions.update(joined)
    >>> [(d.action, d.cause, d.model_version) for d in decisions]
    [('rollback', 'deployment_regression', 'v2')]
    """

    def __init__(
        self,
        model: str,
        scopes: CohortScopes,
        band_edges: FloatArray,
        incumbent: str | None,
        *,
        window_labels: int = 1_000,
        min_labels: int = 200,
        windows: int = 3,
        alpha: float = 0.001,
        max_versions: int = 20,
        max_incumbent_labels: int | None = None,
    ) -> None:
        self.model = model
        self.scopes = scopes
        self.band_edges = np.asarray(band_edges, dtype=np.float64)
        self.incumbent = incumbent
        self.window_labels = check_int("window_labels", window_labels, 1)
        self.min_labels = check_int("min_labels", min_labels, 2)
        self.windows = check_int("windows", windows, 1)
        self.max_versions = check_int("max_versions", max_versions, 1)
        # The incumbent's side of a small canary's window would hold many times its
        # labels: its first ones are as good a sample of the period and bound the memory.
        cap = 5 * self.window_labels if max_incumbent_labels is None else max_incumbent_labels
        self.max_incumbent_labels = check_int("max_incumbent_labels", cap, 1)
        self.performance = PerformanceDrop(min_labels=self.min_labels, alpha=alpha)
        self.auc = AucDrop(min_labels=self.min_labels, alpha=alpha)
        self._reset()

    def _reset(self) -> None:
        self.versions: dict[str, _Comparison] = {}
        # Labels of versions past max_versions: counted, not compared.
        self.unwatched_labels = 0

    def _window(self) -> OutcomeWindow:
        window = OutcomeWindow(self.scopes.n_scopes)
        window.set_band_edges(self.band_edges)
        return window

    def _comparison(self, version: str) -> _Comparison | None:
        found = self.versions.get(version)
        if found is None and len(self.versions) < self.max_versions:
            n = self.scopes.n_scopes
            found = _Comparison(
                version, self._window(), self._window(), Persistence(n, self.windows)
            )
            self.versions[version] = found
        return found

    def update(self, joined: Joined) -> list[Decision]:
        """Add trusted joined labels (rows in order, scope rows of the monitor's width);
        returns the decisions of the comparison windows that filled."""
        if self.incumbent is None or not len(joined):
            return []
        column = np.asarray(joined.version, dtype=object)
        # Rows the windows would skip must not count towards a window's labels.
        valid = valid_rows(joined.score, joined.label)
        incumbent = (column == self.incumbent) & valid
        # Every watched version's window takes the incumbent's labels of its period,
        # whether or not the version has labels in this part.
        new = set(column[valid].tolist()) - {self.incumbent}
        comparisons: list[tuple[_Comparison, BoolArray]] = []
        for version in sorted(new | self.versions.keys()):
            mine = (column == version) & valid
            comparison = self._comparison(version)
            if comparison is None:
                self.unwatched_labels += int(mine.sum())
            else:
                comparisons.append((comparison, mine))
        decisions: list[Decision] = []
        position, n = 0, len(joined)
        while position < n:
            # Cut where the first comparison window fills, so that the result does not
            # depend on how the labels were batched.
            cut = n
            for comparison, mine in comparisons:
                need = self.window_labels - comparison.labels
                rows = np.flatnonzero(mine[position:])
                if len(rows) >= need:
                    cut = min(cut, position + int(rows[need - 1]) + 1)
            part = joined.take(np.arange(position, cut))
            theirs = incumbent[position:cut]
            for comparison, mine in comparisons:
                comparison.add(part, mine[position:cut], theirs, self.max_incumbent_labels)
                if comparison.labels >= self.window_labels:
                    decisions.extend(self._close(comparison))
            position = cut
        return decisions

    def _close(self, comparison: _Comparison) -> list[Decision]:
        mine, theirs = comparison.mine.summary(), comparison.theirs.summary()
        performance = self.performance.judge(theirs, mine)
        auc = self.auc.judge(theirs, mine)
        judged = performance.enough_labels
        hit = judged & (performance.dropped | auc.dropped)
        comparison.windows += 1
        comparison.performance, comparison.auc = performance, auc
        start = np.full(self.scopes.n_scopes, comparison.start)
        condition = comparison.condition
        _, cleared = condition.update(judged, hit, start)
        if comparison.evidence is None:
            comparison.evidence = [{} for _ in range(self.scopes.n_scopes)]
        for scope in np.flatnonzero(hit).tolist():
            comparison.evidence[scope] = self._evidence(comparison, scope)
        # Placed by the test statistic, not the effect: a small cohort's AUC and log loss
        # rest on a few positives, and its effect can look several times the population's
        # by chance, while a z grows with the labels behind it. A regression of everybody
        # has its largest z in the population; one confined to a cohort, in that cohort.
        strength = np.where(hit, np.fmax(auc.z, performance.z), 0.0)
        decisions = [
            self._decision(comparison, scope, resolved=False)
            for scope in announce(self.scopes, condition, np.nan_to_num(strength))
        ]
        for scope in np.flatnonzero(cleared & condition.announced).tolist():
            condition.announced[scope] = False
            decisions.append(self._decision(comparison, scope, resolved=True))
        # A scope with too few of the version's labels keeps them (and the incumbent's
        # of the same period) for the next window.
        done = mine.n >= self.min_labels
        comparison.mine.keep_scopes(~done)
        comparison.theirs.keep_scopes(~done)
        comparison.start, comparison.end = np.inf, -np.inf
        comparison.labels = 0
        return decisions

    def _evidence(self, comparison: _Comparison, scope: int) -> dict[str, Any]:
        assert comparison.performance is not None and comparison.auc is not None
        loss = comparison.performance.evidence(scope)
        auc = comparison.auc.evidence(scope)
        return {
            "detector": "outcomes_against_incumbent_same_period",
            "incumbent_version": self.incumbent,
            "version_labels": loss["current_labels"],
            "incumbent_labels": loss["reference_labels"],
            "version_log_loss": loss["current_log_loss"],
            "incumbent_log_loss": loss["reference_log_loss"],
            "log_loss_z": loss["z"],
            "log_loss_pvalue": loss["pvalue"],
            "version_auc": auc["current_auc"],
            "incumbent_auc": auc["reference_auc"],
            "version_auc_se": auc["current_auc_se"],
            "incumbent_auc_se": auc["reference_auc_se"],
            "auc_z": auc["auc_z"],
            "auc_pvalue": auc["auc_pvalue"],
            "alpha": self.performance.alpha,
        }

    def regressing(self) -> tuple[str, ...]:
        """Versions whose outcomes are worse than the incumbent's in the same period:
        found in the population's last comparison window, or reported and not cleared."""
        return tuple(
            version
            for version, c in sorted(self.versions.items())
            if c.condition.streak[POPULATION] > 0 or c.condition.open.any()
        )

    def snapshot(self) -> tuple[VersionOutcomeSnapshot, ...]:
        def figures(values: FloatArray | None) -> tuple[float, ...]:
            if values is None:
                return tuple(np.full(self.scopes.n_scopes, np.nan).tolist())
            return tuple(np.asarray(values, dtype=np.float64).tolist())

        out = []
        for version, c in sorted(self.versions.items()):
            p, a = c.performance, c.auc
            out.append(
                VersionOutcomeSnapshot(
                    version=version,
                    windows=c.windows,
                    labels=figures(None if p is None else p.current_n.astype(np.float64)),
                    log_loss=figures(None if p is None else p.current_log_loss),
                    auc=figures(None if a is None else a.current_auc),
                    incumbent_labels=figures(
                        None if p is None else p.reference_n.astype(np.float64)
                    ),
                    incumbent_log_loss=figures(None if p is None else p.reference_log_loss),
                    incumbent_auc=figures(None if a is None else a.reference_auc),
                    regression_reported=tuple(c.condition.announced.tolist()),
                )
            )
        return tuple(out)

    def _decision(self, comparison: _Comparison, scope: int, *, resolved: bool) -> Decision:
        condition = comparison.condition
        assert comparison.evidence is not None
        evidence = {**comparison.evidence[scope], **condition.evidence(scope, resolved)}
        labels = int(comparison.mine.n[scope])
        return Decision(
            model=self.model,
            model_version=comparison.version,
            action=CLEARED if resolved else OPENED["outcome_regression"],
            cause="deployment_regression",
            feature=None,
            cohort=self.scopes.labels[scope] or None,
            ts=comparison.end,
            window_start=comparison.start,
            window_end=comparison.end,
            window_events=labels,
            confirmed_at=comparison.end,
            evidence=evidence,
        )
