"""Outcomes of a binary model per scope, from joined labels, and the judges that read them.

* :class:`OutcomeWindow` keeps a window's joined ``(score, label, scope row)`` rows and
  summarises them per scope (:class:`OutcomeStats`): counts, error rate at a threshold,
  log loss, Brier score, ROC AUC and calibration by risk band.
* :class:`PerformanceDrop` says, per scope, whether a window's log loss is worse than the
  reference's, beyond noise *and* by a material amount.
* :class:`RateShift` compares a rate (positives of untrusted labels, overrides, ...)
  with the reference's.
* :class:`ScopedLossADWIN` runs river's ADWIN on the per-event log loss stream.

Log loss: probabilities are clipped to ``[EPS, 1 - EPS]`` with ``EPS = 1e-6``, so one
confidently wrong label costs at most ``ln(1e6)`` ~ 13.8 nats. Tighter clipping (1e-15)
would let a handful of saturated scores dominate both the mean and the variance that
:class:`PerformanceDrop` uses.

Scores must be probabilities in [0, 1] and labels 0 or 1; other rows (NaN scores,
regression labels) are skipped and counted in ``OutcomeWindow.skipped``. A negative
scope id in a scope row means "no scope in this dimension" and is ignored.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import chi2, norm

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.score_change import ChangePoint, ScopedADWIN
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


def _check_fraction(name: str, value: object, *, open_low: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    low_ok = number > 0 if open_low else number >= 0
    if not (low_ok and number < 1):
        bound = "(0, 1)" if open_low else "[0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")
    return number


def _scope_rows(scopes: ArrayLike, n: int, n_scopes: int) -> NDArray[np.int32]:
    rows = np.asarray(scopes)
    if rows.ndim != 2 or rows.shape[0] != n or rows.shape[1] < 1 or rows.dtype.kind not in "iu":
        raise ValueError(f"scopes must be an integer array of shape ({n}, d >= 1)")
    if rows.size and int(rows.max()) >= n_scopes:
        raise ValueError(f"scopes must be < n_scopes ({n_scopes}), got {int(rows.max())}")
    return np.where(rows < 0, -1, rows).astype(np.int32)


def _valid(scores: FloatArray, labels: FloatArray) -> BoolArray:
    with np.errstate(invalid="ignore"):
        return np.asarray(
            np.isfinite(scores) & (scores >= 0) & (scores <= 1) & ((labels == 0) | (labels == 1)),
            dtype=bool,
        )


def _ratio(num: NDArray[Any], den: NDArray[Any]) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(den > 0, num / np.maximum(den, 1), np.nan), dtype=np.float64)


def _auc_by_scope(scope: IndexArray, score: FloatArray, label: FloatArray, n_scopes: int) -> Any:
    """ROC AUC per scope via the Mann-Whitney U of the positives (ranks within the scope,
    ties averaged); NaN for a scope without both classes."""
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
        return np.where((n1 > 0) & (n0 > 0), u1 / (n1 * n0), np.nan)


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


class OutcomeWindow:
    """Joined labels of one window, per scope; :meth:`summary` gives the figures.

    The window keeps its rows (8 + 1 + 4·d bytes each for d scope columns; the caller
    bounds the window and calls :meth:`reset`) and computes every figure from them, so
    the result does not depend on batch boundaries and :meth:`merge` is exactly the
    window of the concatenated rows.

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> score = rng.random(4000)
    >>> label = (rng.random(4000) < score).astype(float)  # calibrated, informative
    >>> label[2000:] = (rng.random(2000) < 0.5)           # the relationship broke
    >>> scopes = np.zeros((4000, 1), dtype=np.intp)
    >>> before, after = OutcomeWindow(n_scopes=1), OutcomeWindow(n_scopes=1)
    >>> before.update(score[:2000], label[:2000], scopes[:2000])
    >>> after.update(score[2000:], label[2000:], scopes[2000:])
    >>> [round(float(w.summary().auc[0]), 2) for w in (before, after)]
    [0.84, 0.5]
    """

    def __init__(self, n_scopes: int, threshold: float = 0.5, n_bands: int = 10) -> None:
        self.n_scopes = check_int("n_scopes", n_scopes, 1)
        self.threshold = _check_fraction("threshold", threshold)
        self.n_bands = check_int("n_bands", n_bands, 1)
        self._reset()

    def _reset(self) -> None:
        self._band_edges = np.arange(1, self.n_bands, dtype=np.float64) / self.n_bands
        self._clear()

    def _clear(self) -> None:
        self._rows = 0
        self._score = np.zeros(0, dtype=np.float64)
        self._label = np.zeros(0, dtype=np.int8)
        self._scopes = np.zeros((0, 1), dtype=np.int32)
        self._n = np.zeros(self.n_scopes, dtype=np.int64)
        self._positives = np.zeros(self.n_scopes, dtype=np.int64)
        self._skipped = 0

    def reset(self) -> None:
        """Empty the window (a new window starts); the band edges are kept."""
        self._clear()

    def keep_scopes(self, keep: BoolArray) -> None:
        """Forget every scope but ``keep``: a scope judged in this window starts afresh
        while one with too few labels carries its rows over to the next window."""
        keep = np.asarray(keep, dtype=bool)
        rows = self._rows
        scopes = self._scopes[:rows].copy()
        member = scopes >= 0
        scopes[member & ~keep[np.where(member, scopes, 0)]] = -1
        alive = (scopes >= 0).any(axis=1)
        score, label, scopes = self._score[:rows][alive], self._label[:rows][alive], scopes[alive]
        skipped = self._skipped
        self._clear()
        self._skipped = skipped
        if len(score):
            self._append(score, label, scopes)

    @property
    def n(self) -> IntArray:
        """Labels per scope in the window."""
        return self._n.copy()

    @property
    def positives(self) -> IntArray:
        return self._positives.copy()

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def skipped(self) -> int:
        """Rows ignored: score not a probability in [0, 1] or label not 0/1."""
        return self._skipped

    @property
    def band_edges(self) -> FloatArray:
        return self._band_edges.copy()

    def set_band_edges(self, edges: ArrayLike) -> None:
        """Interior risk-band edges (``n_bands - 1`` non-decreasing numbers), e.g.
        :func:`band_edges_from_reference` on the reference scores. Applies to the whole
        window, rows already in it included."""
        values = np.asarray(edges, dtype=np.float64)
        if values.shape != (self.n_bands - 1,):
            raise ValueError(f"edges must be {self.n_bands - 1} numbers, got shape {values.shape}")
        if not np.isfinite(values).all() or (np.diff(values) < 0).any():
            raise ValueError("edges must be finite and non-decreasing")
        self._band_edges = values.copy()

    def update(self, scores: FloatArray, labels: FloatArray, scopes: IndexArray) -> None:
        """Add joined rows: ``scopes`` is ``(n, d)``, column 0 the population scope."""
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        n = len(scores)
        if scores.shape != (n,) or labels.shape != (n,):
            raise ValueError("scores and labels must be 1-D arrays of the same length")
        rows = _scope_rows(scopes, n, self.n_scopes)
        valid = _valid(scores, labels)
        self._skipped += int(n - valid.sum())
        if not valid.any():
            return
        self._append(scores[valid], labels[valid].astype(np.int8), rows[valid])

    def _append(
        self, scores: FloatArray, labels: NDArray[np.int8], rows: NDArray[np.int32]
    ) -> None:
        n = len(scores)
        width = max(self._scopes.shape[1], rows.shape[1])
        needed = self._rows + n
        if needed > len(self._score) or width > self._scopes.shape[1]:
            capacity = max(needed, 2 * len(self._score), 64)
            score = np.zeros(capacity, dtype=np.float64)
            label = np.zeros(capacity, dtype=np.int8)
            scope = np.full((capacity, width), -1, dtype=np.int32)
            score[: self._rows] = self._score[: self._rows]
            label[: self._rows] = self._label[: self._rows]
            scope[: self._rows, : self._scopes.shape[1]] = self._scopes[: self._rows]
            self._score, self._label, self._scopes = score, label, scope
        part = slice(self._rows, needed)
        self._score[part] = scores
        self._label[part] = labels
        self._scopes[part] = -1
        self._scopes[part, : rows.shape[1]] = rows
        self._rows = needed
        member = rows >= 0
        flat = rows[member]
        self._n += np.bincount(flat, minlength=self.n_scopes)
        weights = np.broadcast_to(labels[:, None], rows.shape)[member]
        self._positives += np.bincount(flat, weights=weights, minlength=self.n_scopes).astype(
            np.int64
        )

    def summary(self) -> OutcomeStats:
        s_count, b_count = self.n_scopes, self.n_bands
        rows = self._rows
        score = self._score[:rows]
        label = self._label[:rows].astype(np.float64)
        scopes = self._scopes[:rows]
        pair_row, pair_col = np.nonzero(scopes >= 0)
        scope = scopes[pair_row, pair_col].astype(np.intp)
        loss = log_loss(score, label)
        error = ((score >= self.threshold) != (label == 1)).astype(np.float64)
        brier = (score - label) ** 2
        band = np.searchsorted(self._band_edges, score, side="right")

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
            threshold=self.threshold,
            n=n,
            positives=positives,
            errors=errors,
            error_rate=_ratio(errors, n),
            positive_rate=_ratio(positives, n),
            mean_score=_ratio(total(score), n),
            log_loss=mean_loss,
            log_loss_var=_ratio(squares, n - 1),
            brier=_ratio(total(brier), n),
            auc=_auc_by_scope(scope, score[pair_row], label[pair_row], s_count),
            band_edges=self._band_edges.copy(),
            band_counts=band_counts.astype(np.int64),
            band_positives=np.rint(band_pos).astype(np.int64).reshape(s_count, b_count),
            band_observed=observed,
            band_predicted=predicted,
            calibration_gap=np.where(n > 0, gaps.max(axis=1), np.nan),
            ece=_ratio(weighted, n),
        )

    def merge(self, other: OutcomeWindow) -> OutcomeWindow:
        """A new window of both windows' rows (``self``'s first); inputs unchanged."""
        if not isinstance(other, OutcomeWindow):
            raise TypeError(f"can only merge an OutcomeWindow, got {type(other).__name__}")
        mine = (self.n_scopes, self.threshold, self.n_bands)
        theirs = (other.n_scopes, other.threshold, other.n_bands)
        if mine != theirs or not np.array_equal(self._band_edges, other._band_edges):
            raise ValueError(
                "cannot merge OutcomeWindows with different (n_scopes, threshold, n_bands) "
                f"or band edges: {mine} vs {theirs}"
            )
        out = OutcomeWindow(self.n_scopes, self.threshold, self.n_bands)
        out._band_edges = self._band_edges.copy()
        for window in (self, other):
            if window._rows:
                rows = window._rows
                out._append(window._score[:rows], window._label[:rows], window._scopes[:rows])
            out._skipped += window._skipped
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: settings, band edges and the window's rows."""
        rows = self._rows
        return {
            "kind": "OutcomeWindow",
            "version": 1,
            "n_scopes": self.n_scopes,
            "threshold": self.threshold,
            "n_bands": self.n_bands,
            "band_edges": self._band_edges.tolist(),
            "score": self._score[:rows].tolist(),
            "label": self._label[:rows].tolist(),
            "scopes": self._scopes[:rows].tolist(),
            "skipped": self._skipped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutcomeWindow:
        """Inverse of :meth:`to_dict`; raises ValueError on a wrong kind/version or bad data."""
        if not isinstance(data, Mapping) or data.get("kind") != "OutcomeWindow":
            raise ValueError("expected an OutcomeWindow dict (kind 'OutcomeWindow')")
        if data.get("version") != 1:
            raise ValueError(f"unsupported OutcomeWindow version {data.get('version')!r}")
        try:
            out = cls(data["n_scopes"], data["threshold"], data["n_bands"])
            out.set_band_edges(data["band_edges"])
            scores = np.asarray(data["score"], dtype=np.float64)
            labels = np.asarray(data["label"], dtype=np.float64)
            n = len(scores)
            scopes = np.asarray(data["scopes"], dtype=np.int64).reshape(n, -1) if n else None
            if n and scopes is not None:
                if not _valid(scores, labels).all():
                    raise ValueError("malformed OutcomeWindow dict: invalid score or label")
                rows = _scope_rows(scopes, n, out.n_scopes)
                out._append(scores, labels.astype(np.int8), rows)
            out._skipped = check_int("skipped", data["skipped"], 0)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed OutcomeWindow dict: {exc}") from None
        return out


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
        self.alpha = _check_fraction("alpha", alpha)
        if isinstance(min_effect, bool) or not 0.0 <= float(min_effect) < float("inf"):
            raise ValueError(f"min_effect must be a finite number >= 0, got {min_effect!r}")
        self.min_effect = float(min_effect)
        self.min_auc_drop = _check_fraction("min_auc_drop", min_auc_drop, open_low=False)

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
        pvalue = np.where(enough, norm.sf(np.nan_to_num(z, nan=0.0)), np.nan)
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
        self.alpha = _check_fraction("alpha", alpha)

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
        pvalue = np.where(enough, chi2.sf(statistic, np.maximum(dof, 1)), np.nan)
        shifted = enough & (np.nan_to_num(pvalue, nan=1.0) < self.alpha)
        return CalibrationVerdict(
            shifted=np.asarray(shifted, dtype=bool),
            statistic=np.asarray(statistic, dtype=np.float64),
            pvalue=np.asarray(pvalue, dtype=np.float64),
        )


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
        self.alpha = _check_fraction("alpha", alpha)
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
        pvalue = np.where(enough, 2 * norm.sf(np.abs(np.nan_to_num(z))), np.nan)
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


class ScopedLossADWIN:
    """River's ADWIN on the per-event log loss, one detector per scope.

    This is :class:`~detectors.score_change.ScopedADWIN` fed the log loss of each joined
    row (rows whose score or label is not usable are skipped, as NaN scores are there),
    with one extra sink detector for "no scope" entries (negative ids) whose changes are
    dropped. A change means the mean loss moved either way: compare ``mean_after`` with
    the reference log loss for the direction.

    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> score = rng.random(8000)
    >>> label = (rng.random(8000) < score).astype(float)
    >>> label[4000:] = 1 - label[4000:]  # labels flipped: the model is now wrong
    >>> detector = ScopedLossADWIN(n_scopes=1)
    >>> changes = detector.update(score, label, np.zeros((8000, 1), dtype=np.intp),
    ...                           np.arange(8000.0))
    >>> [4000 <= c.row < 4200 for c in changes][:1]
    [True]
    """

    def __init__(self, n_scopes: int, delta: float = 0.002) -> None:
        self.n_scopes = check_int("n_scopes", n_scopes, 1)
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.delta = delta
        self._reset()

    def _reset(self) -> None:
        self._adwin = ScopedADWIN(self.n_scopes + 1, self.delta)

    @property
    def detections(self) -> IntArray:
        return np.asarray(self._adwin.detections[: self.n_scopes], dtype=np.int64)

    def means(self) -> FloatArray:
        """ADWIN's current mean log loss per scope (0 before any row)."""
        return self._adwin.means()[: self.n_scopes]

    def update(
        self, scores: FloatArray, labels: FloatArray, scopes: IndexArray, ts: FloatArray
    ) -> list[ChangePoint]:
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        n = len(scores)
        if scores.shape != (n,) or labels.shape != (n,) or np.shape(ts) != (n,):
            raise ValueError("scores, labels and ts must be 1-D arrays of the same length")
        rows = _scope_rows(scopes, n, self.n_scopes).astype(np.intp)
        rows[rows < 0] = self.n_scopes
        loss = np.where(_valid(scores, labels), log_loss(scores, labels), np.nan)
        changes = self._adwin.update(loss, rows, np.asarray(ts, dtype=np.float64))
        return [change for change in changes if change.scope < self.n_scopes]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: each river detector's own state bytes (base64)."""
        adwin = self._adwin
        detectors = [
            {
                "state": base64.b64encode(bytes(d._helper.__getstate__())).decode("ascii"),
                "drift_detected": bool(d.drift_detected),
            }
            for d in adwin._detectors
        ]
        return {
            "kind": "ScopedLossADWIN",
            "version": 1,
            "n_scopes": self.n_scopes,
            "delta": self.delta,
            "rows": adwin._rows,
            "detections": adwin.detections.tolist(),
            "detectors": detectors,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScopedLossADWIN:
        """Inverse of :meth:`to_dict` (state of river 0.26's ADWIN)."""
        if not isinstance(data, Mapping) or data.get("kind") != "ScopedLossADWIN":
            raise ValueError("expected a ScopedLossADWIN dict (kind 'ScopedLossADWIN')")
        if data.get("version") != 1:
            raise ValueError(f"unsupported ScopedLossADWIN version {data.get('version')!r}")
        try:
            out = cls(data["n_scopes"], data["delta"])
            saved = data["detectors"]
            if len(saved) != out.n_scopes + 1:
                raise ValueError("malformed ScopedLossADWIN dict: wrong number of detectors")
            for detector, state in zip(out._adwin._detectors, saved):
                detector._helper.__setstate__(base64.b64decode(state["state"]))
                detector._drift_detected = bool(state["drift_detected"])
            out._adwin._rows = check_int("rows", data["rows"], 0)
            detections = np.asarray(data["detections"], dtype=np.int64)
            if detections.shape != (out.n_scopes + 1,):
                raise ValueError("malformed ScopedLossADWIN dict: wrong detections")
            out._adwin.detections = detections
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed ScopedLossADWIN dict: {exc}") from None
        return out


__all__ = [
    "EPS",
    "DropVerdict",
    "OutcomeStats",
    "OutcomeWindow",
    "PerformanceDrop",
    "RateShift",
    "RateVerdict",
    "ScopedLossADWIN",
    "band_edges_from_reference",
    "log_loss",
]
