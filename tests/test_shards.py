"""State per input partition: routing, labels across partitions, moves at rebalances."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import orjson
import pytest

from evaluation.simulate import SCENARIOS, generate
from streamer.checkpoint import Checkpoints
from streamer.config import CheckpointConfig, load_settings
from streamer.engine import FEEDBACK, PREDICTIONS, Engine, InputRecord
from streamer.errors import DriftgateError
from streamer.service import Service
from streamer.shards import ShardedEngine
from streamer.sinks import JsonLinesDecisionSink, ReportingDeadLetterSink

TOPICS = {PREDICTIONS: "p", FEEDBACK: "f"}


def _engine() -> Engine:
    settings = load_settings(None, detection={"reference_events": 2_000})
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


def _records(stream, partition_of, offsets) -> list[InputRecord]:
    records = []
    for record in stream:
        kind = record["topic"]
        partition = partition_of(record)
        tp = (TOPICS[kind], partition)
        offsets[tp] = offsets.get(tp, -1) + 1
        value = orjson.dumps(record["value"])
        records.append(InputRecord(kind, value, tp[0], partition, offsets[tp]))
    return records


def _summary(monitors) -> dict[str, object]:
    return {
        model: {
            "events": m.events,
            "windows": m.windows,
            "labels": m.outcomes.labels if m.outcomes is not None else None,
            "current": {n: f.current.tolist() for n, f in m.features.items()},
            "psi": {n: np.nan_to_num(f.psi, nan=-1).tolist() for n, f in m.features.items()},
        }
        for model, m in sorted(monitors.items())
    }


def _by_model(record) -> int:
    return 0 if record["value"].get("model", record["value"]["event_id"]).startswith("a") else 1


def test_each_partition_number_has_its_own_state_equal_to_a_lone_engine() -> None:
    a, b = _stream("a-model", 8_000, 1), _stream("b-model", 8_000, 2)
    interleaved = [r for pair in zip(a, b) for r in pair]
    records = _records(interleaved, _by_model, {})
    batches = [records[start : start + 3_000] for start in range(0, len(records), 3_000)]
    sharded = ShardedEngine(_engine())
    for batch in batches:
        sharded.process(batch)
    assert sorted(sharded.engines) == [0, 1]
    for partition in (0, 1):
        alone = _engine()
        for batch in batches:
            alone.process([r for r in batch if r.partition == partition])
        engine = sharded.engines[partition]
        assert _summary(engine.monitors) == _summary(alone.monitors)
        assert engine.positions == alone.positions
    assert sharded.counters.consumed == {PREDICTIONS: 16_000, FEEDBACK: len(records) - 16_000}
    assert set(sharded.monitors) == {"a-model", "b-model"}


def test_a_label_in_another_partition_joins_where_its_prediction_is() -> None:
    a = _stream("a-model", 6_000, 3)
    labels = sum(r["topic"] == FEEDBACK for r in a)
    assert labels > 100
    # predictions in partition 0, every label in partition 1
    records = _records(a, lambda r: 0 if r["topic"] == PREDICTIONS else 1, {})
    sharded = ShardedEngine(_engine())
    sharded.process(records)
    alone = _engine()
    alone.process(_records(a, lambda _: 0, {}))
    assert sharded.join.joined == alone.join.joined > 0
    assert sharded.engines[0].join.joined == alone.join.joined
    assert sharded.engines[1].join.unknown == 0 and sharded.engines[1].join.pending == 0
    # the record stays the partition's: its offsets are partition 1's to resume from
    assert sharded.positions[("f", 1)] == labels


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


def test_a_revoked_partition_moves_to_its_next_owner_through_its_checkpoint(tmp_path: Path):
    a, b = _stream("a-model", 6_000, 4), _stream("b-model", 6_000, 5)
    offsets: dict[tuple[str, int], int] = {}
    records = _records([r for pair in zip(a, b) for r in pair], _by_model, offsets)
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
    assert first.partitions_assigned({("p", 0), ("p", 1), ("f", 0), ("f", 1)}) == {}
    first.run(threading.Event())
    # a second member joins: the first gives partition 1 up, the second takes it over
    first.partitions_revoked({("p", 0), ("p", 1), ("f", 0), ("f", 1)})
    assert first.engine.engines == {}
    resume_first = first.partitions_assigned({("p", 0), ("f", 0)})
    second = member([])
    resume_second = second.partitions_assigned({("p", 1), ("f", 1)})
    assert sorted(second.engine.engines) == [1]
    # each resumes where the state it took over ends
    for resume, partition in ((resume_first, 0), (resume_second, 1)):
        expected = {}
        for r in records[:half]:
            if r.partition == partition:
                expected[(r.topic, partition)] = r.offset + 1
        assert resume == expected and ("p", partition) in expected
    for service, partition in ((first, 0), (second, 1)):
        service.source.batches = [[r for r in records[half:] if r.partition == partition]]
        service.run(threading.Event())

    straight = ShardedEngine(_engine())
    straight.process(records)
    merged = {**first.engine.monitors, **second.engine.monitors}
    assert _summary(merged) == _summary(straight.monitors)


def test_a_partition_whose_checkpoint_failed_to_load_is_never_given_a_new_state(
    tmp_path: Path, monkeypatch
) -> None:
    records = _records(_stream("a-model", 3_000, 6), lambda _: 0, {})
    checkpoints = Checkpoints(CheckpointConfig(dir=str(tmp_path)), "g.p")
    service = Service(
        _engine(),
        _Source([records]),
        JsonLinesDecisionSink(tmp_path / "d.jsonl"),
        ReportingDeadLetterSink(tmp_path / "dead.jsonl"),
        checkpoints=checkpoints,
    )

    def unreadable(partition, current):
        raise DriftgateError("cannot read checkpoint: I/O error", retriable=True)

    monkeypatch.setattr(checkpoints, "restore", unreadable)
    assert service.partitions_assigned({("p", 0)}) == {}
    with pytest.raises(DriftgateError, match="partition 0 has no state") as failure:
        service.run(threading.Event())
    assert not failure.value.retriable
    assert list(tmp_path.glob("*.ckpt")) == []  # nothing written over the checkpoint
