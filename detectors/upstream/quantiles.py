"""Quantile rows: checks, interpolation and the shape distance between two of them.

A row holds one scope's quantiles at the levels ``probs``; its quantile function is
linear between them. The distance is measured in probability (Kolmogorov-type, scale
free, in [0, 1]).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from detectors.arrays import BoolArray, FloatArray, IntArray

# Probability levels within this of the outermost given level count as inside the grid.
_LEVEL_EPS = 1e-9


def check_probs(probs: ArrayLike) -> FloatArray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size < 3:
        raise ValueError(f"probs must be a 1-D array of >= 3 levels, got shape {p.shape}")
    if not (np.all(np.isfinite(p)) and p[0] > 0.0 and p[-1] < 1.0 and np.all(np.diff(p) > 0)):
        raise ValueError(f"probs must be strictly increasing in (0, 1), got {p.tolist()}")
    return p


def check_quantiles(name: str, q: ArrayLike, k: int) -> FloatArray:
    arr = np.asarray(q, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != k:
        raise ValueError(f"{name} must be a (n_scopes, {k}) array, got shape {arr.shape}")
    return arr


def valid_rows(q: FloatArray) -> BoolArray:
    with np.errstate(invalid="ignore"):
        return np.asarray(
            np.all(np.isfinite(q), axis=1) & np.all(np.diff(q, axis=1) >= 0, axis=1), dtype=bool
        )


def interp_levels(q: FloatArray, p: FloatArray, t: FloatArray) -> FloatArray:
    """Each row's quantile function (linear between the given levels) at levels ``t``;
    NaN outside ``[p[0], p[-1]]``."""
    outside = (t < p[0] - _LEVEL_EPS) | (t > p[-1] + _LEVEL_EPS)
    tc = np.clip(t, p[0], p[-1])
    idx = np.clip(np.searchsorted(p, tc, side="right") - 1, 0, p.size - 2)
    w = (tc - p[idx]) / (p[idx + 1] - p[idx])
    out = q[:, idx] + w * (q[:, idx + 1] - q[:, idx])
    out[:, outside] = np.nan
    return np.asarray(out, dtype=np.float64)


def _level_bounds(q: FloatArray, p: FloatArray, x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """For each row's quantile function Q (linear between levels, extended linearly beyond,
    clipped to [0, 1]): the interval of levels where Q equals ``x`` (or where it would)."""
    k = p.size
    dq = np.diff(q, axis=1)
    dp = np.diff(p)

    def level(idx: IntArray) -> FloatArray:
        seg = np.clip(idx - 1, 0, k - 2)
        q0 = np.take_along_axis(q, seg, axis=1)
        dqs = np.take_along_axis(dq, seg, axis=1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            lv = p[seg] + (x - q0) * (dp[seg] / dqs)
        # a flat segment is only ever extrapolated: below the grid -> 0, above -> 1
        lv = np.where(dqs > 0, lv, np.where(idx == 0, 0.0, 1.0))
        return np.asarray(np.clip(lv, 0.0, 1.0), dtype=np.float64)

    below = np.sum(q[:, None, :] < x[:, :, None], axis=2)
    at_or_below = np.sum(q[:, None, :] <= x[:, :, None], axis=2)
    return level(below), level(at_or_below)


def level_distance(q: FloatArray, p: FloatArray, x: FloatArray, targets: FloatArray) -> FloatArray:
    """max over columns j of the distance from ``targets[j]`` to the levels where the row's
    reference quantile function reaches ``x[:, j]``; NaN where x is not finite."""
    lo, hi = _level_bounds(q, p, np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))
    gap = np.maximum(np.maximum(lo - targets, targets - hi), 0.0)
    out = np.max(gap, axis=1)
    return np.where(np.all(np.isfinite(x), axis=1), out, np.nan).astype(np.float64)


def quantile_distance(ref_q: ArrayLike, cur_q: ArrayLike, probs: ArrayLike) -> FloatArray:
    """Shape distance between quantile rows, no rescaling: per row, the largest gap in
    probability between ``probs[j]`` and the level at which the reference quantile function
    (linear between its quantiles) reaches ``cur_q[:, j]``.  In [0, 1]; NaN for rows with
    non-finite or decreasing quantiles.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> probs = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    >>> ref = np.quantile(rng.normal(0, 1, 5_000), probs)
    >>> same, shifted = np.quantile(rng.normal(0, 1, 5_000), probs), ref + 1
    >>> quantile_distance([ref, ref], [same, shifted], probs).round(2).tolist()
    [0.02, 0.37]
    """
    p = check_probs(probs)
    r = check_quantiles("ref_q", ref_q, p.size)
    c = check_quantiles("cur_q", cur_q, p.size)
    if r.shape != c.shape:
        raise ValueError(f"ref_q and cur_q must have the same shape, got {r.shape}, {c.shape}")
    valid = valid_rows(r) & valid_rows(c)
    out = np.full(r.shape[0], np.nan)
    if valid.any():
        out[valid] = level_distance(r[valid], p, c[valid], p)
    return out


def nanmedian_rows(x: FloatArray) -> FloatArray:
    """Row medians ignoring NaN; NaN for rows without a value (and no warning)."""
    s = np.sort(x, axis=1)  # NaN sorts last
    n_valid = np.sum(~np.isnan(x), axis=1)
    lo = np.clip((n_valid - 1) // 2, 0, None)[:, None]
    hi = np.clip(n_valid // 2, 0, None)[:, None]
    if x.shape[1] == 0:
        return np.full(x.shape[0], np.nan)
    m = 0.5 * (np.take_along_axis(s, lo, axis=1) + np.take_along_axis(s, hi, axis=1))[:, 0]
    return np.where(n_valid > 0, m, np.nan).astype(np.float64)
