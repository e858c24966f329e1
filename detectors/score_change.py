"""Change detectors on the score stream, one per scope (river's ADWIN)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from river import drift

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]


@dataclass(frozen=True)
class ChangePoint:
    """A change river's detector reported: in which scope, at which row of the stream,
    and the mean ADWIN estimates once it dropped the old part of its window."""

    scope: int
    row: int
    ts: float
    mean_after: float


class ScopedADWIN:
    """River's ADWIN on a value stream, one detector per scope.

    The batch path is a loop over river's own per-event ``update``: the detections are
    river's, one for one, whatever the batch boundaries.
    (ADWIN's update is ~0.2 µs in river's compiled core, cheap next to the rest.)

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> values = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.5, 0.05, 3000)])
    >>> detector = ScopedADWIN(n_scopes=1)
    >>> changes = detector.update(values, np.zeros((6000, 1), dtype=np.intp), np.arange(6000.0))
    >>> [3000 <= c.row < 3100 for c in changes][:1]
    [True]
    """

    def __init__(self, n_scopes: int, delta: float = 0.002) -> None:
        if n_scopes < 1:
            raise ValueError(f"n_scopes must be >= 1, got {n_scopes}")
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.n_scopes = n_scopes
        self.delta = delta
        self._reset()

    def _reset(self) -> None:
        # river ships no type hints for its detectors.
        self._detectors = [
            drift.ADWIN(delta=self.delta)  # type: ignore[no-untyped-call]
            for _ in range(self.n_scopes)
        ]
        self._rows = 0
        self.detections = np.zeros(self.n_scopes, dtype=np.int64)

    def means(self) -> FloatArray:
        return np.array([d.estimation for d in self._detectors], dtype=np.float64)

    def update(self, values: FloatArray, scopes: IndexArray, ts: FloatArray) -> list[ChangePoint]:
        """Feed rows in order; ``scopes[i]`` lists the scopes row ``i`` belongs to.

        Scopes are independent, so each detector gets its own rows in order, one scope
        at a time: the same updates as row by row, with no per-row loop over scopes.
        """
        changes: list[ChangePoint] = []
        present = ~np.isnan(values)  # a missing score says nothing about the mean
        for column in scopes.T:
            rows = np.flatnonzero(present)
            order = rows[np.argsort(column[rows], kind="stable")]
            groups = column[order]
            bounds = np.flatnonzero(np.diff(groups)) + 1
            for chunk in np.split(order, bounds):
                if not chunk.size:
                    continue
                scope = int(column[chunk[0]])
                detector = self._detectors[scope]
                for row, value in zip(chunk.tolist(), values[chunk].tolist()):
                    detector.update(value)  # type: ignore[no-untyped-call]
                    if detector.drift_detected:
                        self.detections[scope] += 1
                        changes.append(
                            ChangePoint(
                                scope, self._rows + row, float(ts[row]), detector.estimation
                            )
                        )
        self._rows += len(values)
        changes.sort(key=lambda change: (change.row, change.scope))
        return changes
