"""Has a scope's model performance dropped: its log loss up (or AUC down) beyond noise?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr  # norm.sf(z) is ndtr(-z), lighter: see detectors/divergence.py

from detectors.arrays import BoolArray, FloatArray, IntArray
from detectors.outcomes.checks import check_fraction
from detectors.outcomes.stats import OutcomeStats
from detectors.validation import check_int


@dataclass(frozen=True)
class DropVerdict:
    """Per scope: whether performance dropped, and on what figures.

    ``enough_labels`` False means "not enough labels to judge": ``dropped`` is then
    False and the scope's figures say nothing either way.
    """

    dropped: BoolArray
    enough_labels: BoolArray
    z: FloatArray
    pvalue: FloatArray
    log_loss_increase: FloatArray
    auc_drop: FloatArray
    reference_n: IntArray
    current_n: IntArray
    reference_log_loss: FloatArray
    current_log_loss: FloatArray
    reference_auc: FloatArray
    current_auc: FloatArray
    reference_error_rate: FloatArray
    current_error_rate: FloatArray

    def evidence(self, scope: int) -> dict[str, Any]:
        """The scope's figures as plain JSON values (None for undefined ones)."""

        def number(values: NDArray[Any]) -> float | None:
            value = float(values[scope])
            return None if np.isnan(value) else float(f"{value:.6g}")

        return {
            "detector": "log_loss_welch_z",
            "enough_labels": bool(self.enough_labels[scope]),
            "reference_labels": int(self.reference_n[scope]),
            "current_labels": int(self.current_n[scope]),
            "reference_log_loss": number(self.reference_log_loss),
            "current_log_loss": number(self.current_log_loss),
            "log_loss_increase": number(self.log_loss_increase),
            "z": number(self.z),
            "pvalue": number(self.pvalue),
            "reference_auc": number(self.reference_auc),
            "current_auc": number(self.current_auc),
            "auc_drop": number(self.auc_drop),
            "reference_error_rate": number(self.reference_error_rate),
            "current_error_rate": number(self.current_error_rate),
        }


class PerformanceDrop:
    """Per scope: is the current window's log loss worse than the reference's?

    A scope dropped when both windows have at least ``min_labels`` labels, a one-sided
    Welch z test on the per-event log loss (means and variances; both windows are
    independent samples) gives ``p < alpha``, and the effect is material: log loss up by
    at least ``min_effect`` (relative) or ROC AUC down by at least ``min_auc_drop``.

    Defaults: 200 labels make the z test's normal approximation sound for a loss whose
    variance is bounded by the clipping; alpha 0.001 matches the drift tests; 10% more
    log loss or 0.05 less AUC is the smallest change worth a retrain.

    >>> import numpy as np
    >>> from detectors.outcomes import OutcomeWindow
    >>> rng = np.random.default_rng(5)
    >>> def window(flipped):
    ...     score = rng.random(2000)
    ...     label = (rng.random(2000) < score).astype(float)
    ...     flip = rng.random(2000) < flipped
    ...     label[flip] = 1 - label[flip]
    ...     w = OutcomeWindow(n_scopes=1)
    ...     w.update(score, label, np.zeros((2000, 1), dtype=np.intp))
    ...     return w.summary()
    >>> reference = window(0.0)
    >>> judge = PerformanceDrop()
    >>> judge.judge(reference, window(0.0)).dropped.tolist()
    [False]
    >>> judge.judge(reference, window(0.3)).dropped.tolist()
    [True]
    """

    def __init__(
        self,
        min_labels: int = 200,
        alpha: float = 0.001,
        min_effect: float = 0.10,
        min_auc_drop: float = 0.05,
    ) -> None:
        self.min_labels = check_int("min_labels", min_labels, 2)
        self.alpha = check_fraction("alpha", alpha)
        if isinstance(min_effect, bool) or not 0.0 <= float(min_effect) < float("inf"):
            raise ValueError(f"min_effect must be a finite number >= 0, got {min_effect!r}")
        self.min_effect = float(min_effect)
        self.min_auc_drop = check_fraction("min_auc_drop", min_auc_drop, open_low=False)

    def judge(self, reference: OutcomeStats, current: OutcomeStats) -> DropVerdict:
        if reference.n_scopes != current.n_scopes:
            raise ValueError(
                f"reference and current have {reference.n_scopes} and {current.n_scopes} scopes"
            )
        enough = (reference.n >= self.min_labels) & (current.n >= self.min_labels)
        difference = current.log_loss - reference.log_loss
        with np.errstate(invalid="ignore", divide="ignore"):
            se = np.sqrt(current.log_loss_var / current.n + reference.log_loss_var / reference.n)
            z = np.where(se > 0, difference / se, np.sign(difference) * np.inf)
            increase = difference / reference.log_loss
        z = np.where(enough, np.nan_to_num(z, nan=0.0), np.nan)
        pvalue = np.where(enough, ndtr(-np.nan_to_num(z, nan=0.0)), np.nan)
        auc_drop = reference.auc - current.auc
        material = (increase >= self.min_effect) | (
            np.nan_to_num(auc_drop, nan=-1.0) >= self.min_auc_drop
        )
        dropped = enough & (np.nan_to_num(pvalue, nan=1.0) < self.alpha) & material
        return DropVerdict(
            dropped=np.asarray(dropped, dtype=bool),
            enough_labels=np.asarray(enough, dtype=bool),
            z=np.asarray(z, dtype=np.float64),
            pvalue=np.asarray(pvalue, dtype=np.float64),
            log_loss_increase=np.where(enough, increase, np.nan),
            auc_drop=np.where(enough, auc_drop, np.nan),
            reference_n=reference.n.copy(),
            current_n=current.n.copy(),
            reference_log_loss=reference.log_loss.copy(),
            current_log_loss=current.log_loss.copy(),
            reference_auc=reference.auc.copy(),
            current_auc=current.auc.copy(),
            reference_error_rate=reference.error_rate.copy(),
            current_error_rate=current.error_rate.copy(),
        )
