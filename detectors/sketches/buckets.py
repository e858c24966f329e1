"""DDSketch-style relative-error buckets of many scopes, in one sorted array.

With ``gamma = (1 + alpha) / (1 - alpha)`` a value ``x != 0`` goes to bucket
``i = ceil(log_gamma(|x|))`` of the positive or negative store (zeros have their own count)
and is represented by ``2 * gamma**i / (1 + gamma)``, within ``alpha`` of every value of the
bucket, relative. Each scope keeps at most ``max_buckets`` non-empty buckets (the zero count
included); beyond that its lowest-valued buckets are folded into the lowest retained one.
"""

from __future__ import annotations

import math

import numpy as np

from detectors.arrays import FloatArray, IndexArray, IntArray

# log(smallest positive subnormal float64) is about -744.44: every finite non-zero |x| has
# log|x| > -_LOG_FLOOR, which is what makes the signed bucket keys below order-preserving.
_LOG_FLOOR = 746.0
# log(largest finite float64) is about 709.78.
_LOG_CEIL = 710.0
# bucket codes scope * span + key + key_max must stay well inside int64
_MAX_CODE = 2**62


class LogBuckets:
    """The bucket counts of ``n_scopes`` scopes at relative accuracy ``alpha``.

    >>> import numpy as np
    >>> buckets = LogBuckets(n_scopes=2, alpha=0.01, max_buckets=2048)
    >>> buckets.add(np.array([1.0, 2.0, 3.0, -5.0]), np.array([0, 0, 0, 1]))
    >>> values = buckets.values_at_ranks(np.array([0]), np.array([[0.0, 1.0, 2.0]]))[0]
    >>> values.round(2).tolist(), bool(np.all(np.abs(values / [1, 2, 3] - 1) <= 0.01))
    ([0.99, 1.99, 2.97], True)
    """

    def __init__(self, n_scopes: int, alpha: float, max_buckets: int) -> None:
        self.n_scopes = n_scopes
        self.alpha = alpha
        self.max_buckets = max_buckets
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._log_gamma = math.log(self._gamma)
        # log of the bucket representative relative to its upper edge: 2 / (1 + gamma)
        self._log_mid = math.log(2.0 / (1.0 + self._gamma))
        # Internal signed key: 0 for zero, +(i + offset) for x > 0, -(i + offset) for x < 0.
        # offset makes every i + offset >= 1, so the key is monotone in x and one sorted store
        # holds the negative store, the zero count and the positive store in value order.
        self._offset = math.ceil(_LOG_FLOOR / self._log_gamma) + 1
        # All scopes' buckets live in one sorted int64 array of codes
        # scope * span + (key + key_max), so a batch is absorbed with one searchsorted.
        self._key_max = self._offset + math.ceil(_LOG_CEIL / self._log_gamma) + 1
        self._span = 2 * self._key_max + 1
        if n_scopes > _MAX_CODE // self._span:
            raise ValueError(
                f"n_scopes must be <= {_MAX_CODE // self._span} at relative_accuracy="
                f"{alpha!r} (int64 bucket codes), got {n_scopes}"
            )
        self._reset()

    def _reset(self) -> None:
        # sorted unique codes, their counts (> 0) and buckets per scope
        self._code: IntArray = np.zeros(0, dtype=np.int64)
        self._count: IntArray = np.zeros(0, dtype=np.int64)
        self._size: IntArray = np.zeros(self.n_scopes, dtype=np.int64)

    def add(self, values: FloatArray, scopes: IndexArray) -> None:
        """Count finite values, ``values[i]`` in scope ``scopes[i]``."""
        codes = scopes.astype(np.int64) * self._span + (self._keys(values) + self._key_max)
        uniq, counts = np.unique(codes, return_counts=True)
        self._absorb(uniq, counts.astype(np.int64))

    def merge(self, other: LogBuckets) -> None:
        """Add the counts of ``other`` (same scopes, accuracy and bound)."""
        self._absorb(other._code, other._count)

    def _keys(self, v: FloatArray) -> IntArray:
        keys = np.zeros(v.shape[0], dtype=np.int64)
        nz = v != 0.0
        a = np.abs(v[nz])
        idx = np.ceil(np.log(a) / self._log_gamma).astype(np.int64) + self._offset
        keys[nz] = np.where(v[nz] > 0.0, idx, -idx)
        return keys

    def _absorb(self, code: IntArray, count: IntArray) -> None:
        """Add buckets (sorted unique ``code``), then fold each scope to ``max_buckets``."""
        pos = np.searchsorted(self._code, code)
        hit = pos < self._code.shape[0]
        hit[hit] = self._code[pos[hit]] == code[hit]
        self._count[pos[hit]] += count[hit]
        miss = ~hit
        if not np.any(miss):
            return
        self._code = np.insert(self._code, pos[miss], code[miss])
        self._count = np.insert(self._count, pos[miss], count[miss])
        self._size += np.bincount(code[miss] // self._span, minlength=self.n_scopes)
        over = np.flatnonzero(self._size > self.max_buckets)
        if over.shape[0] == 0:
            return
        # fold the `excess` lowest buckets of each over-full scope into its lowest retained one
        excess = self._size[over] - self.max_buckets
        starts = np.searchsorted(self._code, over * self._span)
        first_of_run = np.repeat(np.cumsum(excess) - excess, excess)
        folded = np.repeat(starts, excess) + (np.arange(int(excess.sum())) - first_of_run)
        np.add.at(self._count, np.repeat(starts + excess, excess), self._count[folded])
        keep = np.ones(self._code.shape[0], dtype=bool)
        keep[folded] = False
        self._code = self._code[keep]
        self._count = self._count[keep]
        self._size[over] = self.max_buckets

    def copy(self) -> LogBuckets:
        out = LogBuckets(self.n_scopes, self.alpha, self.max_buckets)
        out._code = self._code.copy()
        out._count = self._count.copy()
        out._size = self._size.copy()
        return out

    def values_at_ranks(self, scopes: IndexArray, ranks: FloatArray) -> FloatArray:
        """The representatives of the buckets holding the values of 0-based ``ranks``
        (one row per scope of ``scopes``, which must have values of those ranks), all
        scopes in one search of the buckets' running counts."""
        scopes = scopes.astype(np.int64)
        running = np.cumsum(self._count)
        lo = np.searchsorted(self._code, scopes * self._span)
        before = np.where(lo > 0, running[np.maximum(lo - 1, 0)], 0)
        # The first bucket whose count so far exceeds the rank: for whole counts, exceeding
        # a rank is exceeding its floor, an integer; so the search stays exact in int64
        # however many values come before the scope.
        wanted = before[:, None] + np.floor(ranks).astype(np.int64)
        first = np.searchsorted(running, wanted, side="right")
        keys = self._code[first] - (scopes[:, None] * self._span + self._key_max)
        # math.exp per value, not np.exp: the same floats as ever, to the last bit
        values = [self._key_value(int(k)) for k in keys.ravel().tolist()]
        return np.array(values, dtype=np.float64).reshape(keys.shape)

    def _key_value(self, key: int) -> float:
        if key == 0:
            return 0.0
        i = abs(key) - self._offset
        try:
            mag = math.exp(i * self._log_gamma + self._log_mid)
        except OverflowError:
            mag = math.inf
        return mag if key > 0 else -mag

    def __eq__(self, other: object) -> bool:
        """The same buckets with the same counts."""
        if not isinstance(other, LogBuckets):
            return NotImplemented
        return np.array_equal(self._code, other._code) and np.array_equal(self._count, other._count)

    __hash__ = None  # type: ignore[assignment]  # mutable
