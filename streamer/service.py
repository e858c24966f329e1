"""The service loop: source -> engine -> sinks -> commit, the same for Kafka and replay."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from detectors.decision import Decision
from streamer.backfill import Finish
from streamer.checkpoint import Checkpoints
from streamer.engine import BatchResult, DeadLetter, Engine
from streamer.errors import DriftgateError
from streamer.event_order import Position
from streamer.heap import return_freed_memory
from streamer.retry import Backoff
from streamer.sinks import DeadLetterSink, DecisionSink
from streamer.sources import Source

log = logging.getLogger(__name__)

LAG_REFRESH_S = 5.0
# Wall-clock seconds without any input record, every source idle, after which what the
# event-time merge holds back is judged: an input paused that long is paused, not read
# unevenly (the merge's IDLE_LATENESS_S is as long in event time at real-time rates).
QUIET_INPUT_S = 10.0
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
        engine: Engine,
        source: Source,
        decisions: DecisionSink,
        dead_letters: DeadLetterSink,
        *,
        on_decisions: Callable[[Sequence[Decision]], None] | None = None,
        checkpoints: Checkpoints | None = None,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        # With checkpoints, the state comes from one (or is found missing) when the
        # source is assigned: until then there is none, and nothing is checkpointed over
        # a checkpoint that failed to load.
        self.has_state = checkpoints is None
        self.source = source
        self.decisions = decisions
        self.dead_letters = dead_letters
        self.on_decisions = on_decisions
        self.checkpoints = checkpoints
        # Every partition of the input topics: the event-time merge waits to hear from
        # each before it releases anything (set by app.run from the cluster's metadata).
        self.expected_sources: frozenset[Position] = frozenset()
        # Whether this member's input is read to its end (its ingest's, see app.run): an
        # idle member exits only then, not while its group join is still under way.
        self.caught_up: Callable[[], bool] = lambda: True
        self.before_final_checkpoint: Callable[[], None] = lambda: None
        # The lag of the input partitions this member reads, when its source is the
        # internal topic (read by its ingest's thread, see app.run).
        self.input_lag: Callable[[], dict[Position, int]] = dict
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

    def run(
        self,
        stop: threading.Event,
        exit_when_idle_s: float | None = None,
        finish: Finish | None = None,
    ) -> None:
        """Process until ``stop`` is set, the source ends, or it has been idle that long
        (and, with ``finish``, the rest of its group is done too: a backfill).

        Raises once the final checkpoint is written when ``finish`` gave up waiting.
        """
        self._stop = stop
        backoff = Backoff(max_s=self.max_backoff_s)
        unfinished: DriftgateError | None = None
        while not stop.is_set():
            try:
                more = self.step()
                backoff.reset()
                self.healthy_io = True
            except DriftgateError as exc:
                if not exc.retriable:
                    raise
                self.healthy_io = False
                backoff.wait(stop, str(exc))
                continue
            if not more:
                break
            if exit_when_idle_s is None:
                continue
            idle = self.clock() - self.last_event_at
            if idle < exit_when_idle_s or not self.caught_up():
                if finish is not None:
                    finish.busy()
                continue
            try:
                if finish is None or finish.check():
                    log.info("no new event for %.1fs: exiting as asked", idle)
                    break
            except DriftgateError as exc:
                unfinished = exc
                break
        # This member's ingest stops first, so that what it counted is in the checkpoint.
        self.before_final_checkpoint()
        self._final_checkpoint()
        if unfinished is not None:
            raise unfinished

    def touch(self) -> None:
        """Something arrived (also from this member's ingest): not idle."""
        self.last_event_at = self.clock()

    def judge_held(self) -> None:
        """Judge every event the event-time merge still holds: no source will deliver
        an older one (the end of a replay, a backfill that the group finished)."""
        with self._batch:
            with self.lock:
                decisions = self.engine.flush()
            self._publish(BatchResult(decisions, []))

    def step(self) -> bool:
        """One poll-process-publish-commit round; False once the source is exhausted."""
        records = self.source.poll()
        if records is None:
            self.judge_held()  # the end of a replay
            return False
        carried = 0
        if records:
            with self._batch:
                started = time.perf_counter()
                with self.lock:
                    if not self.has_state:
                        raise DriftgateError(
                            "records arrived for a state whose checkpoint could not be loaded "
                            "(see the log); stopping rather than writing a new state over it"
                        )
                    result = self.engine.process(records)
                self.latency.observe(time.perf_counter() - started)
                self.touch()
                self.batches += 1
                carried = result.records
                self._publish(result)
        elif self.clock() - self.last_event_at >= QUIET_INPUT_S:
            with self.lock:
                held = self.engine.order.all_idle and self.engine.order.buffered > 0
            if held:
                self.judge_held()
        if self.checkpoints is None:
            self.source.commit()
        elif self.checkpoints.due(carried):
            self._checkpoint()
        if self.clock() - self._lag_at >= LAG_REFRESH_S:
            # Asked here, on the loop's thread: a Kafka consumer is not thread-safe.
            self._lag_at = self.clock()
            self.lag = {**self.source.lag(), **self.input_lag()}
        return True

    def _checkpoint(self) -> None:
        """Checkpoint the state, then commit the offsets the checkpoint reflects.

        Only a state that came from its checkpoint (or found none) is saved, so an empty
        state never overwrites one.
        """
        if self.checkpoints is None or not self.has_state:
            return
        with self._batch:
            with self.lock:
                positions = self.checkpoints.save(self.engine)
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
        """A rebalance starts: checkpoint the state and let it go, for whichever member
        gets the source next. (No commit: this runs on the consumer's I/O thread, which
        cannot wait for a broker round trip; the checkpoint's offsets are what the next
        owner resumes from anyway.) Without checkpoints the state stays: it could not
        move, and the source usually comes back after a rebalance."""
        if self.checkpoints is None:
            return
        with self._batch, self.lock:
            if self.has_state:
                self.checkpoints.save(self.engine)
            self.engine = self.engine.fresh()
            self.has_state = False
        return_freed_memory()

    def partitions_assigned(self, partitions: set[tuple[str, int]]) -> dict[Position, int]:
        """The source arrives: the state comes back from its checkpoint. Returns where
        to resume each partition the state has seen."""
        log.info("judging %s", ", ".join(f"{t}[{p}]" for t, p in sorted(partitions)))
        if self.checkpoints is None:
            self.engine.order.expect(self.expected_sources)
            return {}  # offsets are committed after every batch: resume from those
        with self._batch, self.lock:
            try:
                restored = self.checkpoints.restore(self.engine)
            except DriftgateError as exc:
                # Left without a state: its records stop the loop (see step()).
                log.error("cannot load the checkpoint: %s", exc)
                return {}
            if restored is not None:
                self.engine = restored
                return_freed_memory()
            self.engine.order.expect(self.expected_sources)
            self.has_state = True
            resume = dict(self.engine.positions)
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
        backoff = Backoff(max_s=self.max_backoff_s)
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
                if backoff.wait(self._stop, f"{exc} (flushing the decisions)"):
                    # Stopping without a commit: the batch is delivered again on restart.
                    raise DriftgateError("stopped before the decisions were flushed") from exc
