"""Incidents: the conditions one order answers, opened once and resolved once.

A monitor reports conditions (a feature drifted in a cohort, outcomes dropped in the
population, ...), each once, and says when a report is resolved (the condition stayed
clear for ``resolve_windows`` judged windows, :meth:`Persistence.settle`). One incident
groups the reports that one order answers; its key is the action and:

====================================================  =====================================
reports                                               one incident per
====================================================  =====================================
covariate drift (``investigate``)                     model: whatever the feature or
                                                      cohort, a drift that spreads is
                                                      the same incident
an upstream fault (``fix_upstream``: frozen,          model and feature
rescaled, schema change)
outcomes (``concept_drift``: ``retrain``, or the      model and action: a cohort's drop
``hold`` a gate asks for)                             that grows to the population is an
                                                      update
a deployment regression (``rollback``)                model and version, by its scores
                                                      or its outcomes
label quality, trust decay (``investigate``)          model and cause
a shift that reverted (``transient_shift`` hold)      itself: informational, it opens
                                                      and ends with its one decision
====================================================  =====================================

The first report of an incident is its ``opened`` decision (the order); later reports
while it is open (another scope or feature, the population after a cohort, a condition
that came back) are ``updated``: they keep their action, cause and evidence for people,
but a pipeline acts on ``opened`` only and deduplicates on ``incident_id``. A report
resolved while others of its incident stay open says nothing; the last one resolved is
the incident's ``resolved`` hold. A condition reported after its incident resolved opens
a new one. ``incident_id`` hashes the model, the key and the event time at which the
incident opened: the same events give the same ids, on replay, on Kafka, after a
restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from detectors.decision import Decision, Phase, digest

# (action, family, detail): what one order answers.
IncidentKey = tuple[str, str, str]
# One report: its family, feature, cohort and, for a regression, the version.
Member = tuple[str, str | None, tuple[tuple[str, str], ...], str | None]

FAMILY = {
    "covariate_drift": "covariate_drift",
    "frozen_signal": "upstream",
    "rescaled_signal": "upstream",
    "schema_change": "upstream",
    "concept_drift": "concept_drift",
    "deployment_regression": "deployment_regression",
    "label_quality": "label_quality",
    "trust_decay": "trust_decay",
    "transient_shift": "transient_shift",
}


def incident_key(decision: Decision) -> IncidentKey:
    """The incident a report belongs to (see the module's table)."""
    family = FAMILY[decision.cause]
    if family == "upstream":
        return (decision.action, family, decision.feature or "")
    if family == "deployment_regression":
        return (decision.action, family, decision.model_version or "")
    return (decision.action, family, "")


def members(decision: Decision) -> list[Member]:
    """The reports a decision stands for: one per feature of a grouped drift decision
    (``feature`` null, ``evidence.features``), whose reports resolve one by one."""
    family = FAMILY[decision.cause]
    cohort = tuple(sorted((decision.cohort or {}).items()))
    version = decision.model_version if family == "deployment_regression" else None
    features = decision.evidence.get("features") if decision.feature is None else None
    names = [str(f) for f in features] if features else [decision.feature]
    return [(family, name, cohort, version) for name in names]


@dataclass
class _Incident:
    incident_id: str
    members: set[Member] = field(default_factory=set)


class IncidentTracker:
    """Places one model's decisions in their incidents, in the order they are made.

    >>> from detectors.decision import Decision
    >>> def report(cohort, ts, phase="opened", action="retrain"):
    ...     return Decision("fraud", "v1", action, "concept_drift", None, cohort,
    ...                     ts, ts - 60, ts, 1_000, ts, phase=phase)
    >>> tracker = IncidentTracker("fraud")
    >>> placed = tracker.place([
    ...     report({"region": "eu"}, 100.0),                   # the order
    ...     report(None, 400.0),                               # grew to the population
    ...     report({"region": "eu"}, 700.0, "resolved", "hold"),
    ...     report(None, 900.0, "resolved", "hold"),           # the last report resolved
    ...     report(None, 2_000.0),                             # back after it resolved
    ... ])
    >>> [(d.action, d.phase) for d in placed]
    [('retrain', 'opened'), ('retrain', 'updated'), ('hold', 'resolved'), ('retrain', 'opened')]
    >>> len({d.incident_id for d in placed[:3]}), placed[0].incident_id == placed[3].incident_id
    (1, False)
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self._reset()

    def _reset(self) -> None:
        self.open: dict[IncidentKey, _Incident] = {}
        self.member_of: dict[Member, IncidentKey] = {}

    def place(self, decisions: Iterable[Decision]) -> list[Decision]:
        """The decisions with their incident and phase; a report resolved while its
        incident stays open is left out."""
        placed = (self._place(d) for d in decisions)
        return [d for d in placed if d is not None]

    def _place(self, decision: Decision) -> Decision | None:
        if decision.phase == "resolved":
            return self._resolve(decision)
        key = incident_key(decision)
        if key[1] == "transient_shift":
            incident_id = self._incident_id(key, decision)
            return dataclasses.replace(decision, incident=incident_id, phase="opened")
        incident = self.open.get(key)
        phase: Phase = "updated" if incident is not None else "opened"
        if incident is None:
            incident = self.open[key] = _Incident(self._incident_id(key, decision))
        for member in members(decision):
            incident.members.add(member)
            self.member_of[member] = key
        return dataclasses.replace(decision, incident=incident.incident_id, phase=phase)

    def _resolve(self, decision: Decision) -> Decision | None:
        (member,) = members(decision)
        key = self.member_of.pop(member, None)
        incident = self.open.get(key) if key is not None else None
        if key is None or incident is None:
            return None  # a report no incident holds (a regression found twice)
        incident.members.discard(member)
        if incident.members:
            return None
        del self.open[key]
        return dataclasses.replace(decision, incident=incident.incident_id)

    def _incident_id(self, key: IncidentKey, decision: Decision) -> str:
        scope = [decision.feature, dict(sorted((decision.cohort or {}).items()))]
        # A transient is an incident of its own: its scope tells two apart.
        detail = scope if key[1] == "transient_shift" else []
        return digest(self.model, *key, *detail, repr(decision.confirmed_at))
