"""The service loop: source -> engine -> sinks -> commit, the same for Kafka and replay."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from detectors.decision import Decision
from streamer.checkpoint import Checkpoints, Position
from streamer.engine import BatchResult, DeadLetter, Engine
from streamer.errors import DriftgateError
from streamer.shards import ShardedEngine
from streamer.sinks import DeadLetterSink, DecisionSink
from streamer.sources import Source

log = logging.getLogger(__name__)

LAG_REFRESH_S = 5.0
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ReasonLog:
    """Logs each rejection reason at most once per interval, with what it held back."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def record(self, dead: DeadLetter) -> None:
        reason = dead.rejected.reason
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval_s:
            self._held[reason] = self._held.get(reason, 0) + 1
            return
        held = self._held.pop(reason, 0)
        self._last[reason] = now
        log.warning(
            "rejected a %s record (%s): %s%s",
            dead.record.kind,
            reason,
            dead.rejected.detail,
            f" (+{held} more with this reason since the last report)" if held else "",
        )


@dataclass
class LatencyHistogram:
    """Seconds spent processing each batch, in Prometheus-style cumulative buckets."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += seconds


class Service:
    """Runs the loop; ``lock`` is held while state changes, so scrapes see whole batches.

    With ``checkpoints``, offsets are committed only when a checkpoint of the state that
    reflects them is written, and on start the state and the offsets come back from the
    checkpoint: every record affects the state once, even though Kafka may deliver it
    again. Without, offsets are committed after every batch (at-least-once).
    """

    def __init__(
        self,
        engine: Engine | ShardedEngine,
        source: Source,
        decisions: DecisionSink,
        dead_letters: DeadLetterSink,
        *,
        on_decisions: Callable[[Sequence[Decision]], None] | None = None,
        checkpoints: Checkpoints | None = None,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # State per input partition number, so that it can move with the partition.
        self.engine = engine if isinstance(engine, ShardedEngine) else ShardedEngine(engine)
        self.source = source
        self.decisions = decisions
        self.dead_letters = dead_letters
        self.on_decisions = on_decisions
        self.checkpoints = checkpoints
        self.engine.restored_only = checkpoints is not None
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.lock = threading.Lock()
        # Held from processing a batch to its decisions being flushed, so that a
        # rebalance (on the consumer's thread) checkpoints whole batches only.
        self._batch = threading.RLock()
        self.latency = LatencyHistogram()
        self.reason_log = ReasonLog(clock=clock)
        self.last_event_at = clock()
        self.healthy_io = True
        self.batches = 0
        self.lag: dict[tuple[str, int], int] = {}
        self._lag_at = -LAG_REFRESH_S
        self._stop = threading.Event()

    def run(self, stop: threading.Event, exit_when_idle_s: float | None = None) -> None:
        """Process until ``stop`` is set, the source ends, or it has been idle that long."""
        self._stop = stop
        backoff = 0.5
        while not stop.is_set():
            try:
                more = self.step()
                backoff = 0.5
                self.healthy_io = True
            except DriftgateError as exc:
                if not exc.retriable:
                    raise
                self.healthy_io = False
                log.warning("%s; retrying in %.1fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            if not more:
                break
            idle = self.clock() - self.last_event_at
            if exit_when_idle_s is not None and idle >= exit_when_idle_s:
                log.info("no new event for %.1fs: exiting as asked", idle)
                break
        self._final_checkpoint()

    def step(self) -> bool:
        """One poll-process-publish-commit round; False once the source is exhausted."""
        records = self.source.poll()
        if records is None:
            return False
        if records:
            with self._batch:
                started = time.perf_counter()
                with self.lock:
                    result = self.engine.process(records)
                self.latency.observe(time.perf_counter() - started)
                self.last_event_at = self.clock()
                self.batches += 1
                self._publish(result)
        if self.checkpoints is None:
            self.source.commit()
        elif self.checkpoints.due(len(records)):
            self._checkpoint()
        if self.clock() - self._lag_at >= LAG_REFRESH_S:
            # Asked here, on the loop's thread: a Kafka consumer is not thread-safe.
            self._lag_at = self.clock()
            self.lag = self.source.lag()
        return True

    def _checkpoint(self) -> None:
        """Checkpoint the state, then commit the offsets the checkpoint reflects.

        Only partitions with an engine are saved: an engine exists once its partition's
        checkpoint was loaded (or found missing), so an empty state never overwrites one.
        """
        if self.checkpoints is None:
            return
        with self._batch:
            with self.lock:
                positions = self.checkpoints.save(self.engine.engines)
            self.source.commit(positions)

    def _final_checkpoint(self) -> None:
        """On a clean stop (SIGTERM, idle, end of input): the state is whole, keep it."""
        try:
            self._checkpoint()
        except DriftgateError as exc:
            # The checkpoint file is written before the commit: a restart resumes from
            # it whatever the committed offsets say.
            log.warning("final checkpoint: %s", exc)

    def partitions_revoked(self, partitions: set[tuple[str, int]]) -> None:
        """A rebalance starts: checkpoint the revoked partitions' state and let it go, for
        whichever member gets them next. (No commit: this runs on the consumer's I/O
        thread, which cannot wait for a broker round trip; the checkpoint's offsets are
        what the next owner resumes from anyway.) Without checkpoints the state stays:
        it could not move, and the partitions usually come back after a rebalance."""
        if self.checkpoints is None:
            return
        numbers = {partition for _, partition in partitions}
        with self._batch, self.lock:
            leaving = {p: e for p, e in self.engine.engines.items() if p in numbers}
            self.checkpoints.save(leaving)
            self.engine.drop(leaving)

    def partitions_assigned(self, partitions: set[tuple[str, int]]) -> dict[Position, int]:
        """Partitions arrive: their state comes back from their checkpoints. Returns
        where to resume each partition the state has seen."""
        numbers = {p for _, p in partitions}
        log.info("partitions assigned: %s", ", ".join(f"{t}[{p}]" for t, p in sorted(partitions)))
        with self._batch, self.lock:
            if self.checkpoints is not None:
                # The whole new assignment: state of any other partition (one whose save
                # failed at the revocation) belongs to another member now, and must
                # never be checkpointed over that member's.
                self.engine.drop(set(self.engine.engines) - numbers)
            resume = self.engine.restore(numbers, self.checkpoints)
        if self.checkpoints is None:
            return {}  # offsets are committed after every batch: resume from those
        return {tp: offset for tp, offset in resume.items() if tp in partitions}

    def _publish(self, result: BatchResult) -> None:
        for dead in result.dead_letters:
            self.reason_log.record(dead)
        self.dead_letters.write(result.dead_letters)
        self.decisions.write(result.decisions)
        # Commit only after this returns: a decision or dead letter that did not reach
        # its sink keeps its input uncommitted, so a restart produces it again.
        self._flush_until_durable()
        if result.decisions and self.on_decisions:
            self.on_decisions(result.decisions)

    def _flush_until_durable(self) -> None:
        backoff = 0.5
        while True:
            try:
                self.dead_letters.flush()
                self.decisions.flush()
                self.healthy_io = True
                return
            except DriftgateError as exc:
                if not exc.retriable:
                    raise
                self.healthy_io = False
                log.warning("%s; retrying the flush in %.1fs", exc, backoff)
                if self._stop.wait(backoff):
                    # Stopping without a commit: the batch is delivered again on restart.
                    raise DriftgateError("stopped before the decisions were flushed") from exc
                backoff = min(backoff * 2, self.max_backoff_s)
