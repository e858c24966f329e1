"""Decisions: what to do, why, where, and on what evidence."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["retrain", "rollback", "fix_upstream", "investigate", "hold"]
Cause = Literal[
    "covariate_drift",
    "concept_drift",
    "frozen_signal",
    "rescaled_signal",
    "schema_change",
    "deployment_regression",
    "label_quality",
    "trust_decay",
    "transient_shift",
]
Severity = Literal["info", "warning", "critical"]
# Where a decision stands in its incident (detectors.incidents): the order, a follow-up,
# the end. Consumers act on "opened" and deduplicate on the incident id.
Phase = Literal["opened", "updated", "resolved"]

SEVERITY: dict[str, Severity] = {
    "retrain": "critical",
    "rollback": "critical",
    "fix_upstream": "critical",
    "investigate": "warning",
    "hold": "info",
}


def digest(*parts: Any) -> str:
    """A deterministic id of JSON-able parts (event times as their ``repr``, exact)."""
    key = json.dumps(list(parts), separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def decision_id(
    model: str,
    action: str,
    cause: str,
    feature: str | None,
    cohort: Mapping[str, str] | None,
    confirmed_at: float,
) -> str:
    """A deterministic id: the same condition confirmed in the same window gets the same
    id after a restart or a replay, so consumers can deduplicate."""
    cohort_items = dict(sorted((cohort or {}).items()))
    return digest(model, action, cause, feature, cohort_items, repr(confirmed_at))


@dataclass(frozen=True)
class Decision:
    """One decision event. ``cohort`` is None when it concerns the whole population.

    ``incident_id`` and ``phase`` place it in its incident (:mod:`detectors.incidents`);
    a monitor's conditions emit ``opened`` (a condition reported) and ``resolved`` (its
    report resolved), which the incident tracker turns into the incident's phases. A
    decision no tracker placed (one built by hand) is an incident of its own.
    """

    model: str
    model_version: str | None
    action: Action
    cause: Cause
    feature: str | None
    cohort: Mapping[str, str] | None
    ts: float
    window_start: float
    window_end: float
    window_events: int
    confirmed_at: float
    evidence: Mapping[str, Any] = field(default_factory=dict)
    phase: Phase = "opened"
    # Set by the incident tracker; None: an incident of its own.
    incident: str | None = None

    @property
    def decision_id(self) -> str:
        return decision_id(
            self.model, self.action, self.cause, self.feature, self.cohort, self.confirmed_at
        )

    @property
    def incident_id(self) -> str:
        return self.incident or self.decision_id

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.action]

    def to_dict(self) -> dict[str, Any]:
        """The decision event of the wire contract (``deploy/schemas/decision.json``)."""
        return {
            "schema_version": 2,
            "decision_id": self.decision_id,
            "incident_id": self.incident_id,
            "phase": self.phase,
            "ts": self.ts,
            "model": self.model,
            "model_version": self.model_version,
            "action": self.action,
            "cause": self.cause,
            "scope": {
                "feature": self.feature,
                "cohort": dict(self.cohort) if self.cohort else None,
            },
            "severity": self.severity,
            "evidence": dict(self.evidence),
            "window": {
                "start": self.window_start,
                "end": self.window_end,
                "events": self.window_events,
            },
        }
