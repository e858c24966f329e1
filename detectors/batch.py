"""A micro-batch of predictions as columns: what every detector consumes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from detectors.arrays import FeatureColumn, FloatArray, IndexArray, as_run


@dataclass(frozen=True)
class PredictionBatch:
    """Columns of one model's predictions, in arrival order.

    ``features[name][i]`` is the raw value of that feature in row ``i`` (None when the
    event did not carry it); ``cohorts[attribute][i]`` likewise for cohort attributes.
    A feature column whose every value is a float may be a float64 array instead (the
    decoder's numbers, converted once for every detector): its values are the same.
    """

    ts: FloatArray
    score: FloatArray
    model_version: Sequence[str]
    cohorts: Mapping[str, Sequence[str | None]]
    features: Mapping[str, FeatureColumn]
    event_id: Sequence[str] = ()  # empty when the caller joins no labels

    def __post_init__(self) -> None:
        n = len(self.ts)
        columns = [self.score, self.model_version, *self.cohorts.values(), *self.features.values()]
        if self.event_id:
            columns.append(self.event_id)
        if any(len(column) != n for column in columns):
            raise ValueError("every column of a PredictionBatch must have len(ts) rows")

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, start: int, stop: int) -> PredictionBatch:
        if start == 0 and stop >= len(self):
            return self
        return PredictionBatch(
            ts=self.ts[start:stop],
            score=self.score[start:stop],
            model_version=self.model_version[start:stop],
            cohorts={k: v[start:stop] for k, v in self.cohorts.items()},
            features={k: v[start:stop] for k, v in self.features.items()},
            event_id=self.event_id[start:stop],
        )

    def take(self, rows: IndexArray) -> PredictionBatch:
        """The given rows, in the given order (an event-time merge reorders a batch)."""
        run = as_run(rows)
        if run is not None:
            return self.slice(run.start, run.stop)
        picked = rows.tolist()

        def column(values: FeatureColumn) -> FeatureColumn:
            if isinstance(values, np.ndarray):
                return values[rows]
            return [values[i] for i in picked]

        return PredictionBatch(
            ts=self.ts[rows],
            score=self.score[rows],
            model_version=column(self.model_version),  # type: ignore[arg-type]
            cohorts={k: column(v) for k, v in self.cohorts.items()},  # type: ignore[misc]
            features={k: column(v) for k, v in self.features.items()},
            event_id=column(self.event_id) if self.event_id else (),  # type: ignore[arg-type]
        )

    @staticmethod
    def concat(batches: Sequence[PredictionBatch]) -> PredictionBatch:
        """Rows of several batches in order; a column absent from one batch is None there."""
        if len(batches) == 1:
            return batches[0]
        cohort_keys = list(dict.fromkeys(k for b in batches for k in b.cohorts))
        feature_keys = list(dict.fromkeys(k for b in batches for k in b.features))

        def column(key: str, pick: str) -> FeatureColumn:
            parts: list[FeatureColumn | None]
            parts = [(b.cohorts if pick == "cohorts" else b.features).get(key) for b in batches]
            arrays = [part for part in parts if isinstance(part, np.ndarray)]
            if len(arrays) == len(parts):
                return np.concatenate(arrays)
            out: list[object] = []
            for b, values in zip(batches, parts, strict=True):
                if values is None:
                    out.extend([None] * len(b))
                else:
                    # An array's values as the floats they were (not numpy scalars).
                    out.extend(values.tolist() if isinstance(values, np.ndarray) else values)
            return out

        return PredictionBatch(
            ts=np.concatenate([b.ts for b in batches]),
            score=np.concatenate([b.score for b in batches]),
            model_version=[v for b in batches for v in b.model_version],
            cohorts={k: column(k, "cohorts") for k in cohort_keys},  # type: ignore[misc]
            features={k: column(k, "features") for k in feature_keys},
            event_id=[i for b in batches for i in b.event_id]
            if all(b.event_id for b in batches)
            else (),
        )


_NUMERIC_TYPES = {float, int, bool, type(None)}


def missing_values(column: FeatureColumn) -> int:
    """How many values of a feature column are None (a float array has none)."""
    return 0 if isinstance(column, np.ndarray) else column.count(None)


def numeric_column(values: FeatureColumn) -> tuple[FloatArray, int]:
    """Values as float64 (None and booleans handled), and how many were not numbers.

    Non-numeric values (strings in a numeric feature) become NaN and are counted, so a
    type change shows up as missing values and as a count rather than an exception.
    """
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values, 0  # a column of floats, converted by the decoder
    # numpy would parse numeric strings ("1.5"): only take the fast path when every
    # value already is a number or None.
    if set(map(type, values)) <= _NUMERIC_TYPES:
        return np.asarray(values, dtype=np.float64), 0
    out = np.empty(len(values), dtype=np.float64)
    wrong = 0
    for i, value in enumerate(values):
        if value is None:
            out[i] = np.nan
        elif isinstance(value, int | float):
            out[i] = float(value)
        else:
            out[i] = np.nan
            wrong += 1
    return out, wrong
