"""A bound on how far one event can move a source's clock.

Event times drive the join store's clock, the windows and the event-time merge: one
prediction dated a year ahead would expire every prediction waiting for its label. So an
event dated more than ``max_future_s`` after the newest event time of its topic is
rejected instead: the newest its own source (a topic partition, or a replay file) has
shown, or any other partition of the same topic read here, whichever is later. A sparse
partition (a label stream's tail spread over partitions by the producer) is then not
mistaken for one back from a pause, as long as its topic moves; and within a batch, the
topic's events of every partition count in time order (``admit_sources``), whichever
partition comes first. The first event of a source sets its clock, never judged against
its siblings: a partition whose retained log starts later than theirs is not a wrong
clock.

One event must not stop a clock either: a first event dated in the past (1970), or a
partition that resumes after a pause longer than ``max_future_s``, would otherwise have
every later event rejected for good. So once ``CONFIRMING_EVENTS`` events in a row of a
source are far ahead and agree (each within ``max_future_s`` of the one before), the
last of them moves the clock: the ones before it stay rejected, and what follows is
judged from there. A burst of fewer wrong times, followed by events of the usual time,
moves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from detectors.arrays import FloatArray, IntArray
from streamer.event_order import Position, TimedRows

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
    """The newest event time admitted per source (a topic and partition)."""

    def __init__(self, max_future_s: float) -> None:
        if not max_future_s > 0:
            raise ValueError(f"max_future_s must be > 0, got {max_future_s}")
        self.max_future_s = max_future_s
        self._reset()

    def _reset(self) -> None:
        self._newest: dict[Position, float] = {}
        # Per source: the time of its last event and how many in a row were rejected as
        # far ahead, agreeing (what the next events may confirm).
        self._ahead: dict[Position, tuple[float, int]] = {}

    def newest(self, source: Position) -> float | None:
        return self._newest.get(source)

    def _topic_newest(self, topic: str) -> float:
        """The newest event time admitted from any partition of the topic."""
        return max((t for (name, _), t in self._newest.items() if name == topic), default=-np.inf)

    def admit_sources(
        self, parts: Mapping[Position, Sequence[Rows[Any]]]
    ) -> dict[Position, dict[int, str]]:
        """``admit`` for the sources of one batch, each in several columns (each model's
        predictions, the labels): each source's rows rejected, with why.

        A topic's bound also reaches as far as the batch's own events of that topic chain
        from its newest, in time order, no gap longer than ``max_future_s``: a label of a
        sparse tail on one partition is judged with the labels before it that another
        partition of the same batch holds, whichever source comes first."""
        times = {source: self._times(columns) for source, columns in parts.items()}
        reach = self._reach(times)
        out = {}
        for source in sorted(parts):
            rows, ts = times[source]
            rejected = self.admit(source, ts, reach.get(source[0], -np.inf))
            out[source] = {int(rows[i]): detail for i, detail in rejected.items()}
        return out

    @staticmethod
    def _times(parts: Sequence[Rows[Any]]) -> tuple[IntArray, FloatArray]:
        """A source's rows and event times, in the source's order across its columns."""
        rows = np.fromiter((row for part in parts for row in part.rows), np.int64)
        ts = np.concatenate([part.events.ts for part in parts]) if parts else np.empty(0)
        order = np.argsort(rows, kind="stable")
        return rows[order], ts[order]

    def _reach(self, times: Mapping[Position, tuple[IntArray, FloatArray]]) -> dict[str, float]:
        """Per topic, the latest time of the batch that chains from the topic's newest."""
        reach = {}
        for topic in {source[0] for source in times}:
            newest = self._topic_newest(topic)
            if newest == -np.inf:  # no clock yet: the first events set it, as before
                continue
            ts = np.concatenate([t for source, (_, t) in times.items() if source[0] == topic])
            later = np.sort(ts[ts > newest])
            gaps = np.diff(later, prepend=newest) > self.max_future_s
            chained = int(np.argmax(gaps)) if gaps.any() else len(later)
            reach[topic] = float(later[chained - 1]) if chained else newest
        return reach

    def admit(self, source: Position, ts: FloatArray, reach: float = -np.inf) -> dict[int, str]:
        """Admit a source's event times, in the source's order; returns the positions of
        those rejected, with why. Admitted times advance the source's clock.

        >>> clocks = SourceClocks(max_future_s=60.0)
        >>> rejected = clocks.admit(("feedback", 0), np.array([10.0, 20.0, 4000.0, 25.0]))
        >>> print(rejected[2])
        ts 4000 is 3980 s ahead of the newest event time 20 of its topic (limits.max_future_s=60)
        >>> list(rejected)
        [2]
        >>> clocks.newest(("feedback", 0))
        25.0
        >>> # a sparse partition: silent while its sibling moved on, then within the bound of it
        >>> clocks.admit(("feedback", 1), np.array([12.0]))
        {}
        >>> clocks.admit(("feedback", 0), np.array([70.0, 120.0]))
        {}
        >>> clocks.admit(("feedback", 1), np.array([150.0]))
        {}
        >>> # a source whose first event was dated 1970: the next ten agree, the clock moves
        >>> p = ("predictions", 0)
        >>> list(clocks.admit(p, np.array([1.5, *range(1_763_712_000, 1_763_712_010)])))
        [1, 2, 3, 4, 5, 6, 7, 8, 9]
        >>> clocks.newest(p)
        1763712009.0
        """
        if not len(ts):
            return {}
        start = self._newest.get(source, float(ts[0]))
        # The topic's newest (or as far as ``reach``): a source never raises its own
        # bound past what it admitted itself.
        floor = max(self._topic_newest(source[0]), reach)
        # The usual case, checked at once: no event is too far ahead of those before it.
        running = np.maximum.accumulate(np.concatenate(([max(start, floor)], ts)))
        if not np.any(ts > running[:-1] + self.max_future_s) and source not in self._ahead:
            self._newest[source] = max(start, float(ts.max()))
            return {}
        # Otherwise in order: a rejected time must not raise the bound for the next.
        rejected: dict[int, str] = {}
        newest, ahead = start, self._ahead.pop(source, None)
        for i, t in enumerate(ts.tolist()):
            if t <= max(newest, floor) + self.max_future_s:
                newest, ahead = max(newest, t), None
                continue
            agreeing = ahead is not None and abs(t - ahead[0]) <= self.max_future_s
            ahead = (t, ahead[1] + 1 if agreeing and ahead is not None else 1)
            if ahead[1] >= CONFIRMING_EVENTS:
                newest, ahead = t, None
                continue
            bound = max(newest, floor)
            rejected[i] = (
                f"ts {t:.0f} is {t - bound:.0f} s ahead of the newest event time "
                f"{bound:.0f} of its topic (limits.max_future_s={self.max_future_s:g})"
            )
        self._newest[source] = newest
        if ahead is not None:
            self._ahead[source] = ahead
        return rejected
