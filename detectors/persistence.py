"""Persistence: a condition counts only once it held for K consecutive judged windows."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class Persistence:
    """Streaks of one condition per scope, and when it opens and clears.

    A scope's condition opens after ``windows`` consecutive judged windows that show it
    and clears after as many that do not; a scope not judged in a window (too few
    events) keeps its streaks. ``announced`` marks the open conditions a decision was
    emitted for, so that only those get a closing ``hold``.

    >>> import numpy as np
    >>> condition = Persistence(n_scopes=2, windows=3)
    >>> judged = np.array([True, True])
    >>> start = np.array([0.0, 0.0])
    >>> for hits in ([1, 1], [1, 0], [1, 1]):  # scope 1 blips, scope 0 persists
    ...     opened, cleared = condition.update(judged, np.array(hits, dtype=bool), start)
    >>> opened.tolist(), condition.open.tolist()
    ([True, False], [True, False])
    """

    def __init__(self, n_scopes: int, windows: int) -> None:
        if n_scopes < 1:
            raise ValueError(f"n_scopes must be >= 1, got {n_scopes}")
        if windows < 1:
            raise ValueError(f"windows must be >= 1, got {windows}")
        self.n_scopes = n_scopes
        self.windows = windows
        self._reset()

    def _reset(self) -> None:
        n = self.n_scopes
        self.streak: IntArray = np.zeros(n, dtype=np.int64)
        self.clean_streak: IntArray = np.zeros(n, dtype=np.int64)
        self.open: BoolArray = np.zeros(n, dtype=bool)
        self.announced: BoolArray = np.zeros(n, dtype=bool)
        self.first_seen: FloatArray = np.full(n, np.nan)
        self.last: BoolArray = np.zeros(n, dtype=bool)

    def update(
        self, judged: BoolArray, hit: BoolArray, window_start: FloatArray
    ) -> tuple[BoolArray, BoolArray]:
        """Record one window's verdicts; returns the scopes that opened and cleared."""
        hit = judged & hit
        clean = judged & ~hit
        starting = hit & (self.streak == 0)
        self.first_seen[starting] = window_start[starting]
        self.streak = np.where(hit, self.streak + 1, np.where(clean, 0, self.streak))
        self.clean_streak = np.where(
            clean, self.clean_streak + 1, np.where(hit, 0, self.clean_streak)
        )
        self.last = np.where(judged, hit, self.last)
        opened = (self.streak >= self.windows) & ~self.open
        cleared = self.open & (self.clean_streak >= self.windows)
        self.open = (self.open | opened) & ~cleared
        return opened, cleared
