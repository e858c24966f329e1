"""The ingest reads its partitions in step in event time (a backfill's labels do not run
ahead of its predictions), and in step with the other members' partitions (what they
publish of their progress); it reports no partition idle between a revoke and the next
assignment."""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np

from streamer import chunk_codec
from streamer.event_order import Chunk, Labels
from streamer.forwarder import ALIGN_S, Forwarder
from streamer.group_progress import PUBLISH_S, ProgressBoard

PREDICTIONS = ("predictions", 0)
FEEDBACK = ("feedback", 0)


class Source:
    """Partitions that deliver what the test queues; none at its end unless told."""

    def __init__(self, assignment: set[tuple[str, int]]) -> None:
        self.assignment = set(assignment)
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


class Clock:
    """Wall time that moves a tenth of a second at each reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.1
        return self.now


def _forwarder(
    assignment: set[tuple[str, int]] = {PREDICTIONS, FEEDBACK},  # noqa: B006 (never mutated)
    progress: ProgressBoard | None = None,
    clock: Clock | None = None,
    lead_events: int = 100_000,
) -> tuple[Forwarder, Source, Sinks]:
    source, sinks = Source(assignment), Sinks()
    engine = SimpleNamespace(ingest=_ingest)
    service = SimpleNamespace(lock=threading.Lock(), touch=lambda: None, engine=engine)
    forwarder = Forwarder(
        source,  # type: ignore[arg-type]
        sinks,  # type: ignore[arg-type]
        "g.events",
        service,  # type: ignore[arg-type]
        1_000,
        clock=clock or Clock(),
        progress=progress,
        lead_events=lead_events,
    )
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


def _group(clock: Clock) -> list[ProgressBoard]:
    """Two members' boards, each hearing what either says (as on the progress topic)."""
    boards: list[ProgressBoard] = []

    def say(message: bytes) -> None:
        for board in boards:
            board.hear(message)

    boards.extend(ProgressBoard(say, stale_s=10.0, clock=clock) for _ in range(2))
    return boards


LEAD = 2  # events a partition may run ahead of the group's least advanced one
MINE, THEIRS = ("predictions", 1), ("predictions", 0)


def _two_members(clock: Clock) -> tuple[tuple[Forwarder, Source], tuple[Forwarder, Source]]:
    """The member reading THEIRS (it has read up to 100), and the one reading MINE."""
    board_a, board_b = _group(clock)
    behind, behind_source, _ = _forwarder({THEIRS}, board_a, clock, LEAD)
    ahead, ahead_source, _ = _forwarder({MINE}, board_b, clock, LEAD)
    behind_source.queued = [(THEIRS, 100.0)]
    behind.step()  # says it reads predictions[0] at 100
    return (behind, behind_source), (ahead, ahead_source)


def test_a_member_ahead_of_the_group_by_more_than_its_lead_waits_for_the_others():
    clock = Clock()
    (behind, behind_source), (ahead, ahead_source) = _two_members(clock)
    ahead_source.queued = [(MINE, 500.0 + k) for k in range(LEAD)]
    ahead.step()
    assert ahead_source.paused == set(), "within its lead: members read side by side"
    ahead_source.queued = [(MINE, 600.0)]
    ahead.step()
    assert ahead_source.paused == {MINE}
    assert behind_source.paused == set(), "the least advanced partition is never paused"
    clock.now += PUBLISH_S
    behind_source.queued = [(THEIRS, 550.0)]
    behind.step()
    ahead.step()
    assert ahead_source.paused == set(), "two of its events are older than the group's floor"


def test_a_member_whose_partitions_are_read_to_their_end_holds_nobody_back():
    clock = Clock()
    (behind, behind_source), (ahead, ahead_source) = _two_members(clock)
    behind_source.at_end = {THEIRS}
    behind.step()  # caught up: says so at once
    ahead_source.queued = [(MINE, 1_000.0 + k) for k in range(LEAD + 5)]
    ahead.step()
    assert ahead_source.paused == set()


def test_a_member_that_stopped_saying_anything_is_forgotten():
    clock = Clock()
    _, (ahead, ahead_source) = _two_members(clock)
    ahead_source.queued = [(MINE, 1_000.0 + k) for k in range(LEAD + 1)]
    ahead.step()
    assert ahead_source.paused == {MINE}
    clock.now += 10.0  # the member behind died: the group drops it after its session
    ahead.step()
    assert ahead_source.paused == set()


def test_a_message_that_cannot_be_read_changes_nothing():
    board = ProgressBoard(lambda message: None, stale_s=10.0, clock=Clock())
    for message in (b"", b"{", b"[]", b'{"partitions": [["t", "x", 1.0, true]]}', b"null"):
        board.hear(message)
    assert board.reading_elsewhere(set()) == {}


def test_after_a_rebalance_a_partition_nobody_spoke_of_holds_the_member_back():
    clock = Clock()
    board = ProgressBoard(lambda message: None, 10.0, clock, frozenset({MINE, THEIRS}))
    ahead, source, _ = _forwarder({MINE}, board, clock, LEAD)  # assigned: a rebalance
    source.queued = [(MINE, 1_000.0 + k) for k in range(LEAD + 1)]
    ahead.step()
    assert source.paused == {MINE}, "its reader's assignment may come seconds later"
    clock.now += board.stale_s  # nobody read it: a member that could has left the group
    ahead.step()
    assert source.paused == set()


def test_live_traffic_keeps_no_account_of_what_was_forwarded():
    forwarder, source, _ = _forwarder()
    source.at_end = {PREDICTIONS, FEEDBACK}  # every partition read to its end
    for k in range(100):
        source.queued = [(PREDICTIONS, float(k)), (FEEDBACK, float(k))]
        forwarder.step()
    assert forwarder._lead.beyond(PREDICTIONS, -math.inf) == 0
