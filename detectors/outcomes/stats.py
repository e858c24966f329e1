"""The outcome figures of joined rows per scope: log loss, Brier score, error rate, ROC AUC
and calibration by risk band (:class:`OutcomeStats`, computed by :func:`summarise`).

Log loss: probabilities are clipped to ``[EPS, 1 - EPS]`` with ``EPS = 1e-6``, so one
confidently wrong label costs at most ``ln(1e6)`` ~ 13.8 nats. Tighter clipping (1e-15)
would let a handful of saturated scores dominate both the mean and the variance that
:class:`~detectors.outcomes.performance.PerformanceDrop` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.arrays import BoolArray, FloatArray, IntArray
from detectors.outcomes.auc import auc_by_scope
from detectors.validation import check_int

EPS = 1e-6


def log_loss(scores: FloatArray, labels: FloatArray) -> FloatArray:
    """Per-event binary log loss (natural log), probabilities clipped to [EPS, 1 - EPS].

    >>> import numpy as np
    >>> log_loss(np.array([0.9, 0.9, 1.0]), np.array([1.0, 0.0, 0.0])).round(3).tolist()
    [0.105, 2.303, 13.816]
    """
    p = np.clip(np.asarray(scores, dtype=np.float64), EPS, 1.0 - EPS)
    y = np.asarray(labels, dtype=np.float64)
    return np.asarray(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)), dtype=np.float64)


def band_edges_from_reference(scores: FloatArray, n_bands: int = 10) -> FloatArray:
    """Interior edges of ``n_bands`` risk bands: the reference scores' quantiles (deciles
    for 10 bands). Band ``k`` holds scores in ``[edges[k-1], edges[k])``.

    >>> import numpy as np
    >>> band_edges_from_reference(np.linspace(0, 1, 101), 4).tolist()
    [0.25, 0.5, 0.75]
    """
    check_int("n_bands", n_bands, 1)
    values = np.asarray(scores, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        raise ValueError("band edges need at least one finite reference score")
    return np.asarray(np.quantile(values, np.arange(1, n_bands) / n_bands), dtype=np.float64)


def valid_rows(scores: FloatArray, labels: FloatArray) -> BoolArray:
    """Rows whose score is a probability in [0, 1] and whose label is 0 or 1."""
    with np.errstate(invalid="ignore"):
        return np.asarray(
            np.isfinite(scores) & (scores >= 0) & (scores <= 1) & ((labels == 0) | (labels == 1)),
            dtype=bool,
        )


def _ratio(num: NDArray[Any], den: NDArray[Any]) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(den > 0, num / np.maximum(den, 1), np.nan), dtype=np.float64)


@dataclass(frozen=True)
class OutcomeStats:
    """Outcome figures of one window, arrays indexed by scope (NaN where undefined).

    ``log_loss_var`` is the sample variance (ddof=1) of the per-event log loss;
    ``band_*`` are ``(n_scopes, n_bands)``; ``calibration_gap`` is the largest
    ``|band_observed - band_predicted|`` over the scope's non-empty bands and ``ece`` the
    count-weighted mean of the same gaps (expected calibration error).
    """

    threshold: float
    n: IntArray
    positives: IntArray
    errors: IntArray
    error_rate: FloatArray
    positive_rate: FloatArray
    mean_score: FloatArray
    log_loss: FloatArray
    log_loss_var: FloatArray
    brier: FloatArray
    auc: FloatArray
    band_edges: FloatArray
    band_counts: IntArray
    band_positives: IntArray
    band_observed: FloatArray
    band_predicted: FloatArray
    calibration_gap: FloatArray
    ece: FloatArray

    @property
    def n_scopes(self) -> int:
        return len(self.n)


def summarise(
    score: FloatArray,
    label: FloatArray,
    scopes: NDArray[np.int32],
    n_scopes: int,
    threshold: float,
    band_edges: FloatArray,
) -> OutcomeStats:
    """The figures per scope of joined rows, all of them usable (:func:`valid_rows`):
    ``scopes`` rows hold each row's scope ids (-1: none), risk bands are split at
    ``band_edges`` and a score at or over ``threshold`` predicts a positive."""
    s_count, b_count = n_scopes, len(band_edges) + 1
    pair_row, pair_col = np.nonzero(scopes >= 0)
    scope = scopes[pair_row, pair_col].astype(np.intp)
    loss = log_loss(score, label)
    error = ((score >= threshold) != (label == 1)).astype(np.float64)
    brier = (score - label) ** 2
    band = np.searchsorted(band_edges, score, side="right")

    def total(per_row: FloatArray) -> FloatArray:
        sums = np.bincount(scope, weights=per_row[pair_row], minlength=s_count)
        return np.asarray(sums, dtype=np.float64)

    n = np.bincount(scope, minlength=s_count).astype(np.int64)
    positives = np.rint(total(label)).astype(np.int64)
    errors = np.rint(total(error)).astype(np.int64)
    mean_loss = _ratio(total(loss), n)
    deviation = loss[pair_row] - np.nan_to_num(mean_loss)[scope]
    squares = np.bincount(scope, weights=deviation**2, minlength=s_count)
    flat = scope * b_count + band[pair_row]
    cells = s_count * b_count
    band_counts = np.bincount(flat, minlength=cells).reshape(s_count, b_count)
    band_pos = np.bincount(flat, weights=label[pair_row], minlength=cells)
    band_sum = np.bincount(flat, weights=score[pair_row], minlength=cells)
    observed = _ratio(band_pos.reshape(s_count, b_count), band_counts)
    predicted = _ratio(band_sum.reshape(s_count, b_count), band_counts)
    gaps = np.abs(np.nan_to_num(observed - predicted))
    weighted = (gaps * band_counts).sum(axis=1)
    return OutcomeStats(
        threshold=threshold,
        n=n,
        positives=positives,
        errors=errors,
        error_rate=_ratio(errors, n),
        positive_rate=_ratio(positives, n),
        mean_score=_ratio(total(score), n),
        log_loss=mean_loss,
        log_loss_var=_ratio(squares, n - 1),
        brier=_ratio(total(brier), n),
        auc=auc_by_scope(scope, score[pair_row], label[pair_row], s_count),
        band_edges=band_edges.copy(),
        band_counts=band_counts.astype(np.int64),
        band_positives=np.rint(band_pos).astype(np.int64).reshape(s_count, b_count),
        band_observed=observed,
        band_predicted=predicted,
        calibration_gap=np.where(n > 0, gaps.max(axis=1), np.nan),
        ece=_ratio(weighted, n),
    )
