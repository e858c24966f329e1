from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.batch import PredictionBatch
from detectors.monitor import ModelMonitor, MonitorConfig
from streamer.config import load_settings
from streamer.errors import DriftgateError
from tests.support import feed

R = 2_000
WINDOW_S = 1_000.0
# About one event a second: windows of ~1,000 events.
CONFIG = MonitorConfig(
    reference_events=R,
    reference_span_s=0.0,
    window_s=WINDOW_S,
    min_window_events=100,
    min_reference_events=100,
)
# Not a multiple of WINDOW_S: the first window after the reference is a partial one.
T0 = 1_700_000_123.0


def make_stream(
    n: int,
    seed: int,
    *,
    shift_from: int | None = None,
    gap_at: int | None = None,
    gap_s: float = 0.0,
    burst: tuple[int, int] | None = None,
) -> PredictionBatch:
    """Whole-second event times 0-2 s apart (ties, rows exactly on window boundaries);
    after ``gap_at`` they jump ``gap_s``; within ``burst`` rows mostly share a second;
    from ``shift_from`` on, ``amount`` moves by one standard deviation."""
    rng = np.random.default_rng(seed)
    step = rng.integers(0, 3, n).astype(float)
    if burst is not None:
        step[burst[0] : burst[1]] = (rng.random(burst[1] - burst[0]) < 0.05).astype(float)
    if gap_at is not None:
        step[gap_at] += gap_s
    ts = T0 + np.cumsum(step)
    amount = rng.normal(0.0, 1.0, n)
    if shift_from is not None:
        amount[shift_from:] += 1.0
    return PredictionBatch(
        ts=ts,
        score=rng.beta(2, 5, n),
        model_version=["v1"] * n,
        cohorts={"region": rng.choice(["eu", "us", "apac"], n, p=[0.5, 0.3, 0.2]).tolist()},
        features={
            "amount": amount.tolist(),
            "age": rng.normal(40.0, 9.0, n).tolist(),
            "country": rng.choice(["DE", "FR", "IT"], n).tolist(),
        },
    )


def window_index(ts: np.ndarray) -> np.ndarray:
    return np.floor(ts / WINDOW_S)


def expected_closes(ts: np.ndarray) -> int:
    """Windows closed over rows ``ts`` (those after the reference): one whenever the
    largest event time so far enters a new window, whatever the gap."""
    return len(np.unique(np.maximum.accumulate(window_index(ts)))) - 1


# --- Batch independence ---

# Small enough that the burst fills windows before their time is up.
SPLIT = dataclasses.replace(CONFIG, window_max_events=1_500)


def split_stream(n: int, seed: int) -> PredictionBatch:
    return make_stream(
        n, seed, shift_from=5_000, gap_at=3_500, gap_s=3.5 * WINDOW_S, burst=(8_000, 10_000)
    )


@functools.lru_cache(maxsize=16)
def split_reference(n: int, seed: int) -> tuple[list[dict[str, Any]], int, list[int]]:
    monitor = ModelMonitor("m", SPLIT)
    decisions = monitor.update(split_stream(n, seed))
    return [d.to_dict() for d in decisions], monitor.windows, monitor.scope_events.tolist()


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(min_value=12_000, max_value=20_000),
    seed=st.sampled_from([1, 2]),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=40),
)
def test_any_batch_split_gives_the_same_decisions_and_windows(
    n: int, seed: int, cuts: list[int]
) -> None:
    decisions, windows, scope_events = split_reference(n, seed)
    # the stream has teeth: a confirmed shift, and windows closed by the cap in the burst
    assert ("investigate", "amount") in [(d["action"], d["scope"]["feature"]) for d in decisions]
    assert windows > expected_closes(split_stream(n, seed).ts[R:])
    monitor = ModelMonitor("m", SPLIT)
    got = feed(monitor, split_stream(n, seed), [min(c, n) for c in cuts])
    assert [d.to_dict() for d in got] == decisions
    assert monitor.windows == windows
    assert monitor.scope_events.tolist() == scope_events


# --- Behaviour ---


def test_stationary_stream_gives_no_decision() -> None:
    batch = make_stream(20_000, seed=11)
    monitor = ModelMonitor("m", CONFIG)
    assert monitor.update(batch) == []
    assert monitor.windows == expected_closes(batch.ts[R:]) >= 15
    # every scope was judged: the test is not vacuous
    for state in monitor.features.values():
        assert not np.isnan(state.pvalue[:4]).any()


def test_a_shift_is_decided_on_that_feature_with_its_event_time_window() -> None:
    batch = make_stream(20_000, seed=21)
    k = window_index(batch.ts)
    start = int(np.flatnonzero(k == k[R] + 5)[0])
    batch = make_stream(20_000, seed=21, shift_from=start)
    decisions = ModelMonitor("m", CONFIG).update(batch)
    assert [(d.action, d.cause, d.feature, d.cohort) for d in decisions] == [
        ("investigate", "covariate_drift", "amount", None)
    ]
    (d,) = decisions
    # confirmed on the 3rd shifted window: its first and last events, all its events
    confirming = np.flatnonzero(k == k[start] + CONFIG.persistence_windows - 1)
    assert d.window_start == float(batch.ts[confirming[0]])
    assert d.window_end == d.confirmed_at == d.ts == float(batch.ts[confirming[-1]])
    assert d.window_events == len(confirming)
    assert d.evidence["first_seen"] == float(batch.ts[start])


