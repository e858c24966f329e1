"""One model, one verdict: the event-time merge makes the engine's state and decisions a
function of the events, not of how they were partitioned, cut into batches or delivered."""

from __future__ import annotations

import heapq
import random
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.batch import PredictionBatch
from evaluation.simulate import SCENARIOS, generate
from streamer import chunk_codec
from streamer.checkpoint import Checkpoints
from streamer.config import CheckpointConfig, load_settings
from streamer.engine import (
    CHUNKS,
    FEEDBACK,
    PREDICTIONS,
    REPLAY_PARTITION,
    Engine,
    InputRecord,
    source_of,
)
from streamer.errors import DriftgateError
from streamer.event_order import IDLE_LATENESS_S, NO_LABELS, Chunk, EventOrder, Labels
from streamer.service import QUIET_INPUT_S, Service
from streamer.sinks import JsonLinesDecisionSink, ReportingDeadLetterSink

TOPICS = {PREDICTIONS: "p", FEEDBACK: "f"}


def _engine() -> Engine:
    settings = load_settings(None, detection={"reference_events": 2_000, "window_events": 500})
    return Engine(settings.monitor, settings.limits, settings.feedback)


def _stream(model: str, n: int, seed: int) -> list[dict[str, object]]:
    """A model's predictions and labels in stream order, event ids unique to the model."""
    spec, incidents = SCENARIOS["covariate_shift"](n)
    out = []
    for record in generate(spec, n, seed, incidents):
        value = dict(record["value"])
        value["event_id"] = f"{model}-{value['event_id']}"
        if record["topic"] == PREDICTIONS:
            value["model"] = model
        out.append({"topic": record["topic"], "value": value})
    return out


def _records(stream, partition_of: Callable[[int, dict], int]) -> list[InputRecord]:
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for i, record in enumerate(stream):
        kind = record["topic"]
        partition = partition_of(i, record)
        # A replay file's line numbers are the offsets of both of its topics.
        tp = (TOPICS[kind], partition) if partition != REPLAY_PARTITION else ("", partition)
        offsets[tp] = offsets.get(tp, -1) + 1
        value = orjson.dumps(record["value"])
        records.append(InputRecord(kind, value, TOPICS[kind], partition, offsets[tp]))
    return records


def _by_event_id(partitions: int) -> Callable[[int, dict], int]:
    return lambda _, r: zlib.crc32(r["value"]["event_id"].encode()) % partitions


def _round_robin(partitions: int) -> Callable[[int, dict], int]:
    return lambda i, _: i % partitions


def _deliveries(records: list[InputRecord], seed: int) -> list[list[InputRecord]]:
    """The records as a consumer may deliver them: each partition in its own order, the
    partitions interleaved at random, in batches of random sizes."""
    rng = random.Random(seed)
    queues: dict[tuple[str, int], list[InputRecord]] = {}
    for record in records:
        queues.setdefault(source_of(record), []).append(record)
    for queue in queues.values():
        queue.reverse()
    batches, batch = [], []
    while queues:
        tp = rng.choice(sorted(queues))
        for _ in range(rng.randint(1, 400)):
            if not queues[tp]:
                del queues[tp]
                break
            batch.append(queues[tp].pop())
        if len(batch) >= rng.randint(1, 3_000):
            batches.append(batch)
            batch = []
    return [*batches, batch]


def _summary(engine: Engine) -> dict[str, object]:
    return {
        model: {
            "events": m.events,
            "windows": m.windows,
            "labels": m.outcomes.labels if m.outcomes is not None else None,
            "current": {n: f.current.tolist() for n, f in m.features.items()},
            "psi": {n: np.nan_to_num(f.psi, nan=-1).tolist() for n, f in m.features.items()},
        }
        for model, m in sorted(engine.monitors.items())
    } | {"joined": engine.join.joined, "unknown": engine.join.unknown}


def _run(records: list[InputRecord], seed: int, expected) -> tuple[Engine, list[str]]:
    engine = _engine()
    engine.order.expect(expected)
    decisions = []
    for batch in _deliveries(records, seed):
        decisions += engine.process(batch).decisions
    decisions += engine.flush()
    return engine, sorted(d.decision_id for d in decisions)


@pytest.fixture(scope="module")
def stream() -> list[dict[str, object]]:
    """Two models' traffic in one log, in time order as a producer writes it."""
    a, b = _stream("a-model", 9_000, 1), _stream("b-model", 9_000, 2)
    return list(heapq.merge(a, b, key=lambda r: r["value"]["ts"]))


