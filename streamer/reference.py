"""Pinned references: a known-good period of each model's predictions, kept in a file.

``driftgate reference build`` keeps, per model, the first valid predictions of a replay
file (training-time traffic, say); with ``reference.file`` set, each model's monitor is
fitted on them before its first event instead of on its first events, so a new or
restarted deployment is judged against that period from the start.

The file (format version 1) is gzip-compressed JSON Lines, readable with ``zcat``:

* line 1, the header: ``{"format": "driftgate-reference", "version": 1, "models":
  {model: {"events", "start", "end", "features", "cohorts"}}, "sha256": ...}``, the
  SHA-256 being that of the uncompressed lines after the header;
* then one prediction per line, model by model in arrival order, exactly as on the
  predictions topic (the event contract), so loading it goes through the same decoder.

Not pickle: a reference file may come from another team, and loading one must not be
able to run code. A feature or cohort value that is null is left out of its event (the
contract's "absent"), so a feature null in every kept event is not carried.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from detectors.batch import PredictionBatch
from detectors.monitor import MonitorConfig
from streamer.config import LimitsConfig, Settings
from streamer.decode import Prediction, Rejected, decode_prediction_envelope, invalid_feature_rows
from streamer.engine import PREDICTIONS, prediction_batch
from streamer.errors import DriftgateError
from streamer.sources import ReplaySource

FORMAT = "driftgate-reference"
VERSION = 1
_REBUILD = "build it again with `driftgate reference build`"


def build_reference(
    replay_path: Path | str, settings: Settings, max_events: int | None = None
) -> dict[str, PredictionBatch]:
    """Per model, its first ``max_events`` valid predictions in the replay file.

    Unlike a reference the monitor collects itself (``reference_events``, or up to a
    day of event time), a pinned one is whatever period the file holds, up to
    ``detection.reference_max_events`` (the default ``max_events``). Records the engine
    would reject (and feedback) are skipped.
    """
    monitor = settings.monitor
    cap = monitor.reference_max_events
    limit = cap if max_events is None else max_events
    if not 1 <= limit <= cap:
        raise DriftgateError(
            f"--max-events must be between 1 and detection.reference_max_events ({cap}), "
            f"got {limit} (raise detection.reference_max_events to keep more)"
        )
    # The engine's cap on columns, so the reference is the batch the engine would see.
    max_columns = 2 * monitor.max_features
    kept: dict[str, list[Prediction]] = {}
    source = ReplaySource(replay_path, batch_events=settings.kafka.max_poll_records)
    try:
        while (records := source.poll()) is not None:
            by_model: dict[str, list[Prediction]] = {}
            for record in records:
                if record.kind != PREDICTIONS:
                    continue
                event = decode_prediction_envelope(record.value, settings.limits, record.parsed)
                if isinstance(event, dict) and len(kept.get(event["model"], ())) < limit:
                    by_model.setdefault(event["model"], []).append(event)
            for model, events in by_model.items():
                columns = prediction_batch(events, max_columns).features
                bad = invalid_feature_rows(columns, settings.limits)
                have = kept.setdefault(model, [])
                have.extend([e for i, e in enumerate(events) if i not in bad][: limit - len(have)])
    finally:
        source.close()
    references = {
        model: prediction_batch(events, max_columns) for model, events in sorted(kept.items())
    }
    _check_sizes(references, monitor.min_reference_events, f"replay file {replay_path}")
    return references


def _check_sizes(references: Mapping[str, PredictionBatch], min_events: int, where: str) -> None:
    if not references:
        raise DriftgateError(f"{where} holds no valid prediction to build a reference from")
    short = [f"{model!r} ({len(b)})" for model, b in references.items() if len(b) < min_events]
    if short:
        raise DriftgateError(
            f"{where}: too few predictions for a reference of model {', '.join(short)}; "
            f"detection.min_reference_events is {min_events}: use a longer period"
        )


def _events(model: str, batch: PredictionBatch) -> list[bytes]:
    """The batch's rows as prediction events, one JSON line each."""
    cohorts, features = batch.cohorts.items(), batch.features.items()
    lines = []
    for i in range(len(batch)):
        event = {
            # The contract needs an id; a batch made without them gets positional ones.
            "event_id": batch.event_id[i] if batch.event_id else f"{model}-reference-{i}",
            "ts": float(batch.ts[i]),
            "model": model,
            "model_version": batch.model_version[i],
            "cohort": {k: v[i] for k, v in cohorts if v[i] is not None},
            "features": {k: v[i] for k, v in features if v[i] is not None},
            "score": float(batch.score[i]),
        }
        lines.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    return lines


