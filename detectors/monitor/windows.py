"""The window clock: where a window ends, and what each scope's window holds.

A window holds ``window_events`` predictions, or, with ``window_s`` > 0, is a tumbling
window of event time (see :class:`MonitorConfig`). The monitor hands each batch to
:meth:`WindowClock.take` and cuts it where the window ends, so the windows, and the
verdicts, do not depend on how the stream was cut into batches. Per scope,
:class:`ScopeWindows` counts the window's events and its span of event time; a scope
short of events carries them over to the next window.
"""

from __future__ import annotations

import math

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray
from detectors.binning import scope_histograms
from detectors.monitor.config import MonitorConfig
from detectors.seasonal import SLOTS, slot_of


class WindowClock:
    """How many of the next rows the current window takes.

    >>> import numpy as np
    >>> clock = WindowClock(MonitorConfig(window_s=60.0))
    >>> ts = np.array([0.0, 30.0, 59.0, 61.0, 70.0])
    >>> clock.take(ts)  # the window [0, 60) ends before the row at 61 s
    3
    >>> clock.add(3), clock.take(ts[3:])  # not full; the next row is past its end
    (False, 0)
    >>> clock.restart(); clock.take(ts[3:])  # the next window, [60, 120)
    2
    """

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self._reset()

    def _reset(self) -> None:
        self.rows = 0  # in the current window
        # End of the current window by event time, set by its first row.
        self._end = math.inf

    @property
    def full(self) -> int:
        """Rows that close a window: window_events, or window_max_events by event time."""
        config = self.config
        return config.window_max_events if config.window_s else config.window_events

    def take(self, ts: FloatArray) -> int:
        """How many of the next rows (event times ``ts``) the current window takes; 0 when
        the first of them is at or past the end of a window by event time, which then
        closes before that row is taken."""
        room = min(len(ts), self.full - self.rows)
        width = self.config.window_s
        if not width:
            return room
        opening = self.rows == 0
        if opening:
            # np.floor: a NaN or infinite time (possible outside the decoder) only leaves
            # the window to close when full, rather than raise.
            self._end = float((np.floor(ts[0] / width) + 1.0) * width)
        # Even where rounding puts the end at the opening row's time, the row is taken:
        # every window holds at least one row.
        past = np.flatnonzero(ts[int(opening) : room] >= self._end)
        return int(past[0]) + int(opening) if past.size else room

    def add(self, rows: int) -> bool:
        """Count rows taken; True when they filled the window."""
        self.rows += rows
        return self.rows == self.full

    def restart(self) -> None:
        """The window closed: the next row opens the next one."""
        self.rows = 0


class ScopeWindows:
    """Each scope's current window: its events, its span of event time (the earliest and
    latest event time of its rows, whatever their order and the batch cuts: rows may come
    late), and with ``seasonal`` its events per slot (hour of a weekday or of a weekend
    day, :mod:`detectors.seasonal`)."""

    def __init__(self, n_scopes: int, seasonal: bool) -> None:
        if n_scopes < 1:
            raise ValueError(f"n_scopes must be >= 1, got {n_scopes}")
        self.n_scopes = n_scopes
        self.seasonal = seasonal
        self._reset()

    def _reset(self) -> None:
        n = self.n_scopes
        self.events = np.zeros(n, dtype=np.int64)
        self.start = np.full(n, np.nan)
        self.end = np.full(n, np.nan)
        self.hour_events = np.zeros((n, SLOTS), dtype=np.int64)
        # The scope of every (row, scope) pair of the window, one array per part.
        self._pairs: list[IndexArray] = []

    def add(self, rows: IndexArray, ts: FloatArray) -> None:
        """Add a part of the window: each row's scopes and event time."""
        n = self.n_scopes
        counts = np.bincount(rows.ravel(), minlength=n)
        flat_ts = np.repeat(ts, rows.shape[1])
        first = np.full(n, np.inf)
        np.minimum.at(first, rows.ravel(), flat_ts)
        last = np.full(n, -np.inf)
        np.maximum.at(last, rows.ravel(), flat_ts)
        present = counts > 0
        starting = (self.events == 0) & present
        self.start[starting] = first[starting]
        self.end[starting] = last[starting]
        going_on = present & ~starting
        self.start[going_on] = np.minimum(self.start[going_on], first[going_on])
        self.end[going_on] = np.maximum(self.end[going_on], last[going_on])
        self.events += counts
        if self.seasonal:
            # Events per (scope, slot): the slot is the "bin".
            self.hour_events += scope_histograms(slot_of(ts), rows, n, SLOTS)
        self._pairs.append(rows.ravel())

    def take_pairs(self, carried: BoolArray) -> tuple[IndexArray, BoolArray]:
        """The scope of every (row, scope) pair of the window, and which of them stay for
        the next window (those of the ``carried`` scopes)."""
        scopes = np.concatenate(self._pairs)
        keep = carried[scopes]
        self._pairs = [scopes[keep]]
        return scopes, keep

    def restart(self, done: BoolArray) -> None:
        """Start the next window in the ``done`` scopes; the others carry theirs over."""
        self.events[done] = 0
        self.hour_events[done] = 0
        self.start[done] = np.nan
