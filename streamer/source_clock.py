"""A bound on how far one event can move a source's clock.

Event times drive the join store's clock, the windows and the event-time merge: one
prediction dated a year ahead would expire every prediction waiting for its label. So an
event dated more than ``max_future_s`` after the newest event time its source (a topic
partition, or a replay file) has shown so far is rejected instead. The first event of a
source sets its clock: there is nothing to compare it with.

One event must not stop a clock either: a first event dated in the past (1970), or a
partition that resumes after a pause longer than ``max_future_s``, would otherwise have
every later event rejected for good. So once ``CONFIRMING_EVENTS`` events in a row of a
source are far ahead and agree (each within ``max_future_s`` of the one before), the
last of them moves the clock: the ones before it stay rejected, and what follows is
judged from there. A burst of fewer wrong times, followed by events of the usual time,
moves nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from detectors.arrays import FloatArray
from streamer.event_order import TimedRows

_T = TypeVar("_T", bound=TimedRows)

# Events in a row far ahead that move a source's clock: a partition resuming after a
# pause longer than limits.max_future_s dead-letters its first 9, and a burst of up to
# 9 wrong times (a producer's bad clock) is rejected whole.
CONFIRMING_EVENTS = 10


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
        # Per source: the time of its last event and how many in a row were rejected as
        # far ahead, agreeing (what the next events may confirm).
        self._ahead: dict[Hashable, tuple[float, int]] = {}

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
        >>> # a source whose first event was dated 1970: the next ten agree, the clock moves
        >>> list(clocks.admit("p1", np.array([1.5, *range(1_763_712_000, 1_763_712_010)])))
        [1, 2, 3, 4, 5, 6, 7, 8, 9]
        >>> clocks.newest("p1")
        1763712009.0
        """
        if not len(ts):
            return {}
        start = self._newest.get(source, float(ts[0]))
        # The usual case, checked at once: no event is too far ahead of those before it.
        running = np.maximum.accumulate(np.concatenate(([start], ts)))
        if not np.any(ts > running[:-1] + self.max_future_s) and source not in self._ahead:
            self._newest[source] = float(running[-1])
            return {}
        # Otherwise in order: a rejected time must not raise the bound for the next.
        rejected: dict[int, str] = {}
        newest, ahead = start, self._ahead.pop(source, None)
        for i, t in enumerate(ts.tolist()):
            if t <= newest + self.max_future_s:
                newest, ahead = max(newest, t), None
                continue
            agreeing = ahead is not None and abs(t - ahead[0]) <= self.max_future_s
            ahead = (t, ahead[1] + 1 if agreeing and ahead is not None else 1)
            if ahead[1] >= CONFIRMING_EVENTS:
                newest, ahead = t, None
                continue
            rejected[i] = (
                f"ts {t:.0f} is {t - newest:.0f} s ahead of its partition's newest event "
                f"time {newest:.0f} (limits.max_future_s={self.max_future_s:g})"
            )
        self._newest[source] = newest
        if ahead is not None:
            self._ahead[source] = ahead
        return rejected