def write_reference(path: Path | str, references: Mapping[str, PredictionBatch]) -> None:
    """Write the references (same input, same bytes), atomically: a reader sees the old
    file or the new one."""
    body = b"".join(b"".join(_events(model, references[model])) for model in sorted(references))
    header = {
        "format": FORMAT,
        "version": VERSION,
        "models": {
            model: {
                "events": len(batch),
                "start": float(batch.ts.min()),
                "end": float(batch.ts.max()),
                "features": sorted(batch.features),
                "cohorts": sorted(batch.cohorts),
            }
            for model, batch in sorted(references.items())
        },
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    target = Path(path)
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as fh, gzip.GzipFile("", "wb", 6, fh, mtime=0) as gz:
            gz.write(orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE))
            gz.write(body)
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise DriftgateError(f"cannot write reference file {path}: {exc.strerror}") from exc


def load_references(
    path: Path | str,
    limits: LimitsConfig | None = None,
    min_events: int = MonitorConfig.min_reference_events,
) -> dict[str, PredictionBatch]:
    """The references of a file of :func:`write_reference`, checked as the predictions
    topic is (``limits``); anything wrong with the file raises a DriftgateError that says
    what to do."""
    limits = limits or LimitsConfig()
    try:
        with gzip.open(path, "rb") as gz:
            first = gz.readline()
            body = gz.read()
    except (OSError, EOFError, zlib.error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise DriftgateError(
            f"cannot read reference file {path}: {reason} (a file of `driftgate reference "
            f"build` is gzip-compressed; if it was cut short, {_REBUILD})"
        ) from exc
    header = _header(first, path)
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise DriftgateError(f"reference file {path} is corrupt (checksum mismatch); {_REBUILD}")
    by_model: dict[str, list[Prediction]] = {}
    for number, line in enumerate(body.splitlines(), 2):
        event = decode_prediction_envelope(line, limits)
        if isinstance(event, Rejected):
            raise DriftgateError(
                f"reference file {path}, line {number}: {event.reason}: {event.detail} "
                f"(check limits.*, or {_REBUILD})"
            )
        by_model.setdefault(event["model"], []).append(event)
    references = {}
    for model, events in by_model.items():
        batch = prediction_batch(events)
        bad = invalid_feature_rows(batch.features, limits)
        if bad:
            row, rejected = min(bad.items())
            raise DriftgateError(
                f"reference file {path}: model {model!r}, prediction {row + 1}: "
                f"{rejected.reason}: {rejected.detail} (check limits.*, or {_REBUILD})"
            )
        references[model] = batch
    counts = {model: len(batch) for model, batch in references.items()}
    declared = {model: entry.get("events") for model, entry in header["models"].items()}
    if counts != declared:
        raise DriftgateError(
            f"reference file {path} does not hold what its header says "
            f"(events per model {counts}, header {declared}); {_REBUILD}"
        )
    _check_sizes(references, min_events, f"reference file {path}")
    return references


def _header(line: bytes, path: Path | str) -> dict[str, Any]:
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DriftgateError(
            f"{path} is not a driftgate reference file (no header line); {_REBUILD}"
        )
    if header.get("version") != VERSION:
        raise DriftgateError(
            f"reference file {path} is version {header.get('version')!r}; this driftgate "
            f"reads version {VERSION}: {_REBUILD}, from the same replay file"
        )
    models = header.get("models")
    if not isinstance(models, dict) or not all(isinstance(e, dict) for e in models.values()):
        raise DriftgateError(f"reference file {path} has a malformed header; {_REBUILD}")
    return header
