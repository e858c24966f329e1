"""Decisions on a model's inputs: written from the features' state after a window.

:class:`InputDecisions` turns what :meth:`FeatureDrift.judge_window` recorded into
decisions (the action from :mod:`detectors.monitor.policy`, the scope from
:func:`detectors.persistence.announce`) with their evidence: broken inputs, covariate
drift, reverted shifts and new feature names. :func:`grouped` folds the features that
started drifting together in one scope into one decision.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.arrays import BoolArray, IntArray
from detectors.binning import CategoricalBins
from detectors.cohorts import POPULATION, CohortScopes
from detectors.decision import Action, Cause, Decision
from detectors.monitor.config import MonitorConfig
from detectors.monitor.feature_drift import TRANSIENT_MIN_WINDOWS, FeatureDrift
from detectors.monitor.policy import CLEARED, OPENED
from detectors.monitor.windows import ScopeWindows
from detectors.new_features import NewFeature, NewFeatures
from detectors.persistence import Persistence, announce, transient
from detectors.signal_health import RESCALE_PROBS
from detectors.upstream import match_renamed

# This many features starting to drift in one scope in the same window are one event
# (a new traffic source, a pipeline change): one decision lists them all.
GROUP_FEATURES = 3
GROUPED = {
    (OPENED["covariate_drift"], "covariate_drift"),
    (OPENED["transient_shift"], "transient_shift"),
}


@dataclass(frozen=True)
class InputDecisions:
    """The decisions of one closed window on the inputs of ``model``."""

    model: str
    model_version: str | None
    config: MonitorConfig
    scopes: CohortScopes
    window: ScopeWindows
    reference_events: IntArray  # per scope
    reference_window: dict[str, float | None]  # start, end
    features: Mapping[str, FeatureDrift]
    new_features: NewFeatures
    # Vanished feature -> the new name it was found renamed to (kept by the monitor).
    renamed: dict[str, str]

    def of_feature(self, state: FeatureDrift, still_shifted: BoolArray) -> list[Decision]:
        """A feature's decisions after :meth:`FeatureDrift.judge_window`;
        ``still_shifted``: the scopes whose window drifted."""
        assert state.upstream is not None
        decisions: list[Decision] = []
        strength = state.psi
        for scope in announce(self.scopes, state.upstream, strength):
            decisions.append(self._upstream(state, scope, resolved=False))
        for scope in state.upstream.settle():
            decisions.append(self._upstream(state, scope, resolved=True))
        for scope in announce(self.scopes, state.drift, strength):
            decisions.append(self._drift(state, scope, resolved=False))
        for scope in state.drift.settle():
            decisions.append(self._drift(state, scope, resolved=True))
        decisions.extend(self._transients(state, still_shifted))
        return decisions

    def _transients(self, state: FeatureDrift, still_shifted: BoolArray) -> list[Decision]:
        """Shifts that reverted before they persisted: nothing to act on, but worth
        knowing (a campaign, a short outage)."""
        peak = state.reverted_peaks(still_shifted, self.config.psi_threshold)
        evidence = {
            "detector": "binned_psi_and_g_test",
            "feature_kind": state.kind,
            "psi_threshold": self.config.psi_threshold,
            "reference_window": dict(self.reference_window),
        }
        return [
            self._emit(
                state,
                state.drift,
                scope,
                OPENED["transient_shift"],
                "transient_shift",
                {
                    **evidence,
                    "psi": round(float(peak[scope]), 6),
                    "psi_history": list(state.psi_history[scope]),
                },
            )
            for scope in transient(self.scopes, state.drift, peak, TRANSIENT_MIN_WINDOWS)
        ]

    def _drift(self, state: FeatureDrift, scope: int, resolved: bool) -> Decision:
        """A covariate drift decision (or its hold once it cleared)."""
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
            "reference_window": dict(self.reference_window),
        }
        broken = sorted(name for name, other in self.features.items() if other.broken)
        if broken:
            evidence["inputs_broken"] = broken
        action = CLEARED if resolved else OPENED["covariate_drift"]
        return self._emit(state, state.drift, scope, action, "covariate_drift", evidence, resolved)

    def _upstream(self, state: FeatureDrift, scope: int, resolved: bool) -> Decision:
        """A frozen, rescaled or schema decision (or its hold once the signal recovered)."""
        assert state.upstream is not None
        cause = state.upstream_cause_of(scope)
        evidence = {"feature_kind": state.kind, **state.upstream_evidence[scope]}
        frozen_value = evidence.get("frozen_value")
        if isinstance(state.bins, CategoricalBins) and isinstance(frozen_value, float):
            evidence["frozen_value"] = state.category_of(frozen_value)
        if evidence.get("kind") == "missing" and not resolved:
            renamed = self._rename_of(state, scope)
            if renamed:
                evidence["kind"] = "renamed"
                evidence["renamed_to"], evidence["shape_distance"] = renamed
        if cause == "rescaled_signal":
            # Each window's own factor, beside the pooled one the evidence reports.
            factors = state.rescale_history[scope]
            evidence["window_factors"] = [round(f, 6) for f in factors if math.isfinite(f)]
        action = CLEARED if resolved else OPENED["broken_input"]
        return self._emit(state, state.upstream, scope, action, cause, evidence, resolved)  # type: ignore[arg-type]

    def _rename_of(self, state: FeatureDrift, scope: int) -> tuple[str, float] | None:
        """The new feature name whose values match a vanished feature's reference."""
        reference_q = state.rescale_quantiles
        if reference_q is None or scope != POPULATION:
            return None
        appeared = {}
        for name in self.new_features.totals:
            values = self.new_features.values(name)
            values = values[~np.isnan(values)]
            if values.size >= self.config.min_window_events:
                appeared[name] = np.quantile(values, RESCALE_PROBS, method="inverted_cdf")
        pairs = match_renamed({state.name: reference_q[scope]}, appeared, RESCALE_PROBS)
        if not pairs:
            return None
        _, new, distance = pairs[0]
        self.renamed[state.name] = new
        return new, round(distance, 6)

    def of_new_feature(self, feature: NewFeature) -> Decision:
        """A name the reference never had, confirmed in this window."""
        window = self.window
        start, end = float(window.start[POPULATION]), float(window.end[POPULATION])
        return Decision(
            model=self.model,
            model_version=self.model_version,
            action=OPENED["new_feature"],
            cause="schema_change",
            feature=feature.name,
            cohort=None,
            ts=end,
            window_start=start,
            window_end=end,
            window_events=int(window.events[POPULATION]),
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
        resolved: bool = False,
    ) -> Decision:
        reverted = cause == "transient_shift"
        window = self.window
        evidence = {
            **evidence,
            **condition.evidence(scope, resolved and not reverted),
            "window_events": int(window.events[scope]),
            "reference_events": int(self.reference_events[scope]),
        }
        if reverted:
            # A reverted streak was reset by the window that ended it: report its length.
            evidence["persisted_windows"] = int(condition.reverted[scope])
            evidence["reverted"] = True
        end = float(window.end[scope])
        return Decision(
            model=self.model,
            model_version=self.model_version,
            action=action,
            cause=cause,
            feature=state.name,
            cohort=self.scopes.labels[scope] or None,
            ts=end,
            window_start=float(window.start[scope]),
            window_end=end,
            window_events=int(window.events[scope]),
            confirmed_at=end,
            evidence=evidence,
            phase="resolved" if resolved else "opened",
        )


def grouped(decisions: list[Decision]) -> list[Decision]:
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
