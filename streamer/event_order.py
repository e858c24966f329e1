"""One order of a model's events, however its topics are partitioned.

Kafka orders records within a partition only, and a producer that keys by event id (or
sends unkeyed records) spreads one model's traffic over every partition. The monitor's
windows, references and conditions depend on the order in which it sees events, so the
merge below gives it one order that is a function of the events alone: every
prediction sorted by (event time, event id), and every label likewise.

Each source (a topic partition, or a replay file) delivers decoded chunks. The merge
keeps, per source, its watermark (the newest event time it delivered) and releases, at
each step, every buffered event older than the oldest watermark among the sources that
may still deliver (Kafka Streams' and Flink's min-watermark rule). A source that is caught
up and quiet is idle and holds back only the last ``IDLE_LATENESS_S`` of event time before
the newest event of any source; a source that was never heard from holds everything
back, so the first partition to be read cannot run ahead of the others.
An event older than what was already released (a producer's clock, a partition read
after it went idle) is late: it is released with the next step and counted.

Rows are deduplicated by their offset in their source, so a chunk delivered twice (an
ingest member that died after forwarding but before committing) changes nothing.

The buffer is bounded (``max_buffered_events``): past it, everything buffered is released
(``forced``), which only reorders when one source lags that far behind the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray, as_run
from detectors.batch import PredictionBatch

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11 on

R = TypeVar("R", bound="TimedRows")

# Seconds of event time an idle source may still deliver behind the newest event seen
# elsewhere. Idle is a wall-clock notion (quiet for kafka.idle_ms), and a pause of the
# whole input (a producer that stalls, a rebalance, an outage) ends with the partitions
# read again one after the other: the first one back must not release past the others'
# events of the same seconds (the soak counted thousands late, and a decision moved).
# What it costs: while a source is idle, the last 10 s of event time wait for newer
# events (or the end of a backfill), which no window of a stream that slow notices.
IDLE_LATENESS_S = 10.0

# A source of events: (topic, partition), or ("replay", -1) for a replay file.
Position = tuple[str, int]


@dataclass(frozen=True)
class Labels:
    """Feedback rows as columns."""

    event_id: Sequence[str]
    ts: FloatArray
    label: FloatArray
    source: Sequence[str]
    override: BoolArray

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, start: int, stop: int) -> Labels:
        if start == 0 and stop >= len(self):
            return self
        return Labels(
            self.event_id[start:stop],
            self.ts[start:stop],
            self.label[start:stop],
            self.source[start:stop],
            self.override[start:stop],
        )

    def take(self, rows: IndexArray) -> Labels:
        """The given rows, in the given order (an event-time merge reorders a batch)."""
        run = as_run(rows)
        if run is not None:
            return self.slice(run.start, run.stop)
        picked = rows.tolist()
        return Labels(
            [self.event_id[i] for i in picked],
            self.ts[rows],
            self.label[rows],
            [self.source[i] for i in picked],
            self.override[rows],
        )

    @staticmethod
    def concat(parts: Sequence[Labels]) -> Labels:
        if len(parts) == 1:
            return parts[0]
        return Labels(
            [i for p in parts for i in p.event_id],
            np.concatenate([p.ts for p in parts]) if parts else np.empty(0),
            np.concatenate([p.label for p in parts]) if parts else np.empty(0),
            [s for p in parts for s in p.source],
            np.concatenate([p.override for p in parts]) if parts else np.empty(0, np.bool_),
        )


NO_LABELS = Labels((), np.empty(0), np.empty(0), (), np.empty(0, np.bool_))


@dataclass(frozen=True)
class Chunk:
    """A source's decoded events from one read, each row with its offset in the source.

    ``end_offset`` is the offset after the last record read (rejected ones included);
    ``idle`` says the source had nothing more to give when the chunk was read.
    """

    source: Position
    predictions: dict[str, tuple[PredictionBatch, IntArray]] = field(default_factory=dict)
    labels: Labels = NO_LABELS
    label_offsets: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    end_offset: int = 0
    idle: bool = False

    @property
    def events(self) -> int:
        return len(self.labels) + sum(len(batch) for batch, _ in self.predictions.values())

    @property
    def newest_ts(self) -> float:
        """The newest event time in the chunk (-inf when it has no event)."""
        return _newest_ts((batch for batch, _ in self.predictions.values()), self.labels)


@dataclass(frozen=True)
class Released:
    """Events in their merged order: each model's predictions, then the labels."""

    predictions: dict[str, PredictionBatch]
    labels: Labels

    @property
    def newest_ts(self) -> float:
        """The newest event time released (-inf when nothing was)."""
        return _newest_ts(self.predictions.values(), self.labels)

    def __bool__(self) -> bool:
        return bool(self.predictions) or len(self.labels) > 0


def _order(ts: FloatArray, event_ids: Sequence[str]) -> IndexArray:
    """Rows sorted by (event time, event id): ties broken by the events, not by arrival."""
    if len(ts) < 2 or bool(np.all(ts[1:] > ts[:-1])):
        return np.arange(len(ts), dtype=np.intp)  # already in order, no ties: the usual case
    return np.lexsort((np.asarray(event_ids, dtype=object).astype(str), ts)).astype(np.intp)


