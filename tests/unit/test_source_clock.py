"""A bounded clock: an event dated far ahead of its source is dead-lettered, not obeyed."""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.simulate import SCENARIOS, generate
from streamer.config import LimitsConfig, load_settings
from streamer.engine import PREDICTIONS, REPLAY_PARTITION, Engine, InputRecord
from streamer.source_clock import Rows, SourceClocks
from tests.support import through_state_codec

EVENTS = 40_000
YEAR_S = 365 * 86_400.0
BATCH = 5_000


@cache
def concept_stream() -> tuple[dict[str, object], ...]:
    """Predictions and their labels; the model gets worse half-way (a retrain)."""
    spec, incidents = SCENARIOS["concept"](EVENTS)
    return tuple(generate(spec, EVENTS, seed=3, incidents=incidents))


def _with_predictions_a_year_ahead(at: int, count: int) -> list[dict[str, object]]:
    stream = list(concept_stream())
    template = dict(stream[at]["value"])  # type: ignore[arg-type]
    hostile = [
        {
            "topic": PREDICTIONS,
            "value": {**template, "event_id": f"future-{i}", "ts": template["ts"] + YEAR_S},  # type: ignore[operator]
        }
        for i in range(count)
    ]
    return stream[:at] + hostile + stream[at:]


def _run(stream: list[dict[str, object]], limits: LimitsConfig | None = None):
    settings = load_settings()
    engine = Engine(settings.monitor, limits or settings.limits, settings.feedback)
    records = [
        InputRecord(r["topic"], orjson.dumps(r["value"]), r["topic"], REPLAY_PARTITION, line)  # type: ignore[arg-type]
        for line, r in enumerate(stream, 1)
    ]
    decisions, dead = [], []
    for start in range(0, len(records), BATCH):
        result = engine.process(records[start : start + BATCH])
        decisions += result.decisions
        dead += result.dead_letters
    decisions += engine.flush()
    return engine, decisions, dead


