"""Scoring decisions against the ground truth of a simulated stream.

A decision belongs to an incident when it concerns the incident's scope (its feature, or a
grouped decision listing it in ``evidence.features``, and its cohort) and comes at or after
the onset, and, for an incident that ends, no later than ``grace_events`` after its end
(a condition is confirmed, or seen to revert, some windows after the change). The first
such decision is the detection; its action and cause are judged against the expected ones,
so a decision for the right scope and time with the wrong diagnosis counts as detected
with the wrong action or cause; the others are duplicates. A ``hold`` that says a condition
cleared (``"resolved": true``) is bookkeeping and belongs to nothing, unless a hold with
that cause is what the incident expects. An incident whose expected action is ``hold``
(a shift that reverted before it persisted) allows nothing but holds: any other action
during it makes the action wrong. An incident expecting ``none`` (a benign change, such
as a healthy deployment) is not there to be found: a decision about it is false like any
that belongs to no incident, except a ``hold``, which orders nothing.

The delay of a detection is in event time and in events: the incident's events up to and
including the one at which the decision was made (a decision carries its event time only;
the truth's event clock places it on the event axis).

Orders are what a pipeline acts on: decisions of phase ``opened`` other than ``hold``
(one per driftgate incident; a follow-up, phase ``updated``, shares its ``incident_id``
and is no order). A decision without an incident id (a baseline's, or of schema 1) is an
order of its own. An incident's orders are the distinct incident ids among the non-hold
decisions that belong to it: the target is one, and every order beyond it is a repeated
order. False decisions are orders that belong to no incident.

Retraining orders (driftgate's ``retrain`` decisions or a baseline's) are right only
while a concept-drift incident is active (its grace included): it is the one situation in
which retraining on the recent data is the fix.

Pure: parsed truth and decision events in, figures out; no files, no clock.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.arrays import FloatArray

GRACE_EVENTS = 10_000
BENIGN = "none"
RETRAIN_FIXES = "concept_drift"


def _cohort(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"a cohort must be an object or null, got {value!r}")
    return {str(k): str(v) for k, v in value.items()} or None


@dataclass(frozen=True)
class TruthIncident:
    """One injected incident, as the truth file lists it."""

    name: str
    feature: str | None
    cohort: Mapping[str, str] | None
    start_event: int
    start_ts: float
    end_event: int | None
    expected_action: str
    expected_cause: str

    @property
    def transient(self) -> bool:
        return self.expected_action == "hold"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TruthIncident:
        name = str(data.get("name", "?"))
        if data.get("start_ts") is None:
            raise ValueError(
                f"truth incident {name!r} has no start_ts: write the truth with its event "
                "times (driftgate simulate --truth)"
            )
        end = data.get("end_event")
        return cls(
            name=name,
            feature=data.get("feature"),
            cohort=_cohort(data.get("cohort")),
            start_event=int(data["start_event"]),
            start_ts=float(data["start_ts"]),
            end_event=None if end is None else int(end),
            expected_action=str(data["expected_action"]),
            expected_cause=str(data["expected_cause"]),
        )

    def active_at(self, event: float, grace_events: int) -> bool:
        """Whether an event index falls in the incident, its end extended by the grace."""
        if event < self.start_event:
            return False
        return self.end_event is None or event < self.end_event + grace_events


@dataclass(frozen=True)
class Truth:
    """A stream's ground truth: its length, its incidents and its event clock.

    ``event_times`` are increasing ``(event index, ts)`` marks; decisions carry event
    times only, and the marks place them on the event axis.
    """

    scenario: str
    seed: int | None
    events: int
    incidents: tuple[TruthIncident, ...]
    event_times: tuple[tuple[int, float], ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], events: int | None = None) -> Truth:
        """Parse a truth file; ``events`` scores a replay of the stream's first N events
        only (incidents that start later are left out, as are benign ones)."""
        total = int(data["events"])
        n = total if events is None else events
        if not 0 < n <= total:
            raise ValueError(f"events must be in [1, {total}] (the truth's length), got {n}")
        marks = data.get("event_times")
        if not marks:
            raise ValueError(
                "the truth has no event_times: write it with its event times "
                "(driftgate simulate --truth)"
            )
        parsed = (TruthIncident.from_dict(item) for item in data.get("incidents", ()))
        seed = data.get("seed")
        return cls(
            scenario=str(data.get("scenario", "custom")),
            seed=None if seed is None else int(seed),
            events=n,
            incidents=tuple(i for i in parsed if i.start_event < n and i.expected_action != BENIGN),
            event_times=tuple((int(i), float(t)) for i, t in marks),
        )

    def events_at(self, ts: Sequence[float]) -> FloatArray:
        """The (interpolated) event indices at these event times."""
        marks = np.asarray(self.event_times, dtype=np.float64).reshape(-1, 2)
        return np.asarray(np.interp(ts, marks[:, 1], marks[:, 0]), dtype=np.float64)


@dataclass(frozen=True)
class ScoredDecision:
    """What scoring needs of a decision event (``deploy/schemas/decision.json``)."""

    decision_id: str
    action: str
    cause: str
    feature: str | None
    features: tuple[str, ...]
    cohort: Mapping[str, str] | None
    ts: float
    resolved: bool
    incident_id: str = ""
    phase: str = "opened"

    @property
    def incident(self) -> str:
        """The incident it belongs to; a decision without one is an incident of its own."""
        return self.incident_id or self.decision_id

    @property
    def order(self) -> bool:
        """Whether a pipeline acts on it: an incident's opening, anything but a hold."""
        return self.phase == "opened" and self.action != "hold"

    @classmethod
    def from_dict(cls, event: Mapping[str, Any]) -> ScoredDecision:
        scope = event.get("scope") or {}
        evidence = event.get("evidence") or {}
        return cls(
            decision_id=str(event.get("decision_id", "")),
            action=str(event["action"]),
            cause=str(event["cause"]),
            feature=scope.get("feature"),
            features=tuple(str(f) for f in evidence.get("features") or ()),
            cohort=_cohort(scope.get("cohort")),
            ts=float(event["ts"]),
            resolved=evidence.get("resolved") is True,
            incident_id=str(event.get("incident_id") or ""),
            phase=str(event.get("phase", "opened")),
        )

    def concerns(self, incident: TruthIncident) -> bool:
        """Same scope: the cohort, and the feature (or one of a grouped decision's)."""
        if self.cohort != incident.cohort:
            return False
        if incident.feature is None:
            return self.feature is None and not self.features
        return self.feature == incident.feature or (
            self.feature is None and incident.feature in self.features
        )


