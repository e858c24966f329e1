"""The engine: validated events in, decisions out, one monitor per model.

It owns no I/O: the service loop feeds it from Kafka, ``replay`` from a file and
the tests from lists, and all of them get the same decisions.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, groupby, repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import numpy as np
import orjson

from detectors.arrays import IntArray
from detectors.batch import PredictionBatch
from detectors.decision import Decision
from detectors.join import Joined, JoinStore
from detectors.monitor import ModelMonitor, MonitorConfig
from streamer import chunk_codec
from streamer.config import FeedbackConfig, LimitsConfig
from streamer.decode import (
    Prediction,
    Rejected,
    checked_feature_columns,
    decode_prediction_envelopes,
)
from streamer.event_order import NO_LABELS, Chunk, EventOrder, Labels, Position
from streamer.events import epoch_seconds_column
from streamer.feedback_decode import decode_feedbacks
from streamer.source_clock import Rows, SourceClocks

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
# Chunks of decoded events on the internal topic, from ingest to the judge (Forwarder).
CHUNKS = "chunks"
# A replay file is one partition: its line numbers are the offsets of both topics.
REPLAY_PARTITION = -1


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
    # Input records the batch stood for: a chunk from another member's ingest counts the
    # records it carries, so that checkpoints come every interval_events of input.
    records: int = 0


@dataclass
class EngineCounters:
    consumed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)


_ENVELOPE = itemgetter("ts", "score", "model_version", "features", "event_id")


def _columns(
    rows: Sequence[dict[str, Any]], limit: int | None = None
) -> dict[str, Sequence[object]]:
    """The rows as columns, one per name of the sorted union of their keys.

    When every row has the same keys (the usual case), one C-level itemgetter call per
    row and a transpose: rows as long as the first that all hold its keys hold exactly
    its keys, so no comparison of key sets is needed. Otherwise a lookup per value, and
    with ``limit`` at most that many names, the ones in most rows: every name becomes a
    column of len(rows) slots, so a batch whose events each bring never-seen names (ids
    or timestamps used as keys) would cost names x rows in time and memory.
    """
    if not rows:
        return {}
    first = rows[0]
    if len(first) > 1 and set(map(len, rows)) == {len(first)}:
        names = sorted(first)
        try:
            return dict(zip(names, zip(*map(itemgetter(*names), rows), strict=True)))
        except KeyError:
            pass  # some row has other keys
    return {name: [row.get(name) for row in rows] for name in _names(rows, limit)}


def _names(rows: Sequence[dict[str, Any]], limit: int | None) -> list[str]:
    """The sorted union of the rows' keys, at most ``limit`` of them (see :func:`_columns`)."""
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
    return PredictionBatch(
        ts=epoch_seconds_column(ts),
        score=np.asarray(score, dtype=np.float64),
        model_version=versions,
        cohorts=_columns(cohort_rows),  # type: ignore[arg-type]
        features=_columns(feature_rows, max_features),
        event_id=event_ids,
    )


