"""Category counts per scope in bounded memory: deterministic, mergeable Misra-Gries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.arrays import IntArray
from detectors.sketches.checks import check_scope, check_scopes
from detectors.validation import check_int


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
        sc = check_scopes(scopes, vals.shape[0], self._n_scopes)
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
        tracked = self._tracked[check_scope(scope, self._n_scopes)]
        return sorted(tracked.items(), key=lambda kv: (-kv[1], kv[0]))

    def other(self, scope: int) -> int:
        """Non-missing mass of ``scope`` not attributed to a tracked category."""
        s = check_scope(scope, self._n_scopes)
        return int(self._count[s]) - sum(self._tracked[s].values())

    def missing(self, scope: int) -> int:
        return int(self._missing[check_scope(scope, self._n_scopes)])

    def count(self, scope: int) -> int:
        """Number of non-missing values seen in ``scope``."""
        return int(self._count[check_scope(scope, self._n_scopes)])

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
