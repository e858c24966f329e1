"""The state codec: every class a real engine holds is allowed, state and sharing survive
a round trip, and nothing but validated records of allowed classes is ever built."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import pickle
import random
from collections import Counter, OrderedDict, deque
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from detectors.monitor import ModelMonitor
from detectors.monitor.config import MonitorConfig
from detectors.score_change import ScopedADWIN
from streamer.checkpoint_directory import CheckpointDirectory
from streamer.checkpoint_format import FORMAT, MAGIC, decode, encode
from streamer.engine import Engine, InputRecord
from streamer.state.codec import Decoder, Encoder
from streamer.state.migrations import STATE_VERSION, migrate, new_id, records_of
from streamer.state.payload import dumps, loads
from streamer.state.registry import REGISTRY
from tests.support import (
    amount_batch,
    fingerprint_of,
    run_batches,
    scenario_records,
    small_engine,
)

# Labels, cohorts, a deployment and upstream faults: every part of a monitor in use.
SCENARIO = ["concept", "cohort_concept", "deployment_regression", "frozen", "rescaled"]


def _two_partitions(records: list[InputRecord]) -> list[InputRecord]:
    """The records spread over two partitions, so that the merge holds events back."""
    offsets = [0, 0]
    out = []
    for i, record in enumerate(records):
        partition = i % 2
        out.append(record._replace(partition=partition, offset=offsets[partition]))
        offsets[partition] += 1
    return out


def _feed(engine: Engine, records: list[InputRecord]) -> list[Any]:
    """Partition 1 one batch behind partition 0: the merge buffers what 0 is ahead by."""
    decisions = []
    for start in range(0, len(records), 2_000):
        batch = records[start : start + 2_000]
        decisions += engine.process([r for r in batch if r.partition == 0]).decisions
        decisions += engine.process([r for r in batch if r.partition == 1]).decisions
    return decisions


@pytest.fixture
def engine_and_rest() -> tuple[Engine, list[InputRecord]]:
    """An engine 24,000 records into the stream (the changes start at the 15,000th
    prediction; decisions come from the 28,000th record on), partition 1 lagging."""
    records = _two_partitions(scenario_records(SCENARIO, 30_000))
    engine = small_engine()
    cut = 24_000
    _feed(engine, records[:cut])
    engine.process([r for r in records[cut : cut + 1_000] if r.partition == 0])
    return engine, records[cut:]


def test_every_class_a_real_engine_holds_is_registered(engine_and_rest) -> None:
    engine, _ = engine_and_rest
    missing: set[str] = set()
    Encoder(REGISTRY, missing).encode(engine)
    assert not missing, f"add to streamer.state.registry.STATE_MODULES: {sorted(missing)}"
    (monitor,) = engine.monitors.values()
    assert monitor.deployments is not None and monitor.outcomes is not None
    assert engine.order.buffered > 0 and engine.join.size > 0


def test_the_state_and_its_sharing_survive_and_go_on_alike(engine_and_rest) -> None:
    engine, rest = engine_and_rest
    data = dumps(engine)
    restored = loads(data)
    assert isinstance(restored, Engine)
    # the same records, "ref"s included: every object reached twice is one object again
    assert dumps(restored) == data
    (model,) = engine.monitors
    monitor, twin = engine.monitors[model], restored.monitors[model]
    assert twin.config is restored.monitor_config  # shared in the original too
    assert monitor.config is engine.monitor_config
    assert twin.features is not monitor.features
    assert monitor.deployments.scopes is monitor.scopes  # one CohortScopes, before...
    assert twin.deployments.scopes is twin.scopes  # ...and after
    lagging = [r for r in rest[:1_000] if r.partition == 1]
    expected = [*engine.process(lagging).decisions, *_feed(engine, rest[1_000:]), *engine.flush()]
    got = [*restored.process(lagging).decisions, *_feed(restored, rest[1_000:]), *restored.flush()]
    assert {d.cause for d in expected} >= {"frozen_signal", "concept_drift"}
    assert [d.to_dict() for d in got] == [d.to_dict() for d in expected]
    assert dumps(restored) == dumps(engine)


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float


class Slotted:
    __slots__ = ("a", "b")


class Plain:
    def __init__(self) -> None:
        raise AssertionError("never called when read")


TEST_REGISTRY = {f"{__name__}.{c.__qualname__}": c for c in (Point, Slotted, Plain)}


def _round_trip(value: object) -> Any:
    data = msgpack.packb(Encoder(TEST_REGISTRY).encode(value), use_bin_type=True)
    return Decoder(TEST_REGISTRY).decode(msgpack.unpackb(data, raw=False))


def test_values_of_every_kind_come_back_as_they_were() -> None:
    plain = object.__new__(Plain)
    slotted = Slotted()
    slotted.a = Point(1.0, -math.inf)
    plain.__dict__.update(point=slotted.a, slotted=slotted, me=plain)
    value = {
        "scalars": [None, True, 0, -(2**63), 2**64 - 1, 2**70, -(2**70), 1.5, "é", b"\x00\xff"],
        "floats": (math.inf, -math.inf, 0.0, -0.0),
        "ints": ([1, 2**70], {"big": -(2**65), "small": 3}, deque([2**64, 0])),
        "sets": [{(1, "a"), (2, "b")}, frozenset({"x"})],
        "keys": {("t", 0): 5, 3: "int", None: [], 2.5: ()},
        "counter": Counter({("a", "b"): 3}),
        "odict": OrderedDict([("b", 1), ("a", 2)]),
        "deque": deque([1, 2, 3], maxlen=5),
        "arrays": [
            np.arange(6, dtype=np.int64).reshape(2, 3),
            np.array([True, False]),
            np.arange(10.0)[::3],  # not contiguous
            np.array([1.0, 2.0], dtype=">f8"),  # big-endian in, native out
            np.zeros((0, 4), dtype=np.float32),
            np.array(7, dtype=np.uint16),
        ],
        "np scalars": [np.float64(0.1), np.int32(-4), np.bool_(True)],
        "plain": plain,
    }
    got = _round_trip(value)
    assert got["scalars"] == value["scalars"] and got["sets"] == value["sets"]
    assert got["ints"] == value["ints"]
    assert [math.copysign(1, f) for f in got["floats"]] == [1, -1, 1, -1]
    assert got["floats"][:2] == (math.inf, -math.inf) and type(got["floats"]) is tuple
    assert math.isnan(_round_trip(math.nan))
    assert got["keys"] == value["keys"]
    assert type(got["counter"]) is Counter and got["counter"] == value["counter"]
    assert list(got["odict"].items()) == [("b", 1), ("a", 2)]
    assert got["deque"] == deque([1, 2, 3]) and got["deque"].maxlen == 5
    for before, after in zip(value["arrays"], got["arrays"], strict=True):
        assert after.shape == before.shape and np.array_equal(after, before)
        assert after.dtype == before.dtype.newbyteorder("=") and after.flags.writeable
    assert [type(v) for v in got["np scalars"]] == [np.float64, np.int32, np.bool_]
    copy = got["plain"]
    assert type(copy) is Plain and copy.me is copy  # a cycle
    assert copy.point is copy.slotted.a and copy.point == Point(1.0, -math.inf)
    assert not hasattr(copy.slotted, "b")


def test_an_object_array_or_an_unregistered_class_is_never_written() -> None:
    with pytest.raises(TypeError, match="object arrays"):
        Encoder(TEST_REGISTRY).encode(np.array([object()], dtype=object))
    with pytest.raises(TypeError, match="not registered"):
        Encoder(TEST_REGISTRY).encode([Counter, lambda: 1])
    missing: set[str] = set()
    Encoder(TEST_REGISTRY, missing).encode({"f": os.path.join, "p": Path("x")})
    assert missing == {"builtins.function", "pathlib.PosixPath"}


@pytest.mark.parametrize(
    ("tree", "says"),
    [
        (["obj", 0, "os.system", {}], "not one driftgate's state holds"),
        (["obj", 0, "builtins.type", {}], "not one driftgate's state holds"),
        (["obj", 0, f"{__name__}.Point", {"x": 1.0}], "lacks y"),
        (["obj", 0, f"{__name__}.Slotted", {"c": 1}], "has no field 'c'"),
        (["obj", 0, f"{__name__}.Plain", {"__class__": 1}], "named '__class__'"),
        (["nd", 0, "|O", [1], b"\x00" * 8], "dtype '|O'"),
        (["nd", 0, "<f8", [2], b"\x00" * 8], "with 8 bytes"),
        (["nd", 0, "<f8", [-1], b""], "malformed shape"),
        (["ref", 3], "no object read before it"),
        (["list", 0, [["ref", 0], ["tuple", 1, [["ref", 1]]]]], "no object read before"),
        (["reduce", 0, "os.system", ["ls"]], "unknown record 'reduce'"),
        (["set", 0, [["list", 1, []]]], "unhashable"),
        (["pairs", 0, [1]], "odd number"),
        ({"a": 1}, "is no record"),
        (["adwin", 0, {"delta": 0.1}], "exactly its fields"),
        (["bigint", "12ab"], "malformed big integer"),
    ],
)
def test_a_record_that_is_not_as_written_is_refused(tree: object, says: str) -> None:
    with pytest.raises(ValueError, match=rf"^not a driftgate checkpoint: .*{says}"):
        Decoder(TEST_REGISTRY).decode(tree)


def test_river_adwin_resumes_from_its_fields_and_refuses_broken_ones() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 1, 3_000), rng.normal(1.5, 1, 3_000)])
    scopes = np.zeros((len(values), 1), dtype=np.intp)
    ts = np.arange(len(values), dtype=np.float64)
    straight, detector = ScopedADWIN(n_scopes=1), ScopedADWIN(n_scopes=1)
    half = len(values) // 2 - 500
    straight.update(values[:half], scopes[:half], ts[:half])
    detector.update(values[:half], scopes[:half], ts[:half])
    tree = msgpack.unpackb(dumps(detector), raw=False)
    (window,) = [v for v in _records(tree) if v[0] == "adwin"]
    assert window[2]["width"] == half and len(window[2]["buckets"]) > 1
    restored = loads(msgpack.packb(tree, use_bin_type=True))
    assert isinstance(restored, ScopedADWIN)
    expected = straight.update(values[half:], scopes[half:], ts[half:])
    assert expected and restored.update(values[half:], scopes[half:], ts[half:]) == expected
    for broken in ({"totals": [1.0]}, {"current_idx": 6}, {"max_size": 5.0}, {"max_size": 2**40}):
        bucket = window[2]["buckets"][0]
        window[2]["buckets"][0] = {**bucket, **broken}
        with pytest.raises(ValueError, match=r"not a driftgate checkpoint: .*ADWIN bucket"):
            loads(msgpack.packb(tree, use_bin_type=True))
        window[2]["buckets"][0] = bucket


def _records(tree: Any) -> list[Any]:
    out, stack = [], [tree]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            if value and isinstance(value[0], str):
                out.append(value)
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return out


def test_a_migration_brings_an_older_state_format_up_to_date() -> None:
    # Version 0, a test's own: Point had no y then; migration 0 -> 1 adds it.
    old = ["list", 0, [["obj", 1, f"{__name__}.Point", {"x": 1.0}], ["dict", 2, {}]]]

    def add_y(tree: Any) -> Any:
        for fields in records_of(tree, f"{__name__}.Point"):
            fields.setdefault("y", 0.0)
        tree[2][1][2]["note"] = ["list", new_id(tree), []]
        return tree

    with pytest.raises(ValueError, match="lacks y"):
        Decoder(TEST_REGISTRY).decode(old)
    tree = migrate(old, 0, {0: add_y}, current=1)
    assert Decoder(TEST_REGISTRY).decode(tree) == [Point(1.0, 0.0), {"note": []}]
    assert migrate(["list", 0, []], STATE_VERSION) == ["list", 0, []]  # nothing to do
    with pytest.raises(ValueError, match="no migration from state format 0 to 1"):
        migrate(old, 0, {}, current=1)
    with pytest.raises(ValueError, match="newer driftgate"):
        migrate(old, STATE_VERSION + 1)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_file_that_would_run_code_if_unpickled_is_never_run(tmp_path: Path, caplog) -> None:
    marker = tmp_path / "ran"
    evil = pickle.dumps(_RunsCode(marker))
    engine = small_engine()
    run_batches(engine, scenario_records(["concept"], 3_000))
    genuine = encode(engine, engine.positions, 1.0)
    end = genuine.index(b"\n", len(MAGIC))
    header = genuine[len(MAGIC) : end].decode()
    fields = json.loads(header)
    crafted = {
        "bare pickle": evil,
        "pickle behind a format 5 header": MAGIC
        + json.dumps(
            {**fields, "bytes": len(evil), "sha256": hashlib.sha256(evil).hexdigest()}
        ).encode()
        + b"\n"
        + evil,
        "pickle behind a format 4 header": MAGIC
        + json.dumps({**fields, "format": 4}).encode()
        + b"\n"
        + evil,
    }
    for name, data in crafted.items():
        with pytest.raises(ValueError) as caught:
            decode(data, fingerprint_of(engine))
        assert "not a driftgate checkpoint" in str(caught.value) or "a pickle" in str(
            caught.value
        ), name
        (tmp_path / "g.ckpt").write_bytes(data)
        assert CheckpointDirectory(tmp_path).load("g", fingerprint_of(engine)) is None
    assert "format 4 is a pickle" in caplog.text and "state restarts" in caplog.text
    assert not marker.exists(), "a crafted checkpoint ran code"
    assert fields["format"] == FORMAT
    pickle.loads(evil)  # what pickle would have done with any of them
    assert marker.exists()


def test_a_damaged_state_is_refused_as_not_a_checkpoint_and_nothing_else() -> None:
    engine = small_engine()
    run_batches(engine, scenario_records(["concept"], 3_000))
    payload = dumps(engine)
    paths = _paths(msgpack.unpackb(payload, raw=False), ())
    rng = random.Random(0)
    junk = [None, -1, 2**63, math.nan, "x", b"\x00" * 8, [], {}, ["ref", 0], ["list", 0, []]]
    junk.append(["obj", 10**6, "detectors.binning.NumericBins", {}])
    for _ in range(60):
        tree = msgpack.unpackb(payload, raw=False)
        for path in sorted(rng.sample(paths, 3), key=len, reverse=True):
            parent = tree  # deepest first: an earlier pick does not cut a later one's path
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = rng.choice(junk)
        try:
            loads(msgpack.packb(tree, use_bin_type=True))
        except ValueError as exc:
            assert str(exc).startswith("not a driftgate checkpoint: ")
    for _ in range(60):
        damaged = bytearray(payload)
        for _ in range(5):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            loads(bytes(damaged))
        except ValueError as exc:
            assert str(exc).startswith("not a driftgate checkpoint: ")


def _paths(value: Any, at: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Where in a record tree a damaged file may hold junk: every item of a record or a
    fields dict, but for the rows of long columns (they would be most of the picks)."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list) and (len(value) < 50 or isinstance(value[0], str)):
        items = list(enumerate(value))
    else:
        return []
    out = []
    for key, item in items:
        out.append((*at, key))
        if isinstance(item, (list, dict)):
            out.extend(_paths(item, (*at, key)))
    return out


def test_state_format_3_gains_the_first_weeks_reported_and_the_first_days_blind() -> None:
    # One prediction a second, 20,000 of them: the first day and week are being sampled.
    monitor = ModelMonitor("m", MonitorConfig())
    monitor.update(amount_batch(np.arange(20_000, dtype=float), np.full(20_000, 3.0)))
    assert monitor._first_day is not None and monitor._first_day.blind.all()
    tree = Encoder(REGISTRY).encode(monitor)
    (week,) = records_of(tree, "detectors.monitor.first_week.FirstWeek")
    (day,) = records_of(tree, "detectors.monitor.first_day.FirstDay")
    del week["reported"], day["blind"], day["_moved"]  # as state format 3 wrote them
    before = Decoder(REGISTRY).decode(copy.deepcopy(tree))
    assert not hasattr(before._first_week, "reported") and not hasattr(before._first_day, "blind")
    restored = Decoder(REGISTRY).decode(migrate(_as_format_5_adwin(tree), 3))
    assert restored._first_week.reported == set()
    assert restored._first_day.blind.tolist() == [False]  # the test of speed, as before
    assert {k: v.tolist() for k, v in restored._first_day._moved.items()} == {"amount": [False]}


def test_state_format_4_gains_the_features_suspect_slots() -> None:
    monitor = ModelMonitor("m", MonitorConfig())
    monitor.update(amount_batch(np.arange(20_000, dtype=float), np.full(20_000, 3.0)))
    tree = Encoder(REGISTRY).encode(monitor)
    (feature,) = records_of(tree, "detectors.monitor.feature_drift.FeatureDrift")
    (day,) = records_of(tree, "detectors.monitor.first_day.FirstDay")
    # As state format 4 wrote them:
    del feature["suspect_slots"], feature["suspect_confirmed"], day["_first_deferred"]
    with pytest.raises(ValueError, match="lacks suspect_confirmed, suspect_slots"):
        Decoder(REGISTRY).decode(copy.deepcopy(tree))
    restored = Decoder(REGISTRY).decode(migrate(_as_format_5_adwin(tree), 4))
    amount = restored.features["amount"]
    assert amount.suspect_slots is None and amount.suspect_confirmed is False
    assert np.isnan(restored._first_day._first_deferred["amount"]).tolist() == [True]


def _as_format_5_adwin(tree: Any) -> Any:
    """The tree with each ADWIN per scope as format 5 wrote it: river's ``drift.ADWIN``
    objects (its defaults, the window as ``_helper``) in ``_detectors``."""
    for fields in records_of(tree, "detectors.score_change.ScopedADWIN"):
        windows, fired = fields.pop("_windows"), fields.pop("_fired")
        wrapped = [
            [
                "obj",
                new_id(tree) + i,
                "river.drift.adwin.ADWIN",
                {
                    "_drift_detected": detected,
                    "delta": fields["delta"],
                    "clock": 32,
                    "max_buckets": 5,
                    "min_window_length": 5,
                    "grace_period": 10,
                    "_helper": window,
                },
            ]
            for i, (window, detected) in enumerate(zip(windows[2], fired[2], strict=True))
        ]
        fields["_detectors"] = ["list", windows[1], wrapped]
    return tree


def test_state_format_5_unwraps_river_adwin() -> None:
    # Scores that step: the detector fires, so a fired flag and a new window are kept.
    values = np.concatenate([np.full(3_000, 0.2), np.full(3_000, 0.8)])
    values += np.random.default_rng(0).normal(0.0, 0.05, values.size)
    scopes = (np.arange(values.size) % 2)[:, None]
    straight = ScopedADWIN(n_scopes=2)
    straight.update(values[:4_000], scopes[:4_000], np.arange(4_000.0))
    assert straight.detections.sum() > 0
    tree = _as_format_5_adwin(Encoder(REGISTRY).encode(straight))
    with pytest.raises(ValueError, match=r"river\.drift\.adwin\.ADWIN"):
        Decoder(REGISTRY).decode(copy.deepcopy(tree))  # not a class this driftgate builds
    restored = Decoder(REGISTRY).decode(migrate(tree, 5))
    rest = values[4_000:], scopes[4_000:], np.arange(4_000.0, 6_000.0)
    assert restored.update(*rest) == straight.update(*rest)
    assert restored.means().tolist() == straight.means().tolist()
    with pytest.raises(ValueError, match="an ADWIN per scope without its detectors"):
        migrate(Encoder(REGISTRY).encode(ScopedADWIN(n_scopes=1)), 5)
    damaged = _as_format_5_adwin(Encoder(REGISTRY).encode(ScopedADWIN(n_scopes=1)))
    (adwin,) = records_of(damaged, "river.drift.adwin.ADWIN")
    adwin["_drift_detected"] = None
    with pytest.raises(ValueError, match="an ADWIN without its detection flag"):
        migrate(damaged, 5)