def test_windows_close_at_event_time_boundaries() -> None:
    batch = make_stream(6_000, seed=31)
    k = window_index(batch.ts)
    monitor = ModelMonitor("m", CONFIG)
    monitor.update(batch.slice(0, R))
    closes = []
    for i in range(R, len(batch)):
        before = monitor.windows
        monitor.update(batch.slice(i, i + 1))
        closes.extend([i] * (monitor.windows - before))
    # a row closes the window when it is in a later one, before it is taken
    assert closes == [i for i in range(R + 1, len(batch)) if k[i] > k[i - 1]]
    on_boundary = batch.ts[closes] % WINDOW_S == 0
    assert on_boundary.any()  # rows exactly at a window's end close it too


def test_a_gap_closes_one_window_and_opens_the_one_of_the_new_row() -> None:
    gap_at = 4_000
    batch = make_stream(8_000, seed=41, gap_at=gap_at, gap_s=5.5 * WINDOW_S)
    k = window_index(batch.ts)
    assert k[gap_at] - k[gap_at - 1] >= 5
    monitor = ModelMonitor("m", CONFIG)
    monitor.update(batch.slice(0, gap_at))
    before = monitor.windows
    monitor.update(batch.slice(gap_at, gap_at + 1))
    assert monitor.windows == before + 1
    # the new window is the gap row's: it closes at the first row of the next one
    following = int(np.flatnonzero(k > k[gap_at])[0])
    monitor.update(batch.slice(gap_at + 1, following))
    assert monitor.windows == before + 1
    monitor.update(batch.slice(following, following + 1))
    assert monitor.windows == before + 2


def test_late_rows_go_into_the_current_window_and_are_counted() -> None:
    batch = make_stream(12_000, seed=51, shift_from=5_000)
    rng = np.random.default_rng(52)
    late = np.sort(rng.choice(np.arange(R + 1_500, 12_000), 60, replace=False))
    ts = batch.ts.copy()
    ts[late] -= 1.5 * WINDOW_S
    batch = dataclasses.replace(batch, ts=ts)
    monitor = ModelMonitor("m", CONFIG)
    monitor.update(batch)
    assert monitor.windows == expected_closes(ts[R:])
    # a late row and the on-time row after it each enter another window, and close none
    assert monitor.windows < np.count_nonzero(np.diff(window_index(ts[R:])))
    # between two closes, every row (late ones included) is in the window
    watermark = np.maximum.accumulate(window_index(ts))
    opened = int(np.flatnonzero(watermark == watermark[late[0]])[0])
    closing = int(np.flatnonzero(watermark > watermark[late[0]])[0])
    assert np.any((late > opened) & (late < closing))
    stepped = ModelMonitor("m", CONFIG)
    stepped.update(batch.slice(0, closing))
    assert stepped.scope_events[0] == closing - opened
    # the same windows and decisions however the rows come
    per_event = ModelMonitor("m", CONFIG)
    decisions = feed(per_event, batch, list(range(R, len(batch))))
    assert per_event.windows == monitor.windows
    whole = ModelMonitor("m", CONFIG).update(batch)
    assert decisions and decisions == whole  # window start and end included


def test_a_far_future_event_does_not_stop_the_judging() -> None:
    n, hostile = 20_000, 5_000
    batch = make_stream(n, seed=61, shift_from=12_000)
    ts = batch.ts.copy()
    ts[hostile] = 4_000_000_000.0  # year 2096
    batch = dataclasses.replace(batch, ts=ts)
    config = dataclasses.replace(CONFIG, window_max_events=3_000)
    monitor = ModelMonitor("m", config)
    monitor.update(batch.slice(0, hostile))
    before = monitor.windows
    assert before == expected_closes(ts[R:hostile])
    monitor.update(batch.slice(hostile, hostile + 1))
    assert monitor.windows == before + 1  # the row is past the window's end
    recovered = hostile + config.window_max_events
    monitor.update(batch.slice(hostile + 1, recovered - 1))
    assert monitor.windows == before + 1
    monitor.update(batch.slice(recovered - 1, recovered))
    assert monitor.windows == before + 2  # full: closed, and judged
    decisions = monitor.update(batch.slice(recovered, n))
    # back on the events' own time: the windows of the rows after the full one
    assert monitor.windows == before + 2 + expected_closes(ts[recovered:])
    assert [(d.action, d.feature, d.cohort) for d in decisions] == [("investigate", "amount", None)]
    assert decisions[0].window_end < ts[hostile]
    # without the cap, no window would ever close again, and the shift go unnoticed
    unguarded = ModelMonitor("m", dataclasses.replace(CONFIG, window_max_events=10**9))
    assert unguarded.update(batch) == []
    assert unguarded.windows == before + 1


def test_count_windows_are_the_default() -> None:
    assert MonitorConfig().window_s == 0.0
    batch = make_stream(R + 5 * 600, seed=71)
    monitor = ModelMonitor("m", dataclasses.replace(CONFIG, window_s=0.0, window_events=600))
    monitor.update(batch)
    assert monitor.windows == 5


# --- Validation and configuration ---


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window_s", -1.0),
        ("window_s", float("nan")),
        ("window_s", float("inf")),
        ("window_s", "3600"),
        ("window_s", True),
        ("window_max_events", 0),
        ("window_max_events", 1.5),
        ("window_max_events", True),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MonitorConfig(**{field: value})


def test_window_s_error_names_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"finite number of seconds >= 0 \(0: windows of"):
        MonitorConfig(window_s=-5)


def test_yaml_and_environment_set_event_time_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "driftgate.yaml"
    path.write_text("detection: {window_s: 3600}\n")
    assert load_settings(path).monitor.window_s == 3600.0
    monkeypatch.setenv("DRIFTGATE_DETECTION__WINDOW_MAX_EVENTS", "20000")
    assert load_settings(path).monitor.window_max_events == 20_000
    path.write_text("detection: {window_s: -1}\n")
    with pytest.raises(DriftgateError, match="window_s must be a finite number"):
        load_settings(path)
