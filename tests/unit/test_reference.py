"""Pinned references: `driftgate reference build`, the file, and monitors judged from event one."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest

from detectors.batch import PredictionBatch
from detectors.monitor import ModelMonitor
from evaluation.simulate import Incident, TrafficSpec, generate, write_replay
from streamer import app
from streamer.checkpoint import config_fingerprint
from streamer.cli import main
from streamer.config import load_settings
from streamer.engine import Engine
from streamer.errors import DriftgateError
from streamer.reference import build_reference, load_references, write_reference
from streamer.service import Service
from streamer.sinks import JsonLinesDecisionSink, ReportingDeadLetterSink
from streamer.sources import ReplaySource

REFERENCE_EVENTS = 20_000
STREAM_EVENTS = 12_000
# The engine sees 6 windows of 2,000: nothing without a pin (the reference would still be
# collecting its 10,000 events), a decision after 3 windows with one.
SHIFT = Incident(
    name="amount_shift",
    kind="covariate_shift",
    feature="amount",
    cohort=None,
    start_event=0,
    magnitude=1.0,
)


def _stream(path: Path, events: int, seed: int, incidents: list[Incident] | None = None) -> Path:
    write_replay(path, generate(TrafficSpec(), events, seed, incidents or []))
    return path


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training-time traffic (with a bad line and a bad feature value first, which the
    build skips), then a stationary and a shifted stream from other seeds."""
    root = tmp_path_factory.mktemp("reference")
    training = _stream(root / "training.jsonl", REFERENCE_EVENTS, seed=1)
    bad_value = {
        "topic": "predictions",
        "value": {"event_id": "bad", "ts": 1.0, "model": "fraud", "model_version": "v1",
                  "features": {"amount": {"nested": 1}}, "score": 0.5},
    }  # fmt: skip
    bad = b"{not json\n" + orjson.dumps(bad_value, option=orjson.OPT_APPEND_NEWLINE)
    training.write_bytes(bad + training.read_bytes())
    return {
        "training": training,
        "stationary": _stream(root / "stationary.jsonl", STREAM_EVENTS, seed=2),
        "shifted": _stream(root / "shifted.jsonl", STREAM_EVENTS, seed=3, incidents=[SHIFT]),
    }


@pytest.fixture(scope="module")
def reference_file(streams: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pinned") / "fraud.ref.gz"
    write_reference(path, build_reference(streams["training"], load_settings()))
    return path


def _equal(a: PredictionBatch, b: PredictionBatch) -> bool:
    return (
        np.array_equal(a.ts, b.ts)
        and np.array_equal(a.score, b.score)
        and list(a.model_version) == list(b.model_version)
        and list(a.event_id) == list(b.event_id)
        and {k: list(v) for k, v in a.cohorts.items()} == {k: list(v) for k, v in b.cohorts.items()}
        and {k: list(v) for k, v in a.features.items()}
        == {k: list(v) for k, v in b.features.items()}
    )


def _run(engine: Engine, stream: Path, out: Path) -> Engine:
    service = Service(
        engine,
        ReplaySource(stream),
        JsonLinesDecisionSink(out),
        ReportingDeadLetterSink(out.with_suffix(".dead.jsonl")),
    )
    service.run(threading.Event())
    return engine


def _decisions(path: Path) -> list[tuple[str, str, str | None]]:
    decisions = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [(d["action"], d["cause"], d["scope"]["feature"]) for d in decisions]


def test_build_keeps_the_first_valid_predictions_and_round_trips(streams, reference_file, tmp_path):
    settings = load_settings()
    built = build_reference(streams["training"], settings)
    assert list(built) == ["fraud"]
    batch = built["fraud"]
    # Every valid prediction of the file (fewer than reference_max_events), bad ones skipped.
    assert len(batch) == REFERENCE_EVENTS
    assert batch.event_id[0] == "p-0"
    loaded = load_references(reference_file)
    assert _equal(loaded["fraud"], batch)
    # Same references, same bytes: a file can be checked in and compared.
    again = tmp_path / "again.ref.gz"
    write_reference(again, loaded)
    assert again.read_bytes() == reference_file.read_bytes()
    header = orjson.loads(gzip.decompress(reference_file.read_bytes()).split(b"\n", 1)[0])
    assert header["format"] == "driftgate-reference" and header["version"] == 1
    assert header["models"]["fraud"]["events"] == REFERENCE_EVENTS
    assert header["models"]["fraud"]["start"] == float(batch.ts[0])

    capped = build_reference(streams["training"], settings, max_events=3_000)["fraud"]
    assert _equal(capped, batch.slice(0, 3_000))
    with pytest.raises(DriftgateError, match=r"detection\.reference_max_events"):
        build_reference(streams["training"], settings, max_events=10**6)
    with pytest.raises(DriftgateError, match=r"model 'fraud' \(150\).*min_reference_events"):
        build_reference(streams["training"], settings, max_events=150)


def test_a_pinned_monitor_judges_from_its_first_event(streams, reference_file, tmp_path):
    settings = load_settings()
    references = load_references(reference_file)
    engine = Engine(settings.monitor, settings.limits, settings.feedback, references)
    _run(engine, streams["stationary"], tmp_path / "stationary.jsonl")
    assert _decisions(tmp_path / "stationary.jsonl") == []
    monitor = engine.monitors["fraud"]
    # No warm-up: every window of the stream was judged, against the pinned period.
    assert monitor.events == STREAM_EVENTS
    assert monitor.windows == STREAM_EVENTS // settings.monitor.window_events
    assert monitor.reference_start == float(references["fraud"].ts[0])
    assert int(monitor.reference_scope_events[0]) == REFERENCE_EVENTS
    # The stream's event times overlap the reference's: its labels are used all the same.
    assert monitor.labels_before_reference == 0
    assert monitor.outcomes is not None and monitor.outcomes.labels > 0


def test_a_shift_from_the_first_event_is_a_decision_only_with_a_pin(
    streams, reference_file, tmp_path
):
    settings = load_settings()
    pinned = Engine(
        settings.monitor, settings.limits, settings.feedback, load_references(reference_file)
    )
    _run(pinned, streams["shifted"], tmp_path / "pinned.jsonl")
    assert ("investigate", "covariate_drift", "amount") in _decisions(tmp_path / "pinned.jsonl")
    unpinned = Engine(settings.monitor, settings.limits, settings.feedback)
    _run(unpinned, streams["shifted"], tmp_path / "unpinned.jsonl")
    assert _decisions(tmp_path / "unpinned.jsonl") == []


def test_pinning_needs_a_fresh_monitor_and_rows(reference_file):
    batch = load_references(reference_file)["fraud"]
    monitor = ModelMonitor("fraud")
    with pytest.raises(ValueError, match="empty"):
        monitor.pin_reference(batch.slice(0, 0))
    monitor.update(batch.slice(0, 10))
    with pytest.raises(ValueError, match="before any event"):
        monitor.pin_reference(batch)


def _rewrite(source: Path, target: Path, edit) -> Path:
    header, body = gzip.decompress(source.read_bytes()).split(b"\n", 1)
    header, body = edit(orjson.loads(header), body)
    target.write_bytes(gzip.compress(orjson.dumps(header) + b"\n" + body))
    return target


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain", "gzip-compressed"),
        ("truncated", "cut short"),
        ("version", "version 2; this driftgate reads version 1: build it again"),
        ("edited", r"corrupt \(checksum mismatch\)"),
        ("foreign", "not a driftgate reference file"),
        ("missing", "cannot read reference file"),
    ],
)
def test_a_bad_file_says_what_to_do(reference_file, tmp_path, name, expected):
    path = tmp_path / f"{name}.ref.gz"
    data = reference_file.read_bytes()
    if name == "plain":
        path.write_bytes(gzip.decompress(data))
    elif name == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif name == "version":
        _rewrite(reference_file, path, lambda h, b: ({**h, "version": 2}, b))
    elif name == "edited":
        _rewrite(reference_file, path, lambda h, b: (h, b.replace(b'"v1"', b'"v9"', 1)))
    elif name == "foreign":
        path.write_bytes(gzip.compress(b'{"hello": "world"}\n'))
    with pytest.raises(DriftgateError, match=expected):
        load_references(path)