@dataclass(frozen=True)
class IncidentResult:
    incident: TruthIncident
    decisions: tuple[ScoredDecision, ...]  # those that belong to it, in order
    delay_events: int | None
    delay_seconds: float | None

    @property
    def detected(self) -> bool:
        return bool(self.decisions)

    @property
    def action_correct(self) -> bool:
        if not self.decisions:
            return False
        if self.incident.transient:
            return all(d.action == "hold" for d in self.decisions)
        return self.decisions[0].action == self.incident.expected_action

    @property
    def cause_correct(self) -> bool:
        return bool(self.decisions) and self.decisions[0].cause == self.incident.expected_cause

    @property
    def duplicates(self) -> int:
        return max(0, len(self.decisions) - 1)

    @property
    def orders(self) -> int:
        """The orders given for it: the distinct incidents of its non-hold decisions."""
        return len({d.incident for d in self.decisions if d.action != "hold"})

    @property
    def repeated_orders(self) -> int:
        return max(0, self.orders - 1)

    @property
    def transient_actions(self) -> int:
        """Orders given during a transient incident (anything but a hold)."""
        if not self.incident.transient:
            return 0
        return sum(d.action != "hold" for d in self.decisions)

    def to_dict(self) -> dict[str, Any]:
        first = self.decisions[0] if self.decisions else None
        return {
            "incident": self.incident.name,
            "expected": [self.incident.expected_action, self.incident.expected_cause],
            "detected": self.detected,
            "decision_id": first.decision_id if first else None,
            "decided": [first.action, first.cause] if first else None,
            "delay_events": self.delay_events,
            "delay_seconds": self.delay_seconds,
            "action_correct": self.action_correct,
            "cause_correct": self.cause_correct,
            "duplicates": self.duplicates,
            "orders": self.orders,
        }


@dataclass(frozen=True)
class RetrainCount:
    """Retraining orders and how many of them no concept drift called for."""

    orders: int
    wrong: int


