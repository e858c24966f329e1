"""The joined labels of one window, per scope, kept as rows and summarised on demand."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.outcomes.checks import check_fraction, scope_rows
from detectors.outcomes.stats import OutcomeStats, summarise, valid_rows
from detectors.validation import check_int


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
        self.threshold = check_fraction("threshold", threshold)
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
        rows = scope_rows(scopes, n, self.n_scopes)
        valid = valid_rows(scores, labels)
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
        rows = self._rows
        return summarise(
            self._score[:rows],
            self._label[:rows].astype(np.float64),
            self._scopes[:rows],
            self.n_scopes,
            self.threshold,
            self._band_edges,
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
