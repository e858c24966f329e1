"""The values of the windows a scope's rescale condition has lasted, pooled in sketches.

A unit change in a cohort of a few hundred events per window gives a factor a few percent
off in each window, too noisy to look steady or to match a unit; the factor of all the
windows since the change started is as precise as their events together. Each pooled
scope keeps a mergeable :class:`~detectors.sketches.NumericSketch` (bounded buckets, 0.5%
relative accuracy) of its values and one of its non-zero values (a mostly-zero feature
is told on those), so the pool's memory does not grow with the windows it covers, and
its quantiles do not depend on how the stream was cut into batches.
"""

from __future__ import annotations

import numpy as np

from detectors.arrays import FloatArray, IndexArray, IntArray
from detectors.sketches import NumericSketch

# The quantiles of the pooled sketches are within this of the exact ones, relative: finer
# than the reference's 1%, so that the ratios of the two are not all powers of one bucket
# ratio (2% apart at 1% each side). Buckets stay few: a lognormal of log-sd 1 spans ~800.
POOL_ACCURACY = 0.005
_ALL, _NONZERO = 0, 1


class RescalePool:
    """Per scope, the pooled values of the windows since its condition started.

    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> pool = RescalePool(n_scopes=2)
    >>> for _ in range(3):  # three windows of scope 1 alone
    ...     values = rng.lognormal(3, 0.8, 250)
    ...     pool.add(values, np.ones(250, dtype=np.intp), np.array([1]))
    >>> pool.windows.tolist(), pool.counts(np.array([0, 1])).tolist()
    ([0, 3], [0, 750])
    >>> pool.drop(np.array([False, True])); pool.counts(np.array([1])).tolist()
    [0]
    """

    def __init__(self, n_scopes: int) -> None:
        if n_scopes < 1:
            raise ValueError(f"n_scopes must be >= 1, got {n_scopes}")
        self.n_scopes = n_scopes
        self._reset()

    def _reset(self) -> None:
        self._sketches: dict[int, NumericSketch] = {}
        self.windows: IntArray = np.zeros(self.n_scopes, dtype=np.int64)
        # The factor last estimated on each scope's pool (NaN: none yet).
        self.factor: FloatArray = np.full(self.n_scopes, np.nan)

    def add(self, values: FloatArray, scopes: IndexArray, wanted: IndexArray) -> None:
        """Pool one window of the ``wanted`` scopes: ``values`` as (value, scope) pairs."""
        for scope in wanted.tolist():
            mine = values[(scopes == scope) & ~np.isnan(values)]
            sketch = self._sketches.get(scope)
            if sketch is None:
                sketch = self._sketches[scope] = NumericSketch(2, POOL_ACCURACY)
            sketch.update(mine, np.full(mine.size, _ALL, dtype=np.intp))
            nonzero = mine[mine != 0]
            sketch.update(nonzero, np.full(nonzero.size, _NONZERO, dtype=np.intp))
            self.windows[scope] += 1

    def drop(self, scopes: np.ndarray) -> None:
        """Forget the pools of the scopes (a boolean mask): their condition ended."""
        for scope in np.flatnonzero(scopes).tolist():
            self._sketches.pop(scope, None)
        self.windows[scopes] = 0
        self.factor[scopes] = np.nan

    def counts(self, wanted: IndexArray, nonzero: bool = False) -> IntArray:
        """The pooled values of each wanted scope (the non-zero ones only with ``nonzero``)."""
        part = _NONZERO if nonzero else _ALL
        return np.array(
            [self._sketches[s].count(part) if s in self._sketches else 0 for s in wanted.tolist()],
            dtype=np.int64,
        )

    def quantiles(self, wanted: IndexArray, probs: FloatArray, nonzero: bool = False) -> FloatArray:
        """Each wanted scope's pooled quantiles at ``probs`` (NaN for an empty pool)."""
        part = _NONZERO if nonzero else _ALL
        out = np.full((wanted.size, probs.size), np.nan)
        for i, scope in enumerate(wanted.tolist()):
            sketch = self._sketches.get(scope)
            if sketch is not None and sketch.count(part):
                out[i] = sketch.quantiles(part, probs)
        return out