def test_checkpoints_of_another_reference_are_not_resumed(
    streams, reference_file, tmp_path, monkeypatch
):
    settings = load_settings()
    other = tmp_path / "other.ref.gz"
    write_reference(other, build_reference(streams["training"], settings, max_events=5_000))
    fingerprints = {
        config_fingerprint(e.monitor_config, e.limits, e.feedback, e.reference_digest)
        for e in (
            Engine(settings.monitor, settings.limits, settings.feedback),
            app.new_engine(load_settings(reference={"file": str(other)})),
            app.new_engine(load_settings(reference={"file": str(reference_file)})),
        )
    }
    assert len(fingerprints) == 3
    stream, state = streams["stationary"], tmp_path / "state"
    replay = ["replay", str(stream), "--decisions", str(tmp_path / "d.jsonl")]
    replay += ["--checkpoint-dir", str(state)]
    monkeypatch.setenv("DRIFTGATE_REFERENCE__FILE", str(reference_file))
    assert main(replay) == 0
    assert main(replay) == 0  # the same reference: resumed
    assert list(state.glob("*.ckpt")) and not list(state.glob("*.rejected-*"))
    monkeypatch.setenv("DRIFTGATE_REFERENCE__FILE", str(other))
    assert main(replay) == 0  # another reference: the checkpoint is set aside
    assert len(list(state.glob("*.rejected-*"))) == 1


def test_reference_build_and_replay_from_the_command_line(streams, tmp_path, monkeypatch, capsys):
    ref = tmp_path / "cli.ref.gz"
    command = ["reference", "build", str(streams["training"]), "--out", str(ref)]
    assert main([*command, "--max-events", "4000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fraud: 4000 events, 2025-11-21T08:00:00Z to ")
    assert "capped at 4000" in out
    assert len(load_references(ref)["fraud"]) == 4_000
    # Pinned through a config file, or through the environment.
    config = tmp_path / "driftgate.yaml"
    config.write_text(f"reference:\n  file: {ref}\n")
    decisions = tmp_path / "decisions.jsonl"
    assert main(["replay", str(streams["shifted"]), "--config", str(config), "--decisions",
                 str(decisions)]) == 0  # fmt: skip
    assert ("investigate", "covariate_drift", "amount") in _decisions(decisions)
    monkeypatch.setenv("DRIFTGATE_REFERENCE__FILE", str(tmp_path / "nowhere.ref.gz"))
    capsys.readouterr()
    assert main(["replay", str(streams["shifted"]), "--decisions", str(decisions)]) == 2
    assert "cannot read reference file" in capsys.readouterr().err
    monkeypatch.setenv("DRIFTGATE_REFERENCE__FILE", str(ref))
    assert main(["replay", str(streams["shifted"]), "--decisions", str(decisions)]) == 0
    assert ("investigate", "covariate_drift", "amount") in _decisions(decisions)