@pytest.fixture(scope="module")
def replayed(stream) -> tuple[Engine, list[str]]:
    """The stream as `driftgate replay` reads it: one source, in its file order."""
    return _run(_records(stream, lambda *_: REPLAY_PARTITION), 0, ())


@pytest.mark.parametrize(
    "layout",
    [
        (_by_event_id, 3),
        (_by_event_id, 6),
        (_round_robin, 3),  # unkeyed
    ],
    ids=["3-keyed-by-event-id", "6-keyed-by-event-id", "3-unkeyed"],
)
def test_the_state_and_decisions_do_not_depend_on_the_partitioning(stream, replayed, layout):
    alone, alone_decisions = replayed
    assert alone_decisions, "the shift gave no decision: the test could not fail"
    assert alone.join.joined > 500 and alone.join.unknown == 0
    partition_of, partitions = layout
    records = _records(stream, partition_of(partitions))
    expected = {(t, p) for t in TOPICS.values() for p in range(partitions)}
    for seed in (1, 2):
        engine, decisions = _run(records, seed, expected)
        assert _summary(engine) == _summary(alone)
        assert decisions == alone_decisions
        assert engine.order.late == 0 and engine.order.buffered == 0


def test_a_chunk_delivered_twice_changes_nothing(stream) -> None:
    records = _records(stream, _by_event_id(2))
    once, twice = _engine(), _engine()
    for engine in (once, twice):
        engine.order.expect({(t, p) for t in TOPICS.values() for p in range(2)})
    chunks, _ = once.ingest(records[:5_000])
    again, _ = twice.ingest(records[:5_000])
    first = once.judge(chunks)
    second = twice.judge(again) + twice.judge(
        [chunk_codec.decode(chunk_codec.encode(c)) for c in again]
    )
    rest, _ = once.ingest(records[5_000:])
    assert first + once.judge(rest, final=True)
    assert twice.order.duplicates == sum(c.events for c in again)
    rest, _ = twice.ingest(records[5_000:])
    second += twice.judge(rest, final=True)
    assert _summary(twice) == _summary(once)


def test_a_chunk_read_back_holds_the_columns_ingest_made(stream) -> None:
    """What the judge reads from the internal topic is what ingest made: float columns
    as read-only arrays, the others (strings, integers, missing values) as lists."""
    records = _records(stream, _by_event_id(2))[:3_000]
    records[5] = records[5]._replace(
        value=records[5].value.replace(b'"amount":', b'"x":1,"amount":')
    )
    chunks, _ = _engine().ingest(records)
    kinds = set()
    for chunk in chunks:
        back = chunk_codec.decode(chunk_codec.encode(chunk))
        for model, (batch, _) in chunk.predictions.items():
            features = back.predictions[model][0].features
            assert list(features) == list(batch.features)
            for name, column in batch.features.items():
                read = features[name]
                kinds.add((name, type(column).__name__))
                assert type(read) is type(column) or (
                    isinstance(read, list) and isinstance(column, tuple)
                ), name
                assert list(read) == list(column), name
                if isinstance(column, np.ndarray):
                    assert not read.flags.writeable
    assert {kind for _, kind in kinds} >= {"ndarray", "tuple", "list"}, kinds


def _chunk(source, ts, ids, offsets, idle=False) -> Chunk:
    n = len(ts)
    batch = PredictionBatch(
        ts=np.asarray(ts, dtype=np.float64),
        score=np.zeros(n),
        model_version=["v1"] * n,
        cohorts={},
        features={"x": [1.0] * n},
        event_id=list(ids),
    )
    end = (max(offsets) + 1) if offsets else 0
    return Chunk(
        source, {"m": (batch, np.asarray(offsets, np.int64))}, NO_LABELS, end_offset=end, idle=idle
    )


def _released(order: EventOrder, final: bool = False) -> list[str]:
    out = order.release(final)
    return list(out.predictions["m"].event_id) if "m" in out.predictions else []


def test_a_source_not_heard_from_holds_everything_back_until_it_is_idle() -> None:
    order = EventOrder()
    order.expect({("p", 0), ("p", 1)})
    order.add(_chunk(("p", 0), [1.0, 2.0, 3.0, 30.0], "abcd", [0, 1, 2, 3]))
    assert _released(order) == []
    order.add(_chunk(("p", 1), [], "", [], idle=True))
    # an idle source holds back the last IDLE_LATENESS_S before the newest event
    assert IDLE_LATENESS_S == 10.0
    assert _released(order) == ["a", "b", "c"]
    order.add(_chunk(("p", 1), [25.0, 2.5], "yz", [0, 1]))
    assert order.late == 1  # 2.5 is older than what was released, 25 is not
    assert _released(order, final=True) == ["z", "y", "d"]


