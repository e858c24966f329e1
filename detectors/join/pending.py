"""Feedback that arrived before its prediction, waiting for it in a bounded buffer.

A prediction is never later than its own label, so once the prediction stream's clock
has moved ``grace_s`` past a waiting label, its prediction is not coming: the label is
given up (``unknown``), as is the oldest one when the buffer is full.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.arrays import FloatArray
from detectors.join.entries import Admission
from detectors.join.joined import Joined
from detectors.join.names import SourceBits

# One waiting feedback row: (event_id, ts, label, source, override).
Feedback = tuple[str, float, float, str, bool]


@dataclass
class Resolution:
    """The waiting labels one batch of predictions resolved."""

    matched: list[tuple[int, Feedback]] = field(default_factory=list)  # (prediction row, label)
    masks: dict[int, int] = field(default_factory=dict)  # sources, by prediction sequence
    expired: int = 0  # their prediction was already behind the horizon
    duplicate: int = 0
    unknown: int = 0  # given up meanwhile, as the clock moved past them

    def joined(
        self,
        ts: FloatArray,
        scores: FloatArray,
        versions: Sequence[str],
        models: Sequence[str],
        rows: NDArray[Any],
        width: int,
    ) -> Joined:
        """The pairs, given the batch's prediction columns and scope rows (padded with -1
        to ``width``), with this resolution's counts."""
        counts = {"unknown": self.unknown, "expired": self.expired, "duplicate": self.duplicate}
        matched = self.matched
        if not matched:
            return Joined.empty(width, **counts)
        index = np.array([row for row, _ in matched], dtype=np.intp)
        prediction_ts = ts[index]
        feedback_ts = np.array([f[1] for _, f in matched], dtype=np.float64)
        scope_rows = np.full((len(index), width), -1, dtype=np.intp)
        scope_rows[:, : rows.shape[1]] = rows[index]
        return Joined(
            event_id=tuple(f[0] for _, f in matched),
            model=tuple(models[i] for i in index.tolist()),
            version=tuple(versions[i] for i in index.tolist()),
            prediction_ts=prediction_ts,
            feedback_ts=feedback_ts,
            delay_s=feedback_ts - prediction_ts,
            score=scores[index],
            label=np.array([f[2] for _, f in matched], dtype=np.float64),
            source=tuple(f[3] for _, f in matched),
            override=np.array([f[4] for _, f in matched], dtype=bool),
            scopes=scope_rows,
            **counts,
        )


class PendingLabels:
    """Feedback rows waiting for their prediction, oldest first, at most ``max_rows``.

    >>> pending = PendingLabels(max_rows=2, grace_s=10.0)
    >>> rows = [("a", 5.0), ("b", 7.0), ("a", 9.0), ("c", 1.0)]
    >>> [pending.add(event_id, ts, 1.0, "click", False, clock=12.0) for event_id, ts in rows]
    [0, 0, 1, 1]
    >>> pending.take("a"), len(pending), pending.drop_before(8.0)
    ([('a', 9.0, 1.0, 'click', False)], 1, 1)
    """

    def __init__(self, max_rows: int, grace_s: float) -> None:
        self.max_rows = max_rows
        self.grace_s = grace_s
        self._reset()

    def _reset(self) -> None:
        self._rows: OrderedDict[int, Feedback] = OrderedDict()
        # Event id -> arrival numbers of its rows; empty exactly when the buffer is.
        self._waiting: dict[str, list[int]] = {}
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(
        self, event_id: str, ts: float, label: float, source: str, override: bool, clock: float
    ) -> int:
        """Buffer a row, unless the clock passed its ``ts`` by ``grace_s`` already; returns
        how many rows were given up (this one, or the oldest when the buffer was full)."""
        if ts < clock - self.grace_s:
            return 1
        dropped = 0
        if len(self._rows) >= self.max_rows:
            self._pop(next(iter(self._rows)))
            dropped = 1
        self._append((event_id, ts, label, source, override))
        return dropped

    def _append(self, feedback: Feedback) -> None:
        arrival = self._arrivals
        self._arrivals += 1
        self._rows[arrival] = feedback
        self._waiting.setdefault(feedback[0], []).append(arrival)

    def take(self, event_id: str) -> list[Feedback]:
        """Remove and return the rows waiting for ``event_id``, in arrival order."""
        return [self._rows.pop(arrival) for arrival in self._waiting.pop(event_id)]

    def drop_before(self, limit: float) -> int:
        """Give up the oldest rows while their ``ts`` is before ``limit``; how many."""
        dropped = 0
        while self._rows:
            arrival, feedback = next(iter(self._rows.items()))
            if feedback[1] >= limit:
                break
            self._pop(arrival)
            dropped += 1
        return dropped

    def _pop(self, arrival: int) -> None:
        event_id = self._rows.pop(arrival)[0]
        arrivals = self._waiting[event_id]
        arrivals.remove(arrival)
        if not arrivals:
            del self._waiting[event_id]

    def resolve(
        self,
        event_ids: Sequence[str],
        ts: list[float],
        admission: Admission,
        horizon_s: float,
        sources: SourceBits,
    ) -> Resolution:
        """Hand the admitted predictions their waiting labels, in order, and give up the
        rows the clock passes by ``grace_s`` as it moves: a label joins unless its
        prediction is already behind the horizon or its source labelled it already."""
        out = Resolution()
        waiting = self._waiting
        for i, row in enumerate(admission.rows):
            if not waiting:
                break
            clock = admission.clocks[i]
            event_id = event_ids[row]
            if event_id in waiting:
                late = ts[row] < clock - horizon_s
                mask = 0
                for feedback in self.take(event_id):
                    bit = sources.bit(feedback[3])
                    if late:
                        out.expired += 1
                    elif mask & bit:
                        out.duplicate += 1
                    else:
                        mask |= bit
                        out.matched.append((row, feedback))
                out.masks[admission.first + i] = mask
            if waiting:
                out.unknown += self.drop_before(clock - self.grace_s)
        return out
