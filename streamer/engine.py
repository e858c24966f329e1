"""The engine: validated events in, decisions out, one monitor per model.

It owns no I/O: the service loop feeds it from Kafka, ``replay`` from a file and
the tests from lists, and all of them get the same decisions.
"""

from __future__ import annotations

import copy
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import numpy as np
import orjson

from detectors.batch import PredictionBatch
from detectors.decision import Decision
from detectors.join import Joined, JoinStore
from detectors.monitor import ModelMonitor, MonitorConfig
from streamer.config import FeedbackConfig, LimitsConfig
from streamer.decode import (
    Prediction,
    Rejected,
    decode_feedback,
    decode_prediction_envelopes,
    invalid_feature_rows,
)
from streamer.events import FeedbackEvent, epoch_seconds_column

PREDICTIONS = "predictions"
FEEDBACK = "feedback"


class InputRecord(NamedTuple):
    """One message as a source delivers it. ``kind`` is PREDICTIONS or FEEDBACK.

    (A NamedTuple, not a frozen dataclass: one is built per message, and a frozen
    dataclass's __init__ costs several times more.)
    """

    kind: str
    value: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1
    key: bytes | None = None
    parsed: object = None  # the value already parsed from JSON, when the source has it


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


_ENVELOPE = itemgetter("ts", "score", "model_version", "features", "event_id")


def _columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[Sequence[object]]:
    """One column per name. When every row has every name (the usual case), one C-level
    itemgetter call per row and a transpose; otherwise a lookup per value."""
    if not names:
        return []
    if len(names) == 1:
        (name,) = names
        return [[row.get(name) for row in rows]]
    try:
        return list(zip(*map(itemgetter(*names), rows), strict=True))
    except KeyError:
        return [[row.get(name) for row in rows] for name in names]


def _names(rows: Sequence[dict[str, Any]], limit: int | None = None) -> list[str]:
    """The sorted union of the rows' keys; cheap when every row has the same keys.

    With ``limit``, at most that many names, the ones in most rows: every name becomes a
    column of len(rows) slots, so a batch whose events each bring never-seen names (ids
    or timestamps used as keys) would cost names x rows in time and memory.
    """
    if not rows:
        return []
    first = rows[0]
    if set(map(len, rows)) == {len(first)} and all(map(first.keys().__eq__, map(dict.keys, rows))):
        return sorted(first)
    names = set().union(*rows)
    if limit is None or len(names) <= limit:
        return sorted(names)
    counts = Counter(chain.from_iterable(rows))
    return sorted(sorted(counts, key=lambda name: (-counts[name], name))[:limit])


def prediction_batch(
    events: Sequence[Prediction], max_features: int | None = None
) -> PredictionBatch:
    """Columns of a list of predictions: built once per batch, shared by all detectors.
    At most ``max_features`` feature columns, the names present in most events."""
    ts, score, versions, feature_rows, event_ids = zip(*map(_ENVELOPE, events))
    cohort_rows = [e.get("cohort") or {} for e in events]
    feature_names = _names(feature_rows, max_features)
    attributes = _names(cohort_rows)
    return PredictionBatch(
        ts=epoch_seconds_column(ts),
        score=np.asarray(score, dtype=np.float64),
        model_version=versions,
        cohorts=dict(zip(attributes, _columns(cohort_rows, attributes))),  # type: ignore[arg-type]
        features=dict(zip(feature_names, _columns(feature_rows, feature_names))),
        event_id=event_ids,
    )


