"""Ranking quality: ROC AUC per scope, its standard error, and whether it dropped.

Log loss and calibration say whether the probabilities are right on average; the AUC says
whether the model still puts the positives above the negatives. A model whose ranking
collapsed can keep its calibration in the large (its mean score still matches the
positive rate) and lose little log loss on a rare class, so the AUC is judged on its own.

* :func:`auc_by_scope`: the Mann-Whitney U of the positives over ``n_pos * n_neg``,
  ranks taken within each scope, ties averaged (a tied pair counts one half).
* :func:`hanley_mcneil_se`: its standard error (Hanley & McNeil 1982, from the AUC and
  the two class counts).
* :class:`AucDrop`: per scope, is the current AUC below the reference's beyond noise (a
  one-sided z test on the difference of two independent AUCs, each with its Hanley-McNeil
  error) and by a material amount?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr  # norm.sf(z) is ndtr(-z), lighter: see detectors/divergence.py

from detectors.arrays import BoolArray, FloatArray, IndexArray
from detectors.outcomes.checks import check_fraction
from detectors.validation import check_int

if TYPE_CHECKING:  # stats computes its AUC with this module
    from detectors.outcomes.stats import OutcomeStats

# Hanley and McNeil's error leans on a normal approximation that a handful of positives
# does not support: a scope is judged only with at least this many labels of each class.
MIN_CLASS_LABELS = 10


def auc_by_scope(
    scope: IndexArray, score: FloatArray, label: FloatArray, n_scopes: int
) -> FloatArray:
    """ROC AUC per scope of rows ``(scope, score, label)`` (labels 0/1); NaN for a scope
    without both classes.

    >>> import numpy as np
    >>> scope = np.zeros(4, dtype=np.intp)
    >>> auc_by_scope(scope, np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1.0]), 1)
    array([0.75])
    """
    order = np.lexsort((score, scope))
    s, p, y = scope[order], score[order], label[order]
    m = len(s)
    if m == 0:
        return np.full(n_scopes, np.nan)
    new_scope = np.r_[True, s[1:] != s[:-1]]
    new_tie = new_scope | np.r_[True, p[1:] != p[:-1]]
    scope_start = np.flatnonzero(new_scope)[np.cumsum(new_scope) - 1]
    tie_first = np.flatnonzero(new_tie)
    tie_last = np.r_[tie_first[1:] - 1, m - 1]
    tie = np.cumsum(new_tie) - 1
    rank = (tie_first[tie] + tie_last[tie]) / 2.0 - scope_start + 1.0
    n = np.bincount(s, minlength=n_scopes).astype(np.float64)
    n1 = np.bincount(s, weights=y, minlength=n_scopes)
    n0 = n - n1
    r1 = np.bincount(s, weights=rank * y, minlength=n_scopes)
    u1 = r1 - n1 * (n1 + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where((n1 > 0) & (n0 > 0), u1 / (n1 * n0), np.nan), np.float64)


def hanley_mcneil_se(
    auc: FloatArray, positives: NDArray[Any], negatives: NDArray[Any]
) -> FloatArray:
    """Standard error of an AUC measured on ``positives`` and ``negatives`` labels
    (Hanley & McNeil 1982, eq. 2); NaN where the AUC is.

    >>> import numpy as np
    >>> hanley_mcneil_se(np.array([0.5, 0.9]), np.array([50, 50]), np.array([950, 950])).round(4)
    array([0.0419, 0.0294])
    """
    a = np.asarray(auc, dtype=np.float64)
    n1 = np.asarray(positives, dtype=np.float64)
    n0 = np.asarray(negatives, dtype=np.float64)
    q1 = a / (2.0 - a)
    q2 = 2.0 * a * a / (1.0 + a)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = (a * (1.0 - a) + (n1 - 1.0) * (q1 - a * a) + (n0 - 1.0) * (q2 - a * a)) / (
            n1 * n0
        )
    return np.asarray(np.sqrt(np.maximum(variance, 0.0)), dtype=np.float64)


@dataclass(frozen=True)
class AucVerdict:
    """Per scope: whether the AUC dropped, and on what figures (NaN where not judged)."""

    dropped: BoolArray
    judged: BoolArray
    reference_auc: FloatArray
    current_auc: FloatArray
    reference_se: FloatArray
    current_se: FloatArray
    z: FloatArray
    pvalue: FloatArray

    @property
    def drop(self) -> FloatArray:
        return np.asarray(self.reference_auc - self.current_auc, dtype=np.float64)

    def evidence(self, scope: int) -> dict[str, float | None]:
        """The scope's figures as plain JSON values (None for undefined ones)."""

        def number(values: FloatArray) -> float | None:
            value = float(values[scope])
            return None if np.isnan(value) else float(f"{value:.6g}")

        return {
            "reference_auc": number(self.reference_auc),
            "current_auc": number(self.current_auc),
            "reference_auc_se": number(self.reference_se),
            "current_auc_se": number(self.current_se),
            "auc_z": number(self.z),
            "auc_pvalue": number(self.pvalue),
        }


