"""The engine: validated events in, decisions out, one monitor per model.

It owns no I/O: the service loop feeds it from Kafka, ``replay`` from a file and
the tests from lists, and all of them get the same decisions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.batch import PredictionBatch
from detectors.decision import Decision
from detectors.monitor import ModelMonitor, MonitorConfig
from streamer.config import LimitsConfig
from streamer.decode import Rejected, decode_feedback, decode_prediction
from streamer.events import FeedbackEvent, PredictionEvent

PREDICTIONS = "predictions"
FEEDBACK = "feedback"


@dataclass(frozen=True)
class InputRecord:
    """One message as a source delivers it. ``kind`` is PREDICTIONS or FEEDBACK."""

    kind: str
    value: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1
    key: bytes | None = None


@dataclass(frozen=True)
class DeadLetter:
    record: InputRecord
    rejected: Rejected


@dataclass(frozen=True)
class BatchResult:
    decisions: list[Decision]
    dead_letters: list[DeadLetter]


@dataclass
class EngineCounters:
    consumed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)


def prediction_batch(events: Sequence[PredictionEvent]) -> PredictionBatch:
    """Columns of a list of predictions: built once per batch, shared by all detectors."""
    n = len(events)
    feature_rows = [e.features for e in events]
    cohort_rows = [e.cohort for e in events]
    feature_names = sorted(set().union(*feature_rows))
    attributes = sorted(set().union(*cohort_rows))
    return PredictionBatch(
        ts=np.fromiter((e.ts for e in events), dtype=np.float64, count=n),
        score=np.fromiter((e.score for e in events), dtype=np.float64, count=n),
        model_version=[e.model_version for e in events],
        cohorts={a: [row.get(a) for row in cohort_rows] for a in attributes},
        features={name: [row.get(name) for row in feature_rows] for name in feature_names},
    )


class Engine:
    """Decodes records, feeds each model's monitor, counts what it saw."""

    def __init__(self, monitor_config: MonitorConfig, limits: LimitsConfig) -> None:
        self.monitor_config = monitor_config
        self.limits = limits
        self._reset()

    def _reset(self) -> None:
        self.monitors: dict[str, ModelMonitor] = {}
        self.counters = EngineCounters()
        self.feedback_events = 0

    def process(self, records: Sequence[InputRecord]) -> BatchResult:
        dead: list[DeadLetter] = []
        by_model: dict[str, list[PredictionEvent]] = {}
        feedback: list[FeedbackEvent] = []
        counters = self.counters
        for record in records:
            counters.consumed[record.kind] += 1
            event: PredictionEvent | FeedbackEvent | Rejected
            if record.kind == PREDICTIONS:
                event = decode_prediction(record.value, self.limits)
                if isinstance(event, PredictionEvent):
                    known = event.model in self.monitors or event.model in by_model
                    if (
                        known
                        or len(self.monitors.keys() | by_model.keys()) < self.limits.max_models
                    ):
                        by_model.setdefault(event.model, []).append(event)
                        continue
                    event = Rejected(
                        "too_many_models", f"limits.max_models={self.limits.max_models} reached"
                    )
            elif record.kind == FEEDBACK:
                event = decode_feedback(record.value, self.limits)
                if isinstance(event, FeedbackEvent):
                    feedback.append(event)
                    continue
            else:
                event = Rejected("invalid_record", f"not a record of a known topic: {record.kind}")
            counters.rejected[(record.kind, event.reason)] += 1
            dead.append(DeadLetter(record, event))
        decisions: list[Decision] = []
        for model, events in by_model.items():
            monitor = self.monitors.get(model)
            if monitor is None:
                monitor = self.monitors[model] = ModelMonitor(model, self.monitor_config)
            decisions.extend(monitor.update(prediction_batch(events)))
        self.feedback_events += len(feedback)
        for decision in decisions:
            counters.decisions[(decision.action, decision.cause)] += 1
        return BatchResult(decisions, dead)