class Engine:
    """Decodes records, merges them into event-time order, feeds each model's monitor.

    Two halves, so that decoding can scale with the input partitions while each model is
    judged in one place: :meth:`ingest` turns records into per-source :class:`Chunk`\\ s
    (and dead letters), :meth:`judge` merges chunks from every source (:class:`EventOrder`)
    and runs the monitors. :meth:`process` does both, for a replay and for tests.
    """

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
        self.order = EventOrder(self.limits.max_buffered_events)
        self.clocks = SourceClocks(self.limits.max_future_s)
        self.monitors: dict[str, ModelMonitor] = {}
        self.counters = EngineCounters()
        # The models ingested so far: at most limits.max_models of them.
        self._models: set[str] = set()
        # Next offset to read per (topic, partition) of the records in the state: what a
        # checkpoint of this state resumes from.
        self.positions: dict[tuple[str, int], int] = {}

    def process(self, records: Sequence[InputRecord], final: bool = False) -> BatchResult:
        """Ingest and judge a batch; with ``final``, release every buffered event.

        Records of kind CHUNKS are another member's ingest, already decoded.
        """
        inputs = [r for r in records if r.kind != CHUNKS]
        chunks, dead = self.ingest(inputs) if inputs else ([], [])
        forwarded = self._decode_chunks([r for r in records if r.kind == CHUNKS], dead)
        carried = len(inputs) + sum(chunk.events for chunk in forwarded)
        return BatchResult(self.judge([*chunks, *forwarded], final), dead, carried)

    def _decode_chunks(self, records: Sequence[InputRecord], dead: list[DeadLetter]) -> list[Chunk]:
        chunks = []
        for record in records:
            self.positions[(record.topic, record.partition)] = record.offset + 1
            try:
                chunks.append(chunk_codec.decode(record.value))
            except ValueError as exc:
                self.counters.rejected[(CHUNKS, "invalid_record")] += 1
                dead.append(DeadLetter(record, Rejected("invalid_record", str(exc))))
        return chunks

    def flush(self) -> list[Decision]:
        """Judge every event still buffered (the end of a replay)."""
        return self.judge([], final=True)

    def ingest(self, records: Sequence[InputRecord]) -> tuple[list[Chunk], list[DeadLetter]]:
        """Decode and validate a batch into one chunk per source; the rest dead-lettered."""
        dead: list[tuple[int, DeadLetter]] = []
        predictions: dict[tuple[Position, str], list[tuple[int, Prediction]]] = {}
        feedback: dict[Position, list[int]] = {}
        ends: dict[Position, int] = {}
        counters = self.counters
        counters.consumed.update(map(attrgetter("kind"), records))
        sources = self._track_positions(records, ends)
        models = self._models
        envelopes = iter(
            decode_prediction_envelopes(
                [r.value for r in records if r.kind == PREDICTIONS],
                [r.parsed for r in records if r.kind == PREDICTIONS],
                self.limits,
            )
        )
        for row, (record, source) in enumerate(zip(records, sources, strict=True)):
            event: Prediction | Rejected
            if record.kind == PREDICTIONS:
                event = next(envelopes)
                if isinstance(event, dict):
                    model = event["model"]
                    if model in models or len(models) < self.limits.max_models:
                        models.add(model)
                        predictions.setdefault((source, model), []).append((row, event))
                        continue
                    event = Rejected(
                        "too_many_models", f"limits.max_models={self.limits.max_models} reached"
                    )
            elif record.kind == FEEDBACK:
                feedback.setdefault(source, []).append(row)
                continue
            else:
                event = Rejected("invalid_record", f"not a record of a known topic: {record.kind}")
            dead.append((row, DeadLetter(record, event)))
        labels = {source: self._labels_of(records, rows, dead) for source, rows in feedback.items()}
        batches: dict[Position, dict[str, Rows[PredictionBatch]]] = {}
        for (source, model), rows in predictions.items():
            batch = prediction_batch([e for _, e in rows], self.max_columns)
            columns, bad = checked_feature_columns(batch.features, self.limits)
            if bad:
                dead.extend(
                    (rows[i][0], DeadLetter(records[rows[i][0]], r)) for i, r in bad.items()
                )
                rows = [pair for i, pair in enumerate(rows) if i not in bad]
                if not rows:
                    continue
                batch = prediction_batch([e for _, e in rows], self.max_columns)
                columns, _ = checked_feature_columns(batch.features, self.limits)
            batch = dataclasses.replace(batch, features=columns)
            batches.setdefault(source, {})[model] = Rows(batch, [i for i, _ in rows])
        out = []
        admitted = self.clocks.admit_sources(
            {
                source: [*batches.get(source, {}).values(), labels.get(source, Rows(NO_LABELS, []))]
                for source in ends
            }
        )
        for source in sorted(ends):
            found = labels.get(source, Rows(NO_LABELS, []))
            by_model = batches.get(source, {})
            rejected = admitted[source]
            if rejected:
                by_model = {model: part.without(rejected) for model, part in by_model.items()}
                found = found.without(rejected)
                dead.extend(
                    (row, DeadLetter(records[row], Rejected("invalid_value", detail)))
                    for row, detail in rejected.items()
                )
            out.append(
                Chunk(
                    source,
                    {
                        model: (part.events, _offsets(records, part.rows))
                        for model, part in by_model.items()
                        if part.rows
                    },
                    found.events,
                    _offsets(records, found.rows),
                    ends[source],
                )
            )
        dead.sort(key=itemgetter(0))
        for _, letter in dead:
            counters.rejected[(letter.record.kind, letter.rejected.reason)] += 1
        return out, [letter for _, letter in dead]

    def _track_positions(
        self, records: Sequence[InputRecord], ends: dict[Position, int]
    ) -> list[Position]:
        """Notes each (topic, partition)'s next offset to read and each source's end in
        ``ends``; returns each record's source. A source's records come in runs (a poll
        returns a partition's records together), so this costs a few calls per run."""
        sources: list[Position] = []
        for (topic, partition), run in groupby(records, key=_TOPIC_PARTITION):
            offsets = list(map(_OFFSET, run))
            self.positions[(topic, partition)] = offsets[-1] + 1
            source = _source(topic, partition)
            ends[source] = max(ends.get(source, 0), max(offsets) + 1)
            sources.extend(repeat(source, len(offsets)))
        return sources

    def _labels_of(
        self, records: Sequence[InputRecord], rows: list[int], dead: list[tuple[int, DeadLetter]]
    ) -> Rows[Labels]:
        """The labels of ``rows`` of a batch as columns; the invalid ones dead-lettered."""
        found, rejected = decode_feedbacks(
            [records[i].value for i in rows], [records[i].parsed for i in rows], self.limits
        )
        dead.extend((rows[i], DeadLetter(records[rows[i]], r)) for i, r in rejected.items())
        if not found.rows:
            return Rows(NO_LABELS, [])
        labels = Labels(
            found.event_id,
            epoch_seconds_column(found.ts),
            np.array(found.label, dtype=np.float64),
            found.source,
            np.array(found.override, dtype=np.bool_),
        )
        return Rows(labels, [rows[i] for i in found.rows])

    def judge(self, chunks: Sequence[Chunk], final: bool = False) -> list[Decision]:
        """Merge chunks into event-time order and judge what every source has passed."""
        for chunk in chunks:
            self.order.add(chunk)
        released = self.order.release(final)
        decisions: list[Decision] = []
        for model, batch in released.predictions.items():
            monitor = self.monitors.get(model)
            if monitor is None:
                monitor = self.monitors[model] = ModelMonitor(model, self.monitor_config)
                if model in self.references:
                    monitor.pin_reference(self.references[model])
            decisions.extend(monitor.update(batch, self.join))
        labels = released.labels
        if len(labels):
            joined = self.join.join(
                labels.event_id, labels.ts, labels.label, labels.source, labels.override
            )
            decisions.extend(self._labels(joined))
        for decision in decisions:
            self.counters.decisions[(decision.action, decision.cause)] += 1
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


def source_of(record: InputRecord) -> Position:
    """The source whose order a record keeps: its topic partition; a replay file is one
    source for both of its topics (its lines are in one order)."""
    return _source(record.topic, record.partition)


def _source(topic: str, partition: int) -> Position:
    if partition == REPLAY_PARTITION:
        return ("replay", REPLAY_PARTITION)
    return (topic, partition)


_TOPIC_PARTITION = attrgetter("topic", "partition")
_OFFSET = attrgetter("offset")


def _offsets(records: Sequence[InputRecord], rows: Sequence[int]) -> IntArray:
    return np.fromiter((records[i].offset for i in rows), np.int64, len(rows))
