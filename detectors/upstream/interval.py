"""The confidence interval of a rescale factor, from quantiles and counts alone.

Bootstrap-free and deterministic: the interval follows from the asymptotic variance of
sample quantiles (``Var(q_p) ~ p (1 - p) / (n f(q_p)^2)``, with the density ``f`` at a
level estimated from the neighbouring quantiles of the same row) and the delta method.
Only what a pooled sketch keeps is needed (quantiles and a count), so the interval of
windows pooled over a whole condition costs nothing more than one window's.

* A pure scale (no offset) is told by the log-ratio of the medians:
  ``Var(log |a|) = Var(m_ref) / m_ref^2 + Var(m_cur) / m_cur^2``. On a feature away from
  zero the median is the best-measured quantile, and the check's factor (the median of
  the quantile ratios) is at least as precise as the ratio of the medians on the shapes
  it is used on, so the interval is centred on that factor with this standard error.
* An affine fit (``cur = a * ref + b``) is told by the ratio of the interquartile ranges,
  which no offset moves: ``Var(log IQR) = (Var(q25) + Var(q75) - 2 Cov) / IQR^2``, and
  its offset by ``b = m_cur - a m_ref``.

The density from the quantile grid (e.g. between the quartiles around the median) is an
average over that stretch, lower than at a peak, so the errors are on the large side.
The quantiles of a sketch are off by up to its relative accuracy ``resolution``; that is
added in quadrature for each side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from detectors.arrays import FloatArray

# Two-sided 99%: the interval decides whether a mild factor is a common conversion; at
# 95% one true unit change in twenty would miss its conversion and be called drift,
# while the cost of 99% is width (x1.3), which only matters when two conversions are
# within it, and then both are named.
CONFIDENCE = 0.99
Z_99 = 2.5758293035489004
_MEDIAN, _LOWER, _UPPER = 0.5, 0.25, 0.75


@dataclass(frozen=True)
class FactorInterval:
    """Per row: the factor's interval ``[low, high]`` (the factor's sign), its standard
    error in log, and for affine rows the offset's interval (NaN for pure scales)."""

    low: FloatArray
    high: FloatArray
    log_se: FloatArray
    offset_low: FloatArray
    offset_high: FloatArray


def _level(p: FloatArray, level: float) -> int:
    hits = np.flatnonzero(np.isclose(p, level))
    if hits.size != 1 or hits[0] in (0, p.size - 1):
        raise ValueError(f"probs must hold {level} with a level on either side, got {p.tolist()}")
    return int(hits[0])


def _density(q: FloatArray, p: FloatArray, j: int) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((p[j + 1] - p[j - 1]) / (q[:, j + 1] - q[:, j - 1]), dtype=np.float64)


def _median_log_var(q: FloatArray, p: FloatArray, n: FloatArray, resolution: float) -> FloatArray:
    j = _level(p, _MEDIAN)
    f = _density(q, p, j)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = _MEDIAN * (1 - _MEDIAN) / (n * f**2 * q[:, j] ** 2)
    return np.asarray(var + resolution**2, dtype=np.float64)


def _iqr_log_var(q: FloatArray, p: FloatArray, n: FloatArray, resolution: float) -> FloatArray:
    i, k = _level(p, _LOWER), _level(p, _UPPER)
    fi, fk = _density(q, p, i), _density(q, p, k)
    iqr = q[:, k] - q[:, i]
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (
            _LOWER * (1 - _LOWER) / fi**2
            + _UPPER * (1 - _UPPER) / fk**2
            - 2 * _LOWER * (1 - _UPPER) / (fi * fk)
        ) / (n * iqr**2)
    # both quartiles are off by up to resolution, relative to their own size
    scale = np.maximum(np.abs(q[:, i]), np.abs(q[:, k]))
    with np.errstate(divide="ignore", invalid="ignore"):
        sketch = 2 * (resolution * scale / iqr) ** 2
    return np.asarray(var + sketch, dtype=np.float64)


def factor_interval(
    ref_q: ArrayLike,
    ref_n: ArrayLike,
    cur_q: ArrayLike,
    cur_n: ArrayLike,
    probs: ArrayLike,
    factor: ArrayLike,
    offset: ArrayLike,
    z: float = Z_99,
    resolution: float = 0.0,
) -> FactorInterval:
    """The interval of each row's ``factor`` (``offset`` 0: a pure scale, else affine)
    from the reference's and the current quantiles at ``probs`` (which must hold 0.25,
    0.5 and 0.75, each with a level on either side) and their counts. NaN where a row
    cannot be told (a zero median, a zero density).

    >>> import numpy as np
    >>> probs = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    >>> rng = np.random.default_rng(3)
    >>> ref = np.quantile(rng.lognormal(3, 0.8, 1_200), probs)
    >>> def interval(n):  # kilometres now served as miles, n events of them
    ...     cur = np.quantile(rng.lognormal(3, 0.8, n) * 0.621371, probs)
    ...     factor = np.median(cur / ref)
    ...     i = factor_interval([ref], [1_200], [cur], [n], probs, [factor], [0.0])
    ...     return round(float(i.low[0]), 3), round(float(i.high[0]), 3)
    >>> interval(250), interval(2_500)  # more events, a narrower interval
    ((0.502, 0.737), (0.538, 0.664))
    """
    p = np.asarray(probs, dtype=np.float64)
    r = np.atleast_2d(np.asarray(ref_q, dtype=np.float64))
    c = np.atleast_2d(np.asarray(cur_q, dtype=np.float64))
    nr = np.asarray(ref_n, dtype=np.float64)
    nc = np.asarray(cur_n, dtype=np.float64)
    a = np.asarray(factor, dtype=np.float64)
    b = np.asarray(offset, dtype=np.float64)
    affine = np.nan_to_num(b) != 0.0
    pure_var = _median_log_var(r, p, nr, resolution) + _median_log_var(c, p, nc, resolution)
    affine_var = _iqr_log_var(r, p, nr, resolution) + _iqr_log_var(c, p, nc, resolution)
    log_se = np.sqrt(np.where(affine, affine_var, pure_var))
    with np.errstate(invalid="ignore", over="ignore"):
        spread = np.exp(z * log_se)
        ends = np.sort(np.stack([a / spread, a * spread]), axis=0)
        j = _level(p, _MEDIAN)
        var_m = _median_log_var(c, p, nc, resolution) * c[:, j] ** 2
        var_m += a**2 * _median_log_var(r, p, nr, resolution) * r[:, j] ** 2
        var_m += (r[:, j] * a * log_se) ** 2
        half = z * np.sqrt(var_m)
    nan = np.full(a.shape, np.nan)
    return FactorInterval(
        low=ends[0],
        high=ends[1],
        log_se=log_se,
        offset_low=np.where(affine, b - half, nan),
        offset_high=np.where(affine, b + half, nan),
    )
