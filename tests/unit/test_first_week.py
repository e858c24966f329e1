"""The first week: weekends compared with weekends' hours, weekdays with weekdays'."""

from __future__ import annotations

import numpy as np

from detectors.batch import PredictionBatch
from detectors.monitor import ModelMonitor
from detectors.monitor.config import MonitorConfig
from detectors.seasonal import HOURS, is_weekend
from streamer.state.codec import Decoder, Encoder
from streamer.state.migrations import migrate_1_to_2
from streamer.state.registry import REGISTRY
from tests.support import amount_batch, feed

CONFIG = MonitorConfig()
FRIDAY_8H = 1_763_712_000.0  # 2025-11-21 08:00 UTC
# One prediction every 4 s: a day (21,600) fits in the reference, taken whole at once.
EVERY_S = 4.0


def _stream(days: float, weekend_shift: float, step_at_h: float | None = None) -> PredictionBatch:
    ts = FRIDAY_8H + np.arange(0.0, days * 86_400, EVERY_S)
    # Weekends' amounts are higher by ``weekend_shift`` standard deviations (of the log).
    mean = 3.0 + 0.5 * weekend_shift * is_weekend(ts)
    if step_at_h is not None:
        mean = mean + 0.5 * (ts >= FRIDAY_8H + step_at_h * 3_600)
    return amount_batch(ts, mean)


def test_a_weekend_shift_gives_no_decision_and_the_week_keeps_its_day_types_apart():
    stream = _stream(days=9, weekend_shift=1.0)
    monitor = ModelMonitor("m", CONFIG)
    assert [d.to_dict() for d in monitor.update(stream)] == []
    # After the week, the weekend's slots (24-47) hold the higher amounts.
    hourly = monitor.features["amount"].reference_hourly
    assert hourly is not None and hourly.shape[0] == 2 * HOURS
    upper = hourly.shape[2] // 2
    share = hourly[:, 0, upper:].sum(axis=1) / hourly[:, 0].sum(axis=1)
    assert share[HOURS:].min() > share[:HOURS].max()


def test_the_snapshot_says_how_long_the_first_week_still_needs_and_drops_it_after():
    stream = _stream(days=8, weekend_shift=0.0)
    monitor = ModelMonitor("m", CONFIG)
    assert monitor.snapshot().first_week_remaining_s is None  # no reference yet
    three_days = int(3 * 86_400 / EVERY_S)
    monitor.update(stream.slice(0, three_days))
    newest = float(stream.ts[three_days - 1])
    assert monitor.snapshot().first_week_remaining_s == FRIDAY_8H + 7 * 86_400 - newest
    monitor.update(stream.slice(three_days, len(stream)))
    assert monitor.snapshot().first_week_remaining_s is None


def test_without_the_week_the_same_stream_is_reported_on_monday():
    # What the week prevents: a pinned reference of the same first day (no week sampled).
    stream = _stream(days=4, weekend_shift=1.0)
    monitor = ModelMonitor("m", CONFIG)
    monitor.pin_reference(stream.slice(0, int(86_400 / EVERY_S) + 1))
    decisions = monitor.update(stream.slice(int(86_400 / EVERY_S) + 1, len(stream)))
    assert ("investigate", "amount") in [(d.action, d.feature) for d in decisions]


def test_a_step_in_the_first_week_is_found_and_the_verdicts_do_not_depend_on_the_batches():
    # A Wednesday at 12:00, 5 days and 4 hours in: 0.5 sd.
    stream = _stream(days=6, weekend_shift=1.0, step_at_h=124.0)
    runs = []
    for cuts in ([], [7_777, 50_000, 100_001]):
        monitor = ModelMonitor("m", CONFIG)
        runs.append([d.to_dict() for d in feed(monitor, stream, cuts)])
    assert runs[0] == runs[1]
    found = [
        d for d in runs[0] if (d["action"], d["scope"]["feature"]) == ("investigate", "amount")
    ]
    onset = FRIDAY_8H + 124 * 3_600
    assert found and onset <= found[0]["ts"] <= onset + 4 * CONFIG.window_events * EVERY_S


def test_a_format_1_state_gets_its_hours_on_both_day_types():
    monitor = ModelMonitor("m", CONFIG)
    monitor.update(_stream(days=1.2, weekend_shift=0.0))
    state = monitor.features["amount"]
    assert state.reference_hourly is not None
    hours = state.reference_hourly[:HOURS] + state.reference_hourly[HOURS:]
    state.reference_hourly = hours  # as format 1 kept them
    window = monitor._window
    assert window is not None
    window.hour_events = window.hour_events[:, :HOURS] + window.hour_events[:, HOURS:]
    tree = Encoder(REGISTRY).encode(monitor)
    restored = Decoder(REGISTRY).decode(migrate_1_to_2(tree))
    migrated = restored.features["amount"].reference_hourly
    assert migrated.shape == (2 * HOURS, *hours.shape[1:])
    assert (migrated[:HOURS] == hours).all() and (migrated[HOURS:] == hours).all()
    assert restored._window.hour_events.shape == (window.n_scopes, 2 * HOURS)
