"""A member that works between polls still joins its group, at start and after the other
member leaves (the rebalance stall of docs/operations.md, Soak: kafka-python
3.0.12 throws away a JoinGroup answer no poll waits for, and a broker answers a join
about 3 s after it is sent, which is 15 polls of 200 ms: with 0.5 s of work after each
poll every answer came between two polls). Both tests fail without
``KafkaSource._await_join``."""

from __future__ import annotations

import threading
import time

from streamer.broker import EmbeddedBroker, create_topics
from streamer.config import KafkaConfig, TopicsConfig
from streamer.sources import KafkaSource

WORK_S = 0.5  # what a member's loop spends between two polls (decoding, forwarding)


def _member(broker: EmbeddedBroker, prefix: str) -> KafkaSource:
    """A member of ``prefix``'s group, on its two topics of two partitions each."""
    topics = TopicsConfig(predictions=f"{prefix}-predictions", feedback=f"{prefix}-feedback")
    create_topics(broker.bootstrap_servers, [topics.predictions, topics.feedback], partitions=2)
    config = KafkaConfig(
        bootstrap_servers=broker.bootstrap_servers,
        group_id=f"{prefix}-group",
        topics=topics,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
        poll_timeout_ms=200,
    )
    return KafkaSource(config)


class _Working:
    """A member's loop on its own thread, as in a driftgate process: poll, then work
    WORK_S; ``leave()`` stops it and leaves the group."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.source.poll()
            time.sleep(WORK_S)

    def leave(self) -> None:
        self._stop.set()
        self._thread.join()
        self.source.close()


def _wait(done, timeout_s: float, members: list[_Working]) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, [m.source.assignment for m in members]
        time.sleep(0.1)


def test_a_member_that_works_between_polls_joins_its_group(broker, topic_prefix):
    member = _Working(_member(broker, topic_prefix))
    try:
        # a join takes ~3 s on this broker; without the fix it never ends
        _wait(lambda: len(member.source.assignment) == 4, 20, [member])
    finally:
        member.leave()


def test_a_member_takes_the_partitions_of_one_that_left(broker, topic_prefix):
    a = _Working(_member(broker, topic_prefix))
    b = _Working(_member(broker, topic_prefix))
    try:
        _wait(lambda: [len(m.source.assignment) for m in (a, b)] == [2, 2], 30, [a, b])
        b.leave()  # a rebalance
        _wait(lambda: len(a.source.assignment) == 4, 20, [a])
    finally:
        a.leave()
