"""River's ADWIN on each scope's per-event log loss."""

from __future__ import annotations

import numpy as np

from detectors.arrays import FloatArray, IndexArray, IntArray
from detectors.outcomes.checks import scope_rows
from detectors.outcomes.stats import log_loss, valid_rows
from detectors.score_change import ChangePoint, ScopedADWIN
from detectors.validation import check_int


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
        rows = scope_rows(scopes, n, self.n_scopes).astype(np.intp)
        rows[rows < 0] = self.n_scopes
        loss = np.where(valid_rows(scores, labels), log_loss(scores, labels), np.nan)
        changes = self._adwin.update(loss, rows, np.asarray(ts, dtype=np.float64))
        return [change for change in changes if change.scope < self.n_scopes]
