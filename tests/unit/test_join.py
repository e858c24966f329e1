"""Tests for detectors.join: joining late labels to predictions in bounded memory.

Expected values are worked out in each test from the rows it feeds (delays as feedback
ts minus prediction ts, histogram buckets by direct comparison with the bounds), never
read back from the store.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.join import DELAY_BUCKETS_S, Joined, JoinStore
from detectors.join.tombstones import _id_hashes
from tests.support import through_state_codec

FAST = settings(max_examples=120, deadline=None)


def add(
    store: JoinStore,
    ids: list[str],
    ts: list[float],
    scores: list[float] | None = None,
    versions: list[str] | None = None,
    scopes: list[list[int]] | None = None,
    models: list[str] | None = None,
) -> Joined:
    n = len(ids)
    return store.add_predictions(
        ids,
        np.asarray(ts, dtype=np.float64),
        np.asarray(scores if scores is not None else [0.5] * n, dtype=np.float64),
        versions if versions is not None else ["v1"] * n,
        np.asarray(scopes if scopes is not None else [[0, 1]] * n, dtype=np.intp).reshape(n, -1),
        models,
    )


def label(
    store: JoinStore,
    ids: list[str],
    ts: list[float],
    labels: list[float] | None = None,
    sources: list[str] | None = None,
    overrides: list[bool] | None = None,
) -> Joined:
    n = len(ids)
    return store.join(
        ids,
        np.asarray(ts, dtype=np.float64),
        np.asarray(labels if labels is not None else [1.0] * n, dtype=np.float64),
        sources if sources is not None else ["chargeback"] * n,
        np.asarray(overrides if overrides is not None else [False] * n, dtype=bool),
    )


def accounted(store: JoinStore) -> int:
    return (
        store.joined
        + store.unknown
        + store.expired
        + store.evicted_labels
        + store.duplicate
        + store.pending
    )


# -- joining -----------------------------------------------------------------------------------


def test_join_returns_prediction_and_feedback_columns_with_delays() -> None:
    store = JoinStore()
    predictions = {
        "a": (1_000.0, 0.10, "v1", [0, 1, 4]),
        "b": (1_010.0, 0.80, "v2", [0, 2, 5]),
        "c": (1_020.0, 0.55, "v2", [0, 3, 4]),
    }
    ids = list(predictions)
    add(
        store,
        ids,
        [p[0] for p in predictions.values()],
        [p[1] for p in predictions.values()],
        [p[2] for p in predictions.values()],
        [p[3] for p in predictions.values()],
    )
    feedback = [  # event id, feedback ts, label, source, override
        ("c", 1_020.5, 0.0, "click", False),
        ("a", 1_000.0 + 7 * 86_400, 1.0, "chargeback", False),
        ("b", 1_010.0 + 3_600, 1.0, "review", True),
    ]
    joined = label(
        store,
        [f[0] for f in feedback],
        [f[1] for f in feedback],
        [f[2] for f in feedback],
        [f[3] for f in feedback],
        [f[4] for f in feedback],
    )
    assert joined.event_id == ("c", "a", "b")
    assert joined.prediction_ts.tolist() == [predictions[f[0]][0] for f in feedback]
    assert joined.feedback_ts.tolist() == [f[1] for f in feedback]
    assert joined.delay_s.tolist() == [f[1] - predictions[f[0]][0] for f in feedback]
    assert joined.delay_s.tolist() == [0.5, 604_800.0, 3_600.0]
    assert joined.score.tolist() == [0.55, 0.10, 0.80]
    assert joined.label.tolist() == [0.0, 1.0, 1.0]
    assert joined.source == ("click", "chargeback", "review")
    assert joined.override.tolist() == [False, False, True]
    assert joined.version == ("v2", "v1", "v2")
    assert joined.model == ("", "", "")
    assert joined.scopes.tolist() == [[0, 3, 4], [0, 1, 4], [0, 2, 5]]
    assert joined.scopes.dtype == np.intp
    assert (joined.unknown, joined.expired, joined.evicted, joined.duplicate) == (0, 0, 0, 0)
    assert (store.joined, store.size, store.pending) == (3, 3, 0)

    bounds, cumulative, total = store.delay_histogram()
    delays = np.array([0.5, 604_800.0, 3_600.0])
    expected = [int((delays <= b).sum()) for b in DELAY_BUCKETS_S] + [3]
    assert bounds[-1] == np.inf and bounds[:-1].tolist() == list(DELAY_BUCKETS_S)
    assert cumulative.tolist() == expected
    assert total == pytest.approx(delays.sum())
    assert np.all(np.diff(bounds[:-1]) > 0)


def test_second_label_for_the_same_source_is_a_duplicate() -> None:
    store = JoinStore()
    add(store, ["a", "b"], [0.0, 1.0])
    first = label(store, ["a", "a", "b"], [10.0, 11.0, 12.0], sources=["click"] * 3)
    assert first.event_id == ("a", "b") and first.duplicate == 1
    again = label(store, ["a", "a", "b"], [20.0, 21.0, 22.0], sources=["click", "chargeback", "x"])
    # a/click was labelled already; a/chargeback and b/x are new sources.
    assert again.event_id == ("a", "b") and again.source == ("chargeback", "x")
    assert again.duplicate == 1
    assert (store.joined, store.duplicate) == (4, 2)


def test_many_sources_share_one_duplicate_slot_beyond_the_limit() -> None:
    store = JoinStore()
    add(store, ["a"], [0.0])
    sources = [f"s{i}" for i in range(20)]
    joined = label(store, ["a"] * 20, [1.0] * 20, sources=sources)
    # 15 sources are told apart; the 16th joins on the shared slot, the rest are duplicates.
    assert len(joined) == 16 and joined.duplicate == 4


def test_unknown_labels_and_feedback_before_its_prediction() -> None:
    store = JoinStore(grace_s=300.0)
    add(store, ["p0"], [10_000.0])
    # Far behind the clock: its prediction is not coming; counted at once.
    stale = label(store, ["ghost"], [9_000.0])
    assert stale.unknown == 1 and store.pending == 0
    # Within grace of the clock: it waits.
    early = label(store, ["early", "never", "early"], [10_050.0, 10_060.0, 10_055.0])
    assert len(early) == 0 and early.unknown == 0 and store.pending == 3
    # Its prediction arrives (before the clock passes 10_050 + 300): joined then.
    resolved = add(store, ["early"], [10_040.0], scores=[0.7])
    assert resolved.event_id == ("early",)
    assert resolved.delay_s.tolist() == [10_050.0 - 10_040.0]
    assert resolved.score.tolist() == [0.7]
    assert resolved.duplicate == 1  # the second pending label from the same source
    assert store.pending == 1
    # The clock passes 10_060 + 300: "never" is given up as unknown.
    assert add(store, ["p1"], [10_360.0]).unknown == 0
    gone = add(store, ["p2"], [10_361.0])
    assert gone.unknown == 1 and store.pending == 0
    # A prediction arriving after its label was given up does not join it.
    late = add(store, ["never"], [10_062.0])
    assert len(late) == 0
    assert (store.joined, store.unknown, store.duplicate) == (1, 2, 1)
    assert accounted(store) == 4


def test_pending_buffer_is_bounded() -> None:
    store = JoinStore(max_pending=3)
    add(store, ["p"], [0.0])
    joined = label(store, ["x1", "x2", "x3", "x4", "x5"], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert store.pending == 3 and joined.unknown == 2
    # The oldest were dropped: x1 and x2 no longer join, x3 does.
    resolved = add(store, ["x1", "x2", "x3"], [1.0, 2.0, 3.0])
    assert resolved.event_id == ("x3",)
    assert accounted(store) == 5


def test_expiry_by_horizon() -> None:
    store = JoinStore(horizon_s=1_000.0)
    add(store, ["a", "a2", "edge", "b", "c"], [0.0, 599.5, 600.0, 700.0, 1_600.0])
    # Cutoff 1_600 - 1_000 = 600: a and a2 are older, edge (exactly 600) is not.
    assert (store.size, store.expired_entries, store.evicted) == (3, 2, 0)
    # An out-of-order prediction behind the horizon is stored but never joins.
    add(store, ["d"], [100.0])
    joined = label(store, ["a", "b", "d", "edge"], [1_700.0] * 4)
    assert joined.event_id == ("b", "edge")
    assert (joined.expired, joined.unknown, joined.evicted) == (2, 0, 0)
    # The clock moves on: edge, b and c expire; d goes with them once at the head.
    add(store, ["e", "f"], [2_500.0, 3_000.0])  # (steps within the horizon: see below)
    assert store.size == 2 and store.expired_entries == 6
    assert label(store, ["c"], [3_001.0]).expired == 1
    assert (store.expired, store.joined) == (3, 2)


def test_one_prediction_far_in_the_future_expires_nothing() -> None:
    store = JoinStore(horizon_s=1_000.0)
    add(store, ["a", "b"], [100.0, 200.0])
    # a broken producer clock, a century ahead: stored, but the clock stays
    add(store, ["future"], [200.0 + 100 * 365 * 86_400])
    assert store.clock == 200.0 and store.expired_entries == 0
    add(store, ["c"], [300.0])
    assert label(store, ["a", "b", "c", "future"], [400.0] * 4).event_id == (
        "a",
        "b",
        "c",
        "future",
    )
    assert store.expired == store.unknown == 0


def test_a_stream_that_resumes_after_a_long_gap_moves_the_clock_at_its_second_event() -> None:
    store = JoinStore(horizon_s=1_000.0)
    add(store, ["a", "b"], [100.0, 200.0])
    gap = 60 * 86_400.0
    add(store, ["c"], [gap])
    assert store.clock == 200.0 and store.size == 3
    add(store, ["d"], [gap + 5])  # confirms the leap: a and b are now past the horizon
    assert store.clock == gap + 5
    assert store.expired_entries == 2
    assert label(store, ["a", "c", "d"], [gap + 10] * 3).event_id == ("c", "d")


def test_eviction_at_max_entries() -> None:
    store = JoinStore(max_entries=3)
    add(store, [f"p{i}" for i in range(5)], [float(i) for i in range(5)])
    assert (store.size, store.evicted, store.expired_entries) == (3, 2, 0)
    joined = label(store, ["p0", "p1", "p2", "p4", "zz"], [10.0] * 5)
    assert joined.event_id == ("p2", "p4")
    assert (joined.evicted, joined.unknown, joined.expired) == (2, 0, 0)
    assert store.pending == 1  # "zz" may still come
    assert store.evicted_labels == 2


def test_repeated_predictions_are_ignored() -> None:
    store = JoinStore()
    add(store, ["a", "b", "a"], [0.0, 1.0, 2.0], scores=[0.1, 0.2, 0.9])
    assert (store.size, store.repeated) == (2, 1)
    assert label(store, ["a"], [5.0]).score.tolist() == [0.1]


def test_shared_store_across_models_pads_scope_rows() -> None:
    store = JoinStore()
    add(store, ["f1"], [0.0], versions=["3"], scopes=[[0, 2]], models=["fraud"])
    add(store, ["c1"], [1.0], versions=["7"], scopes=[[0, 1, 5, 9]], models=["churn"])
    joined = label(store, ["f1", "c1"], [2.0, 3.0])
    assert joined.model == ("fraud", "churn") and joined.version == ("3", "7")
    assert joined.scopes.tolist() == [[0, 2, -1, -1], [0, 1, 5, 9]]
    fraud = joined.take(np.array(joined.model) == "fraud")
    assert fraud.event_id == ("f1",) and fraud.scopes.shape == (1, 4)
    both = Joined.concat([fraud, joined.take([1])])
    assert both.event_id == ("f1", "c1")


def test_tombstones_remember_about_max_entries_removals() -> None:
    store = JoinStore(max_entries=2_000, horizon_s=1e12)
    n = 20_000
    for start in range(0, n, 1_000):
        add(
            store, [f"p{i}" for i in range(start, start + 1_000)], list(range(start, start + 1_000))
        )
    assert store.evicted == n - 2_000
    recent = label(store, [f"p{i}" for i in range(n - 4_000, n - 2_000)], [n + 1.0] * 2_000)
    assert recent.evicted == 2_000
    old = label(store, [f"p{i}" for i in range(0, 1_000)], [n + 1.0] * 1_000)
    assert old.evicted == 0 and store.pending == 1_000  # forgotten: may still come


def test_id_hash_does_not_depend_on_the_batch() -> None:
    alone = _id_hashes(["a"]).tolist() + _id_hashes(["é-long-event-id-0001"]).tolist()
    together = _id_hashes(["a", "é-long-event-id-0001"]).tolist()
    assert alone == together
    assert len(set(_id_hashes([f"p-{i}" for i in range(100_000)]).tolist())) == 100_000


# -- memory ------------------------------------------------------------------------------------


def fill(store: JoinStore, n: int, width: int = 9, batch: int = 5_000) -> None:
    scores = np.full(batch, 0.5)
    scopes = np.zeros((batch, width), dtype=np.intp)
    versions = ["v1"] * batch
    for start in range(0, n, batch):
        ids = [f"evt-{i:09d}" for i in range(start, start + batch)]
        ts = np.arange(start, start + batch, dtype=np.float64)
        store.add_predictions(ids, ts, scores, versions, scopes)


def test_a_million_unlabelled_predictions_stay_within_max_entries() -> None:
    store = JoinStore(max_entries=100_000)
    started = time.perf_counter()
    fill(store, 1_000_000)
    elapsed = time.perf_counter() - started
    assert (store.size, store.evicted, store.pending) == (100_000, 900_000, 0)
    # numpy columns: ts, score (8 + 8), model, version, sources (2 + 2 + 2), 9 scopes x 2;
    # tombstones: 9 bytes each for at most max_entries + one batch of removals.
    columns = 100_000 * (8 + 8 + 2 + 2 + 2 + 9 * 2)
    assert columns <= store.nbytes <= columns + 9 * (100_000 + 5_000)
    assert elapsed < 15.0  # about 1.5 µs a prediction on one core


def test_memory_per_entry_is_bounded_and_linear() -> None:
    def measured(max_entries: int) -> int:
        ids_held = [f"evt-{i:09d}" for i in range(2 * max_entries)]  # allocated untraced
        tracemalloc.start()
        store = JoinStore(max_entries=max_entries)
        for start in range(0, len(ids_held), 2_000):
            part = ids_held[start : start + 2_000]
            store.add_predictions(
                part,
                np.arange(start, start + len(part), dtype=np.float64),
                np.full(len(part), 0.5),
                ["v1"] * len(part),
                np.zeros((len(part), 9), dtype=np.intp),
            )
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert store.size == max_entries
        # The store holds its ids; their strings were allocated before tracing started.
        strings = sum(len(i) + 49 for i in store._entries._ids)
        return current + strings

    small, large = measured(10_000), measured(20_000)
    per_entry_small, per_entry_large = small / 10_000, large / 20_000
    assert per_entry_large < 300  # ~200 bytes an entry: 1,000,000 entries in ~200 MB
    assert per_entry_large == pytest.approx(per_entry_small, rel=0.25)


# -- batches, checkpoints, settings ------------------------------------------------------------

ids_st = st.sampled_from([f"e{i}" for i in range(8)])
add_op = st.tuples(
    st.just("add"),
    st.lists(
        st.tuples(ids_st, st.integers(0, 40), st.sampled_from(["v1", "v2"]), st.integers(0, 3)),
        min_size=1,
        max_size=6,
    ),
)
join_op = st.tuples(
    st.just("join"),
    st.lists(
        st.tuples(ids_st, st.integers(0, 40), st.sampled_from(["click", "cb"]), st.booleans()),
        min_size=1,
        max_size=6,
    ),
)
operations = st.lists(st.one_of(add_op, join_op), min_size=1, max_size=12)


def apply(store: JoinStore, op: tuple[str, list[tuple[Any, ...]]]) -> Joined:
    kind, rows = op
    if kind == "add":
        return add(
            store,
            [r[0] for r in rows],
            [float(r[1]) * 10 for r in rows],
            [r[3] / 4 for r in rows],
            [r[2] for r in rows],
            [[0, r[3]] for r in rows],
        )
    return label(
        store,
        [r[0] for r in rows],
        [float(r[1]) * 10 for r in rows],
        [float(r[3]) for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


def assert_same_store(a: JoinStore, b: JoinStore) -> None:
    """Both hold the same, whatever spare room and stale slots their rings of columns
    have: the clock, the names, the live predictions oldest first, the labels waiting,
    the tombstones, the counters and the delays (NaN scores equal to NaN)."""

    def held(store: JoinStore) -> dict[str, Any]:
        entries = store._entries
        live = np.arange(entries._first, entries._end) % max(entries._capacity, 1)
        columns = ("_ts", "_score", "_model", "_version", "_labelled", "_scopes")
        return {
            "clock": (entries.clock, entries._leap, entries.width),
            "names": (entries._models.index, entries._versions.index, store._sources._bits),
            "ids": list(entries._ids),
            **{name: getattr(entries, name)[live] for name in columns},
            "pending": list(store._pending._rows.values()),
            "tombstones": (list(store._tombstones._chunks), store._tombstones._open),
            "counts": store._counts,
            "delays": store._delays.cumulative(),
        }

    np.testing.assert_equal(held(a), held(b))


def columns(joined: Joined) -> tuple[Any, ...]:
    return (
        joined.event_id,
        joined.model,
        joined.version,
        joined.prediction_ts.tolist(),
        joined.feedback_ts.tolist(),
        joined.delay_s.tolist(),
        joined.score.tolist(),
        joined.label.tolist(),
        joined.source,
        joined.override.tolist(),
        joined.scopes.tolist(),
        (joined.unknown, joined.expired, joined.evicted, joined.duplicate),
    )


@FAST
@given(
    ops=operations,
    max_entries=st.integers(1, 6),
    horizon=st.sampled_from([50.0, 200.0, 1e9]),
    grace=st.sampled_from([0.0, 30.0, 100.0]),
)
def test_batch_equals_per_event(
    ops: list[tuple[str, list[tuple[Any, ...]]]], max_entries: int, horizon: float, grace: float
) -> None:
    batched = JoinStore(max_entries=max_entries, horizon_s=horizon, grace_s=grace, max_pending=4)
    single = JoinStore(max_entries=max_entries, horizon_s=horizon, grace_s=grace, max_pending=4)
    fed = 0
    for op in ops:
        whole = apply(batched, op)
        parts = [apply(single, (op[0], [row])) for row in op[1]]
        assert columns(whole) == columns(Joined.concat(parts))
        fed += len(op[1]) if op[0] == "join" else 0
    assert_same_store(batched, single)
    assert accounted(batched) == fed
    assert batched.size <= max_entries and batched.pending <= 4


@FAST
@given(before=operations, after=operations)
def test_checkpoint_round_trip_continues_identically(
    before: list[tuple[str, list[tuple[Any, ...]]]], after: list[tuple[str, list[tuple[Any, ...]]]]
) -> None:
    store = JoinStore(max_entries=4, horizon_s=200.0, grace_s=30.0)
    for op in before:
        apply(store, op)
    restored = through_state_codec(store)
    assert_same_store(restored, store)
    for op in after:
        assert columns(apply(store, op)) == columns(apply(restored, op))
    assert_same_store(restored, store)


def test_checkpoint_keeps_tombstone_chunks_and_nan_scores() -> None:
    store = JoinStore(max_entries=1_000)
    fill(store, 5_000, width=2, batch=1_000)
    add(store, ["nan"], [6_000.0], scores=[float("nan")], scopes=[[0, 1]])
    restored = through_state_codec(store)
    ids = ["evt-000003500", "evt-000004500", "nan"]
    a, b = label(store, ids, [7_000.0] * 3), label(restored, ids, [7_000.0] * 3)
    assert columns(a)[:3] == columns(b)[:3] and (a.evicted, b.evicted) == (1, 1)
    assert np.isnan(b.score).tolist() == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_entries": 0}, "max_entries must be an int >= 1"),
        ({"max_entries": 2.5}, "max_entries"),
        ({"horizon_s": 0}, "horizon_s must be a finite number of seconds > 0"),
        ({"horizon_s": float("inf")}, "horizon_s"),
        ({"grace_s": -1}, "grace_s must be a finite number of seconds >= 0"),
        ({"max_pending": 0}, "max_pending"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JoinStore(**kwargs)


def test_columns_are_validated() -> None:
    store = JoinStore()
    with pytest.raises(ValueError, match="scopes"):
        store.add_predictions(["a"], np.zeros(1), np.zeros(1), ["v"], np.zeros(1, dtype=np.intp))
    with pytest.raises(ValueError, match="ts must be finite"):
        add(store, ["a"], [float("nan")])
    with pytest.raises(ValueError, match="labels"):
        store.join(["a"], np.zeros(1), np.zeros(2), ["s"], np.zeros(1, dtype=bool))
