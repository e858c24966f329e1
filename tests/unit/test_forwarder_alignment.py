"""The ingest reads its partitions in step in event time (a backfill's labels do not run
ahead of its predictions), and reports no partition idle between a revoke and the next
assignment."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np

from streamer import chunk_codec
from streamer.event_order import Chunk, Labels
from streamer.forwarder import ALIGN_S, Forwarder

PREDICTIONS = ("predictions", 0)
FEEDBACK = ("feedback", 0)


class Source:
    """Partitions that deliver what the test queues; none at its end unless told."""

    def __init__(self) -> None:
        self.assignment = {PREDICTIONS, FEEDBACK}
        self.queued: list[tuple[tuple[str, int], float]] = []
        self.at_end: set[tuple[str, int]] = set()
        self.paused: set[tuple[str, int]] = set()

    def poll(self) -> list[object]:
        polled = [record for record in self.queued if record[0] not in self.paused]
        self.queued = [record for record in self.queued if record[0] in self.paused]
        return [
            SimpleNamespace(topic=tp[0], partition=tp[1], value=b"x", ts=ts) for tp, ts in polled
        ]

    def lag(self) -> dict[tuple[str, int], int]:
        return {}

    def caught_up(self) -> set[tuple[str, int]]:
        return set(self.at_end)

    def reachable(self) -> bool:
        return True

    def pause_only(self, partitions: set[tuple[str, int]]) -> None:
        self.paused = set(partitions)

    def commit(self) -> None: ...


def _ingest(records: list[SimpleNamespace]) -> tuple[list[Chunk], list[object]]:
    """Each record as a one-label chunk of its partition, at its event time."""
    chunks = [
        Chunk(
            (r.topic, r.partition),
            labels=Labels(
                [f"e{r.ts}"], np.array([r.ts]), np.array([1.0]), ["s"], np.array([False])
            ),
            label_offsets=np.array([0]),
            end_offset=1,
        )
        for r in records
    ]
    return chunks, []


class Sinks:
    def __init__(self) -> None:
        self.sent: list[Chunk] = []
        self.dead_letters = SimpleNamespace(write=lambda letters: None)

    def send(self, topic: str, value: bytes, key: bytes, headers: list[object]) -> None:
        self.sent.append(chunk_codec.decode(value))

    def flush(self) -> None: ...


def _forwarder() -> tuple[Forwarder, Source, Sinks]:
    source, sinks = Source(), Sinks()
    engine = SimpleNamespace(ingest=_ingest)
    service = SimpleNamespace(lock=threading.Lock(), touch=lambda: None, engine=engine)
    clock = iter(x * 0.1 for x in range(10**6))
    forwarder = Forwarder(source, sinks, "g.events", service, 1_000, clock=lambda: next(clock))  # type: ignore[arg-type]
    forwarder.partitions_assigned(set(source.assignment))
    return forwarder, source, sinks


def test_a_partition_ahead_in_event_time_waits_for_the_one_behind():
    forwarder, source, _ = _forwarder()
    source.queued = [(PREDICTIONS, 100.0), (FEEDBACK, 100.0 + ALIGN_S + 5)]
    forwarder.step()
    assert source.paused == {FEEDBACK}
    source.queued = [(FEEDBACK, 300.0)]  # fetched later: not delivered while paused
    forwarder.step()
    assert source.paused == {FEEDBACK} and source.queued == [(FEEDBACK, 300.0)]
    source.queued.append((PREDICTIONS, 110.0))
    forwarder.step()
    assert source.paused == set(), "the predictions caught up to within ALIGN_S"


def test_a_partition_at_its_end_holds_nothing_back():
    forwarder, source, _ = _forwarder()
    source.queued = [(PREDICTIONS, 100.0), (FEEDBACK, 1_000.0)]
    source.at_end = {PREDICTIONS}  # live traffic: the predictions have nothing more yet
    forwarder.step()
    assert source.paused == set()


def test_a_paused_partition_is_never_reported_idle():
    forwarder, source, sinks = _forwarder()
    source.queued = [(PREDICTIONS, 100.0), (FEEDBACK, 500.0)]
    forwarder.step()
    source.at_end = {FEEDBACK}  # its end as of its last fetch, before it was paused
    for _ in range(50):  # 5 s of polls with nothing from either partition
        forwarder.step()
    assert not any(chunk.idle for chunk in sinks.sent)


def test_a_revoked_partition_is_not_reported_idle_before_it_is_assigned_again():
    forwarder, source, sinks = _forwarder()
    source.at_end = {PREDICTIONS, FEEDBACK}
    forwarder.partitions_revoked({PREDICTIONS, FEEDBACK})
    for _ in range(30):  # a rebalance: polls return nothing while the old ends look reached
        forwarder.step()
    assert not any(chunk.idle for chunk in sinks.sent)
    forwarder.partitions_assigned({FEEDBACK})
    for _ in range(30):
        forwarder.step()
    assert {chunk.source for chunk in sinks.sent if chunk.idle} == {FEEDBACK}
