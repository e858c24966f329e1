"""Helpers the test folders share: paths, replays, runs of `driftgate run` against the
embedded broker, and the readers of what they publish. (Fixtures live in conftest.py.)"""

from __future__ import annotations

import csv
import gzip
import itertools
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

import confluent_kafka
import numpy as np
import orjson
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from detectors.batch import PredictionBatch
from detectors.decision import Decision
from detectors.monitor import ModelMonitor
from evaluation.simulate import SCENARIOS, generate
from streamer.broker import create_topics
from streamer.checkpoint_directory import CheckpointDirectory
from streamer.checkpoint_format import config_fingerprint
from streamer.cloud_events import event_subject
from streamer.config import LimitsConfig, load_settings
from streamer.decode import (
    Prediction,
    Rejected,
    decode_prediction_envelopes,
    invalid_feature_rows,
)
from streamer.engine import PREDICTIONS, Engine, InputRecord
from streamer.service import Service
from streamer.sinks import (
    JsonLinesDecisionSink,
    ReportingDeadLetterSink,
)
from streamer.sources import ReplaySource
from streamer.state.payload import dumps, loads

ROOT = Path(__file__).resolve().parents[1]
CLOUDEVENT_HEADERS = sorted(
    ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "content-type"]
)
_T = TypeVar("_T")
# A change river detected: (scope, row, its event time, the mean it reports then).
Change = tuple[int, int, float, float]


def read_all(
    bootstrap: str, topic: str, idle_s: float = 3.0, keep: Callable[[Any], bool] | None = None
) -> list:
    """Every message of a topic (those ``keep`` says yes to, when given: a long topic
    need not be held whole): read until nothing new came for ``idle_s``.

    (Not up to end_offsets(): Tansu answers ListOffsets with the last batch's base
    offset, so that would stop short of the last batch.)
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    messages: list = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < idle_s:
        for batch in consumer.poll(timeout_ms=200).values():
            messages.extend(batch if keep is None else filter(keep, batch))
            quiet_since = time.monotonic()
    consumer.close()
    return messages


def read_decisions(bootstrap: str, topic: str, group_id: str, idle_s: float = 3.0) -> list[dict]:
    """Every decision of a topic, read by an independent librdkafka client, each checked
    to be a binary-mode CloudEvent (every ce_* header, right values, parsed by the
    CloudEvents SDK to the same data as its JSON body); returns the bodies."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-cloudevents-reader",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    beginning = confluent_kafka.OFFSET_BEGINNING
    consumer.assign([confluent_kafka.TopicPartition(topic, p, beginning) for p in partitions])
    messages = []
    quiet_since = time.monotonic()  # until nothing new came for idle_s, as read_all
    while time.monotonic() - quiet_since < idle_s:
        message = consumer.poll(0.2)
        if message is None:
            continue
        assert message.error() is None, message.error()
        messages.append(message)
        quiet_since = time.monotonic()
    consumer.close()

    return [cloudevent_body(message, group_id) for message in messages]


def cloudevent_body(message: Any, group_id: str) -> dict:
    """A decision message read by librdkafka, checked to be a binary-mode CloudEvent
    (every ce_* header, right values, parsed by the CloudEvents SDK to the same data as
    its JSON body) of driftgate's consumer group ``group_id``; returns the body."""
    headers = message.headers() or []
    assert sorted(name for name, _ in headers) == CLOUDEVENT_HEADERS, headers
    body: dict = orjson.loads(message.value())
    assert message.key() == body["model"].encode()
    event = parse_decision_message(headers, message.key(), message.value())
    scope = body["scope"]
    assert event.get_specversion() == "1.0"
    assert event.get_id() == body["decision_id"]
    assert event.get_source() == f"/driftgate/{group_id}"
    assert event.get_type() == f"io.driftgate.decision.{body['action']}"
    assert event.get_subject() == event_subject(
        body["model"], body["model_version"], scope["feature"], scope["cohort"]
    )
    moment = event.get_time()
    assert moment is not None and moment.utcoffset() == timedelta(0)
    assert dict(headers)["ce_time"].endswith(b"Z")
    assert abs(body["ts"] - moment.timestamp()) < 1e-3  # to the millisecond
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == body
    return body


