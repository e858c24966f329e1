"""Feature names the reference never had: counted, and confirmed once they persist.

A new name that carries values in most events for ``windows`` consecutive windows is a
schema change (a new field, or the new name of a renamed one). The values of the
current window are kept so a renamed feature can be matched with the name it replaced.

Memory and metric series stay bounded whatever the stream sends (a producer that puts
ids or timestamps in feature names sends a million names): at most ``max_names`` names
are counted on their own, and at most ``max_names`` are watched per window; the values
of all others are counted under ``__other__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors.arrays import FeatureColumn, FloatArray
from detectors.batch import missing_values, numeric_column

OVERFLOW = "__other__"


@dataclass(frozen=True)
class NewFeature:
    """A new feature confirmed in this window, with its share of the window's events."""

    name: str
    share: float
    first_seen_window: int


class NewFeatures:
    """Tracks names outside the reference, at most ``max_names`` of them.

    ``totals`` (a metric) keeps the first ``max_names`` names for good. The names watched
    for confirmation are chosen again every window, so a flood of names seen once cannot
    keep a real new field from being watched once the flood has passed, or even during it:
    the names in most events of a batch are watched first.

    >>> tracker = NewFeatures(max_names=10, windows=2, min_share=0.5)
    >>> for _ in range(2):
    ...     tracker.observe({"acct_balance": [1.0, 2.0, None, 4.0]}, 4)
    ...     confirmed = tracker.close(4)
    >>> [(f.name, f.share) for f in confirmed]
    [('acct_balance', 0.75)]
    """

    def __init__(self, max_names: int = 200, windows: int = 3, min_share: float = 0.5) -> None:
        if max_names < 1:
            raise ValueError(f"max_names must be >= 1, got {max_names}")
        if windows < 1:
            raise ValueError(f"windows must be >= 1, got {windows}")
        if not 0.0 < min_share <= 1.0:
            raise ValueError(f"min_share must be in (0, 1], got {min_share}")
        self.max_names = max_names
        self.windows = windows
        self.min_share = min_share
        self._reset()

    def _reset(self) -> None:
        self.totals: dict[str, int] = {}
        self.confirmed: set[str] = set()
        self._present: dict[str, int] = {}
        self._values: dict[str, list[FloatArray]] = {}
        self._streak: dict[str, int] = {}
        self._windows_closed = 0

    def observe(self, features: Mapping[str, FeatureColumn], n_rows: int) -> None:
        """Count the values of new names in a part of the window (``features`` holds only
        names outside the reference)."""
        # count() runs in C: a flood of names seen once each means one sparse column per
        # name, and this loop runs over all of them.
        counts = {name: n_rows - missing_values(column) for name, column in features.items()}
        watched = self._present
        ranked = sorted(
            (name for name, present in counts.items() if present),
            key=lambda name: (name not in watched, -counts[name]),
        )
        for name in ranked:
            present = counts[name]
            key = name if name in self.totals or len(self.totals) < self.max_names else OVERFLOW
            self.totals[key] = self.totals.get(key, 0) + present
            key = name if name in watched or len(watched) < self.max_names else OVERFLOW
            watched[key] = watched.get(key, 0) + present
            if key != OVERFLOW:
                self._values.setdefault(key, []).append(numeric_column(features[name])[0])

    def values(self, name: str) -> FloatArray:
        """The current window's numeric values of a new name (NaN for others)."""
        parts = self._values.get(name)
        return np.concatenate(parts) if parts else np.zeros(0)

    def close(self, window_events: int) -> list[NewFeature]:
        """End a window of ``window_events`` events; returns the names confirmed now."""
        self._windows_closed += 1
        confirmed = []
        for name in list(self._streak.keys() | self._present.keys()):
            share = self._present.get(name, 0) / max(window_events, 1)
            if name == OVERFLOW or share < self.min_share:
                self._streak.pop(name, None)
                continue
            self._streak[name] = self._streak.get(name, 0) + 1
            if self._streak[name] >= self.windows and name not in self.confirmed:
                self.confirmed.add(name)
                first = self._windows_closed - self._streak[name] + 1
                confirmed.append(NewFeature(name, round(share, 6), first))
        if len(self.confirmed) > self.max_names:
            # Names that came and went; one that comes back and persists is news again.
            self.confirmed &= self._streak.keys()
        self._present.clear()
        self._values.clear()
        return sorted(confirmed, key=lambda f: f.name)