def test_the_first_partition_back_after_a_pause_of_the_input_waits_for_the_others() -> None:
    """Every partition went quiet (a producer stalled, a rebalance) and was reported
    idle; the first one read again does not release past the others' same seconds."""
    order = EventOrder()
    order.expect({("p", 0), ("p", 1)})
    order.add(_chunk(("p", 0), [100.0], "a", [0]))
    order.add(_chunk(("p", 1), [100.5], "b", [0]))
    order.add(_chunk(("p", 0), [], "", [], idle=True))
    order.add(_chunk(("p", 1), [], "", [], idle=True))
    assert _released(order) == []  # within 10 s of the newest: either may have a twin
    order.add(_chunk(("p", 0), [104.0, 106.0], "cd", [1, 2]))  # p[0] is back first
    assert _released(order) == ["a"]  # b waits: p[1]'s next events may be older than 106
    order.add(_chunk(("p", 1), [103.0, 105.0], "ef", [1, 2]))  # then p[1], 3 s behind
    assert order.late == 0
    assert _released(order) == ["b", "e", "c"]


def test_a_buffer_over_its_bound_is_released_and_counted() -> None:
    order = EventOrder(max_buffered_events=2)
    order.expect({("p", 0), ("p", 1)})
    order.add(_chunk(("p", 0), [1.0, 2.0], "ab", [0, 1]))
    assert _released(order) == []
    order.add(_chunk(("p", 0), [3.0], "c", [2]))
    assert _released(order) == ["a", "b", "c"] and order.forced == 1


def test_an_unusable_chunk_is_a_dead_letter_not_a_crash() -> None:
    engine = _engine()
    result = engine.process([InputRecord("chunks", b"{not json", "g.events", 0, 7)])
    assert [d.rejected.reason for d in result.dead_letters] == ["invalid_record"]
    assert engine.positions == {("g.events", 0): 8}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3)), min_size=1, max_size=60),
    st.integers(0, 10**6),
)
def test_any_interleaving_releases_the_events_sorted_by_time_and_id(events, seed) -> None:
    """Per partition in time order, partitions interleaved and cut at random: the merge
    releases every event once, sorted by (event time, event id)."""
    rng = random.Random(seed)
    rows = sorted((float(t), f"e{i:03d}", p) for i, (t, p) in enumerate(events))
    per_partition = {p: [r for r in rows if r[2] == p] for p in range(4)}
    order = EventOrder()
    order.expect({("p", p) for p in range(4)})
    released: list[str] = []
    offsets = dict.fromkeys(range(4), 0)
    while any(per_partition.values()):
        p = rng.choice([p for p, queue in per_partition.items() if queue])
        take = per_partition[p][: rng.randint(1, 5)]
        del per_partition[p][: len(take)]
        start = offsets[p]
        offsets[p] += len(take)
        done = not per_partition[p]
        ts, ids = [r[0] for r in take], [r[1] for r in take]
        order.add(_chunk(("p", p), ts, ids, list(range(start, offsets[p])), idle=done))
        released += _released(order)
    for p in range(4):  # partitions that never had an event say they are idle
        order.add(_chunk(("p", p), [], "", [], idle=True))
    released += _released(order, final=True)
    assert released == [r[1] for r in sorted(rows)]
    assert order.late == 0 and order.buffered == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 12), st.data())
def test_taking_rows_gathers_them_whether_or_not_they_are_a_run(n, data) -> None:
    """take() slices a run of consecutive rows (what a merge of ordered events takes) and
    gathers any other rows: either way, each column holds the rows asked for."""
    run = st.tuples(st.integers(0, n), st.integers(0, n)).map(lambda b: list(range(min(b), max(b))))
    anything = st.lists(st.integers(0, n - 1), max_size=2 * n) if n else st.just([])
    rows = data.draw(st.one_of(run, anything))
    index = np.asarray(rows, dtype=np.intp)
    ids = [f"e{i}" for i in range(n)]
    values = np.arange(n, dtype=np.float64) * 1.5
    batch = PredictionBatch(
        ts=values,
        score=values / 100,
        model_version=[f"v{i % 2}" for i in range(n)],
        cohorts={"region": [f"r{i}" for i in range(n)]},
        features={"x": list(range(n)), "y": [None] * n},
        event_id=ids,
    ).take(index)
    assert list(batch.event_id) == [ids[i] for i in rows]
    assert batch.ts.tolist() == [values[i] for i in rows]
    assert list(batch.cohorts["region"]) == [f"r{i}" for i in rows]
    assert list(batch.features["x"]) == rows and list(batch.model_version) == [
        f"v{i % 2}" for i in rows
    ]
    labels = Labels(ids, values, values / 10, ["s"] * n, np.arange(n) % 3 == 0).take(index)
    assert list(labels.event_id) == [ids[i] for i in rows]
    assert labels.label.tolist() == [values[i] / 10 for i in rows]
    assert labels.override.tolist() == [i % 3 == 0 for i in rows]