def test_predictions_a_year_ahead_are_dead_lettered_and_expire_nothing() -> None:
    straight, straight_decisions, straight_dead = _run(list(concept_stream()))
    assert straight_decisions, "the stream gave no decision"
    assert straight_dead == []
    # Three of them, in one batch: the join store's own guard lets a second one move its clock.
    stream = _with_predictions_a_year_ahead(EVENTS // 3, 3)
    engine, decisions, dead = _run(stream)
    assert [letter.rejected.reason for letter in dead] == ["invalid_value"] * 3
    assert [letter.record.offset for letter in dead] == [EVENTS // 3 + 1 + i for i in range(3)]
    assert "ahead of the newest event time" in dead[0].rejected.detail
    assert "limits.max_future_s=86400" in dead[0].rejected.detail
    assert engine.join.expired_entries == straight.join.expired_entries
    assert engine.join.size == straight.join.size
    assert engine.counters.rejected == {(PREDICTIONS, "invalid_value"): 3}
    assert [d.decision_id for d in decisions] == [d.decision_id for d in straight_decisions]
    # Without the bound (a horizon of ten years), the same predictions expire the waiting ones.
    unbounded = LimitsConfig(max_future_s=10 * YEAR_S)
    engine, _, dead = _run(stream, unbounded)
    assert dead == []
    assert engine.join.expired_entries > straight.join.expired_entries


A, B = ("predictions", 0), ("predictions", 1)


def test_the_bound_follows_the_source_not_the_batch() -> None:
    clocks = SourceClocks(max_future_s=10.0)
    # a backfill whose batch spans more than the horizon, step by step: all admitted
    assert clocks.admit(A, np.arange(0.0, 100.0, 5.0)) == {}
    assert clocks.newest(A) == 95.0
    # a source of another topic has its own clock, set by its first event
    assert clocks.admit(("feedback", 0), np.array([1_000.0, 1_005.0])) == {}
    rejected = clocks.admit(A, np.array([96.0, 500.0, 104.0, 115.0]))
    assert list(rejected) == [1, 3]  # 115 is measured from 104, not from 500
    assert clocks.newest(A) == 104.0


def test_a_sparse_partition_is_bounded_by_its_topic_not_by_its_own_last_event() -> None:
    """A label stream's tail spread over partitions: one partition silent for longer than
    the bound while the topic moved on (tests/e2e/test_partitioning_e2e.py, 3 unkeyed
    partitions, dead-lettered a label this way when the bound was the partition's own)."""
    clocks = SourceClocks(max_future_s=10.0)
    assert clocks.admit(A, np.array([0.0])) == {}
    assert clocks.admit(B, np.arange(0.0, 50.0, 5.0)) == {}
    assert clocks.admit(A, np.array([52.0])) == {}
    assert clocks.newest(A) == 52.0
    # the topic's newest raises the bound, never its own clock, and never another topic's
    assert clocks.admit(("feedback", 0), np.array([0.0])) == {}
    assert list(clocks.admit(("feedback", 0), np.array([52.0]))) == [0]
    # what the siblings did not admit does not count either
    assert list(clocks.admit(B, np.array([47.0, 1_000.0]))) == [1]
    assert list(clocks.admit(A, np.array([990.0]))) == [0]


@pytest.mark.parametrize("horizon", [0.0, -1.0, float("nan")])
def test_the_horizon_must_be_positive(horizon: float) -> None:
    with pytest.raises(ValueError, match="max_future_s"):
        SourceClocks(horizon)


def test_a_clock_that_one_event_would_stop_is_moved_by_ten_agreeing_ones() -> None:
    clocks = SourceClocks(max_future_s=60.0)
    # a first event dated 1970, or a partition back after a pause longer than the bound:
    # every later event is ahead, and ten in a row that agree move the clock
    assert clocks.admit(A, np.array([1.5])) == {}
    resumed = 1_763_712_000.0 + np.arange(12.0)
    assert list(clocks.admit(A, resumed[:4])) == [0, 1, 2, 3]
    # (the count of agreeing events survives a checkpoint between two batches)
    clocks = through_state_codec(clocks)
    assert list(clocks.admit(A, resumed[4:])) == [0, 1, 2, 3, 4]
    assert clocks.newest(A) == resumed[-1]
    # a burst of nine wrong times between usual ones moves nothing
    burst = np.array([resumed[-1] + 1, *([resumed[-1] + 1e7] * 9), resumed[-1] + 2])
    assert list(clocks.admit(A, burst)) == list(range(1, 10))
    assert clocks.newest(A) == resumed[-1] + 2


def _labels(*ts: float, first_row: int = 0) -> Rows[SimpleNamespace]:
    return Rows(SimpleNamespace(ts=np.array(ts)), list(range(first_row, first_row + len(ts))))


def test_a_sparse_tail_read_unevenly_is_judged_with_the_batchs_other_partitions() -> None:
    """tests/e2e/test_partitioning_e2e.py, 3 unkeyed partitions, dead-lettered a label of
    the tail 28.9 h ahead of the newest label read while the labels between them were on
    another partition, later in the same batch (CI of a2059a2)."""
    clocks = SourceClocks(max_future_s=10.0)
    assert clocks.admit_sources({A: [_labels(0.0)], B: [_labels(0.0)]}) == {A: {}, B: {}}
    # A's next label is 25 s on, within the bound of B's 16 of the same batch
    assert clocks.admit_sources({A: [_labels(25.0)], B: [_labels(8.0, 16.0)]}) == {A: {}, B: {}}
    # one a year ahead is still ahead, whatever the batch holds
    rejected = clocks.admit_sources({A: [_labels(30.0, YEAR_S)], B: [_labels(33.0)]})
    assert list(rejected[A]) == [1] and rejected[B] == {}
    assert clocks.newest(A) == 30.0


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 9.5), min_size=1, max_size=30),
    partitions=st.lists(st.integers(0, 2), min_size=30, max_size=30),
    after_jump=st.integers(0, 9),
)
def test_a_topic_spread_over_partitions_is_bounded_as_in_one_partition(
    gaps, partitions, after_jump
):
    """One topic's events in time order, spread over three partitions of one batch: those
    within the bound of the one before them in time are admitted, whichever partition holds
    them; past a gap longer than the bound (fewer than ten events after it), none is."""
    jump = max(0, len(gaps) - after_jump)
    ts = np.cumsum(gaps) + np.where(np.arange(len(gaps)) >= jump, 1_000.0, 0.0)
    clocks = SourceClocks(max_future_s=10.0)
    sources = [("feedback", p) for p in range(3)]
    assert clocks.admit_sources({s: [_labels(0.0)] for s in sources}) == {s: {} for s in sources}
    held = np.array(partitions[: len(ts)])
    rejected = clocks.admit_sources({s: [_labels(*ts[held == s[1]])] for s in sources})
    assert sum(len(r) for r in rejected.values()) == len(ts) - jump