class EventOrder:
    """The min-watermark merge of several sources' chunks (see the module docstring)."""

    def __init__(self, max_buffered_events: int = 500_000) -> None:
        if max_buffered_events < 1:
            raise ValueError(f"max_buffered_events must be >= 1, got {max_buffered_events}")
        self.max_buffered_events = max_buffered_events
        self._reset()

    def _reset(self) -> None:
        self._expected: frozenset[Position] = frozenset()
        self._next_offset: dict[Position, int] = {}
        self._watermark: dict[Position, float] = {}
        self._idle: set[Position] = set()
        self._predictions: dict[str, list[PredictionBatch]] = {}
        self._labels: list[Labels] = []
        self._buffered = 0
        self._frontier = -math.inf
        self.late = 0
        self.forced = 0
        self.duplicates = 0

    @property
    def buffered(self) -> int:
        """Events admitted and not yet released."""
        return self._buffered

    @property
    def buffered_labels(self) -> int:
        return sum(map(len, self._labels))

    @property
    def buffered_predictions(self) -> int:
        return self._buffered - self.buffered_labels

    @property
    def watermarks(self) -> dict[Position, float]:
        return dict(self._watermark)

    def expect(self, sources: Iterable[Position]) -> None:
        """Sources that must be heard from before anything is released (every partition
        of the input topics, whichever member of the group reads it)."""
        self._expected = frozenset(sources)

    def add(self, chunk: Chunk) -> None:
        """Admit a chunk: rows already admitted from its source are dropped."""
        source = chunk.source
        seen = self._next_offset.get(source, -1)
        watermark = self._watermark.get(source, -math.inf)
        for model, (batch, offsets) in chunk.predictions.items():
            batch = self._fresh(batch, offsets, seen)
            if len(batch):
                self._predictions.setdefault(model, []).append(batch)
                watermark = max(watermark, float(batch.ts.max()))
        labels = chunk.labels
        if len(labels):
            fresh = np.flatnonzero(chunk.label_offsets >= seen)
            self.duplicates += len(labels) - len(fresh)
            labels = labels if len(fresh) == len(labels) else labels.take(fresh)
            if len(labels):
                self._labels.append(labels)
                self._buffered += len(labels)
                self.late += int(np.count_nonzero(labels.ts < self._frontier))
                watermark = max(watermark, float(labels.ts.max()))
        self._next_offset[source] = max(seen, chunk.end_offset)
        self._watermark[source] = watermark
        if chunk.idle:
            self._idle.add(source)
        else:
            self._idle.discard(source)

    def _fresh(self, batch: PredictionBatch, offsets: IntArray, seen: int) -> PredictionBatch:
        fresh = np.flatnonzero(offsets >= seen)
        self.duplicates += len(batch) - len(fresh)
        if len(fresh) < len(batch):
            batch = batch.take(fresh)
        self._buffered += len(batch)
        self.late += int(np.count_nonzero(batch.ts < self._frontier))
        return batch

    def release(self, final: bool = False) -> Released:
        """The events every source has passed (all of them when ``final``), in order."""
        bound = self._bound(final)
        if bound == -math.inf or not self._buffered:
            return Released({}, NO_LABELS)
        predictions: dict[str, PredictionBatch] = {}
        for model in sorted(self._predictions):
            ready, kept = _older_than(self._predictions[model], bound, PredictionBatch.concat)
            if ready is not None:
                predictions[model] = ready
            if kept:
                self._predictions[model] = kept
            else:
                del self._predictions[model]
        ready_labels, self._labels = _older_than(self._labels, bound, Labels.concat)
        labels = NO_LABELS if ready_labels is None else ready_labels
        result = Released(predictions, labels)
        self._buffered -= len(labels) + sum(map(len, predictions.values()))
        if bound != math.inf:
            self._frontier = max(self._frontier, bound)
        else:  # all of it: what comes next is late if older than the newest
            self._frontier = max(self._frontier, result.newest_ts)
        return result

    @property
    def all_idle(self) -> bool:
        """Whether every source was heard from and is idle now (the input is paused)."""
        sources = self._watermark.keys()
        return bool(sources) and self._expected <= sources and self._idle >= sources

    def _bound(self, final: bool) -> float:
        """Release events strictly older than this."""
        if final:
            return math.inf
        if self._buffered > self.max_buffered_events:
            self.forced += 1
            return math.inf
        if not self._expected <= self._watermark.keys():
            return -math.inf  # a source not heard from yet could hold the oldest events
        newest = max(self._watermark.values(), default=math.inf)
        return min(
            (
                w if s not in self._idle else max(w, newest - IDLE_LATENESS_S)
                for s, w in self._watermark.items()
            ),
            default=math.inf,
        )


class TimedRows(Protocol):
    """Columns of events with their times: PredictionBatch and Labels both are."""

    @property
    def ts(self) -> FloatArray: ...

    @property
    def event_id(self) -> Sequence[str]: ...

    def __len__(self) -> int: ...

    def take(self, rows: IndexArray) -> Self: ...


def _older_than(
    parts: list[R], bound: float, concat: Callable[[Sequence[R]], R]
) -> tuple[R | None, list[R]]:
    """The rows of ``parts`` older than ``bound``, in (event time, event id) order, and the
    parts that are left. A part wholly on one side is not copied: while a lagging source
    holds the merge back, each release costs what it releases, not what waits."""
    ready: list[R] = []
    kept: list[R] = []
    for part in parts:
        ts = part.ts
        if float(ts.max()) < bound:
            ready.append(part)
        elif float(ts.min()) >= bound:
            kept.append(part)
        else:
            older = ts < bound
            ready.append(part.take(np.flatnonzero(older)))
            kept.append(part.take(np.flatnonzero(~older)))
    if not ready:
        return None, kept
    merged = concat(ready)
    return merged.take(_order(merged.ts, merged.event_id)), kept


def _newest_ts(batches: Iterable[PredictionBatch], labels: Labels) -> float:
    times = [float(batch.ts.max()) for batch in batches if len(batch)]
    if len(labels):
        times.append(float(labels.ts.max()))
    return max(times, default=-math.inf)
