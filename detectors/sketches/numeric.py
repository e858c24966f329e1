"""Per-scope streaming summary of a numeric column: count, missing count, exact mean and
variance (Chan et al. merge), min, max and DDSketch-style relative-error quantiles."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from detectors.arrays import FloatArray, IndexArray, IntArray
from detectors.sketches.buckets import LogBuckets
from detectors.sketches.checks import check_scope, check_scopes, is_real
from detectors.sketches.moments import Moments
from detectors.validation import check_int

# Below this accuracy float64 bucket keys ceil(log|x| / log(gamma)) lose too much precision for
# the relative-error guarantee to mean anything.
_MIN_RELATIVE_ACCURACY = 1e-9


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

    def __init__(
        self, n_scopes: int, relative_accuracy: float = 0.01, max_buckets: int = 2048
    ) -> None:
        self._n_scopes = check_int("n_scopes", n_scopes, 1)
        if not is_real(relative_accuracy) or not 0.0 < float(relative_accuracy) < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy!r}")
        if float(relative_accuracy) < _MIN_RELATIVE_ACCURACY:
            raise ValueError(
                f"relative_accuracy must be >= {_MIN_RELATIVE_ACCURACY} (float64 bucket keys"
                f" cannot resolve finer), got {relative_accuracy!r}"
            )
        self._relative_accuracy = float(relative_accuracy)
        self._max_buckets = check_int("max_buckets", max_buckets, 1)
        self._reset()

    def _reset(self) -> None:
        n = self._n_scopes
        self._missing: IntArray = np.zeros(n, dtype=np.int64)
        self._moments = Moments(n)
        self._buckets = LogBuckets(n, self._relative_accuracy, self._max_buckets)

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

    def _settings(self) -> tuple[int, float, int]:
        return (self._n_scopes, self._relative_accuracy, self._max_buckets)

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
        sc = check_scopes(scopes, vals.shape[0], self._n_scopes)
        if vals.shape[0] == 0:
            return
        n = self._n_scopes
        finite = np.isfinite(vals)
        self._missing += np.bincount(sc[~finite], minlength=n)
        v = vals[finite]
        s = sc[finite]
        if v.shape[0] == 0:
            return
        self._moments.add(v, s)
        self._buckets.add(v, s)

    def update_one(self, value: float | None, scope: int) -> None:
        """Per-event path: exactly ``update`` with a batch of one."""
        self.update(np.array([np.nan if value is None else value], dtype=np.float64), [scope])

    # -- merge --------------------------------------------------------------------------------

    def merge(self, other: NumericSketch) -> NumericSketch:
        """Return a new sketch of both streams; neither input is modified."""
        if not isinstance(other, NumericSketch):
            raise TypeError(f"can only merge a NumericSketch, got {type(other).__name__}")
        mine, theirs = self._settings(), other._settings()
        if mine != theirs:
            raise ValueError(
                "cannot merge NumericSketches with different (n_scopes, relative_accuracy,"
                f" max_buckets): {mine} vs {theirs}"
            )
        out = self._copy()
        out._missing = out._missing + other._missing
        out._moments.merge(other._moments)
        out._buckets.merge(other._buckets)
        return out

    def _copy(self) -> NumericSketch:
        out = NumericSketch(self._n_scopes, self._relative_accuracy, self._max_buckets)
        out._missing = self._missing.copy()
        out._moments = self._moments.copy()
        out._buckets = self._buckets.copy()
        return out

    # -- queries ------------------------------------------------------------------------------

    def count(self, scope: int) -> int:
        """Number of non-missing values seen in ``scope``."""
        return int(self._moments.count[check_scope(scope, self._n_scopes)])

    def missing(self, scope: int) -> int:
        """Number of missing values (None/NaN/+-inf) seen in ``scope``."""
        return int(self._missing[check_scope(scope, self._n_scopes)])

    def mean(self, scope: int) -> float:
        return float(self.means[check_scope(scope, self._n_scopes)])

    def variance(self, scope: int) -> float:
        """Population variance (ddof=0); NaN when the scope is empty."""
        return float(self.variances[check_scope(scope, self._n_scopes)])

    def min(self, scope: int) -> float:
        s = check_scope(scope, self._n_scopes)
        return float(self._moments.min[s]) if self._moments.count[s] > 0 else math.nan

    def max(self, scope: int) -> float:
        s = check_scope(scope, self._n_scopes)
        return float(self._moments.max[s]) if self._moments.count[s] > 0 else math.nan

    @property
    def counts(self) -> IntArray:
        """Non-missing counts of all scopes (a copy)."""
        return self._moments.count.copy()

    @property
    def means(self) -> FloatArray:
        """Means of all scopes, NaN where empty."""
        moments = self._moments
        return np.where(moments.count > 0, moments.mean, np.nan)

    @property
    def variances(self) -> FloatArray:
        """Population variances of all scopes, NaN where empty."""
        moments = self._moments
        out = np.full(self._n_scopes, np.nan)
        nz = moments.count > 0
        out[nz] = moments.m2[nz] / moments.count[nz]
        return out

    def quantile(self, scope: int, q: float) -> float:
        """Rank-q value (see class docstring for the rank definition and error bound)."""
        if not is_real(q):
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        return float(self.quantiles(scope, np.array([float(q)]))[0])

    def quantiles(self, scope: int, probs: FloatArray) -> FloatArray:
        """The scope's rank-q values at every q of ``probs`` (NaN for an empty scope)."""
        s = check_scope(scope, self._n_scopes)
        quantiles: FloatArray = self.scope_quantiles(np.array([s], dtype=np.intp), probs)[0]
        return quantiles

    def scope_quantiles(self, scopes: IndexArray, probs: FloatArray) -> FloatArray:
        """Each scope's rank-q values at every q of ``probs``, one row per scope (NaN for
        an empty one), from one pass over the buckets."""
        scopes = check_scopes(scopes, len(scopes), self._n_scopes)
        probs = np.asarray(probs, dtype=np.float64)
        if not bool(np.all((probs >= 0.0) & (probs <= 1.0))):
            raise ValueError(f"q must be in [0, 1], got {probs.tolist()!r}")
        out = np.full((len(scopes), probs.size), np.nan)
        n = self._moments.count[scopes]
        filled = np.flatnonzero(n > 0)
        if not filled.size:
            return out
        mine, n = scopes[filled], n[filled, None]
        low, high = self._moments.min[mine, None], self._moments.max[mine, None]
        ranks = probs[None, :] * (n - 1)
        floors = np.floor(ranks)
        # rank-0 / rank-(n-1) values are known exactly
        values = np.clip(self._buckets.values_at_ranks(mine, ranks), low, high)
        values = np.where(floors == 0, low, values)
        out[filled] = np.where(floors == n - 1, high, values)
        return out

    def __eq__(self, other: object) -> bool:
        """Exact state equality (configuration, counts, moments, extremes and buckets)."""
        if not isinstance(other, NumericSketch):
            return NotImplemented
        return (
            self._settings() == other._settings()
            and np.array_equal(self._missing, other._missing)
            and self._moments == other._moments
            and self._buckets == other._buckets
        )

    __hash__ = None  # type: ignore[assignment]  # mutable