def model_log(scenario: str, seed: int, events: int) -> list[dict[str, object]]:
    """A scenario's records as the log of a model named after it (event ids prefixed)."""
    spec, incidents = SCENARIOS[scenario](events)
    out = []
    for record in generate(spec, events, seed, incidents):
        value = dict(record["value"])
        value["event_id"] = f"{scenario}-{value['event_id']}"
        if record["topic"] == "predictions":
            value["model"] = scenario
        out.append({"topic": record["topic"], "value": value})
    return out


def produce_log(
    bootstrap: str, topics: dict[str, str], log: Iterable[dict], partitions: int, keyed: bool
) -> None:
    """Create the topics with ``partitions`` each and produce the log in order, keyed by
    event id or not at all."""
    create_topics(bootstrap, topics.values(), partitions=partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 18)
    for record in log:
        value = record["value"]
        key = value["event_id"].encode() if keyed else None
        producer.send(topics[record["topic"]], orjson.dumps(value), key=key)
    producer.flush()
    producer.close()


def verdicts(decisions: list[dict]) -> list[tuple[str, ...]]:
    """What decisions order, and where, sorted: their ids and evidence may differ in time."""
    return sorted(
        (d["model"], d["model_version"], d["action"], d["cause"], orjson.dumps(d["scope"]).decode())
        for d in decisions
        if d["action"] != "hold"
    )


def topics_for(prefix: str) -> dict[str, str]:
    return {name: f"{prefix}-{name}" for name in ("predictions", "feedback")}


def run_env(bootstrap: str, topics: dict[str, str], run: str, state: Path, port: int = 0):
    return {
        **os.environ,
        "DRIFTGATE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTGATE_KAFKA__GROUP_ID": f"{run}-group",
        "DRIFTGATE_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "DRIFTGATE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "DRIFTGATE_KAFKA__TOPICS__PREDICTIONS": topics["predictions"],
        "DRIFTGATE_KAFKA__TOPICS__FEEDBACK": topics["feedback"],
        "DRIFTGATE_KAFKA__TOPICS__DECISIONS": f"{run}-decisions",
        "DRIFTGATE_METRICS__HOST": "127.0.0.1",
        "DRIFTGATE_METRICS__PORT": str(port),
        "DRIFTGATE_CHECKPOINT__DIR": str(state),
        "DRIFTGATE_CHECKPOINT__INTERVAL_EVENTS": "20000",
    }