class AucDrop:
    """Per scope: is the current window's AUC lower than the reference's?

    A scope is judged when both windows have at least ``min_labels`` labels, among them
    ``MIN_CLASS_LABELS`` positives and as many negatives; it dropped when the one-sided z
    test on the difference of the two AUCs (independent samples, each with its
    Hanley-McNeil error) gives ``p < alpha`` and the AUC fell by at least ``min_drop``.
    The error shrinks with the labels of the rarer class, so a window of a thousand
    labels with 5% positives sees only a large drop, and the test says so rather than
    reading noise as a change.

    >>> import numpy as np
    >>> from detectors.outcomes import OutcomeWindow
    >>> rng = np.random.default_rng(4)
    >>> def window(score, ranked):
    ...     w = OutcomeWindow(n_scopes=1)
    ...     label = (rng.random(len(score)) < score) * 1.0
    ...     # a model that lost its ranking: the same scores, handed out at random
    ...     shown = score if ranked else rng.permutation(score)
    ...     w.update(shown, label, np.zeros((len(score), 1), dtype=np.intp))
    ...     return w.summary()
    >>> scores = lambda: rng.beta(1, 6, 3_000)
    >>> reference = window(scores(), ranked=True)
    >>> check = AucDrop()
    >>> bool(check.judge(reference, window(scores(), ranked=True)).dropped[0])
    False
    >>> verdict = check.judge(reference, window(scores(), ranked=False))
    >>> bool(verdict.dropped[0]), round(float(verdict.current_auc[0]), 1)
    (True, 0.5)
    """

    def __init__(self, min_labels: int = 200, alpha: float = 0.001, min_drop: float = 0.05) -> None:
        self.min_labels = check_int("min_labels", min_labels, 1)
        self.alpha = check_fraction("alpha", alpha)
        self.min_drop = check_fraction("min_drop", min_drop, open_low=False)

    def judge(self, reference: OutcomeStats, current: OutcomeStats) -> AucVerdict:
        if reference.n_scopes != current.n_scopes:
            raise ValueError(
                f"reference and current have {reference.n_scopes} and {current.n_scopes} scopes"
            )

        def enough(stats: OutcomeStats) -> BoolArray:
            negatives = stats.n - stats.positives
            return np.asarray(
                (stats.n >= self.min_labels)
                & (stats.positives >= MIN_CLASS_LABELS)
                & (negatives >= MIN_CLASS_LABELS),
                dtype=bool,
            )

        judged = enough(reference) & enough(current)
        ref_se = hanley_mcneil_se(
            reference.auc, reference.positives, reference.n - reference.positives
        )
        cur_se = hanley_mcneil_se(current.auc, current.positives, current.n - current.positives)
        drop = reference.auc - current.auc
        with np.errstate(invalid="ignore", divide="ignore"):
            se = np.sqrt(ref_se**2 + cur_se**2)
            z = np.where(se > 0, drop / se, np.sign(drop) * np.inf)
        z = np.where(judged, np.nan_to_num(z, nan=0.0), np.nan)
        pvalue = np.where(judged, ndtr(-np.nan_to_num(z, nan=0.0)), np.nan)
        dropped = (
            judged
            & (np.nan_to_num(pvalue, nan=1.0) < self.alpha)
            & (np.nan_to_num(drop, nan=-1.0) >= self.min_drop)
        )
        return AucVerdict(
            dropped=np.asarray(dropped, dtype=bool),
            judged=judged,
            reference_auc=np.asarray(reference.auc, dtype=np.float64).copy(),
            current_auc=np.asarray(current.auc, dtype=np.float64).copy(),
            reference_se=np.where(judged, ref_se, np.nan),
            current_se=np.where(judged, cur_se, np.nan),
            z=np.asarray(z, dtype=np.float64),
            pvalue=np.asarray(pvalue, dtype=np.float64),
        )
