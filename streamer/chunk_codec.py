"""Chunks as bytes, for the internal topic that carries them from ingest to the judge.

JSON (orjson): every value in a chunk is a JSON scalar already (the decoder accepts
nothing else), floats round-trip exactly, and a message can be read with any tool.
Anything that is not a chunk this module wrote raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from detectors.arrays import FeatureColumn
from detectors.batch import PredictionBatch
from streamer.decode import float_array
from streamer.event_order import NO_LABELS, Chunk, Labels

VERSION = 1
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def encode(chunk: Chunk) -> bytes:
    predictions = {
        model: {
            "ts": batch.ts,
            "score": batch.score,
            "model_version": list(batch.model_version),
            "cohorts": {k: list(v) for k, v in batch.cohorts.items()},
            # A float column as an array: orjson writes it in C.
            "features": {
                k: v if isinstance(v, np.ndarray) else list(v) for k, v in batch.features.items()
            },
            "event_id": list(batch.event_id),
            "offsets": offsets,
        }
        for model, (batch, offsets) in chunk.predictions.items()
    }
    labels = chunk.labels
    body = {
        "v": VERSION,
        "source": list(chunk.source),
        "end": chunk.end_offset,
        "idle": chunk.idle,
        "predictions": predictions,
        "labels": {
            "event_id": list(labels.event_id),
            "ts": labels.ts,
            "label": labels.label,
            "source": list(labels.source),
            "override": labels.override,
            "offsets": chunk.label_offsets,
        },
    }
    return orjson.dumps(body, option=_NUMPY)


def decode(data: bytes) -> Chunk:
    try:
        body = orjson.loads(data)
        if body.get("v") != VERSION:
            raise ValueError(f"chunk format {body.get('v')!r}, this driftgate reads {VERSION}")
        topic, partition = body["source"]
        predictions = {
            str(model): (_batch(columns), np.asarray(columns["offsets"], dtype=np.int64))
            for model, columns in body["predictions"].items()
        }
        raw = body["labels"]
        labels = (
            Labels(
                raw["event_id"],
                np.asarray(raw["ts"], dtype=np.float64),
                np.asarray(raw["label"], dtype=np.float64),
                raw["source"],
                np.asarray(raw["override"], dtype=np.bool_),
            )
            if raw["ts"]
            else NO_LABELS
        )
        return Chunk(
            (str(topic), int(partition)),
            predictions,
            labels,
            np.asarray(raw["offsets"], dtype=np.int64),
            int(body["end"]),
            bool(body["idle"]),
        )
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a driftgate chunk ({type(exc).__name__}: {exc})") from exc


def _batch(columns: dict[str, Any]) -> PredictionBatch:
    return PredictionBatch(
        ts=np.asarray(columns["ts"], dtype=np.float64),
        score=np.asarray(columns["score"], dtype=np.float64),
        model_version=columns["model_version"],
        cohorts=columns["cohorts"],
        features={name: _feature(column) for name, column in columns["features"].items()},
        event_id=columns["event_id"],
    )


def _feature(column: list[Any]) -> FeatureColumn:
    """A feature column as ingest handed it over: the decoder turns every column of finite
    floats only into an array (and no other), so a list of them was one."""
    array = float_array(column)
    return column if array is None else array
