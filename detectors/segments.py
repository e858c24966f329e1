"""Per-scope summaries of a window's raw values, in a handful of numpy calls.

A window's values are kept as flat (value, scope) pairs in arrival order: one pair per
scope a row belongs to. One stable sort by scope turns every scope into a contiguous
segment (still in arrival order), and each statistic is a reduction per segment.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from detectors.arrays import FloatArray, IndexArray, IntArray


@dataclass(frozen=True)
class SegmentStats:
    """Per-scope figures of one window (arrays of length n_scopes).

    ``repeats`` counts rows equal to the previous row of the same scope (NaN never
    equal) out of ``pairs`` consecutive non-missing pairs: a stuck upstream repeats
    far more often than the signal did in the reference.

    >>> import numpy as np
    >>> values = np.array([1.0, 2.0, 2.0, 2.0, np.nan, 5.0])
    >>> stats = segment_stats(values, np.array([0, 0, 0, 1, 1, 1]), n_scopes=2)
    >>> stats.events.tolist(), stats.nulls.tolist(), stats.repeats.tolist()
    ([3, 3], [0, 1], [1, 0])
    >>> stats.minimum.tolist(), stats.maximum.tolist()
    ([1.0, 2.0], [2.0, 5.0])
    """

    events: IntArray
    nulls: IntArray
    mean: FloatArray
    variance: FloatArray
    minimum: FloatArray
    maximum: FloatArray
    repeats: IntArray
    pairs: IntArray

    @property
    def constant(self) -> NDArray[np.bool_]:
        """Scopes whose non-missing values are all equal (and there is at least one)."""
        present = (self.events - self.nulls) > 0
        return np.asarray(present & (self.minimum == self.maximum), dtype=bool)

    @property
    def repeat_rate(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.pairs > 0, self.repeats / self.pairs, np.nan)

    @property
    def null_rate(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.events > 0, self.nulls / self.events, np.nan)


def segment_order(scopes: IndexArray) -> IndexArray:
    """Positions that group pairs by scope, keeping arrival order within a scope."""
    return np.argsort(scopes, kind="stable")


def segment_stats(values: FloatArray, scopes: IndexArray, n_scopes: int) -> SegmentStats:
    order = segment_order(scopes)
    return sorted_segment_stats(values[order], scopes[order], n_scopes)


def sorted_segment_stats(v: FloatArray, s: IndexArray, n_scopes: int) -> SegmentStats:
    """:func:`segment_stats` of pairs already in :func:`segment_order`: a window sorts
    its scopes once and every feature reuses that order."""
    # Missing values stay in place as zeros of the sums (x + 0.0 is x, bit for bit) and
    # are skipped by fmin/fmax: no compaction of the present values, ~35% less time.
    # The pairs are sorted by scope, so a scope's figure repeated over its pairs is
    # np.repeat of the per-scope array, cheaper than gathering it by scope.
    events = np.bincount(s, minlength=n_scopes).astype(np.int64)
    missing = np.isnan(v)
    any_missing = bool(missing.any())
    present_v = np.where(missing, 0.0, v) if any_missing else v
    nulls = np.bincount(s[missing], minlength=n_scopes).astype(np.int64)
    counts = events - nulls
    total = np.bincount(s, weights=present_v, minlength=n_scopes)
    # over: values near the float maximum (1e300) square to inf, a variance that then
    # says "huge", as it should, without a warning per window.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.where(counts > 0, total / counts, np.nan)
        dev = v - np.repeat(mean, events)
        if any_missing:
            dev[missing] = 0.0
        variance = np.where(
            counts > 0, np.bincount(s, weights=dev * dev, minlength=n_scopes) / counts, np.nan
        )
    minimum = np.full(n_scopes, np.nan)
    maximum = np.full(n_scopes, np.nan)
    if v.size:
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        owners = s[starts]
        minimum[owners] = np.fmin.reduceat(v, starts)
        maximum[owners] = np.fmax.reduceat(v, starts)
    same_scope = s[1:] == s[:-1]
    equal = same_scope & (v[1:] == v[:-1])  # NaN is never equal
    owner = s[1:]
    repeats = np.bincount(owner[equal], minlength=n_scopes).astype(np.int64)
    if any_missing:
        pair = same_scope & ~missing[1:] & ~missing[:-1]
        pairs = np.bincount(owner[pair], minlength=n_scopes).astype(np.int64)
    else:
        pairs = np.bincount(owner[same_scope], minlength=n_scopes).astype(np.int64)
    return SegmentStats(events, nulls, mean, variance, minimum, maximum, repeats, pairs)


def stacked_segment_stats(values: FloatArray, s: IndexArray, n_scopes: int) -> list[SegmentStats]:
    """:func:`sorted_segment_stats` of every row of ``values`` (features x pairs, the
    pairs in segment order of ``s``) in one call: feature f's scopes become segments
    f * n_scopes + scope, so the features are consecutive segments of one flat array.
    Each segment sees the same values in the same order: the results are identical.

    >>> v = np.array([[1.0, 2.0, 7.0], [3.0, 3.0, np.nan]])
    >>> [st.mean.tolist() for st in stacked_segment_stats(v, np.array([0, 0, 1]), 2)]
    [[1.5, 7.0], [3.0, nan]]
    """
    n_features = values.shape[0]
    keys = (s[None, :] + n_scopes * np.arange(n_features)[:, None]).ravel()
    stats = sorted_segment_stats(values.ravel(), keys, n_features * n_scopes)
    columns = [getattr(stats, f.name) for f in fields(SegmentStats)]
    return [
        SegmentStats(*(column[f * n_scopes : (f + 1) * n_scopes] for column in columns))
        for f in range(n_features)
    ]


def segment_quantiles(
    values: FloatArray, scopes: IndexArray, wanted: IndexArray, probs: FloatArray
) -> FloatArray:
    """Quantiles (``method="inverted_cdf"``) of the non-missing values of each wanted
    scope: shape (len(wanted), len(probs)); NaN for a scope with no value.

    One stable sort by scope, then a partition of each scope's slice at numpy's
    inverted-CDF ranks: the same order statistics as ``np.quantile`` per scope, without
    a mask of the whole window and ``np.quantile``'s overhead per scope, which cost more
    than the selection itself on a window's dozens of small scopes.
    """
    out = np.full((len(wanted), len(probs)), np.nan)
    if not wanted.size:
        return out
    present = ~np.isnan(values)
    v, s = values[present], scopes[present]
    n_scopes = max(int(wanted.max()), int(s.max()) if s.size else 0) + 1
    # A stable sort of small integers is a radix sort: linear in the values.
    key = s.astype(np.uint16) if n_scopes <= np.iinfo(np.uint16).max else s
    v = v[np.argsort(key, kind="stable")]
    counts = np.bincount(s, minlength=n_scopes)
    starts = np.cumsum(counts) - counts
    sizes = counts[wanted]
    # numpy's inverted_cdf rank: n * p - 1, rounded up unless it is whole, at least 0.
    index = sizes[:, None] * probs[None, :] - 1
    below = np.floor(index)
    ranks = np.where(index == below, below, below + 1).astype(np.intp)
    ranks = np.clip(ranks, 0, np.maximum(sizes[:, None] - 1, 0))
    for i, (scope, size) in enumerate(zip(wanted.tolist(), sizes.tolist())):
        if size:
            start = starts[scope]
            out[i] = np.partition(v[start : start + size], ranks[i])[ranks[i]]
    return out
