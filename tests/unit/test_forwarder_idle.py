"""When the ingest says a partition is idle: after quiet it saw, never after a pause of
its own loop or while no broker answers (the partition's end may then be stale)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from streamer import chunk_codec
from streamer.forwarder import Forwarder

TP = ("predictions", 0)


class Source:
    """A caught-up partition that yields nothing."""

    assignment = frozenset({TP})

    def __init__(self) -> None:
        self.up = True

    def poll(self) -> list[object]:
        return []

    def lag(self) -> dict[tuple[str, int], int]:
        return {TP: 0}

    def caught_up(self) -> set[tuple[str, int]]:
        return {TP}

    def reachable(self) -> bool:
        return self.up

    def commit(self) -> None: ...

    def pause_only(self, partitions: set[tuple[str, int]]) -> None:
        assert not partitions, "nothing to align: one caught-up partition"


class Sinks:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.dead_letters = SimpleNamespace(write=lambda letters: None)

    def send(self, topic: str, value: bytes, key: bytes, headers: list[object]) -> None:
        self.sent.append(value)

    def flush(self) -> None: ...


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _forwarder() -> tuple[Forwarder, Source, Sinks, Clock]:
    source, sinks, clock = Source(), Sinks(), Clock()
    service = SimpleNamespace(lock=threading.Lock(), touch=lambda: None)
    forwarder = Forwarder(source, sinks, "g.events", service, idle_ms=1_000, clock=clock)  # type: ignore[arg-type]
    forwarder.partitions_assigned({TP})
    return forwarder, source, sinks, clock


def _idle_reports(sinks: Sinks) -> int:
    return sum(chunk_codec.decode(value).idle for value in sinks.sent)


def _poll_until(forwarder: Forwarder, clock: Clock, end: float, every: float = 0.2) -> None:
    while clock.now < end:
        clock.now = round(clock.now + every, 6)
        forwarder.step()


def test_a_partition_seen_quiet_for_idle_ms_is_reported_idle_once():
    forwarder, _, sinks, clock = _forwarder()
    forwarder.step()  # the first poll: quiet counts from here, not from before
    assert _idle_reports(sinks) == 0
    _poll_until(forwarder, clock, 0.8)
    assert _idle_reports(sinks) == 0
    _poll_until(forwarder, clock, 3.0)
    assert _idle_reports(sinks) == 1


def test_a_member_is_caught_up_once_it_said_its_partitions_are_idle():
    """Read to the end is not enough to exit a backfill: the idle chunk still to come
    would be left unjudged."""
    forwarder, _, sinks, clock = _forwarder()
    forwarder.step()
    _poll_until(forwarder, clock, 0.8)
    assert not forwarder.caught_up, "read to its end, its idle report not sent yet"
    _poll_until(forwarder, clock, 1.2)
    assert _idle_reports(sinks) == 1
    assert forwarder.caught_up
    forwarder.partitions_assigned({("feedback", 0)})  # a rebalance: more to report
    assert not forwarder.caught_up


def test_after_a_pause_of_the_loop_quiet_counts_afresh():
    forwarder, _, sinks, clock = _forwarder()
    forwarder.step()
    _poll_until(forwarder, clock, 0.4)
    clock.now = 5.0  # a rebalance or a busy machine: 4.6 s without a poll
    forwarder.step()
    assert _idle_reports(sinks) == 0, "idle on a high watermark from before the pause"
    _poll_until(forwarder, clock, 5.8)
    assert _idle_reports(sinks) == 0
    _poll_until(forwarder, clock, 6.2)
    assert _idle_reports(sinks) == 1


def test_no_partition_is_idle_while_no_broker_answers():
    forwarder, source, sinks, clock = _forwarder()
    forwarder.step()
    source.up = False
    _poll_until(forwarder, clock, 10.0)
    assert _idle_reports(sinks) == 0
    source.up = True
    _poll_until(forwarder, clock, 10.8)
    assert _idle_reports(sinks) == 0
    _poll_until(forwarder, clock, 11.2)
    assert _idle_reports(sinks) == 1
