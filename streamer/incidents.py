"""The last decisions, kept for the incident page (``/incidents`` on the metrics port).

Each decision is kept with its scope's distributions as the monitor had them when the
decision was published (:meth:`ModelMonitor.distribution`): the reference's histogram
and the last judged window's, which the monitor forgets at its next window. Memory is
bounded: the newest ``capacity`` decisions, the oldest dropped first.

An incident is the decisions sharing an ``incident_id`` (:mod:`detectors.incidents`): the
one that opened it, its updates (other scopes and features) and its resolving ``hold``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from detectors.decision import Decision
from detectors.monitor import ModelMonitor
from detectors.monitor.snapshot import DistributionSnapshot


@dataclass(frozen=True)
class Incident:
    """One decision, with its scope's distributions when it was published (None when
    the scope has no feature, or the monitor no such feature or scope)."""

    decision: Decision
    distribution: DistributionSnapshot | None

    @property
    def key(self) -> str:
        return self.decision.incident_id


class IncidentStore:
    """The newest ``capacity`` decisions, by id; safe to read from the HTTP threads
    while the service's thread records.

    >>> from detectors.decision import Decision
    >>> store = IncidentStore(capacity=2)
    >>> def decision(ts):
    ...     return Decision("fraud", "v1", "investigate", "covariate_drift", "amount",
    ...                     None, ts, ts - 60, ts, 2000, ts, incident="i1")
    >>> store.record([decision(1.0), decision(2.0), decision(3.0)], {})
    >>> [incident.decision.ts for incident in store.recent()]
    [3.0, 2.0]
    >>> len(store.timeline(store.recent()[0]))
    2
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._incidents: OrderedDict[str, Incident] = OrderedDict()

    def record(self, decisions: Sequence[Decision], monitors: Mapping[str, ModelMonitor]) -> None:
        """Keep decisions just published; ``monitors`` are read now, on the thread that
        updates them, for each decision's distributions."""
        incidents = [Incident(d, _distribution(d, monitors)) for d in decisions]
        with self._lock:
            for incident in incidents:
                # The same id again (a replay, a restart) is the same decision: keep one.
                self._incidents.pop(incident.decision.decision_id, None)
                self._incidents[incident.decision.decision_id] = incident
            while len(self._incidents) > self.capacity:
                self._incidents.popitem(last=False)

    def recent(self, action: str | None = None, cause: str | None = None) -> list[Incident]:
        """Newest first; only those of ``action`` and ``cause`` when given (the Grafana
        dashboard's decision annotations link to these)."""
        with self._lock:
            kept = list(reversed(self._incidents.values()))
        return [
            incident
            for incident in kept
            if action in (None, incident.decision.action)
            and cause in (None, incident.decision.cause)
        ]

    def get(self, decision_id: str) -> Incident | None:
        """The decision of this id, or of the one kept id it begins with (the demo and
        the logs print the first 12 characters)."""
        with self._lock:
            found = self._incidents.get(decision_id)
            if found is not None or len(decision_id) < 8:
                return found
            matches = [i for key, i in self._incidents.items() if key.startswith(decision_id)]
        return matches[0] if len(matches) == 1 else None

    def timeline(self, incident: Incident) -> list[Incident]:
        """The kept decisions of the same incident, oldest first."""
        with self._lock:
            return [kept for kept in self._incidents.values() if kept.key == incident.key]


def _distribution(
    decision: Decision, monitors: Mapping[str, ModelMonitor]
) -> DistributionSnapshot | None:
    monitor = monitors.get(decision.model)
    if monitor is None or decision.feature is None:
        return None
    return monitor.distribution(decision.feature, decision.cohort)
