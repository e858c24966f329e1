"""Mergeable, bounded-memory per-scope summaries of micro-batch columns.

Both sketches are *columnar*: ``update`` takes one column of a micro-batch plus a scope index per
row (``scopes[i]`` in ``[0, n_scopes)``; a scope is e.g. a reference window, a live window or a
model version).  The per-event path is the very same code called with a batch of one
(``update_one`` is a thin wrapper), so there is a single implementation.

* :class:`NumericSketch` -- count, missing count, exact mean/variance (Chan et al. merge), min,
  max and a DDSketch-style relative-error quantile sketch.
* :class:`CategoricalSketch` -- deterministic Misra-Gries top-k counts plus ``other`` and
  ``missing`` counts.

Both merge into a new sketch (``merge``) and serialise to plain JSON types (``to_dict`` /
``from_dict``).  This module is pure: numpy only, no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.arrays import FloatArray, IndexArray, IntArray
from detectors.validation import check_int

__all__ = ["CategoricalSketch", "NumericSketch"]


# Below this accuracy float64 bucket keys ceil(log|x| / log(gamma)) lose too much precision for
# the relative-error guarantee to mean anything.
_MIN_RELATIVE_ACCURACY = 1e-9
# log(smallest positive subnormal float64) is about -744.44: every finite non-zero |x| has
# log|x| > -_LOG_FLOOR, which is what makes the signed bucket keys below order-preserving.
_LOG_FLOOR = 746.0
# log(largest finite float64) is about 709.78.
_LOG_CEIL = 710.0
# bucket codes scope * span + key + key_max must stay well inside int64
_MAX_CODE = 2**62


def _as_int(x: object) -> int | None:
    """``x`` as an int if it is a (numpy) integer but not a bool, else None."""
    if isinstance(x, (bool, np.bool_)):
        return None
    if isinstance(x, (int, np.integer)):
        return int(x)
    return None


def _is_int(x: object) -> bool:
    return _as_int(x) is not None


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


def _check_scope(scope: object, n_scopes: int) -> int:
    s = _as_int(scope)
    if s is None or not 0 <= s < n_scopes:
        raise ValueError(f"scope must be an int in [0, {n_scopes}), got {scope!r}")
    return s


def _check_scopes(scopes: npt.ArrayLike, n_rows: int, n_scopes: int) -> IndexArray:
    sc = np.asarray(scopes)
    if sc.ndim != 1 or sc.shape[0] != n_rows:
        raise ValueError(
            f"scopes must be a 1-D array with one entry per value ({n_rows}), got shape {sc.shape}"
        )
    if n_rows == 0:
        return np.zeros(0, dtype=np.intp)
    if sc.dtype.kind not in "iu":
        raise ValueError(f"scopes must be an integer array, got dtype {sc.dtype}")
    lo, hi = sc.min(), sc.max()
    if lo < 0 or hi >= n_scopes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"scopes must be in [0, {n_scopes}), got {int(bad)}")
    return sc.astype(np.intp, copy=False)


def _field(d: Mapping[str, Any], name: str) -> Any:
    try:
        return d[name]
    except KeyError:
        raise ValueError(f"malformed sketch dict: missing field {name!r}") from None


def _check_header(d: object, kind: str, version: int) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise ValueError(f"{kind} must be deserialised from a dict, got {type(d).__name__}")
    got_kind = d.get("kind")
    if got_kind != kind:
        raise ValueError(f"expected kind {kind!r}, got {got_kind!r}")
    got_version = d.get("version")
    if got_version != version:
        raise ValueError(f"unsupported {kind} version {got_version!r} (supported: {version})")
    return d


def _int_list(d: Mapping[str, Any], name: str, n: int) -> IntArray:
    raw = _field(d, name)
    if not isinstance(raw, list) or len(raw) != n or not all(_is_int(v) and v >= 0 for v in raw):
        raise ValueError(f"malformed sketch dict: {name!r} must be a list of {n} ints >= 0")
    return np.asarray(raw, dtype=np.int64).reshape(n)


def _opt_float_list(d: Mapping[str, Any], name: str, count: IntArray) -> FloatArray:
    raw = _field(d, name)
    n = count.shape[0]
    if not isinstance(raw, list) or len(raw) != n:
        raise ValueError(f"malformed sketch dict: {name!r} must be a list of {n} entries")
    out = np.full(n, np.nan)
    for s, v in enumerate(raw):
        if (v is None) != (count[s] == 0) or (v is not None and not _is_real(v)):
            raise ValueError(
                f"malformed sketch dict: {name}[{s}] must be a number iff count[{s}] > 0, got {v!r}"
            )
        if v is not None:
            out[s] = float(v)
    return out


class NumericSketch:
    """Per-scope streaming summary of a numeric column.

    For every scope ``s in range(n_scopes)`` it keeps: ``count`` (non-missing values),
    ``missing`` (NaN/None; +-inf are counted as missing too, since they have no bucket and would
    poison the moments), mean and population variance (M2) merged exactly with Chan et al.'s
    parallel formula, ``min``, ``max`` and a DDSketch-style quantile sketch.

    Quantile sketch: with ``gamma = (1 + alpha) / (1 - alpha)`` a value ``x != 0`` goes to bucket
    ``i = ceil(log_gamma(|x|))`` of the positive or negative store (zeros have their own count)
    and is represented by ``2 * gamma**i / (1 + gamma)``.  **Guarantee**: for any ``q`` in
    ``[0, 1]``, ``quantile(s, q)`` returns ``v`` with ``|v - x_q| <= alpha * |x_q|``, where
    ``x_q`` is the rank-q value of the stream, i.e. the element at 0-based index
    ``floor(q * (count - 1))`` of the sorted non-missing values (numpy's ``method="lower"``).
    It holds for normal (non-subnormal) float64 values, up to float rounding of ~1e-12
    relative; the answer is clamped to the exact ``[min, max]``, and ranks 0 and ``count - 1``
    (e.g. ``q=0`` and ``q=1``) return the exact min and max.

    Memory is bounded: each scope keeps at most ``max_buckets`` non-empty buckets (the zero
    count included).  When exceeded, the lowest-valued buckets are folded into the lowest
    retained one; this only degrades quantiles whose rank falls inside the folded mass, i.e.
    the lowest quantiles (at alpha=0.01 the default 2048 buckets span a ratio of ~6e17
    between the smallest and largest magnitudes before anything is folded).

    Counts, min, max and buckets do not depend on how the stream is batched or merged (also
    when folding); mean and variance agree up to float rounding.  Moments use float64
    arithmetic, so values beyond ~1e150 in magnitude can overflow the variance.

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> sk = NumericSketch(n_scopes=2)  # scope 0 = reference, scope 1 = live
    >>> sk.update(rng.normal(0, 1, 5_000), np.zeros(5_000, dtype=np.intp))
    >>> live = rng.normal(0, 1, 5_000) * 100
    >>> live[:50] = np.nan  # an upstream bug starts sending nulls
    >>> sk.update(live, np.ones(5_000, dtype=np.intp))
    >>> [round(sk.quantile(s, 0.99), 1) for s in (0, 1)]  # p99: ~100x larger
    [2.3, 228.2]
    >>> round(float(np.sqrt(sk.variances[1] / sk.variances[0])))  # std ratio
    100
    >>> [sk.missing(s) for s in (0, 1)]
    [0, 50]
    """

    KIND = "numeric_sketch"
    VERSION = 1

    def __init__(
        self, n_scopes: int, relative_accuracy: float = 0.01, max_buckets: int = 2048
    ) -> None:
        self._n_scopes = check_int("n_scopes", n_scopes, 1)
        if not _is_real(relative_accuracy) or not 0.0 < float(relative_accuracy) < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy!r}")
        if float(relative_accuracy) < _MIN_RELATIVE_ACCURACY:
            raise ValueError(
                f"relative_accuracy must be >= {_MIN_RELATIVE_ACCURACY} (float64 bucket keys"
                f" cannot resolve finer), got {relative_accuracy!r}"
            )
        self._relative_accuracy = float(relative_accuracy)
        self._max_buckets = check_int("max_buckets", max_buckets, 1)
        alpha = self._relative_accuracy
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
        if self._n_scopes > _MAX_CODE // self._span:
            raise ValueError(
                f"n_scopes must be <= {_MAX_CODE // self._span} at relative_accuracy="
                f"{alpha!r} (int64 bucket codes), got {self._n_scopes}"
            )
        self._reset()

    def _reset(self) -> None:
        n = self._n_scopes
        self._count: IntArray = np.zeros(n, dtype=np.int64)
        self._missing: IntArray = np.zeros(n, dtype=np.int64)
        self._mean: FloatArray = np.zeros(n, dtype=np.float64)
        self._m2: FloatArray = np.zeros(n, dtype=np.float64)
        self._min: FloatArray = np.full(n, np.inf)
        self._max: FloatArray = np.full(n, -np.inf)
        # bucket store: sorted unique codes, their counts (> 0) and buckets per scope
        self._b_code: IntArray = np.zeros(0, dtype=np.int64)
        self._b_count: IntArray = np.zeros(0, dtype=np.int64)
        self._b_size: IntArray = np.zeros(n, dtype=np.int64)

    # -- configuration (read-only) ------------------------------------------------------------

    @property
    def n_scopes(self) -> int:
        return self._n_scopes

    @property
    def relative_accuracy(self) -> float:
        return self._relative_accuracy

    @property
    def max_buckets(self) -> int:
        return self._max_buckets

    def __repr__(self) -> str:
        return (
            f"NumericSketch(n_scopes={self._n_scopes}, relative_accuracy="
            f"{self._relative_accuracy!r}, max_buckets={self._max_buckets})"
        )

    # -- updates ------------------------------------------------------------------------------

    def update(self, values: npt.ArrayLike, scopes: npt.ArrayLike) -> None:
        """Add a micro-batch column; ``values[i]`` belongs to scope ``scopes[i]``.

        ``values`` is converted to float64 (None -> NaN).  NaN and +-inf count as missing.
        The batch is validated before any state changes.
        """
        vals = np.asarray(values, dtype=np.float64)
        if vals.ndim != 1:
            raise ValueError(f"values must be a 1-D array, got shape {vals.shape}")
        sc = _check_scopes(scopes, vals.shape[0], self._n_scopes)
        if vals.shape[0] == 0:
            return
        n = self._n_scopes
        finite = np.isfinite(vals)
        self._missing += np.bincount(sc[~finite], minlength=n)
        v = vals[finite]
        s = sc[finite]
        if v.shape[0] == 0:
            return
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
        self._merge_moments(n_b, mean_b, m2_b, b_min, b_max)
        codes = s.astype(np.int64) * self._span + (self._keys(v) + self._key_max)
        uniq, counts = np.unique(codes, return_counts=True)
        self._absorb_buckets(uniq, counts.astype(np.int64))

    def update_one(self, value: float | None, scope: int) -> None:
        """Per-event path: exactly ``update`` with a batch of one."""
        self.update(np.array([np.nan if value is None else value], dtype=np.float64), [scope])

    def _keys(self, v: FloatArray) -> IntArray:
        keys = np.zeros(v.shape[0], dtype=np.int64)
        nz = v != 0.0
        a = np.abs(v[nz])
        idx = np.ceil(np.log(a) / self._log_gamma).astype(np.int64) + self._offset
        keys[nz] = np.where(v[nz] > 0.0, idx, -idx)
        return keys

    def _merge_moments(
        self,
        n_b: IntArray,
        mean_b: FloatArray,
        m2_b: FloatArray,
        min_b: FloatArray,
        max_b: FloatArray,
    ) -> None:
        n_a = self._count
        n_tot = n_a + n_b
        frac = np.zeros(self._n_scopes, dtype=np.float64)
        nz = n_tot > 0
        frac[nz] = n_b[nz] / n_tot[nz]
        with np.errstate(over="ignore", invalid="ignore"):
            delta = mean_b - self._mean
            mean = self._mean + delta * frac
            # delta**2 * n_a * n_b / n, ordered so an empty side contributes exactly 0
            m2 = self._m2 + m2_b + (delta * frac) * (delta * n_a)
        self._min = np.minimum(self._min, min_b)
        self._max = np.maximum(self._max, max_b)
        mean[nz] = np.clip(mean[nz], self._min[nz], self._max[nz])
        self._mean = mean
        self._m2 = m2
        self._count = n_tot

    def _absorb_buckets(self, code: IntArray, count: IntArray) -> None:
        """Add buckets (sorted unique ``code``), then fold each scope to ``max_buckets``."""
        pos = np.searchsorted(self._b_code, code)
        hit = pos < self._b_code.shape[0]
        hit[hit] = self._b_code[pos[hit]] == code[hit]
        self._b_count[pos[hit]] += count[hit]
        miss = ~hit
        if not np.any(miss):
            return
        self._b_code = np.insert(self._b_code, pos[miss], code[miss])
        self._b_count = np.insert(self._b_count, pos[miss], count[miss])
        self._b_size += np.bincount(code[miss] // self._span, minlength=self._n_scopes)
        over = np.flatnonzero(self._b_size > self._max_buckets)
        if over.shape[0] == 0:
            return
        # fold the `excess` lowest buckets of each over-full scope into its lowest retained one
        excess = self._b_size[over] - self._max_buckets
        starts = np.searchsorted(self._b_code, over * self._span)
        first_of_run = np.repeat(np.cumsum(excess) - excess, excess)
        folded = np.repeat(starts, excess) + (np.arange(int(excess.sum())) - first_of_run)
        np.add.at(self._b_count, np.repeat(starts + excess, excess), self._b_count[folded])
        keep = np.ones(self._b_code.shape[0], dtype=bool)
        keep[folded] = False
        self._b_code = self._b_code[keep]
        self._b_count = self._b_count[keep]
        self._b_size[over] = self._max_buckets

    # -- merge --------------------------------------------------------------------------------

    def merge(self, other: NumericSketch) -> NumericSketch:
        """Return a new sketch of both streams; neither input is modified."""
        if not isinstance(other, NumericSketch):
            raise TypeError(f"can only merge a NumericSketch, got {type(other).__name__}")
        mine = (self._n_scopes, self._relative_accuracy, self._max_buckets)
        theirs = (other._n_scopes, other._relative_accuracy, other._max_buckets)
        if mine != theirs:
            raise ValueError(
                "cannot merge NumericSketches with different (n_scopes, relative_accuracy,"
                f" max_buckets): {mine} vs {theirs}"
            )
        out = self._copy()
        out._missing = out._missing + other._missing
        out._merge_moments(other._count, other._mean, other._m2, other._min, other._max)
        out._absorb_buckets(other._b_code, other._b_count)
        return out

    def _copy(self) -> NumericSketch:
        out = NumericSketch(self._n_scopes, self._relative_accuracy, self._max_buckets)
        out._count = self._count.copy()
        out._missing = self._missing.copy()
        out._mean = self._mean.copy()
        out._m2 = self._m2.copy()
        out._min = self._min.copy()
        out._max = self._max.copy()
        out._b_code = self._b_code.copy()
        out._b_count = self._b_count.copy()
        out._b_size = self._b_size.copy()
        return out

    # -- queries ------------------------------------------------------------------------------

    def count(self, scope: int) -> int:
        """Number of non-missing values seen in ``scope``."""
        return int(self._count[_check_scope(scope, self._n_scopes)])

    def missing(self, scope: int) -> int:
        """Number of missing values (None/NaN/+-inf) seen in ``scope``."""
        return int(self._missing[_check_scope(scope, self._n_scopes)])

    def mean(self, scope: int) -> float:
        return float(self.means[_check_scope(scope, self._n_scopes)])

    def variance(self, scope: int) -> float:
        """Population variance (ddof=0); NaN when the scope is empty."""
        return float(self.variances[_check_scope(scope, self._n_scopes)])

    def min(self, scope: int) -> float:
        s = _check_scope(scope, self._n_scopes)
        return float(self._min[s]) if self._count[s] > 0 else math.nan

    def max(self, scope: int) -> float:
        s = _check_scope(scope, self._n_scopes)
        return float(self._max[s]) if self._count[s] > 0 else math.nan

    @property
    def counts(self) -> IntArray:
        """Non-missing counts of all scopes (a copy)."""
        return self._count.copy()

    @property
    def means(self) -> FloatArray:
        """Means of all scopes, NaN where empty."""
        return np.where(self._count > 0, self._mean, np.nan)

    @property
    def variances(self) -> FloatArray:
        """Population variances of all scopes, NaN where empty."""
        out = np.full(self._n_scopes, np.nan)
        nz = self._count > 0
        out[nz] = self._m2[nz] / self._count[nz]
        return out

    def quantile(self, scope: int, q: float) -> float:
        """Rank-q value (see class docstring for the rank definition and error bound)."""
        s = _check_scope(scope, self._n_scopes)
        if not _is_real(q) or not 0.0 <= float(q) <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        n = int(self._count[s])
        if n == 0:
            return math.nan
        rank = float(q) * (n - 1)
        if math.floor(rank) == 0:  # rank-0 / rank-(n-1) values are known exactly
            return float(self._min[s])
        if math.floor(rank) == n - 1:
            return float(self._max[s])
        lo, hi = np.searchsorted(self._b_code, [s * self._span, (s + 1) * self._span])
        cum = np.cumsum(self._b_count[lo:hi])
        i = int(np.searchsorted(cum, rank, side="right"))  # first bucket with cum > rank
        value = self._key_value(int(self._b_code[lo + i]) - s * self._span - self._key_max)
        return min(max(value, float(self._min[s])), float(self._max[s]))

    def _key_value(self, key: int) -> float:
        if key == 0:
            return 0.0
        i = abs(key) - self._offset
        try:
            mag = math.exp(i * self._log_gamma + self._log_mid)
        except OverflowError:
            mag = math.inf
        return mag if key > 0 else -mag

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (plain lists/ints/floats; None for empty scopes)."""
        empty = self._count == 0

        def floats(a: FloatArray) -> list[float | None]:
            return [
                None if e else float(x) for x, e in zip(a.tolist(), empty.tolist(), strict=True)
            ]

        buckets: list[dict[str, Any]] = []
        bounds = np.searchsorted(self._b_code, np.arange(self._n_scopes + 1) * self._span)
        for s in range(self._n_scopes):
            k = self._b_code[bounds[s] : bounds[s + 1]] - (s * self._span + self._key_max)
            c = self._b_count[bounds[s] : bounds[s + 1]]
            neg, pos = k < 0, k > 0
            buckets.append(
                {
                    "negative": {
                        "index": (-k[neg] - self._offset).tolist(),
                        "count": c[neg].tolist(),
                    },
                    "zero": int(c[k == 0].sum()),
                    "positive": {
                        "index": (k[pos] - self._offset).tolist(),
                        "count": c[pos].tolist(),
                    },
                }
            )
        return {
            "kind": self.KIND,
            "version": self.VERSION,
            "n_scopes": self._n_scopes,
            "relative_accuracy": self._relative_accuracy,
            "max_buckets": self._max_buckets,
            "count": self._count.tolist(),
            "missing": self._missing.tolist(),
            "mean": floats(self._mean),
            "m2": [float(x) for x in self._m2.tolist()],
            "min": floats(self._min),
            "max": floats(self._max),
            "buckets": buckets,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericSketch:
        """Inverse of :meth:`to_dict`; raises ValueError on a wrong kind/version or bad data."""
        d = _check_header(d, cls.KIND, cls.VERSION)
        out = cls(_field(d, "n_scopes"), _field(d, "relative_accuracy"), _field(d, "max_buckets"))
        n = out._n_scopes
        count = _int_list(d, "count", n)
        missing = _int_list(d, "missing", n)
        mean = _opt_float_list(d, "mean", count)
        mn = _opt_float_list(d, "min", count)
        mx = _opt_float_list(d, "max", count)
        m2_raw = _field(d, "m2")
        if not isinstance(m2_raw, list) or len(m2_raw) != n or not all(_is_real(x) for x in m2_raw):
            raise ValueError(f"malformed sketch dict: 'm2' must be a list of {n} numbers")
        raw_buckets = _field(d, "buckets")
        if not isinstance(raw_buckets, list) or len(raw_buckets) != n:
            raise ValueError(f"malformed sketch dict: 'buckets' must be a list of {n} entries")
        scopes: list[IndexArray] = []
        keys: list[IntArray] = []
        counts: list[IntArray] = []
        for s, b in enumerate(raw_buckets):
            try:
                parts = [
                    (-1, b["negative"]["index"], b["negative"]["count"]),
                    (0, [0], [b["zero"]]),
                    (1, b["positive"]["index"], b["positive"]["count"]),
                ]
            except (KeyError, TypeError):
                raise ValueError(f"malformed sketch dict: bad buckets[{s}]") from None
            for sign, idx, cnt in parts:
                ok = isinstance(idx, list) and isinstance(cnt, list) and len(idx) == len(cnt)
                if not ok or not all(_is_int(x) for x in [*idx, *cnt]):
                    raise ValueError(f"malformed sketch dict: bad buckets[{s}]")
                i = np.asarray(idx, dtype=np.int64).reshape(-1)
                c = np.asarray(cnt, dtype=np.int64).reshape(-1)
                if sign and np.any((i + out._offset < 1) | (i + out._offset > out._key_max)):
                    raise ValueError(f"malformed sketch dict: bucket index out of range in {s}")
                keep = c != 0
                keys.append(sign * (i[keep] + out._offset) if sign else i[keep] * 0)
                counts.append(c[keep])
                scopes.append(np.full(int(keep.sum()), s, dtype=np.intp))
        s_all = np.concatenate(scopes)
        c_all = np.concatenate(counts)
        if np.any(c_all < 0):
            raise ValueError("malformed sketch dict: negative bucket count")
        if not np.array_equal(np.bincount(s_all, weights=c_all, minlength=n), count):
            raise ValueError("malformed sketch dict: bucket counts do not add up to 'count'")
        size = np.bincount(s_all, minlength=n).astype(np.int64)
        if np.any(size > out._max_buckets):
            raise ValueError("malformed sketch dict: more buckets than max_buckets")
        code = s_all.astype(np.int64) * out._span + np.concatenate(keys) + out._key_max
        order = np.argsort(code, kind="stable")
        code, c_all = code[order], c_all[order]
        if np.any(code[1:] == code[:-1]):
            raise ValueError("malformed sketch dict: duplicate bucket index")
        out._count = count
        out._missing = missing
        out._mean = np.nan_to_num(mean, nan=0.0)
        out._m2 = np.asarray(m2_raw, dtype=np.float64).reshape(n)
        out._min = np.nan_to_num(mn, nan=np.inf)
        out._max = np.nan_to_num(mx, nan=-np.inf)
        out._b_code, out._b_count, out._b_size = code, c_all, size
        return out

    def __eq__(self, other: object) -> bool:
        """Exact state equality (configuration, counts, moments, extremes and buckets)."""
        if not isinstance(other, NumericSketch):
            return NotImplemented
        return (self._n_scopes, self._relative_accuracy, self._max_buckets) == (
            other._n_scopes,
            other._relative_accuracy,
            other._max_buckets,
        ) and all(
            np.array_equal(a, b)
            for a, b in [
                (self._count, other._count),
                (self._missing, other._missing),
                (self._mean, other._mean),
                (self._m2, other._m2),
                (self._min, other._min),
                (self._max, other._max),
                (self._b_code, other._b_code),
                (self._b_count, other._b_count),
            ]
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


def _mg_merge(a: dict[str, int], b: Mapping[str, int], k: int) -> dict[str, int]:
    """Mergeable Misra-Gries step (Agarwal et al. 2012): add counters, then if more than ``k``
    remain subtract the (k+1)-th largest count from all and drop those <= 0.  The result only
    depends on the multiset of (category, count) pairs, so it is deterministic."""
    out = dict(a)
    for c, n in b.items():
        out[c] = out.get(c, 0) + n
    if len(out) <= k:
        return out
    threshold = sorted(out.values(), reverse=True)[k]
    return {c: n - threshold for c, n in out.items() if n > threshold}


class CategoricalSketch:
    """Per-scope category counts in bounded memory (deterministic, mergeable Misra-Gries).

    Each scope tracks at most ``top_k`` categories; the rest of the non-missing mass is
    ``other(scope) = count(scope) - sum(tracked counts)``; None/NaN are counted in ``missing``.
    Updates and merges use the mergeable Misra-Gries step: add the counters, and if more than
    ``top_k`` remain, subtract the (top_k+1)-th largest count from all and drop those <= 0.
    No tie-breaking is needed (ties at the threshold are all dropped); ``top`` lists ties by
    name.

    **Error bound**: for every category ``c`` (untracked ones have estimate 0),
    ``estimate(c) <= true(c) <= estimate(c) + other(s) / (top_k + 1)``, and
    ``other(s) <= count(s)``.  While a scope never sees more than ``top_k`` distinct
    categories, the counts are exact and independent of batching and merge order; beyond that
    the (bounded) estimates can depend on how the stream was batched.

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> sk = CategoricalSketch(n_scopes=2, top_k=3)  # scope 0 = reference, scope 1 = live
    >>> ref = rng.choice(["card", "cash", "voucher"], size=2_000, p=[0.7, 0.25, 0.05])
    >>> live = rng.choice(["card", "cash", "crypto"], size=2_000, p=[0.3, 0.2, 0.5])
    >>> sk.update(np.concatenate([ref, live]), np.repeat([0, 1], 2_000))
    >>> [(c, round(n / sk.count(0), 2)) for c, n in sk.top(0)]
    [('card', 0.7), ('cash', 0.26), ('voucher', 0.05)]
    >>> [(c, round(n / sk.count(1), 2)) for c, n in sk.top(1)]
    [('crypto', 0.5), ('card', 0.3), ('cash', 0.2)]
    """

    KIND = "categorical_sketch"
    VERSION = 1

    def __init__(self, n_scopes: int, top_k: int = 20) -> None:
        self._n_scopes = check_int("n_scopes", n_scopes, 1)
        self._top_k = check_int("top_k", top_k, 1)
        self._reset()

    def _reset(self) -> None:
        n = self._n_scopes
        self._count: IntArray = np.zeros(n, dtype=np.int64)
        self._missing: IntArray = np.zeros(n, dtype=np.int64)
        self._tracked: list[dict[str, int]] = [{} for _ in range(n)]

    @property
    def n_scopes(self) -> int:
        return self._n_scopes

    @property
    def top_k(self) -> int:
        return self._top_k

    def __repr__(self) -> str:
        return f"CategoricalSketch(n_scopes={self._n_scopes}, top_k={self._top_k})"

    def update(
        self, values: Sequence[str | None] | npt.NDArray[Any], scopes: npt.ArrayLike
    ) -> None:
        """Add a micro-batch column of categories (str; None/NaN = missing).

        Other value types raise TypeError.  The batch is validated before any state changes.
        """
        if isinstance(values, (str, bytes)):
            raise TypeError("values must be a sequence of categories, not a single str")
        if isinstance(values, np.ndarray) and values.ndim != 1:
            raise ValueError(f"values must be a 1-D array, got shape {values.shape}")
        vals = np.empty(len(values), dtype=object)
        vals[:] = values if isinstance(values, np.ndarray) else list(values)
        sc = _check_scopes(scopes, vals.shape[0], self._n_scopes)
        if vals.shape[0] == 0:
            return
        n = self._n_scopes
        none = np.full(1, None, dtype=object)
        miss: npt.NDArray[np.bool_] = np.equal(vals, none) | np.not_equal(vals, vals)  # NaN
        v = vals[~miss]
        s = sc[~miss]
        names: list[str] = []
        pairs = np.zeros(0, dtype=np.int64)
        pair_counts = np.zeros(0, dtype=np.int64)
        if v.shape[0] > 0:
            try:
                uniq, codes = np.unique(v, return_inverse=True)
            except TypeError:  # unorderable mix, e.g. str and int
                raise TypeError(
                    "categorical values must be str or None (got mixed types)"
                ) from None
            for u in uniq.tolist():
                if not isinstance(u, str):
                    raise TypeError(f"categorical values must be str or None, got {u!r}")
                names.append(str(u))  # np.str_ -> str
            # one code per (scope, category) pair, counted in one pass
            pairs, pair_counts = np.unique(
                s.astype(np.int64) * len(names) + codes.reshape(-1), return_counts=True
            )
        self._missing += np.bincount(sc[miss], minlength=n)
        self._count += np.bincount(s, minlength=n)
        batch: dict[int, dict[str, int]] = {}
        for p, c in zip(pairs.tolist(), pair_counts.tolist(), strict=True):
            batch.setdefault(p // len(names), {})[names[p % len(names)]] = c
        for scope, counts in batch.items():
            self._tracked[scope] = _mg_merge(self._tracked[scope], counts, self._top_k)

    def update_one(self, value: str | None, scope: int) -> None:
        """Per-event path: exactly ``update`` with a batch of one."""
        self.update([value], [scope])

    def merge(self, other: CategoricalSketch) -> CategoricalSketch:
        """Return a new sketch of both streams; neither input is modified."""
        if not isinstance(other, CategoricalSketch):
            raise TypeError(f"can only merge a CategoricalSketch, got {type(other).__name__}")
        mine, theirs = (self._n_scopes, self._top_k), (other._n_scopes, other._top_k)
        if mine != theirs:
            raise ValueError(
                f"cannot merge CategoricalSketches with different (n_scopes, top_k): "
                f"{mine} vs {theirs}"
            )
        out = CategoricalSketch(self._n_scopes, self._top_k)
        out._count = self._count + other._count
        out._missing = self._missing + other._missing
        out._tracked = [
            _mg_merge(a, b, self._top_k) for a, b in zip(self._tracked, other._tracked, strict=True)
        ]
        return out

    def top(self, scope: int) -> list[tuple[str, int]]:
        """Tracked categories of ``scope``, by count descending then name."""
        tracked = self._tracked[_check_scope(scope, self._n_scopes)]
        return sorted(tracked.items(), key=lambda kv: (-kv[1], kv[0]))

    def other(self, scope: int) -> int:
        """Non-missing mass of ``scope`` not attributed to a tracked category."""
        s = _check_scope(scope, self._n_scopes)
        return int(self._count[s]) - sum(self._tracked[s].values())

    def missing(self, scope: int) -> int:
        return int(self._missing[_check_scope(scope, self._n_scopes)])

    def count(self, scope: int) -> int:
        """Number of non-missing values seen in ``scope``."""
        return int(self._count[_check_scope(scope, self._n_scopes)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (plain lists/ints/strs)."""
        return {
            "kind": self.KIND,
            "version": self.VERSION,
            "n_scopes": self._n_scopes,
            "top_k": self._top_k,
            "count": self._count.tolist(),
            "missing": self._missing.tolist(),
            "tracked": [[[c, n] for c, n in self.top(s)] for s in range(self._n_scopes)],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalSketch:
        """Inverse of :meth:`to_dict`; raises ValueError on a wrong kind/version or bad data."""
        d = _check_header(d, cls.KIND, cls.VERSION)
        out = cls(_field(d, "n_scopes"), _field(d, "top_k"))
        n = out._n_scopes
        count = _int_list(d, "count", n)
        missing = _int_list(d, "missing", n)
        raw = _field(d, "tracked")
        if not isinstance(raw, list) or len(raw) != n:
            raise ValueError(f"malformed sketch dict: 'tracked' must be a list of {n} entries")
        tracked: list[dict[str, int]] = []
        for s, entries in enumerate(raw):
            ok = isinstance(entries, list) and len(entries) <= out._top_k
            ok = ok and all(
                isinstance(e, list)
                and len(e) == 2
                and isinstance(e[0], str)
                and _is_int(e[1])
                and e[1] > 0
                for e in entries
            )
            t = {str(e[0]): int(e[1]) for e in entries} if ok else {}
            if not ok or len(t) != len(entries) or sum(t.values()) > count[s]:
                raise ValueError(f"malformed sketch dict: bad tracked[{s}]")
            tracked.append(t)
        out._count, out._missing, out._tracked = count, missing, tracked
        return out

    def __eq__(self, other: object) -> bool:
        """Exact state equality."""
        if not isinstance(other, CategoricalSketch):
            return NotImplemented
        return (
            (self._n_scopes, self._top_k) == (other._n_scopes, other._top_k)
            and np.array_equal(self._count, other._count)
            and np.array_equal(self._missing, other._missing)
            and self._tracked == other._tracked
        )

    __hash__ = None  # type: ignore[assignment]  # mutable
