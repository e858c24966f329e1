"""The members of a group say how far each has read, so that they read in step.

Each member keeps the input partitions it reads in step in event time (``Forwarder``),
but the judge's merge needs every partition of the group in step: in a backfill read by
two members, one that forwards its partitions far ahead of the other's fills the merge
past ``limits.max_buffered_events``, which then releases everything and judges the rest
late (1,296,000 predictions read by two members: 540,487 late, and false decisions).
So each member publishes the watermark of every partition it is still reading to a
small topic (``kafka.progress_topic``, one partition) that every member reads from its
end, and pauses its partitions that run ahead of the least advanced one in the whole
group, as it does for its own (Flink's watermark alignment across sources), with a
bound in events rather than event time: a partition may run ``lead_events`` events ahead
of the group's least advanced one, so that members read side by side instead of taking
turns (one poll spans far more than the 10 s a member keeps its own partitions within).
After a rebalance every member says at once what it reads, and a partition
nobody has spoken of yet holds the others back as one not read yet does (its reader's
assignment can come seconds after the others': the backfill test found the judge's
merge overflowing while it waited for partitions nobody had started to read).

Kafka's commit metadata would carry this without a topic, but brokers may drop it
(Tansu does). A member publishes only while one of its partitions is still being read
(and once more when all are caught up), so live traffic writes nothing here. A member
that stops publishing (it died, or lost its partitions) is forgotten after
``stale_s``, the group's session timeout, by which time its partitions have moved.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol

import orjson

from streamer.config import KafkaConfig
from streamer.errors import DriftgateError
from streamer.event_order import Position

# Seconds between two messages of a member while it reads: what others learn of its
# progress is at most this old (being older only makes them pause more, never less).
PUBLISH_S = 0.5


class GroupProgress(Protocol):
    """What a member says of its partitions, and hears of the others'."""

    def publish(self, reading: Mapping[Position, float], caught_up: set[Position]) -> None:
        """The watermark of each partition this member reads (-inf before its first
        event), and those of them read to their end."""

    def reading_elsewhere(self, owned: set[Position]) -> dict[Position, float]:
        """The watermarks of the partitions other members are still reading."""

    def assigned(self) -> None:
        """This member was given its partitions: a rebalance, which every member hears."""


class ProgressBoard:
    """``GroupProgress`` without its transport: what this member says goes to ``send``,
    what members said comes to :meth:`hear` (in order, this member's own included)."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        stale_s: float,
        clock: Callable[[], float] = time.monotonic,
        expected: frozenset[Position] = frozenset(),
    ) -> None:
        self.send = send
        self.stale_s = stale_s
        self.clock = clock
        self.expected = expected
        self._assigned_at = -math.inf
        # partition -> (watermark, still reading, when it was heard)
        self._heard: dict[Position, tuple[float, bool, float]] = {}
        self._published_at = -math.inf
        self._said_reading = False
        self._said_of: set[Position] = set()

    def publish(self, reading: Mapping[Position, float], caught_up: set[Position]) -> None:
        still_reading = bool(reading.keys() - caught_up)
        now = self.clock()
        due = now - self._published_at >= PUBLISH_S
        # While reading: every PUBLISH_S. Once done, or given other partitions: at once,
        # so that nobody waits for what they or their previous reader said last.
        done = self._said_reading and not still_reading
        if (still_reading and due) or done or reading.keys() - self._said_of:
            self.send(progress_message(reading, caught_up))
            self._published_at = now
            self._said_reading = still_reading
            self._said_of = set(reading)

    def hear(self, message: bytes) -> None:
        """Take one member's message; one that cannot be read is ignored (the topic is
        not this member's to validate, and a bad message only costs alignment)."""
        try:
            entries = orjson.loads(message)["partitions"]
            now = self.clock()
            for topic, partition, watermark, reading in entries:
                w = -math.inf if watermark is None else float(watermark)
                self._heard[(str(topic), int(partition))] = (w, bool(reading), now)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return

    def reading_elsewhere(self, owned: set[Position]) -> dict[Position, float]:
        now = self.clock()
        elsewhere = {
            tp: watermark
            for tp, (watermark, reading, heard_at) in self._heard.items()
            if reading and tp not in owned and now - heard_at < self.stale_s
        }
        # Until every reader had time to speak after the rebalance (they do at once; a
        # member that cannot is dropped from the group within the session timeout).
        if now - self._assigned_at < self.stale_s:
            for tp in self.expected - self._heard.keys() - owned:
                elsewhere[tp] = -math.inf
        return elsewhere

    def assigned(self) -> None:
        self._assigned_at = self.clock()
        self._said_of = set()  # say what this member reads at the next publish