class _Source:
    def __init__(self, batches: list[list[InputRecord]]) -> None:
        self.batches = batches
        self.committed: list[dict[tuple[str, int], int]] = []

    def poll(self):
        return self.batches.pop(0) if self.batches else None

    def commit(self, offsets=None) -> None:
        self.committed.append(dict(offsets or {}))

    def lag(self):
        return {}

    def close(self) -> None:
        pass


def test_the_judge_moves_to_its_next_owner_through_its_checkpoint(stream, tmp_path: Path):
    records = _records(stream, _round_robin(2))
    half = len(records) // 2
    config = CheckpointConfig(dir=str(tmp_path / "state"), interval_events=10**9)

    def member(batches) -> Service:
        return Service(
            _engine(),
            _Source(batches),
            JsonLinesDecisionSink(tmp_path / "d.jsonl", append=True),
            ReportingDeadLetterSink(tmp_path / "dead.jsonl", append=True),
            checkpoints=Checkpoints(config, "g.p"),
        )

    first = member([records[:half]])
    assert first.partitions_assigned({("g.events", 0)}) == {}
    first.run(threading.Event())
    # a second member joins and is given the internal topic: it takes the state over
    first.partitions_revoked({("g.events", 0)})
    assert not first.has_state and not first.engine.monitors
    second = member([records[half:]])
    resume = second.partitions_assigned({("p", 0), ("p", 1), ("f", 0), ("f", 1)})
    assert resume == {
        tp: max(r.offset for r in records[:half] if (r.topic, r.partition) == tp) + 1
        for tp in {(r.topic, r.partition) for r in records[:half]}
    }
    second.run(threading.Event())

    straight = _engine()
    straight.process(records, final=True)
    assert _summary(second.engine) == _summary(straight)


def test_a_state_whose_checkpoint_failed_to_load_is_never_replaced(tmp_path, monkeypatch):
    records = _records(_stream("a-model", 3_000, 6), lambda *_: 0)
    checkpoints = Checkpoints(CheckpointConfig(dir=str(tmp_path)), "g.p")
    service = Service(
        _engine(),
        _Source([records]),
        JsonLinesDecisionSink(tmp_path / "d.jsonl"),
        ReportingDeadLetterSink(tmp_path / "dead.jsonl"),
        checkpoints=checkpoints,
    )

    def unreadable(current):
        raise DriftgateError("cannot read checkpoint: I/O error", retriable=True)

    monkeypatch.setattr(checkpoints, "restore", unreadable)
    assert service.partitions_assigned({("p", 0)}) == {}
    with pytest.raises(DriftgateError, match="could not be loaded") as failure:
        service.run(threading.Event())
    assert not failure.value.retriable
    assert list(tmp_path.glob("*.ckpt")) == []  # nothing written over the checkpoint


def test_a_paused_input_has_its_held_back_events_judged(tmp_path) -> None:
    """Every source idle and no record for QUIET_INPUT_S: the last seconds the merge
    held back behind the idle sources are judged (a live stream that stopped)."""
    records = _records(_stream("a-model", 3_000, 7), lambda *_: 0)
    idle = [
        InputRecord(CHUNKS, chunk_codec.encode(Chunk(tp, idle=True)), "g.events", 0, i)
        for i, tp in enumerate(sorted({(r.topic, r.partition) for r in records}))
    ]
    now = [0.0]
    service = Service(
        _engine(),
        _Source([records, idle, [], []]),
        JsonLinesDecisionSink(tmp_path / "d.jsonl"),
        ReportingDeadLetterSink(tmp_path / "dead.jsonl"),
        clock=lambda: now[0],
    )
    service.engine.order.expect({(r.topic, r.partition) for r in records})
    service.step()
    service.step()
    held = service.engine.order.buffered
    assert held > 0, "nothing held back behind the idle sources"
    now[0] = QUIET_INPUT_S - 0.1
    service.step()
    assert service.engine.order.buffered == held
    now[0] = QUIET_INPUT_S + 0.1
    service.step()
    assert service.engine.order.buffered == 0
    assert sum(m.events for m in service.engine.monitors.values()) == sum(
        r.kind == PREDICTIONS for r in records
    )