class Engine:
    """Decodes records, feeds each model's monitor, counts what it saw."""

    def __init__(
        self,
        monitor_config: MonitorConfig,
        limits: LimitsConfig,
        feedback: FeedbackConfig | None = None,
        references: Mapping[str, PredictionBatch] | None = None,
    ) -> None:
        self.monitor_config = monitor_config
        self.limits = limits
        self.feedback = feedback or FeedbackConfig()
        # Per model, a reference pinned instead of one built from its first events.
        self.references: Mapping[str, PredictionBatch] = references or {}
        # In the checkpoint fingerprint: a state fitted on other references is not resumed.
        pinned = {
            model: [b.ts, b.score, b.model_version, dict(b.cohorts), dict(b.features), b.event_id]
            for model, b in self.references.items()
        }
        options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS
        self.reference_digest = (
            hashlib.sha256(orjson.dumps(pinned, option=options)).hexdigest()[:16] if pinned else ""
        )
        # Columns per batch: the reference's features and as many new names to watch.
        self.max_columns = 2 * monitor_config.max_features
        self._reset()

    def _reset(self) -> None:
        self.join = JoinStore(
            max_entries=self.feedback.join_max_entries,
            horizon_s=self.feedback.join_horizon_s,
            grace_s=self.feedback.join_grace_s,
            max_pending=self.feedback.join_max_pending,
        )
        self.monitors: dict[str, ModelMonitor] = {}
        self.counters = EngineCounters()
        # Next offset to read per (topic, partition) of the records in the state: what a
        # checkpoint of this state resumes from.
        self.positions: dict[tuple[str, int], int] = {}

    def process(self, records: Sequence[InputRecord], peers: Sequence[Engine] = ()) -> BatchResult:
        """Decode, validate and judge a batch. A label whose prediction is stored by one
        of ``peers`` (the engines of this instance's other partitions) joins there."""
        dead: list[DeadLetter] = []
        by_model: dict[str, list[Prediction]] = {}
        sources: dict[str, list[InputRecord]] = {}
        feedback: list[FeedbackEvent] = []
        counters = self.counters
        counters.consumed.update(map(attrgetter("kind"), records))
        positions = self.positions
        for record in records:
            positions[(record.topic, record.partition)] = record.offset + 1
        predictions = [r for r in records if r.kind == PREDICTIONS]
        envelopes = iter(
            decode_prediction_envelopes(
                [r.value for r in predictions], [r.parsed for r in predictions], self.limits
            )
        )
        for record in records:
            event: Prediction | FeedbackEvent | Rejected
            if record.kind == PREDICTIONS:
                event = next(envelopes)
                if isinstance(event, dict):
                    model = event["model"]
                    known = model in self.monitors or model in by_model
                    if (
                        known
                        or len(self.monitors.keys() | by_model.keys()) < self.limits.max_models
                    ):
                        by_model.setdefault(model, []).append(event)
                        sources.setdefault(model, []).append(record)
                        continue
                    event = Rejected(
                        "too_many_models", f"limits.max_models={self.limits.max_models} reached"
                    )
            elif record.kind == FEEDBACK:
                event = decode_feedback(record.value, self.limits, record.parsed)
                if isinstance(event, FeedbackEvent):
                    feedback.append(event)
                    continue
            else:
                event = Rejected("invalid_record", f"not a record of a known topic: {record.kind}")
            counters.rejected[(record.kind, event.reason)] += 1
            dead.append(DeadLetter(record, event))
        decisions: list[Decision] = []
        for model, events in by_model.items():
            batch = prediction_batch(events, self.max_columns)
            bad = invalid_feature_rows(batch.features, self.limits)
            if bad:
                for row, rejected in sorted(bad.items()):
                    counters.rejected[(PREDICTIONS, rejected.reason)] += 1
                    dead.append(DeadLetter(sources[model][row], rejected))
                events = [e for i, e in enumerate(events) if i not in bad]
                if not events:
                    continue
                batch = prediction_batch(events, self.max_columns)
            monitor = self.monitors.get(model)
            if monitor is None:
                monitor = self.monitors[model] = ModelMonitor(model, self.monitor_config)
                if model in self.references:
                    monitor.pin_reference(self.references[model])
            decisions.extend(monitor.update(batch, self.join))
        if feedback:
            decisions.extend(self._feedback(feedback, peers))
        for decision in decisions:
            counters.decisions[(decision.action, decision.cause)] += 1
        return BatchResult(decisions, dead)

    def _feedback(self, feedback: list[FeedbackEvent], peers: Sequence[Engine]) -> list[Decision]:
        """Join labels in the store that holds their prediction: this engine's, or a
        peer's when the feedback topic is not partitioned like the predictions. A label
        no store holds yet waits here."""
        owners = np.zeros(len(feedback), dtype=np.intp)  # 0: this engine, i: peers[i - 1]
        if peers:
            ids = [f.event_id for f in feedback]
            unheld = ~self.join.holds(ids)
            for number, peer in enumerate(peers, 1):
                if not unheld.any():
                    break
                rows = np.flatnonzero(unheld)
                held = rows[peer.join.holds([ids[i] for i in rows.tolist()])]
                owners[held] = number
                unheld[held] = False
        decisions: list[Decision] = []
        for number in np.unique(owners).tolist():
            engine = self if number == 0 else peers[number - 1]
            labels = [feedback[i] for i in np.flatnonzero(owners == number).tolist()]
            decisions.extend(
                engine._labels(
                    engine.join.join(
                        [f.event_id for f in labels],
                        epoch_seconds_column([f.ts for f in labels]),
                        np.array([f.label for f in labels]),
                        [f.source for f in labels],
                        np.array([f.override for f in labels], dtype=np.bool_),
                    )
                )
            )
        return decisions

    def fresh(self) -> Engine:
        """An engine with this one's settings and none of its state."""
        twin = copy.copy(self)
        twin._reset()
        return twin

    def _labels(self, joined: Joined) -> list[Decision]:
        """Route joined labels to their models' monitors."""
        decisions: list[Decision] = []
        if not len(joined):
            return decisions
        models = np.array(joined.model, dtype=object)
        for model in dict.fromkeys(joined.model):
            monitor = self.monitors.get(model)
            if monitor is not None:
                decisions.extend(monitor.update_labels(joined.take(models == model)))
        return decisions