def count_retrains(
    truth: Truth, events: Iterable[float], grace_events: int = GRACE_EVENTS
) -> RetrainCount:
    """Judge retraining orders given at these event indices.

    >>> truth = Truth("concept", 0, 100_000, (TruthIncident(
    ...     "c", None, None, 50_000, 1_000.0, None, "retrain", "concept_drift"),),
    ...     ((0, 0.0), (99_999, 2_000.0)))
    >>> count_retrains(truth, [49_999, 50_000, 99_999])
    RetrainCount(orders=3, wrong=1)
    """
    fixes = [i for i in truth.incidents if i.expected_cause == RETRAIN_FIXES]
    orders = list(events)
    wrong = sum(not any(i.active_at(e, grace_events) for i in fixes) for e in orders)
    return RetrainCount(len(orders), wrong)


@dataclass(frozen=True)
class ScenarioScore:
    """The decisions of one replay, scored against its truth."""

    truth: Truth
    results: tuple[IncidentResult, ...]
    false_decisions: tuple[ScoredDecision, ...]
    retrains: RetrainCount

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.truth.scenario,
            "seed": self.truth.seed,
            "events": self.truth.events,
            "incidents": [r.to_dict() for r in self.results],
            "false_decisions": [
                {
                    "decision_id": d.decision_id,
                    "action": d.action,
                    "cause": d.cause,
                    "feature": d.feature,
                    "cohort": dict(d.cohort) if d.cohort else None,
                    "ts": d.ts,
                }
                for d in self.false_decisions
            ],
            "retrains": {"orders": self.retrains.orders, "wrong": self.retrains.wrong},
        }


