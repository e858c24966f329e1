"""Has a rate (positives of untrusted labels, overrides, ...) left the reference's?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr  # norm.sf(z) is ndtr(-z), lighter: see detectors/divergence.py

from detectors.arrays import BoolArray, FloatArray
from detectors.outcomes.checks import check_fraction
from detectors.validation import check_int


@dataclass(frozen=True)
class RateVerdict:
    """Per row of the inputs: the two-proportion test and its effect size.

    ``direction`` is +1 (the rate went up), -1 (down) or 0 (not shifted); ``effect`` is
    Cohen's h, ``2·asin(√current) - 2·asin(√reference)``.
    """

    shifted: BoolArray
    direction: NDArray[np.int8]
    z: FloatArray
    pvalue: FloatArray
    effect: FloatArray
    reference_rate: FloatArray
    current_rate: FloatArray
    enough_events: BoolArray


class RateShift:
    """Two-proportion z test of a current rate against the reference rate.

    Usable for the positive rate of untrusted labels (label quality: clicks that
    suddenly double) and for the override rate (trust decay). A shift needs at least
    ``min_events`` on both sides, a two-sided pooled z test with ``p < alpha``, and an
    effect of at least ``min_effect`` in Cohen's h (the arcsine-transformed difference,
    which weighs a change at a low base rate fairly: 2% -> 4% is h 0.12, 50% -> 52% is
    h 0.04). ``min_effect=0.05`` stops huge windows from flagging trivial moves.

    >>> import numpy as np
    >>> verdict = RateShift().judge(ref_pos=20, ref_n=1000, cur_pos=150, cur_n=1000)
    >>> verdict.shifted.tolist(), verdict.direction.tolist()
    ([True], [1])
    """

    def __init__(
        self, min_events: int = 200, alpha: float = 0.001, min_effect: float = 0.05
    ) -> None:
        self.min_events = check_int("min_events", min_events, 1)
        self.alpha = check_fraction("alpha", alpha)
        if isinstance(min_effect, bool) or not 0.0 <= float(min_effect) <= np.pi:
            raise ValueError(f"min_effect must be a Cohen's h in [0, pi], got {min_effect!r}")
        self.min_effect = float(min_effect)

    def judge(
        self, ref_pos: ArrayLike, ref_n: ArrayLike, cur_pos: ArrayLike, cur_n: ArrayLike
    ) -> RateVerdict:
        """Counts may be scalars or arrays (one entry per scope); they broadcast."""
        x1, n1, x2, n2 = (
            np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (ref_pos, ref_n, cur_pos, cur_n)
        )
        x1, n1, x2, n2 = np.broadcast_arrays(x1, n1, x2, n2)
        if (x1 < 0).any() or (x2 < 0).any() or (x1 > n1).any() or (x2 > n2).any():
            raise ValueError("counts must satisfy 0 <= positives <= events")
        enough = (n1 >= self.min_events) & (n2 >= self.min_events)
        with np.errstate(invalid="ignore", divide="ignore"):
            p1, p2 = x1 / n1, x2 / n2
            pooled = (x1 + x2) / (n1 + n2)
            se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
            z = np.where(se > 0, (p2 - p1) / se, 0.0)
            effect = 2 * np.arcsin(np.sqrt(p2)) - 2 * np.arcsin(np.sqrt(p1))
        z = np.where(enough, z, np.nan)
        pvalue = np.where(enough, 2 * ndtr(-np.abs(np.nan_to_num(z))), np.nan)
        shifted = (
            enough
            & (np.nan_to_num(pvalue, nan=1.0) < self.alpha)
            & (np.abs(np.nan_to_num(effect)) >= self.min_effect)
        )
        return RateVerdict(
            shifted=np.asarray(shifted, dtype=bool),
            direction=np.where(shifted, np.sign(np.nan_to_num(z)), 0).astype(np.int8),
            z=np.asarray(z, dtype=np.float64),
            pvalue=np.asarray(pvalue, dtype=np.float64),
            effect=np.asarray(effect, dtype=np.float64),
            reference_rate=np.asarray(p1, dtype=np.float64),
            current_rate=np.asarray(p2, dtype=np.float64),
            enough_events=np.asarray(enough, dtype=bool),
        )
