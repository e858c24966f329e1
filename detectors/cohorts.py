"""Cohort scopes: the population plus every value of every cohort dimension.

A dimension is one cohort attribute (``region``) or a combination of attributes
(``region x channel``). Each keeps at most ``max_values`` values, the most frequent
ones in the reference; every other value folds into ``__other__``, so neither memory
nor the number of metric series grows with hostile or high-cardinality input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import cast

import numpy as np

from detectors.arrays import IndexArray

OTHER = "__other__"
MISSING = "__missing__"
POPULATION = 0


Dimension = tuple[str, ...]


def _raw_keys(
    dimension: Dimension, cohorts: Mapping[str, Sequence[str | None]], n: int
) -> Sequence[object]:
    """Each row's key for a dimension: the value itself for one attribute (None when
    missing), a tuple of values for a combination. No per-row work for one attribute."""
    absent: Sequence[str | None] = [None] * n
    columns = [cohorts.get(attribute) or absent for attribute in dimension]
    return columns[0] if len(columns) == 1 else list(zip(*columns))


def _value(key: object, width: int) -> tuple[str, ...]:
    parts: tuple[object, ...] = (key,) if width == 1 else key  # type: ignore[assignment]
    return tuple(MISSING if v is None else str(v) for v in parts)


def _raw_key(value: tuple[str, ...]) -> object:
    parts = tuple(None if v == MISSING else v for v in value)
    return parts[0] if len(parts) == 1 else parts


@dataclass(frozen=True)
class CohortScopes:
    """Maps each row's cohort attributes to its scopes: one column per dimension.

    >>> scopes = CohortScopes.from_reference(
    ...     {"region": ["eu", "eu", "us", "apac"]}, dimensions=[("region",)], max_values=2
    ... )
    >>> scopes.labels
    ({}, {'region': 'eu'}, {'region': 'apac'}, {'region': '__other__'})
    >>> scopes.assign({"region": ["us", "eu", "mars"]}, 3).tolist()
    [[0, 3], [0, 1], [0, 3]]
    """

    dimensions: tuple[Dimension, ...]
    # Per dimension, the kept values: each a tuple with one entry per attribute.
    values: tuple[tuple[tuple[str, ...], ...], ...]
    _index: tuple[dict[tuple[str, ...], int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = []
        offset = 1
        for values in self.values:
            index.append({_raw_key(v): offset + i for i, v in enumerate(values)})
            offset += len(values) + 1
        object.__setattr__(self, "_index", tuple(index))

    @classmethod
    def from_reference(
        cls,
        cohorts: Mapping[str, Sequence[str | None]],
        dimensions: Sequence[Dimension],
        max_values: int,
    ) -> CohortScopes:
        if max_values < 1:
            raise ValueError(f"max_values must be >= 1, got {max_values}")
        n = max((len(v) for v in cohorts.values()), default=0)
        kept: list[tuple[tuple[str, ...], ...]] = []
        for dimension in dimensions:
            counts = Counter(_value(k, len(dimension)) for k in _raw_keys(dimension, cohorts, n))
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            kept.append(tuple(v for v, _ in ranked[:max_values] if OTHER not in v))
        return cls(dimensions=tuple(tuple(d) for d in dimensions), values=tuple(kept))

    @property
    def n_scopes(self) -> int:
        return 1 + sum(len(v) + 1 for v in self.values)

    @property
    def labels(self) -> tuple[dict[str, str], ...]:
        """The cohort of each scope as attribute -> value ({} is the population)."""
        out: list[dict[str, str]] = [{}]
        for dimension, values in zip(self.dimensions, self.values):
            for value in (*values, (OTHER,) * len(dimension)):
                out.append(dict(zip(dimension, value)))
        return tuple(out)

    def scope_of(self, cohort: Mapping[str, str]) -> int | None:
        """The scope of a cohort ({} is the population), or None when there is none."""
        wanted = dict(cohort)
        return next((s for s, label in enumerate(self.labels) if label == wanted), None)

    def dimension_of(self, scope: int) -> int:
        """Index of the dimension a scope belongs to (-1 for the population)."""
        if scope == POPULATION:
            return -1
        offset = 1
        for d, values in enumerate(self.values):
            offset += len(values) + 1
            if scope < offset:
                return d
        raise ValueError(f"scope must be in [0, {self.n_scopes}), got {scope}")

    def scopes_of(self, dimension: int) -> range:
        start = 1 + sum(len(v) + 1 for v in self.values[:dimension])
        return range(start, start + len(self.values[dimension]) + 1)

    def assign(self, cohorts: Mapping[str, Sequence[str | None]], n_rows: int) -> IndexArray:
        """Scope index of each row: column 0 is the population, then one per dimension.

        An attribute absent from ``cohorts`` is missing in every row.
        """
        n = n_rows
        out = np.zeros((n, 1 + len(self.dimensions)), dtype=np.intp)
        for d, (dimension, index) in enumerate(zip(self.dimensions, self._index)):
            other = self.scopes_of(d)[-1]
            keys = _raw_keys(dimension, cohorts, n)
            lookup = cast(Callable[[object, int], int], index.get)
            out[:, d + 1] = np.fromiter(map(lookup, keys, repeat(other, n)), np.intp, n)
        return out
