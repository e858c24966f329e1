"""State per input partition, so that it can move with the partition at a rebalance.

Each partition number has its own :class:`Engine` (monitors, join store, counters and
the offsets it reflects) and its own checkpoint. Partition ``p`` of the predictions topic
and partition ``p`` of the feedback topic share one: producers that key both topics by
model (as ``driftgate produce`` does) put a model's predictions and labels in the same
partition number, and a consumer group with the range assignor gives both to the same
instance. Then every model's statistics are exact however many instances share the
group. A label that arrives in another partition than its prediction still joins when
both partitions are on this instance (the engines look into each other's join stores).

A replay file has one partition (-1): one engine, as without sharding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from detectors.arrays import FloatArray, IntArray
from detectors.decision import Decision
from detectors.join import JoinStore
from detectors.monitor import ModelMonitor
from streamer.engine import FEEDBACK, BatchResult, DeadLetter, Engine, EngineCounters, InputRecord
from streamer.errors import DriftgateError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from streamer.checkpoint import Checkpoints


Position = tuple[str, int]


class ShardedEngine:
    """One engine per partition number, created on demand from ``prototype``'s settings.

    The prototype itself serves the first partition that needs an engine, so a caller
    that handed in an engine (a replay, a test) finds the state in it.
    """

    def __init__(self, prototype: Engine) -> None:
        self.prototype = prototype
        self.engines: dict[int, Engine] = {}
        self._prototype_taken = False
        # With checkpoints, a partition's engine comes only from restore(): one made up
        # on the fly for a partition whose checkpoint failed to load would be saved
        # over that checkpoint.
        self.restored_only = False

    def _new(self) -> Engine:
        if self._prototype_taken:
            return self.prototype.fresh()
        self._prototype_taken = True
        return self.prototype

    def shard(self, partition: int) -> Engine:
        engine = self.engines.get(partition)
        if engine is None:
            if self.restored_only:
                raise DriftgateError(
                    f"partition {partition} has no state: its checkpoint could not be loaded "
                    "when it was assigned (see the log); stopping rather than writing a new "
                    "state over it"
                )
            engine = self.engines[partition] = self._new()
        return engine

    def restore(
        self, partitions: Iterable[int], checkpoints: Checkpoints | None
    ) -> dict[Position, int]:
        """Engines for these partition numbers, from their checkpoints when there are
        usable ones; returns where to resume each (topic, partition) they have seen."""
        resume: dict[Position, int] = {}
        for partition in sorted(set(partitions)):
            if partition not in self.engines:
                restored = None
                if checkpoints is not None:
                    try:
                        restored = checkpoints.restore(partition, self.prototype)
                    except DriftgateError as exc:
                        # Left without an engine: its records stop the loop (see shard()).
                        log.error("cannot load the checkpoint of partition %d: %s", partition, exc)
                        continue
                self.engines[partition] = restored if restored is not None else self._new()
            resume.update(owned_positions(partition, self.engines[partition]))
        return resume

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in set(partitions):
            self.engines.pop(partition, None)

    def process(self, records: Sequence[InputRecord]) -> BatchResult:
        """Predictions of every partition first, then labels: a label polled in the
        same batch as its prediction, but from another partition, finds it stored."""
        first: dict[int, list[InputRecord]] = {}
        labels: dict[int, list[InputRecord]] = {}
        for record in records:
            group = labels if record.kind == FEEDBACK else first
            group.setdefault(record.partition, []).append(record)
        decisions: list[Decision] = []
        dead: list[DeadLetter] = []
        for group, with_peers in ((first, False), (labels, True)):
            for partition, part in sorted(group.items()):
                engine = self.shard(partition)
                peers = (
                    [e for p, e in sorted(self.engines.items()) if p != partition]
                    if with_peers
                    else []
                )
                result = engine.process(part, peers)
                decisions.extend(result.decisions)
                dead.extend(result.dead_letters)
        return BatchResult(decisions, dead)

    # -- the state as one, for metrics and readiness -----------------------------------------

    @property
    def monitors(self) -> dict[str, ModelMonitor]:
        """Each model's monitor; a model whose predictions are spread over partitions is
        reported by the partition that saw most of them."""
        chosen: dict[str, ModelMonitor] = {}
        for engine in self.engines.values():
            for model, monitor in engine.monitors.items():
                if model not in chosen or monitor.events > chosen[model].events:
                    chosen[model] = monitor
        return chosen

    @property
    def counters(self) -> EngineCounters:
        total = EngineCounters()
        for engine in self.engines.values():
            total.consumed.update(engine.counters.consumed)
            total.rejected.update(engine.counters.rejected)
            total.decisions.update(engine.counters.decisions)
        return total

    @property
    def join(self) -> JoinTotals:
        return JoinTotals([engine.join for engine in self.engines.values()])

    @property
    def positions(self) -> dict[Position, int]:
        merged: dict[Position, int] = {}
        for partition, engine in self.engines.items():
            merged.update(owned_positions(partition, engine))
        return merged


def owned_positions(partition: int, engine: Engine) -> dict[Position, int]:
    """The offsets of the partition's own (topic, partition)s the engine reflects."""
    return {tp: offset for tp, offset in engine.positions.items() if tp[1] == partition}


class JoinTotals:
    """The join stores of all partitions, summed, as the metrics read one store."""

    def __init__(self, stores: Sequence[JoinStore]) -> None:
        self._stores = stores

    def _sum(self, name: str) -> int:
        return sum(int(getattr(store, name)) for store in self._stores)

    @property
    def joined(self) -> int:
        return self._sum("joined")

    @property
    def unknown(self) -> int:
        return self._sum("unknown")

    @property
    def expired(self) -> int:
        return self._sum("expired")

    @property
    def evicted_labels(self) -> int:
        return self._sum("evicted_labels")

    @property
    def duplicate(self) -> int:
        return self._sum("duplicate")

    @property
    def size(self) -> int:
        return self._sum("size")

    def delay_histogram(self) -> tuple[FloatArray, IntArray, float]:
        histograms = [store.delay_histogram() for store in self._stores or [JoinStore()]]
        bounds = histograms[0][0]
        cumulative: IntArray = np.sum([c for _, c, _ in histograms], axis=0, dtype=np.int64)
        return bounds, cumulative, float(sum(seconds for _, _, seconds in histograms))