def start_run(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def final_state(state: Path, group: str, topic: str, **overrides: Any) -> Engine:
    """The judge's final checkpoint: the state of every model of the group (run with the
    settings ``overrides``, as for ``load_settings``, which are in its fingerprint)."""
    settings = load_settings(None, **overrides)
    fingerprint = config_fingerprint(settings.monitor, settings.limits, settings.feedback)
    loaded = CheckpointDirectory(state).load(f"{group}.{topic}", fingerprint)
    assert loaded is not None, f"no final checkpoint in {state}"
    return loaded.engine


def state_summary(engine: Engine) -> dict[str, object]:
    """Per-feature counts and statistics of every model, and what the merge holds.

    (Not the consumed counts: they are the ingest's metrics, counted again for records
    a member read but had not committed when it was killed.)
    """
    out: dict[str, object] = {"buffered": engine.order.buffered}
    for model, monitor in engine.monitors.items():
        out[model] = {
            "events": monitor.events,
            "windows": monitor.windows,
            "features": {
                name: {
                    "reference": feature.reference.tolist(),
                    "current": feature.current.tolist(),
                    "psi": np.round(np.nan_to_num(feature.psi, nan=-1.0), 12).tolist(),
                    "streak": feature.drift.streak.tolist(),
                    "open": feature.drift.open.tolist(),
                }
                for name, feature in monitor.features.items()
            },
        }
    return out


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """(status, body) of GET http://127.0.0.1:PORT/PATH, error statuses included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def consumed_records(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, OSError):
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("driftgate_events_consumed_total{")
    )


def wait_for(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def small_engine(**detection: object) -> Engine:
    settings = load_settings(None, detection={"reference_events": 2_000, **detection})
    return Engine(settings.monitor, settings.limits, settings.feedback)


def fraud_records(n: int, partition: int = 0) -> list[InputRecord]:
    spec, incidents = SCENARIOS["covariate_shift"](n)
    predictions = [r["value"] for r in generate(spec, n, 1, incidents) if r["topic"] == PREDICTIONS]
    return [
        InputRecord(PREDICTIONS, orjson.dumps(v), "p", partition, offset)
        for offset, v in enumerate(predictions)
    ]


def fingerprint_of(engine: Engine) -> str:
    return config_fingerprint(engine.monitor_config, engine.limits, engine.feedback)


def through_state_codec(state: _T) -> _T:
    """``state`` written in the checkpoints' state format and read back (streamer.state):
    a new object, as a restart would rebuild it. Any object of a registered class will do."""
    restored = loads(dumps(state))
    assert type(restored) is type(state)
    return cast(_T, restored)


def engine_state(engine: Engine) -> dict[str, object]:
    monitor = engine.monitors["fraud"]
    return {
        "events": monitor.events,
        "windows": monitor.windows,
        "positions": engine.positions,
        "histograms": {n: f.current.tolist() for n, f in monitor.features.items()},
        "reference": {n: f.reference.tolist() for n, f in monitor.features.items()},
        "psi": {n: np.nan_to_num(f.psi, nan=-1).tolist() for n, f in monitor.features.items()},
        "consumed": dict(engine.counters.consumed),
    }


def amount_batch(ts: np.ndarray, log_mean: np.ndarray, seed: int = 0) -> PredictionBatch:
    """One version's predictions at ``ts`` with one feature, a lognormal ``amount`` of
    these log-means (sd 0.5), and random scores."""
    rng = np.random.default_rng(seed)
    n = len(ts)
    return PredictionBatch(
        ts=ts,
        score=rng.random(n),
        model_version=["v1"] * n,
        cohorts={},
        features={"amount": rng.lognormal(log_mean, 0.5).tolist()},
    )


def feed(monitor: ModelMonitor, batch: PredictionBatch, cuts: list[int]) -> list[Decision]:
    bounds = [0, *sorted(cuts), len(batch)]
    out: list[Decision] = []
    for a, b in itertools.pairwise(bounds):
        out.extend(monitor.update(batch.slice(a, b)))
    return out


def decode_one(
    raw: bytes | None, limits: LimitsConfig, parsed: object = None
) -> Prediction | Rejected:
    """One prediction message decoded as the engine decodes its batches: the batch
    decoder, then the feature values checked a column at a time."""
    [event] = decode_prediction_envelopes([raw], [parsed], limits)
    if isinstance(event, Rejected):
        return event
    bad = invalid_feature_rows({k: [v] for k, v in event["features"].items()}, limits)
    return bad.get(0, event)


def river_changes(
    detectors: list[Any], values: np.ndarray, scopes: np.ndarray, ts: np.ndarray, mean: Any
) -> list[Change]:
    """river's detectors fed row by row, each row's value to each of its scopes."""
    changes = []
    for i, value in enumerate(values.tolist()):
        if math.isnan(value):
            continue
        for s in scopes[i].tolist():
            detectors[s].update(value)
            if detectors[s].drift_detected:
                changes.append((s, i, float(ts[i]), mean(detectors[s])))
    return changes


def parse_decision_message(headers, key: bytes | None, value: bytes):
    """A decision message as the CloudEvents SDK reads it (shared with the Kafka tests)."""
    message = KafkaMessage(headers=dict(headers), key=key, value=value)
    return from_binary(message, JSONFormat())


def replay_service(path: Path, decisions_out: Path) -> tuple[Service, list[Decision]]:
    """The engine with the default config run over a replay file, as `driftgate replay`
    does, keeping the service (for its state and metrics) and the decisions."""
    settings = load_settings()
    decisions: list[Decision] = []
    service = Service(
        Engine(settings.monitor, settings.limits, settings.feedback),
        ReplaySource(path),
        JsonLinesDecisionSink(decisions_out),
        ReportingDeadLetterSink(decisions_out.with_suffix(".dead.jsonl")),
        on_decisions=decisions.extend,
    )
    service.run(threading.Event())
    return service, decisions


# The real streams with documented drift, kept in the repository (data/real/, see its
# README): each file is the source's CSV byte for byte, gzipped; a missing file raises, so
# a test that needs one fails rather than skips.
REAL = ROOT / "data" / "real"
ELEC2 = REAL / "elec2" / "electricity.csv.gz"
INSECTS = REAL / "insects" / "INSECTS_gradual_balanced_24150.csv.gz"
WEATHER = REAL / "weather_noaa" / "weather.csv.gz"


def open_csv(path: Path) -> TextIO:
    """The decompressed text of one of the files above, ready for ``csv.reader``."""
    return gzip.open(path, "rt", encoding="utf-8", newline="")


# Each real stream as predictions: its file, its model's name and its column names (None:
# the CSV's header).
REAL_STREAMS: dict[str, tuple[Path, str, list[str] | None]] = {
    "elec2": (ELEC2, "electricity", None),
    "insects": (
        INSECTS,
        "INSECTS_gradual_balanced_24150",
        [f"f{i:02d}" for i in range(33)] + ["class"],
    ),
    "weather": (WEATHER, "weather", None),
}


def write_real_stream(name: str, out: Path) -> None:
    """A replay file of one of REAL_STREAMS: one prediction a minute, every column but the
    class a feature, no labels."""
    source, model, names = REAL_STREAMS[name]
    with open_csv(source) as rows, out.open("wb") as sink:
        reader = csv.reader(rows)
        header = names or next(reader)
        for i, row in enumerate(reader):
            values = dict(zip(header, row))
            values.pop("class", None)
            values.pop("target", None)
            event = {
                "event_id": f"e{i}",
                "ts": 1_600_000_000.0 + 60.0 * i,
                "model": model,
                "model_version": "v1",
                "features": {k: float(v) for k, v in values.items()},
                "score": 0.5,
            }
            sink.write(orjson.dumps({"topic": "predictions", "value": event}) + b"\n")


def sample_decision(**overrides: object) -> Decision:
    """A decision as the policy makes them, with ``overrides``."""
    fields: dict[str, object] = {
        "model": "fraud",
        "model_version": "v1",
        "action": "retrain",
        "cause": "concept_drift",
        "feature": "amount",
        "cohort": {"region": "eu", "channel": "web"},
        "ts": 1763714123.577,
        "window_start": 1763714084.8,
        "window_end": 1763714123.6,
        "window_events": 233,
        "confirmed_at": 1763714123.6,
        "evidence": {"psi": 3.29, "psi_history": [3.1, 3.4, 3.29]},
    }
    fields.update(overrides)
    return Decision(**fields)  # type: ignore[arg-type]


def scenario_records(names: list[str], n: int) -> list[InputRecord]:
    """The first scenario's traffic with every named scenario's incidents, as one
    partition's records (predictions and labels, in arrival order; seed 1)."""
    spec, incidents = SCENARIOS[names[0]](n)
    for name in names[1:]:
        incidents = [*incidents, *SCENARIOS[name](n)[1]]
    return [
        InputRecord(r["topic"], orjson.dumps(r["value"]), r["topic"], 0, offset)
        for offset, r in enumerate(generate(spec, n, 1, incidents))
    ]


def run_batches(engine: Engine, records: list[InputRecord], size: int = 1_000) -> list[Decision]:
    """The records through the engine in batches of ``size``, as a consumer delivers them."""
    decisions: list[Decision] = []
    for start in range(0, len(records), size):
        decisions.extend(engine.process(records[start : start + size]).decisions)
    return decisions
