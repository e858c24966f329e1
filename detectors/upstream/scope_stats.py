"""One window's summary of one feature per scope, as the frozen check reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.arrays import FloatArray, IntArray


def ratio(num: ArrayLike, den: ArrayLike) -> FloatArray:
    """``num / den``, NaN where ``den`` is not positive."""
    n = np.asarray(num, dtype=np.float64)
    d = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(n, d).shape, np.nan)
    np.divide(n, d, out=out, where=d > 0)
    return out


@dataclass(frozen=True)
class ScopeStats:
    """One window's summary of one feature, one entry per scope.

    ``events`` rows (nulls included), ``nulls``, ``distinct`` non-null values (a capped count is
    fine: only ``<= 1`` and ``>= min_ref_distinct`` matter), ``variance`` (NaN when the feature
    is not numeric), ``repeats``/``pairs`` (consecutive values of the scope that are equal, out
    of the consecutive pairs, as :func:`detectors.segments.segment_stats` counts them),
    ``last_value`` (a non-null value of the window, e.g. the last one or the minimum: the frozen
    value of a constant window; float or object array) and optionally ``collision``: the
    probability that two random non-null values of the window are equal, ``sum(share**2)``, or
    any upper bound of it such as the sum of squared bin shares of the window's histogram
    (NaN = unknown).

    >>> import numpy as np
    >>> from detectors.segments import segment_stats
    >>> rng = np.random.default_rng(1)
    >>> values = np.r_[rng.normal(size=500), np.full(500, 3.5)]
    >>> seg = segment_stats(values, np.repeat([0, 1], 500), n_scopes=2)
    >>> s = ScopeStats(
    ...     events=seg.events,
    ...     nulls=seg.nulls,
    ...     distinct=np.where(seg.constant, 1, np.minimum(seg.events - seg.nulls, 2)),
    ...     variance=seg.variance,
    ...     repeats=seg.repeats,
    ...     pairs=seg.pairs,
    ...     last_value=seg.minimum,
    ... )
    >>> s.distinct.tolist()  # capped: 2 reads "more than one value"
    [2, 1]
    >>> s.repeat_rate.tolist(), s.variance.round(1).tolist()
    ([0.0, 1.0], [0.8, 0.0])
    """

    events: IntArray
    nulls: IntArray
    distinct: IntArray
    variance: FloatArray
    repeats: IntArray
    pairs: IntArray
    last_value: NDArray[Any]
    collision: FloatArray | None = None

    def __post_init__(self) -> None:
        n = np.asarray(self.events).shape
        if len(n) != 1:
            raise ValueError(f"events must be a 1-D array, got shape {n}")
        for name in ("events", "nulls", "distinct", "repeats", "pairs"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != n or (arr.size and arr.dtype.kind not in "iu"):
                raise ValueError(f"{name} must be an int array of shape {n}")
            if arr.size and arr.min() < 0:
                raise ValueError(f"{name} must be >= 0")
            object.__setattr__(self, name, arr.astype(np.int64))
        if np.any(self.nulls > self.events):
            raise ValueError("nulls must be <= events")
        if np.any(self.repeats > self.pairs):
            raise ValueError("repeats must be <= pairs")
        variance = np.asarray(self.variance, dtype=np.float64)
        if variance.shape != n:
            raise ValueError(f"variance must be a float array of shape {n}")
        object.__setattr__(self, "variance", variance)
        last = np.asarray(self.last_value)
        if last.shape != n:
            raise ValueError(f"last_value must be an array of shape {n}")
        object.__setattr__(self, "last_value", last)
        if self.collision is not None:
            coll = np.asarray(self.collision, dtype=np.float64)
            if coll.shape != n:
                raise ValueError(f"collision must be None or a float array of shape {n}")
            object.__setattr__(self, "collision", coll)

    @property
    def n_scopes(self) -> int:
        return int(self.events.shape[0])

    @property
    def null_rate(self) -> FloatArray:
        return ratio(self.nulls, self.events)

    @property
    def repeat_rate(self) -> FloatArray:
        return ratio(self.repeats, self.pairs)


def histogram_collision(counts: ArrayLike, null_bin: int | None = -1) -> FloatArray:
    """``sum(share**2)`` of each scope's histogram row, leaving out the null bin (the engine's
    bins put it last).  An upper bound of the exact-value collision for :class:`ScopeStats`.

    >>> import numpy as np
    >>> histogram_collision(np.array([[50, 50, 0, 7], [100, 0, 0, 0], [0, 0, 0, 9]])).tolist()
    [0.5, 1.0, nan]
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"counts must be a (n_scopes, n_bins) array, got shape {c.shape}")
    if null_bin is not None:
        c = np.delete(c, null_bin, axis=1)
    total = c.sum(axis=1, keepdims=True)
    shares = ratio(c, np.broadcast_to(total, c.shape))
    return np.asarray(np.sum(shares**2, axis=1), dtype=np.float64)
