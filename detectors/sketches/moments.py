"""Exact, mergeable moments per scope: count, mean, M2 (Chan et al.), min and max."""

from __future__ import annotations

import numpy as np

from detectors.arrays import FloatArray, IndexArray, IntArray


class Moments:
    """Count, mean, M2 (the sum of squared deviations from the mean), min and max of each
    scope's finite values, merged exactly with Chan et al.'s parallel formula.

    Counts, min and max do not depend on how the stream is batched or merged; mean and M2
    agree up to float rounding. The arrays are read by the sketch that owns them and
    changed only by :meth:`add` and :meth:`merge`.

    >>> import numpy as np
    >>> moments = Moments(n_scopes=2)
    >>> moments.add(np.array([1.0, 2.0, 3.0, 5.0]), np.array([0, 0, 0, 1]))
    >>> moments.count.tolist(), moments.mean.tolist(), moments.m2.tolist()
    ([3, 1], [2.0, 5.0], [2.0, 0.0])
    """

    def __init__(self, n_scopes: int) -> None:
        self.n_scopes = n_scopes
        self._reset()

    def _reset(self) -> None:
        n = self.n_scopes
        self.count: IntArray = np.zeros(n, dtype=np.int64)
        self.mean: FloatArray = np.zeros(n, dtype=np.float64)
        self.m2: FloatArray = np.zeros(n, dtype=np.float64)
        self.min: FloatArray = np.full(n, np.inf)
        self.max: FloatArray = np.full(n, -np.inf)

    def add(self, v: FloatArray, s: IndexArray) -> None:
        """Add finite values, ``v[i]`` in scope ``s[i]``."""
        n = self.n_scopes
        # per-scope moments of the batch (two-pass), then Chan's merge into the running state
        n_b = np.bincount(s, minlength=n).astype(np.int64)
        b_min = np.full(n, np.inf)
        b_max = np.full(n, -np.inf)
        np.minimum.at(b_min, s, v)
        np.maximum.at(b_max, s, v)
        has = n_b > 0
        mean_b = np.zeros(n, dtype=np.float64)
        # float64 overflow for |x| beyond ~1e150 gives inf/nan moments (documented), no warning
        with np.errstate(over="ignore", invalid="ignore"):
            mean_b[has] = np.bincount(s, weights=v, minlength=n)[has] / n_b[has]
            # rounding can push the mean outside [min, max]; clamping also makes a constant
            # batch's mean exactly the constant (and its M2 exactly 0)
            mean_b[has] = np.clip(mean_b[has], b_min[has], b_max[has])
            dev = v - mean_b[s]
            m2_b = np.bincount(s, weights=dev * dev, minlength=n).astype(np.float64)
        self._merge(n_b, mean_b, m2_b, b_min, b_max)

    def merge(self, other: Moments) -> None:
        """Add the moments of ``other`` (the same scopes)."""
        self._merge(other.count, other.mean, other.m2, other.min, other.max)

    def _merge(
        self,
        n_b: IntArray,
        mean_b: FloatArray,
        m2_b: FloatArray,
        min_b: FloatArray,
        max_b: FloatArray,
    ) -> None:
        n_a = self.count
        n_tot = n_a + n_b
        frac = np.zeros(self.n_scopes, dtype=np.float64)
        nz = n_tot > 0
        frac[nz] = n_b[nz] / n_tot[nz]
        with np.errstate(over="ignore", invalid="ignore"):
            delta = mean_b - self.mean
            mean = self.mean + delta * frac
            # delta**2 * n_a * n_b / n, ordered so an empty side contributes exactly 0
            m2 = self.m2 + m2_b + (delta * frac) * (delta * n_a)
        self.min = np.minimum(self.min, min_b)
        self.max = np.maximum(self.max, max_b)
        mean[nz] = np.clip(mean[nz], self.min[nz], self.max[nz])
        self.mean = mean
        self.m2 = m2
        self.count = n_tot

    def copy(self) -> Moments:
        out = Moments(self.n_scopes)
        out.count = self.count.copy()
        out.mean = self.mean.copy()
        out.m2 = self.m2.copy()
        out.min = self.min.copy()
        out.max = self.max.copy()
        return out

    def __eq__(self, other: object) -> bool:
        """Exactly the same counts, moments and extremes."""
        if not isinstance(other, Moments):
            return NotImplemented
        return all(
            np.array_equal(a, b)
            for a, b in [
                (self.count, other.count),
                (self.mean, other.mean),
                (self.m2, other.m2),
                (self.min, other.min),
                (self.max, other.max),
            ]
        )

    __hash__ = None  # type: ignore[assignment]  # mutable
