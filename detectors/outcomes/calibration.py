"""Has the relation between scores and outcomes moved, risk band by risk band?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc  # chi2.sf, lighter: see detectors/divergence.py

from detectors.arrays import BoolArray, FloatArray, IntArray
from detectors.outcomes.checks import check_fraction
from detectors.outcomes.stats import OutcomeStats
from detectors.validation import check_int


@dataclass(frozen=True)
class CalibrationVerdict:
    """Per scope: whether labels left the calibration the reference had, band by band."""

    shifted: BoolArray
    statistic: FloatArray
    pvalue: FloatArray


# A chi-square term needs a few expected positives: bands with fewer are pooled with
# their neighbours (as Hosmer and Lemeshow do), or one unlucky label in a band expecting
# 0.1 would be a "shift".
MIN_EXPECTED_POSITIVES = 5.0


def _pooled_chi2(
    observed: FloatArray, expected: FloatArray, variance: FloatArray, used: BoolArray
) -> tuple[FloatArray, IntArray]:
    """Per row: the chi-square over groups of adjacent bands holding at least
    MIN_EXPECTED_POSITIVES expected positives each, and the number of groups."""
    rows = observed.shape[0]
    statistic = np.zeros(rows)
    dof = np.zeros(rows, dtype=np.int64)
    for row in range(rows):
        groups: list[list[float]] = []
        current = [0.0, 0.0, 0.0]
        for band in np.flatnonzero(used[row]).tolist():
            current[0] += observed[row, band]
            current[1] += expected[row, band]
            current[2] += variance[row, band]
            if current[1] >= MIN_EXPECTED_POSITIVES:
                groups.append(current)
                current = [0.0, 0.0, 0.0]
        if current[1] > 0:
            if groups:  # a short last group joins the one before
                groups[-1] = [a + b for a, b in zip(groups[-1], current)]
            else:
                groups.append(current)
        statistic[row] = sum((o - e) ** 2 / v for o, e, v in groups if v > 0)
        dof[row] = sum(1 for _, _, v in groups if v > 0)
    return statistic, dof


class CalibrationShift:
    """Has the relation between scores and outcomes moved, risk band by risk band?

    The reference fixes each band's ratio of observed to predicted positives; the
    current window's expected positives are its predicted ones times that ratio, and a
    chi-square test over the bands (Hosmer-Lemeshow style) asks whether the observed
    counts left them, allowing for the error of both windows' counts. A covariate shift
    moves traffic between bands but leaves each band's calibration alone, so it does not
    fire this test, while it can raise the log loss of a model that is still right; a
    concept change moves the bands themselves.

    >>> import numpy as np
    >>> from detectors.outcomes import OutcomeWindow
    >>> rng = np.random.default_rng(3)
    >>> def window(score, truth):
    ...     w = OutcomeWindow(n_scopes=1)
    ...     rows = np.zeros((len(score), 1), dtype=np.intp)
    ...     w.update(score, (rng.random(len(score)) < truth) * 1.0, rows)
    ...     return w.summary()
    >>> reference_scores = rng.random(3_000)
    >>> reference = window(reference_scores, reference_scores)
    >>> riskier = rng.random(3_000) ** 0.5  # more traffic in the high bands, same relation
    >>> flipped = rng.random(3_000)
    >>> check = CalibrationShift()
    >>> bool(check.judge(reference, window(riskier, riskier)).shifted[0])
    False
    >>> bool(check.judge(reference, window(flipped, 1 - flipped)).shifted[0])
    True
    """

    def __init__(self, min_labels: int = 200, alpha: float = 0.001) -> None:
        self.min_labels = check_int("min_labels", min_labels, 1)
        self.alpha = check_fraction("alpha", alpha)

    def judge(self, reference: OutcomeStats, current: OutcomeStats) -> CalibrationVerdict:
        ref_n = reference.band_counts.astype(np.float64)
        ref_ratio = (reference.band_positives + 0.5) / (
            np.nan_to_num(reference.band_predicted) * ref_n + 0.5
        )
        n = current.band_counts.astype(np.float64)
        expected = np.clip(np.nan_to_num(current.band_predicted) * n * ref_ratio, 0.0, n)
        observed = current.band_positives.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            # The reference's ratio is an estimate too (a small cohort's band may hold a
            # handful of positives): its Poisson error adds to the current count's, or
            # the test would read the reference's noise as a change.
            variance = expected * (1.0 - expected / n) + expected**2 / (
                reference.band_positives + 0.5
            )
        used = (variance > 0) & (ref_n > 0)
        statistic, dof = _pooled_chi2(observed, expected, variance, used)
        enough = (current.n >= self.min_labels) & (reference.n >= self.min_labels) & (dof > 0)
        pvalue = np.where(enough, chdtrc(np.maximum(dof, 1), statistic), np.nan)
        shifted = enough & (np.nan_to_num(pvalue, nan=1.0) < self.alpha)
        return CalibrationVerdict(
            shifted=np.asarray(shifted, dtype=bool),
            statistic=np.asarray(statistic, dtype=np.float64),
            pvalue=np.asarray(pvalue, dtype=np.float64),
        )
