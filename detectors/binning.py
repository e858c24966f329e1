"""Bins fixed on the reference window, shared by every scope of a feature.

Numbers get the reference's quantile edges (so each bin holds about the same share
of reference traffic), strings get one bin per frequent reference category plus an
``other`` bin, and every feature has a null bin last: a feature that goes missing
is a change in its distribution too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.arrays import FloatArray, IndexArray
from detectors.sketches import CategoricalSketch


@dataclass(frozen=True)
class NumericBins:
    """Quantile bins of a numeric reference.

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> bins = NumericBins.from_reference(rng.normal(0, 1, 5_000), n_bins=10)
    >>> reference = np.bincount(bins.assign(rng.normal(0, 1, 5_000)), minlength=bins.n_bins)
    >>> shifted = np.bincount(bins.assign(rng.normal(1, 1, 5_000)), minlength=bins.n_bins)
    >>> top = slice(-3, -1)  # the top decile, then the bin above the reference's maximum
    >>> int(reference[top].sum()), int(shifted[top].sum())  # ~500 expected, ~1945 after +1 sd
    (521, 1987)
    >>> small_count = rng.poisson(0.3, 5_000).astype(float)  # P(0) = 0.74, P(1) = 0.22
    >>> counts = NumericBins.from_reference(small_count, n_bins=10)
    >>> counts.edges[:2].tolist(), bool(counts.edges[2] > small_count.max() >= 2)  # deciles
    ([0.0, 1.0], True)
    >>> counts.assign(np.array([0.0, 1.0, 2.0, 1_000.0])).tolist()  # x1000 leaves the range
    [1, 2, 2, 3]
    """

    edges: FloatArray

    @classmethod
    def from_reference(cls, values: FloatArray, n_bins: int) -> NumericBins:
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return cls(edges=np.empty(0, dtype=np.float64))
        qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
        # np.unique collapses the repeated edges of discrete features (flags,
        # small counts), which then get one bin per value instead of empty bins.
        edges = np.unique(np.quantile(finite, qs, method="inverted_cdf"))
        # Values above the reference's maximum get a bin of their own. Without it, the
        # top bin of a small count (edges 0 and 1) holds 1, 2 and 1,000 alike, and a
        # unit change (x1000) would not move the histogram at all. For a continuous
        # feature the bin is nearly empty (1 / (reference + 1) of stationary traffic),
        # and bins empty on both sides are dropped by every statistic.
        edges = np.append(edges, np.nextafter(finite.max(), np.inf))
        return cls(edges=edges.astype(np.float64))

    @property
    def n_bins(self) -> int:
        return int(self.edges.size) + 2

    @property
    def null_bin(self) -> int:
        return self.n_bins - 1

    def assign(self, values: FloatArray) -> IndexArray:
        bins = np.searchsorted(self.edges, values, side="right").astype(np.intp)
        bins[np.isnan(values)] = self.null_bin
        return bins


@dataclass(frozen=True)
class CategoricalBins:
    """One bin per frequent reference category, then ``other``, then null.

    >>> bins = CategoricalBins.from_reference(["DE"] * 60 + ["FR"] * 40, max_categories=5)
    >>> bins.categories, bins.n_bins
    (('DE', 'FR'), 4)
    >>> [int(b) for b in bins.assign(["FR", "XX", None, "DE"])]
    [1, 2, 3, 0]
    """

    categories: tuple[str, ...]
    _index: dict[Any, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[Any, int] = {c: i for i, c in enumerate(self.categories)}
        index[None] = len(self.categories) + 1
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_reference(cls, values: Sequence[object], max_categories: int) -> CategoricalBins:
        if max_categories < 1:
            raise ValueError(f"max_categories must be >= 1, got {max_categories}")
        strings = [v for v in values if isinstance(v, str)]
        # The mergeable top-k sketch: exact while the reference has at most
        # max_categories distinct strings, the frequent ones beyond that.
        sketch = CategoricalSketch(n_scopes=1, top_k=max_categories)
        sketch.update(strings, np.zeros(len(strings), dtype=np.intp))
        return cls(categories=tuple(c for c, _ in sketch.top(0)))

    @property
    def n_bins(self) -> int:
        return len(self.categories) + 2

    @property
    def other_bin(self) -> int:
        return len(self.categories)

    @property
    def null_bin(self) -> int:
        return len(self.categories) + 1

    def assign(self, values: Sequence[object]) -> IndexArray:
        n = len(values)
        found = map(self._index.get, values, repeat(self.other_bin, n))
        return np.fromiter(found, dtype=np.intp, count=n)


Bins = NumericBins | CategoricalBins


def scope_histograms(
    bins: IndexArray, scopes: IndexArray, n_scopes: int, n_bins: int
) -> NDArray[np.int64]:
    """Counts per (scope, bin): ``bins`` has each row's bin, ``scopes`` one column per
    scope the row is in (the population and one cohort per dimension)."""
    flat = (scopes * n_bins + bins[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_scopes * n_bins)
    return counts.reshape(n_scopes, n_bins).astype(np.int64)
