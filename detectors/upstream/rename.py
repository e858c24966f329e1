"""Renamed features: a feature that went missing paired with a new name that matches it."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from detectors.arrays import FloatArray
from detectors.upstream.checks import check_unit_interval, is_number
from detectors.upstream.quantiles import check_probs, quantile_distance, valid_rows


def _greedy_pairs(
    candidates: list[tuple[float, str, str]], tolerance: float
) -> list[tuple[str, str, float]]:
    used_missing: set[str] = set()
    used_appeared: set[str] = set()
    out: list[tuple[str, str, float]] = []
    for d, m, a in sorted(candidates):
        if d < tolerance and m not in used_missing and a not in used_appeared:
            used_missing.add(m)
            used_appeared.add(a)
            out.append((m, a, d))
    return out


def _stack_quantiles(named: Mapping[str, ArrayLike], k: int) -> FloatArray:
    rows = []
    for name, q in named.items():
        row = np.asarray(q, dtype=np.float64)
        if row.shape != (k,):
            raise ValueError(f"quantiles of {name!r} must have shape ({k},), got {row.shape}")
        rows.append(row)
    return np.asarray(np.stack(rows), dtype=np.float64)


def match_renamed(
    missing: Mapping[str, ArrayLike],
    appeared: Mapping[str, ArrayLike],
    probs: ArrayLike,
    tolerance: float = 0.1,
) -> list[tuple[str, str, float]]:
    """Pair features that went missing (their reference quantiles at ``probs``) with new
    feature names (their current quantiles) of the same distribution, unrescaled.

    Returns ``(missing_name, new_name, distance)``, best first, at most one pair per name, only
    pairs with :func:`quantile_distance` (the larger of both directions) under ``tolerance``.
    Features with invalid quantiles (NaN, decreasing) are never paired.  Features that carry
    little information (flags, constants) can match each other by chance: confirm a pair with
    other evidence (e.g. the new name appearing when the old one vanished).

    >>> import numpy as np
    >>> rng = np.random.default_rng(9)
    >>> probs = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    >>> missing = {"amount": np.quantile(rng.lognormal(3, 1, 5_000), probs)}
    >>> appeared = {"amount_eur": np.quantile(rng.lognormal(3, 1, 500), probs),
    ...             "age": np.quantile(rng.normal(40, 9, 500), probs)}
    >>> [(m, a) for m, a, _ in match_renamed(missing, appeared, probs)]
    [('amount', 'amount_eur')]
    """
    p = check_probs(probs)
    tol = check_unit_interval("tolerance", tolerance)
    m_names, a_names = list(missing), list(appeared)
    if not m_names or not a_names:
        return []
    m_q = _stack_quantiles(missing, p.size)
    a_q = _stack_quantiles(appeared, p.size)
    left = np.repeat(m_q, len(a_names), axis=0)
    right = np.tile(a_q, (len(m_names), 1))
    d = np.fmax(quantile_distance(left, right, p), quantile_distance(right, left, p))
    d = np.where(valid_rows(left) & valid_rows(right), d, np.nan)
    candidates = [
        (float(d[x * len(a_names) + y]), m, a)
        for x, m in enumerate(m_names)
        for y, a in enumerate(a_names)
        if np.isfinite(d[x * len(a_names) + y])
    ]
    return _greedy_pairs(candidates, tol)


def _shares(name: str, d: Mapping[str, float]) -> dict[str, float] | None:
    if not isinstance(d, Mapping):
        raise ValueError(f"shares of {name!r} must be a dict of category -> share")
    for cat, v in d.items():
        if not (is_number(v) and math.isfinite(float(v)) and float(v) >= 0):
            raise ValueError(
                f"share of {cat!r} in {name!r} must be a finite number >= 0, got {v!r}"
            )
    total = float(sum(float(v) for v in d.values()))
    return {str(c): float(v) / total for c, v in d.items()} if total > 0 else None


def match_renamed_categorical(
    missing: Mapping[str, Mapping[str, float]],
    appeared: Mapping[str, Mapping[str, float]],
    tolerance: float = 0.1,
) -> list[tuple[str, str, float]]:
    """Categorical :func:`match_renamed`: category shares (or counts; normalised) of the
    features that went missing vs the new ones, paired when the total variation distance
    ``0.5 * sum |p - q|`` is under ``tolerance``; best first, at most one pair per name.

    >>> import numpy as np
    >>> rng = np.random.default_rng(10)
    >>> def shares(x):
    ...     cats, counts = np.unique(x, return_counts=True)
    ...     return dict(zip(cats.tolist(), (counts / counts.sum()).tolist()))
    >>> channel = ["web", "app", "store"]
    >>> missing = {"channel": shares(rng.choice(channel, 5_000, p=[0.6, 0.3, 0.1]))}
    >>> appeared = {"sales_channel": shares(rng.choice(channel, 500, p=[0.6, 0.3, 0.1])),
    ...             "device": shares(rng.choice(["ios", "android"], 500))}
    >>> [(m, a) for m, a, _ in match_renamed_categorical(missing, appeared)]
    [('channel', 'sales_channel')]
    """
    tol = check_unit_interval("tolerance", tolerance)
    m_shares = {k: _shares(k, v) for k, v in missing.items()}
    a_shares = {k: _shares(k, v) for k, v in appeared.items()}
    candidates: list[tuple[float, str, str]] = []
    for m, ps in m_shares.items():
        for a, qs in a_shares.items():
            if ps is None or qs is None:
                continue
            cats = ps.keys() | qs.keys()
            tv = 0.5 * sum(abs(ps.get(c, 0.0) - qs.get(c, 0.0)) for c in cats)
            candidates.append((float(tv), m, a))
    return _greedy_pairs(candidates, tol)