def score(
    truth: Truth, decisions: Sequence[ScoredDecision], grace_events: int = GRACE_EVENTS
) -> ScenarioScore:
    """Match one replay's decisions to its truth's incidents.

    >>> truth = Truth("shift", 1, 100_000, (TruthIncident(
    ...     "amount", "amount", None, 50_000, 1_000.0, None, "investigate", "covariate_drift"),),
    ...     ((0, 0.0), (50_000, 1_000.0), (99_999, 1_999.98)))  # 50 events/s
    >>> def decision(action, feature, ts):
    ...     return ScoredDecision("id", action, "covariate_drift", feature, (), None, ts, False)
    >>> scored = score(truth, [decision("investigate", "balance", 500.0),
    ...                        decision("investigate", "amount", 1_119.98),
    ...                        decision("investigate", "amount", 1_500.0)])
    >>> (result,) = scored.results
    >>> result.detected, result.delay_events, result.delay_seconds, result.duplicates
    (True, 6000, 119.98, 1)
    >>> [d.feature for d in scored.false_decisions]
    ['balance']
    """
    ordered = sorted(decisions, key=lambda d: d.ts)  # stable: ties keep their order
    at = truth.events_at([d.ts for d in ordered])
    results = []
    belongs = np.zeros(len(ordered), dtype=bool)
    for incident in truth.incidents:
        mine = [
            k
            for k, d in enumerate(ordered)
            if d.concerns(incident)
            and d.ts >= incident.start_ts
            and incident.active_at(float(at[k]), grace_events)
            and (
                not d.resolved
                or (d.action, d.cause) == (incident.expected_action, incident.expected_cause)
            )
        ]
        belongs[mine] = True
        delays: tuple[int | None, float | None] = (None, None)
        if mine:
            first = mine[0]
            delays = (
                max(1, round(float(at[first])) - incident.start_event + 1),
                round(ordered[first].ts - incident.start_ts, 3),
            )
        results.append(IncidentResult(incident, tuple(ordered[k] for k in mine), *delays))
    false = tuple(d for k, d in enumerate(ordered) if not belongs[k] and d.order)
    retrains = count_retrains(
        truth,
        (float(at[k]) for k, d in enumerate(ordered) if d.order and d.action == "retrain"),
        grace_events,
    )
    return ScenarioScore(truth, tuple(results), false, retrains)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Tally:
    """Scores of several replays added up (the runs of one scenario, or all of them).

    >>> truth = Truth("stationary", 0, 1_000_000, (), ((0, 0.0), (999_999, 20_000.0)))
    >>> retrain = ScoredDecision("d", "retrain", "concept_drift", None, (), None, 50.0, False)
    >>> tally = Tally.of([score(truth, [retrain]), score(truth, [])])
    >>> tally.runs, tally.false_decisions, tally.false_per_million, tally.recall
    (2, 1, 0.5, None)
    >>> tally.retrains, tally.rate
    (RetrainCount(orders=1, wrong=1), 50.0)
    """

    runs: int
    events: int
    seconds: float  # of event time, all runs together
    incidents: int
    detected: int
    action_correct: int
    cause_correct: int
    delays_events: tuple[int, ...]
    delays_seconds: tuple[float, ...]
    false_decisions: int
    duplicates: int
    transient_actions: int
    retrains: RetrainCount
    # Orders given for the detected incidents that ask for one (not a hold), and those
    # beyond the first of each.
    ordered_incidents: int
    orders: int
    repeated_orders: int

    @classmethod
    def of(cls, scores: Iterable[ScenarioScore]) -> Tally:
        runs = list(scores)
        results = [r for s in runs for r in s.results]
        found = [r for r in results if r.detected]
        ordered = [r for r in found if not r.incident.transient]
        return cls(
            runs=len(runs),
            events=sum(s.truth.events for s in runs),
            seconds=sum(s.truth.event_times[-1][1] - s.truth.event_times[0][1] for s in runs),
            incidents=len(results),
            detected=len(found),
            action_correct=sum(r.action_correct for r in found),
            cause_correct=sum(r.cause_correct for r in found),
            delays_events=tuple(r.delay_events for r in found if r.delay_events is not None),
            delays_seconds=tuple(r.delay_seconds for r in found if r.delay_seconds is not None),
            false_decisions=sum(len(s.false_decisions) for s in runs),
            duplicates=sum(r.duplicates for r in found),
            transient_actions=sum(r.transient_actions for r in results),
            retrains=RetrainCount(
                sum(s.retrains.orders for s in runs), sum(s.retrains.wrong for s in runs)
            ),
            ordered_incidents=len(ordered),
            orders=sum(r.orders for r in ordered),
            repeated_orders=sum(r.repeated_orders for r in results),
        )

    @property
    def recall(self) -> float | None:
        return _ratio(self.detected, self.incidents)

    @property
    def rate(self) -> float | None:
        """Predictions per second of event time, over all runs."""
        return self.events / self.seconds if self.seconds > 0 else None

    @property
    def action_accuracy(self) -> float | None:
        return _ratio(self.action_correct, self.detected)

    @property
    def cause_accuracy(self) -> float | None:
        return _ratio(self.cause_correct, self.detected)

    @property
    def duplicates_per_incident(self) -> float | None:
        return _ratio(self.duplicates, self.detected)

    @property
    def orders_per_incident(self) -> float | None:
        return _ratio(self.orders, self.ordered_incidents)

    @property
    def false_per_million(self) -> float:
        return self.false_decisions * 1e6 / self.events if self.events else math.nan

    @property
    def median_delay_events(self) -> float | None:
        return statistics.median(self.delays_events) if self.delays_events else None

    @property
    def median_delay_seconds(self) -> float | None:
        return statistics.median(self.delays_seconds) if self.delays_seconds else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "events": self.events,
            "rate_per_s": self.rate,
            "incidents": self.incidents,
            "detected": self.detected,
            "recall": self.recall,
            "action_accuracy": self.action_accuracy,
            "cause_accuracy": self.cause_accuracy,
            "median_delay_events": self.median_delay_events,
            "median_delay_seconds": self.median_delay_seconds,
            "false_decisions": self.false_decisions,
            "false_per_million_events": self.false_per_million,
            "duplicates_per_incident": self.duplicates_per_incident,
            "transient_actions": self.transient_actions,
            "retrains": {"orders": self.retrains.orders, "wrong": self.retrains.wrong},
            "orders_per_incident": self.orders_per_incident,
            "repeated_orders": self.repeated_orders,
        }


def by_scenario(scores: Iterable[ScenarioScore]) -> dict[str, Tally]:
    """One tally per scenario (its runs, e.g. seeds), in the order first seen."""
    groups: dict[str, list[ScenarioScore]] = {}
    for s in scores:
        groups.setdefault(s.truth.scenario, []).append(s)
    return {name: Tally.of(group) for name, group in groups.items()}
