"""Ingest: every member decodes the input partitions it is given and forwards them.

Kafka is the shuffle (as in Kafka Streams): a member of the consumer group reads its
share of the predictions and feedback partitions, however they are keyed, decodes and
validates them (dead letters go out from here), and sends the valid events as
:class:`Chunk`\\ s to one internal topic. The member that owns that topic's partition
(the judge, see ``app.run``) merges the chunks of every source into event-time order and
judges each model once. Decoding, the costly part, scales with the input partitions.

Input offsets are committed once the chunks that hold their records are on the broker:
a member that dies before committing has its records forwarded again by the next owner,
and the judge drops the rows it already has (by source offset).

A source that is caught up and has had no record for ``idle_ms`` is reported idle with an
empty chunk, so that the judge's merge does not wait for a partition with nothing to say.
That quiet must be seen, not inferred: "caught up" compares the position with the high
watermark of the partition's last fetch, which is stale across a pause of this loop (a
rebalance, a busy machine) and while no broker answers. After either, quiet time counts
from the first poll again, so a partition is idle only once fetches had time to say it
is (kafka-python waits fetch_max_wait_ms, 500 by default, for a fetch with no data).

The partitions a member reads advance together in event time: one whose events run more
than ``ALIGN_S`` ahead of the least advanced partition still being read is paused until
that one catches up (Flink's watermark alignment). Without it a backfill reads a
partition of small records (labels) far ahead of the predictions, and the judge's merge,
which must hold them until the predictions of the same time come, overflows its bound
and releases labels before their predictions (they then wait as unknown and, past the
join's bound, are lost). A caught-up partition holds nothing back, so live traffic is
never paused. The members of a group keep in step with each other the same way, through
what each publishes of its partitions (``streamer.group_progress``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from streamer import chunk_codec
from streamer.engine import InputRecord
from streamer.errors import DriftgateError
from streamer.event_order import Chunk, Position
from streamer.group_progress import GroupProgress, Lead
from streamer.retry import Backoff
from streamer.service import ReasonLog, Service
from streamer.sinks import KafkaSinks
from streamer.sources import KafkaSource

log = logging.getLogger(__name__)

# Input bytes per chunk: a chunk's JSON is about as large as its records, and Kafka's
# default message size limit is 1 MB.
CHUNK_INPUT_BYTES = 512 * 1024
# A longer time between two polls is a pause of the loop, after which quiet time counts
# afresh (a poll waits up to poll_timeout_ms, 200 by default, and a batch takes less).
MAX_POLL_GAP_S = 1.0
# Seconds of event time a partition may run ahead of this member's least advanced one:
# what the judge holds for it is this times the event rate (20,000 events at 2,000/s,
# well below limits.max_buffered_events), and a fetch of a slow stream covers more.
ALIGN_S = 10.0


class Forwarder:
    """One member's ingest loop: poll, decode, forward, commit."""

    def __init__(
        self,
        source: KafkaSource,
        sinks: KafkaSinks,
        topic: str,
        service: Service,
        idle_ms: int,
        clock: Callable[[], float] = time.monotonic,
        progress: GroupProgress | None = None,
        lead_events: int = 100_000,
    ) -> None:
        if lead_events < 1:
            raise ValueError(f"lead_events must be >= 1, got {lead_events}")
        self.source = source
        self.progress = progress
        self.lead_events = lead_events
        self._lead = Lead()
        self.sinks = sinks
        self.topic = topic
        self.service = service
        self.idle_s = idle_ms / 1000.0
        self.clock = clock
        self.reason_log = ReasonLog(clock=clock)
        self.forwarded = 0
        self._last_record_at: dict[Position, float] = {}
        # Since when this loop polled without pauses and reached a broker.
        self._watching_since = -math.inf
        self._polled_at = -math.inf
        self._caught_up = False
        self.lag: dict[Position, int] = {}
        self.failure: BaseException | None = None
        self._reported_idle: set[Position] = set()
        # The newest event time forwarded from each partition (what it is aligned on).
        self._watermark: dict[Position, float] = {}
        self._paused: set[Position] = set()
        self._lock = threading.Lock()
        # The partitions assigned to this member (by the rebalance callbacks).
        self._owned: set[Position] = set()

    def run(self, stop: threading.Event) -> None:
        """Forward until ``stop``; a failure that retrying cannot fix stops the member
        too (``failure`` holds it, for the main thread to raise)."""
        backoff = Backoff()
        try:
            while not stop.is_set():
                try:
                    self.step()
                    backoff.reset()
                except DriftgateError as exc:
                    if not exc.retriable:
                        raise
                    backoff.wait(stop, f"ingest: {exc}")
        except BaseException as exc:  # re-raised by the main thread: see app.run
            log.error("ingest stopped: %s", exc)
            self.failure = exc
            stop.set()

    def step(self) -> None:
        records = self.source.poll()
        now = self.clock()
        if now - self._polled_at > MAX_POLL_GAP_S or not self.source.reachable():
            self._watching_since = now
        self._polled_at = now
        chunks: list[Chunk] = []
        for part in _by_size(records):
            for record in part:
                self._last_record_at[(record.topic, record.partition)] = now
            with self.service.lock:  # the counters are read by scrapes
                ingested, dead = self.service.engine.ingest(part)
            for letter in dead:
                self.reason_log.record(letter)
            self.sinks.dead_letters.write(dead)
            chunks.extend(ingested)
        # The input partitions' lag, for the metrics (this thread owns the consumer).
        self.lag = self.source.lag()
        # A partition paused at the last step was not fetched: its end is stale.
        done = self.source.caught_up() - self._paused
        self._caught_up = bool(self.source.assignment) and done >= self.source.assignment
        for chunk in chunks:
            if chunk.events:
                newest = max(chunk.newest_ts, self._watermark.get(chunk.source, -math.inf))
                self._watermark[chunk.source] = newest
                self._lead.add(chunk.source, chunk.newest_ts, chunk.events)
        self._align(done, now)
        # Under the lock: a rebalance (kafka-python's I/O thread) must not fall between
        # what is owned and what is said about it.
        with self._lock:
            idle = {tp for tp in done & self._owned if now - self._quiet_since(tp) >= self.idle_s}
            with_data: set[Position] = set()
            for chunk in chunks:
                flagged = Chunk(
                    chunk.source,
                    chunk.predictions,
                    chunk.labels,
                    chunk.label_offsets,
                    chunk.end_offset,
                    chunk.source in idle,
                )
                self._send(flagged)
                with_data.add(chunk.source)
            # An idle source with nothing to send says so once, until it has records again.
            quiet = sorted(idle - self._reported_idle - with_data)
            for tp in quiet:
                self._send(Chunk(tp, idle=True))
            self._reported_idle = (self._reported_idle - with_data) | idle
        if chunks or quiet:
            self.sinks.flush()
        if records:
            self.forwarded += len(records)
            self.service.touch()
            self.source.commit()

    def _align(self, caught_up: set[Position], now: float) -> None:
        """Pause the partitions ahead of the least advanced one still being read: this
        member's by ALIGN_S of event time, the group's by ``lead_events`` events; resume
        the others."""
        watermarks = {tp: self._watermark.get(tp, -math.inf) for tp in self.source.assignment}
        reading = {tp: w for tp, w in watermarks.items() if tp not in caught_up}
        floor = min(reading.values(), default=math.inf)
        ahead = {tp for tp, newest in reading.items() if newest > floor + ALIGN_S}
        group_floor = floor
        if self.progress is not None:
            self.progress.publish(watermarks, caught_up & watermarks.keys())
            elsewhere = self.progress.reading_elsewhere(set(watermarks))
            group_floor = min(floor, *elsewhere.values()) if elsewhere else floor
        # Asked of every partition, read to its end or not: it forgets what the group has
        # passed (everything, once nobody reads a backlog), so live traffic keeps nothing.
        lead = {tp: self._lead.beyond(tp, group_floor) for tp in watermarks}
        ahead |= {tp for tp in reading if lead[tp] > self.lead_events}
        for tp in self._paused - ahead:
            self._last_record_at[tp] = now  # quiet while paused says nothing
        self.source.pause_only(ahead)
        self._paused = ahead

    def _quiet_since(self, tp: Position) -> float:
        return max(self._last_record_at.get(tp, -math.inf), self._watching_since)

    def _send(self, chunk: Chunk) -> None:
        key = f"{chunk.source[0]}/{chunk.source[1]}".encode()
        self.sinks.send(self.topic, chunk_codec.encode(chunk), key, [])

    @property
    def caught_up(self) -> bool:
        """Whether every partition this member reads was read to its end at the last poll
        and reported idle (False before the first assignment). Until it is reported, its
        idle chunk is still to be sent: a member that exits then (``--exit-when-idle``)
        leaves it unjudged after the group looked done (the backfill test found it, once
        a member's judge and ingest got their partitions within a second)."""
        with self._lock:
            return self._caught_up and self._owned <= self._reported_idle

    def partitions_revoked(self, partitions: set[Position]) -> None:
        """Nothing to hand over: every batch is forwarded and committed before the next
        poll, where kafka-python rebalances. Nothing is sent either: a chunk written now
        could come after the judge's last checkpoint when the judging member is the one
        leaving (the backfill test found it), and a partition reported idle that moves is
        covered by the merge's IDLE_LATENESS_S."""
        with self._lock:
            # Until they are assigned again, polls return nothing from them while their
            # ends look reached: they must not be reported idle then (the soak found it).
            self._owned -= partitions
            self._reported_idle -= partitions

    def partitions_assigned(self, partitions: set[Position]) -> dict[Position, int]:
        """Report the idle state of every partition afresh; resume from the committed
        offsets."""
        log.info("reading %s", ", ".join(f"{t}[{p}]" for t, p in sorted(partitions)))
        with self._lock:
            self._owned |= partitions
            self._watching_since = self.clock()  # quiet counts from the assignment
            self._reported_idle.clear()
        for tp in partitions:  # read afresh: what was forwarded before says nothing now
            self._watermark.pop(tp, None)
            self._lead.forget(tp)
        self._paused.clear()  # a new assignment fetches every partition
        if self.progress is not None:
            self.progress.assigned()
        return {}


def _by_size(records: Sequence[InputRecord]) -> list[Sequence[InputRecord]]:
    parts: list[Sequence[InputRecord]] = []
    start, size = 0, 0
    for i, record in enumerate(records):
        size += len(record.value or b"")
        if size >= CHUNK_INPUT_BYTES:
            parts.append(records[start : i + 1])
            start, size = i + 1, 0
    if start < len(records):
        parts.append(records[start:])
    return parts
