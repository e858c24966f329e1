"""The result of a join: labels matched to their predictions, column by column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from detectors.arrays import BoolArray, FloatArray, IndexArray


@dataclass(frozen=True)
class Joined:
    """Columns of the labels that matched a stored prediction, in the order they were
    resolved, plus counts of the feedback rows that did not join in the same call.

    ``scopes`` rows are the prediction's scope row as stored (column 0 the population),
    padded with -1 to the store's widest row so far.
    """

    event_id: tuple[str, ...]
    model: tuple[str, ...]
    version: tuple[str, ...]
    prediction_ts: FloatArray
    feedback_ts: FloatArray
    delay_s: FloatArray
    score: FloatArray
    label: FloatArray
    source: tuple[str, ...]
    override: BoolArray
    scopes: IndexArray
    unknown: int = 0
    expired: int = 0
    evicted: int = 0
    duplicate: int = 0

    def __len__(self) -> int:
        return len(self.event_id)

    @classmethod
    def empty(cls, width: int = 1, **counts: int) -> Joined:
        nothing = np.zeros(0, dtype=np.float64)
        return cls(
            event_id=(),
            model=(),
            version=(),
            prediction_ts=nothing,
            feedback_ts=nothing.copy(),
            delay_s=nothing.copy(),
            score=nothing.copy(),
            label=nothing.copy(),
            source=(),
            override=np.zeros(0, dtype=bool),
            scopes=np.zeros((0, max(width, 1)), dtype=np.intp),
            **counts,
        )

    def take(self, rows: ArrayLike) -> Joined:
        """The given rows (indices or a boolean mask), e.g. one model's or one source's.
        The counts are not per row and are left at zero."""
        index = np.arange(len(self))[np.asarray(rows)]
        listed = index.tolist()
        return Joined(
            event_id=tuple(self.event_id[i] for i in listed),
            model=tuple(self.model[i] for i in listed),
            version=tuple(self.version[i] for i in listed),
            prediction_ts=self.prediction_ts[index],
            feedback_ts=self.feedback_ts[index],
            delay_s=self.delay_s[index],
            score=self.score[index],
            label=self.label[index],
            source=tuple(self.source[i] for i in listed),
            override=self.override[index],
            scopes=self.scopes[index],
        )

    @staticmethod
    def concat(parts: Sequence[Joined]) -> Joined:
        """Rows of several results in order, counts added; scope rows padded with -1."""
        if not parts:
            return Joined.empty()
        width = max(p.scopes.shape[1] for p in parts)
        scopes = [
            np.pad(p.scopes, ((0, 0), (0, width - p.scopes.shape[1])), constant_values=-1)
            for p in parts
        ]
        return Joined(
            event_id=tuple(x for p in parts for x in p.event_id),
            model=tuple(x for p in parts for x in p.model),
            version=tuple(x for p in parts for x in p.version),
            prediction_ts=np.concatenate([p.prediction_ts for p in parts]),
            feedback_ts=np.concatenate([p.feedback_ts for p in parts]),
            delay_s=np.concatenate([p.delay_s for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            label=np.concatenate([p.label for p in parts]),
            source=tuple(x for p in parts for x in p.source),
            override=np.concatenate([p.override for p in parts]),
            scopes=np.concatenate(scopes).astype(np.intp),
            unknown=sum(p.unknown for p in parts),
            expired=sum(p.expired for p in parts),
            evicted=sum(p.evicted for p in parts),
            duplicate=sum(p.duplicate for p in parts),
        )