def progress_message(reading: Mapping[Position, float], caught_up: set[Position]) -> bytes:
    entries = [
        [topic, partition, None if w == -math.inf else w, (topic, partition) not in caught_up]
        for (topic, partition), w in sorted(reading.items())
    ]
    return orjson.dumps({"partitions": entries})


class KafkaGroupProgress:
    """``GroupProgress`` on a one-partition topic that every member reads from its end."""

    def __init__(
        self,
        config: KafkaConfig,
        topic: str,
        send: Callable[[str, bytes], None],
        expected: frozenset[Position],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        self.topic = topic
        stale_s = config.session_timeout_ms / 1000.0
        self.board = ProgressBoard(lambda message: send(topic, message), stale_s, clock, expected)
        try:
            # No group: every member reads every message, and nothing is committed.
            self._consumer = KafkaConsumer(
                bootstrap_servers=config.bootstrap_servers.split(","),
                client_id=f"{config.client_id}-progress",
                enable_auto_commit=False,
                request_timeout_ms=config.request_timeout_ms,
                reconnect_backoff_max_ms=config.reconnect_backoff_max_ms,
            )
            partition = TopicPartition(topic, 0)
            self._consumer.assign([partition])
            # What was said before this member started is stale, or said again soon.
            self._consumer.seek_to_end(partition)
        except KafkaError as exc:
            raise DriftgateError(
                f"cannot read the progress topic {topic}: {exc}", retriable=True
            ) from exc

    def publish(self, reading: Mapping[Position, float], caught_up: set[Position]) -> None:
        self.board.publish(reading, caught_up)

    def reading_elsewhere(self, owned: set[Position]) -> dict[Position, float]:
        from kafka.errors import KafkaError

        try:
            polled = self._consumer.poll(timeout_ms=0)
        except KafkaError as exc:
            raise DriftgateError(f"progress poll failed: {exc}", retriable=True) from exc
        for messages in polled.values():
            for message in messages:
                self.board.hear(message.value or b"")
        return self.board.reading_elsewhere(owned)

    def assigned(self) -> None:
        self.board.assigned()

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class Lead:
    """The events forwarded from each partition, by the newest event time of their chunk:
    how many the judge's merge may still hold above a time."""

    def __init__(self) -> None:
        self._chunks: dict[Position, deque[tuple[float, int]]] = {}
        self._events: dict[Position, int] = {}

    def add(self, source: Position, newest_ts: float, events: int) -> None:
        self._chunks.setdefault(source, deque()).append((newest_ts, events))
        self._events[source] = self._events.get(source, 0) + events

    def beyond(self, source: Position, ts: float) -> int:
        """The events of ``source`` forwarded in chunks newer than ``ts``; older chunks are
        forgotten (a partition's events come about in time order, and the group's floor
        only moves on)."""
        chunks = self._chunks.get(source)
        while chunks and chunks[0][0] <= ts:
            self._events[source] -= chunks.popleft()[1]
        return self._events.get(source, 0)

    def forget(self, source: Position) -> None:
        self._chunks.pop(source, None)
        self._events.pop(source, None)
