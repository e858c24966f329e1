"""A bound on how far one event can move a source's clock.

Event times drive the join store's clock, the windows and the event-time merge: one
prediction dated a year ahead would expire every prediction waiting for its label. So an
event dated more than ``max_future_s`` after the newest event time its source (a topic
partition, or a replay file) has shown so far is rejected instead. The first event of a
source sets its clock: there is nothing to compare it with.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from detectors.arrays import FloatArray
from streamer.event_order import TimedRows

_T = TypeVar("_T", bound=TimedRows)


@dataclass(frozen=True)
class Rows(Generic[_T]):
    """Columns of events (a PredictionBatch or Labels) and the row of each in its batch
    of records."""

    events: _T
    rows: Sequence[int]

    def without(self, rejected: Mapping[int, object]) -> Rows[_T]:
        keep = [i for i, row in enumerate(self.rows) if row not in rejected]
        if len(keep) == len(self.rows):
            return self
        picked = np.asarray(keep, dtype=np.intp)
        return Rows(self.events.take(picked), [self.rows[i] for i in keep])


class SourceClocks:
    """The newest event time admitted per source."""

    def __init__(self, max_future_s: float) -> None:
        if not max_future_s > 0:
            raise ValueError(f"max_future_s must be > 0, got {max_future_s}")
        self.max_future_s = max_future_s
        self._reset()

    def _reset(self) -> None:
        self._newest: dict[Hashable, float] = {}

    def newest(self, source: Hashable) -> float | None:
        return self._newest.get(source)

    def admit_rows(self, source: Hashable, parts: Sequence[Rows[Any]]) -> dict[int, str]:
        """``admit`` for a source's events in several columns (each model's predictions,
        the labels): the rows rejected, with why."""
        rows = np.fromiter((row for part in parts for row in part.rows), np.int64)
        ts = np.concatenate([part.events.ts for part in parts]) if parts else np.empty(0)
        order = np.argsort(rows, kind="stable")  # the source's order, across models
        rejected = self.admit(source, ts[order])
        return {int(rows[order[i]]): detail for i, detail in rejected.items()}

    def admit(self, source: Hashable, ts: FloatArray) -> dict[int, str]:
        """Admit a source's event times, in the source's order; returns the positions of
        those rejected, with why. Admitted times advance the source's clock.

        >>> clocks = SourceClocks(max_future_s=60.0)
        >>> rejected = clocks.admit("p0", np.array([10.0, 20.0, 4000.0, 25.0]))
        >>> print(rejected[2])
        ts 4000 is 3980 s ahead of its partition's newest event time 20 (limits.max_future_s=60)
        >>> list(rejected)
        [2]
        >>> clocks.newest("p0")
        25.0
        """
        if not len(ts):
            return {}
        start = self._newest.get(source, float(ts[0]))
        # The usual case, checked at once: no event is too far ahead of those before it.
        running = np.maximum.accumulate(np.concatenate(([start], ts)))
        if not np.any(ts > running[:-1] + self.max_future_s):
            self._newest[source] = float(running[-1])
            return {}
        # Otherwise in order: a rejected time must not raise the bound for the next.
        rejected: dict[int, str] = {}
        newest = start
        for i, t in enumerate(ts.tolist()):
            if t > newest + self.max_future_s:
                rejected[i] = (
                    f"ts {t:.0f} is {t - newest:.0f} s ahead of its partition's newest event "
                    f"time {newest:.0f} (limits.max_future_s={self.max_future_s:g})"
                )
            else:
                newest = max(newest, t)
        self._newest[source] = newest
        return rejected
