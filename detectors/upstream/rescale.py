"""Rescaled signals: a unit change or a sign flip, told apart from drift on quantiles."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from detectors.arrays import BoolArray, FloatArray
from detectors.upstream.checks import check_positive, check_unit_interval
from detectors.upstream.conversions import SCALES
from detectors.upstream.quantiles import (
    check_probs,
    check_quantiles,
    interp_levels,
    level_distance,
    nanmedian_rows,
    valid_rows,
)


def nearest_unit(factor: float, rel_tol: float = 0.05) -> float | None:
    """The common unit factor nearest to ``factor`` (within ``rel_tol`` relative), else None.

    Units: the pure scales of :data:`detectors.upstream.conversions.CONVERSIONS` (powers of
    ten, 1.609344 km/mi, 2.20462 lb/kg, 0.3048 ft/m, 2.54 in/cm, 3.6, 60, 3,600, 86,400,
    1,024, their reciprocals, and 1), and the negatives of all (sign flips).

    >>> nearest_unit(98.7), nearest_unit(-1.02), nearest_unit(1 / 3590) == 1 / 3600
    (100.0, -1.0, True)
    >>> print(nearest_unit(7.0))
    None
    """
    f = float(factor)
    if not math.isfinite(f) or f == 0.0:
        return None
    ratio = np.abs(f) / SCALES
    best = int(np.argmin(np.abs(np.log(ratio))))
    if abs(ratio[best] - 1.0) > rel_tol:
        return None
    return math.copysign(float(SCALES[best]), f)


@dataclass(frozen=True)
class RescaleVerdict:
    """Per scope: ``rescaled``, the fitted ``factor`` and ``offset`` (cur ~ factor * ref +
    offset; offset is exactly 0 when the pure-scale fit was kept), the common ``unit`` factor
    it matches (None unless rescaled), ``spread_ratio`` (the robust slope of the affine fit),
    ``shape_distance`` after un-rescaling and ``raw_distance`` before (both in probability,
    see :func:`quantile_distance`).  NaN where a row could not be judged.

    >>> import numpy as np
    >>> rng = np.random.default_rng(8)
    >>> probs = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    >>> ref = np.quantile(rng.gamma(9, 2, 5_000), probs)
    >>> cur = np.quantile(rng.gamma(9, 2, 500) * 3.6, probs)  # m/s became km/h
    >>> v = RescaleCheck().judge(ref[None], cur[None], probs)
    >>> v.rescaled.tolist(), v.unit, round(float(v.factor[0]), 2)
    ([True], (3.6,), 3.58)
    """

    rescaled: BoolArray
    factor: FloatArray
    offset: FloatArray
    unit: tuple[float | None, ...]
    spread_ratio: FloatArray
    shape_distance: FloatArray
    raw_distance: FloatArray


class RescaleCheck:
    """Tells a rescaled signal (unit change, sign flip) apart from drift, on quantiles.

    A scope is ``rescaled`` when, on valid rows (finite, non-decreasing quantiles, reference and
    current IQR > 0): the un-rescaled current quantiles match the reference
    (``shape_distance <= tolerance``), the raw ones do not (``raw_distance >=
    min_raw_distance``), the factor and the spread ratio both differ from 1 by at least
    ``min_factor_change`` and agree within ``spread_tolerance`` (a location shift changes the
    ratio of the medians but not the spread), and the fit has no offset or its factor is a
    common unit (``offset_needs_unit``: an affine change with an arbitrary factor, e.g. a
    variance change around a non-zero mean, is drift).

    Defaults: ``tolerance=0.1`` (the shape distance of a true rescale is sampling noise,
    ~0.02-0.06 with 500-event windows); ``min_raw_distance=0.2`` (a change the drift test
    would see: a +1 sd shift of a normal is ~0.35, two healthy 500-event windows < 0.1);
    ``min_factor_change=0.2``; ``spread_tolerance=0.25`` (the spread ratio of 500-event
    windows is 5-10% noisy); ``unit_tolerance=0.05``.  The factor's precision is about
    ``1.2 * cv * sqrt(1/n + 1/m)`` relative for windows of n and m events (cv of the feature,
    in log space for skewed ones): within 5% at 500 events needs a cv up to ~0.3-0.4, so on
    heavy-tailed features the unit may be missed (``unit`` None) on small windows.

    >>> import numpy as np
    >>> rng = np.random.default_rng(6)
    >>> probs = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    >>> ref = np.quantile(rng.normal(50, 10, 5_000), probs)
    >>> percent = np.quantile(rng.normal(50, 10, 500) / 100, probs)  # now a fraction
    >>> shifted = np.quantile(rng.normal(60, 10, 500), probs)  # genuine drift
    >>> v = RescaleCheck().judge(np.vstack([ref, ref]), np.vstack([percent, shifted]), probs)
    >>> v.rescaled.tolist(), v.unit, v.factor.round(2).tolist()
    ([True, False], (0.01, None), [0.01, 1.02])
    """

    def __init__(
        self,
        tolerance: float = 0.1,
        min_raw_distance: float = 0.2,
        min_factor_change: float = 0.2,
        spread_tolerance: float = 0.25,
        unit_tolerance: float = 0.05,
        offset_needs_unit: bool = True,
    ) -> None:
        self.tolerance = check_unit_interval("tolerance", tolerance)
        self.min_raw_distance = check_unit_interval(
            "min_raw_distance", min_raw_distance, open_low=False
        )
        self.min_factor_change = check_positive("min_factor_change", min_factor_change)
        self.spread_tolerance = check_positive("spread_tolerance", spread_tolerance)
        self.unit_tolerance = check_unit_interval("unit_tolerance", unit_tolerance)
        if not isinstance(offset_needs_unit, (bool, np.bool_)):
            raise ValueError(f"offset_needs_unit must be True or False, got {offset_needs_unit!r}")
        self.offset_needs_unit = bool(offset_needs_unit)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"RescaleCheck({args})"

    def judge(self, ref_q: ArrayLike, cur_q: ArrayLike, probs: ArrayLike) -> RescaleVerdict:
        """``ref_q``/``cur_q``: (n_scopes, k) quantiles of the reference and current window at
        ``probs`` (k strictly increasing levels in (0, 1), e.g. 0.05 ... 0.95)."""
        p = check_probs(probs)
        r = check_quantiles("ref_q", ref_q, p.size)
        c = check_quantiles("cur_q", cur_q, p.size)
        if r.shape != c.shape:
            raise ValueError(f"ref_q and cur_q must have the same shape, got {r.shape}, {c.shape}")
        n = r.shape[0]
        factor, offset, spread = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        shape, raw = np.full(n, np.nan), np.full(n, np.nan)
        valid = valid_rows(r) & valid_rows(c)
        if valid.any():
            iqr_levels = np.array([max(0.25, p[0]), min(0.75, p[-1])])
            ref_iqr = np.diff(interp_levels(r[valid], p, iqr_levels), axis=1)[:, 0]
            cur_iqr = np.diff(interp_levels(c[valid], p, iqr_levels), axis=1)[:, 0]
            valid[valid] = (ref_iqr > 0) & (cur_iqr > 0)
        if valid.any():
            fit = self._fit(r[valid], c[valid], p)
            factor[valid], offset[valid], spread[valid], shape[valid] = fit
            raw[valid] = level_distance(r[valid], p, c[valid], p)
        units = [
            nearest_unit(float(f), self.unit_tolerance) if np.isfinite(f) else None for f in factor
        ]
        with np.errstate(invalid="ignore", divide="ignore"):
            ref_scale = np.diff(interp_levels(r, p, np.array([p[0], p[-1]])), axis=1)[:, 0]
            no_offset = np.abs(offset) <= self.tolerance * np.abs(factor) * ref_scale
            consistent = (factor * spread > 0) & (
                np.abs(np.log(np.abs(factor) / np.abs(spread))) <= math.log1p(self.spread_tolerance)
            )
            # an offset is only explained by a unit that is not +-1: on a symmetric feature a
            # flip plus an offset is the same as a location shift
            has_unit = np.array([u is not None and abs(u) != 1.0 for u in units], dtype=bool)
            rescaled = (
                valid
                & (shape <= self.tolerance)
                & (raw >= self.min_raw_distance)
                & (np.abs(factor - 1.0) >= self.min_factor_change)
                & (np.abs(spread - 1.0) >= self.min_factor_change)
                & consistent
                & (no_offset | has_unit | (not self.offset_needs_unit))
            )
        return RescaleVerdict(
            rescaled=np.asarray(rescaled, dtype=bool),
            factor=factor,
            offset=offset,
            unit=tuple(u if hit else None for u, hit in zip(units, rescaled.tolist())),
            spread_ratio=spread,
            shape_distance=shape,
            raw_distance=raw,
        )

    def _fit(
        self, r: FloatArray, c: FloatArray, p: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Best (factor, offset, spread ratio, shape distance) per row over the direct and the
        flipped orientation.  The pure scale (median ratio of the quantiles) is kept when it
        agrees with the spread ratio (Theil-Sen slope of the quantile pairs) and fits within
        ``tolerance`` or about as well as the affine fit, which absorbs sampling noise with
        its extra parameter and so always fits a little better; it is also far more precise
        on features away from zero."""
        slack = self.tolerance / 4.0
        i, j = np.triu_indices(p.size, 1)
        results = []
        for flipped in (False, True):
            ro = interp_levels(r, p, 1.0 - p) if flipped else r
            targets = 1.0 - p if flipped else p
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                ratios = np.where(np.isfinite(ro) & (ro != 0), c / ro, np.nan)
                a_pure = nanmedian_rows(ratios)
                dr = ro[:, j] - ro[:, i]
                slopes = np.where(np.isfinite(dr) & (dr != 0), (c[:, j] - c[:, i]) / dr, np.nan)
                a_aff = nanmedian_rows(slopes)
                b_aff = nanmedian_rows(c - a_aff[:, None] * ro)
            sign_ok = (a_aff < 0) if flipped else (a_aff > 0)
            a_aff = np.where(sign_ok, a_aff, np.nan)
            a_pure = np.where((a_pure < 0) if flipped else (a_pure > 0), a_pure, np.nan)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                d_pure = level_distance(r, p, c / a_pure[:, None], targets)
                d_aff = level_distance(r, p, (c - b_aff[:, None]) / a_aff[:, None], targets)
            results.append((a_pure, d_pure, a_aff, b_aff, d_aff))
        (ap_d, dp_d, aa_d, ba_d, da_d), (ap_f, dp_f, aa_f, ba_f, da_f) = results
        inf = np.inf
        # the direct orientation wins unless the flip fits clearly better: a symmetric feature
        # looks the same flipped (around 0) or flipped and shifted (anywhere), and calling it
        # unflipped is the conservative reading
        margin = self.tolerance / 2.0
        pure_flip = np.nan_to_num(dp_f, nan=inf) < np.nan_to_num(dp_d, nan=inf) - margin
        # (a flipped affine fit only when the direct one fails: a flip plus an offset is what
        # any location shift of a symmetric feature looks like)
        da_d_ = np.nan_to_num(da_d, nan=inf)
        aff_flip = (da_d_ > self.tolerance) & (np.nan_to_num(da_f, nan=inf) < da_d_ - margin)
        a_pure = np.where(pure_flip, ap_f, ap_d)
        d_pure = np.where(pure_flip, dp_f, dp_d)
        spread_pure = np.where(pure_flip, aa_f, aa_d)
        a_aff = np.where(aff_flip, aa_f, aa_d)
        b_aff = np.where(aff_flip, ba_f, ba_d)
        d_aff = np.where(aff_flip, da_f, da_d)
        with np.errstate(invalid="ignore", divide="ignore"):
            # the pure factor agrees with the spread ratio when it is within spread_tolerance
            # of it and closer to it than the spread ratio is to 1 (a location shift moves the
            # ratio of the medians, not the spread)
            mismatch = np.abs(np.log(a_pure / spread_pure))
            from_one = np.where(spread_pure < 0, inf, np.abs(np.log(np.abs(spread_pure))))
            agrees = (mismatch <= math.log1p(self.spread_tolerance)) & (mismatch <= 0.5 * from_one)
        d_pure_ = np.nan_to_num(d_pure, nan=inf)
        use_pure = agrees & (
            d_pure_ <= np.fmax(np.nan_to_num(d_aff, nan=inf) + slack, self.tolerance)
        )
        factor = np.where(use_pure, a_pure, a_aff)
        offset = np.where(use_pure, 0.0, b_aff)
        offset = np.where(np.isfinite(factor), offset, np.nan)
        spread = np.where(use_pure, spread_pure, a_aff)
        shape = np.where(use_pure, d_pure, d_aff)
        return factor, offset, spread, shape
