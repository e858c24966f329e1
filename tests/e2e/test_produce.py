"""`driftgate produce`: a replay file's records on the configured topics of a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import orjson
import pytest

from streamer.broker import EmbeddedBroker, create_topics
from streamer.config import KafkaConfig, TopicsConfig
from streamer.produce import produce
from tests.support import ROOT, read_all

pytestmark = pytest.mark.slow

PREDICTION = {
    "event_id": "p-1",
    "ts": 1763712000.0,
    "model": "fraud",
    "model_version": "v1",
    "features": {"amount": 12.5},
    "score": 0.12,
}
FEEDBACK = {"event_id": "p-1", "ts": 1763712060.0, "label": 1, "source": "chargeback"}
MALFORMED = '{"event_id": "broken", "ts": '


def _topics(prefix: str) -> TopicsConfig:
    return TopicsConfig(predictions=f"{prefix}-predictions", feedback=f"{prefix}-feedback")


def test_records_go_to_their_topics_keyed_by_model_and_bad_lines_are_skipped(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path
):
    topics = _topics(topic_prefix)
    create_topics(broker.bootstrap_servers, [topics.predictions, topics.feedback])
    churn = {**PREDICTION, "event_id": "c-1", "model": "churn"}
    lines = [
        {"topic": "predictions", "value": PREDICTION},
        {"topic": "feedback", "value": FEEDBACK},
        {"topic": "decisions", "value": {}},  # not an input topic
        {"topic": "predictions", "value": MALFORMED},  # raw bytes, sent as they are
        {"topic": "predictions", "value": churn},
    ]
    path = tmp_path / "stream.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps(line) + b"\n" for line in lines[:3])
        + b"this line is not JSON\n"
        + b"".join(orjson.dumps(line) + b"\n" for line in lines[3:])
    )

    produced = produce(path, KafkaConfig(bootstrap_servers=broker.bootstrap_servers, topics=topics))

    assert produced.sent == {topics.predictions: 3, topics.feedback: 1}
    assert produced.skipped == [3, 4]
    predictions = read_all(broker.bootstrap_servers, topics.predictions)
    assert [(m.key, orjson.loads(m.value) if m.key else m.value) for m in predictions] == [
        (b"fraud", PREDICTION),
        (None, MALFORMED.encode()),
        (b"churn", churn),
    ]
    feedback = read_all(broker.bootstrap_servers, topics.feedback)
    assert [orjson.loads(m.value) for m in feedback] == [FEEDBACK]


def test_rate_paces_predictions_and_stop_ends_early(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path
):
    topics = _topics(topic_prefix)
    create_topics(broker.bootstrap_servers, [topics.predictions, topics.feedback])
    path = tmp_path / "stream.jsonl"
    path.write_bytes(
        b"".join(
            orjson.dumps({"topic": "predictions", "value": {**PREDICTION, "event_id": f"p-{i}"}})
            + b"\n"
            for i in range(300)
        )
    )
    config = KafkaConfig(bootstrap_servers=broker.bootstrap_servers, topics=topics)

    started = time.monotonic()
    produced = produce(path, config, rate=1_000.0)
    # 300 predictions at 1,000/s cannot be done before 0.3 s, less the pacing slack.
    assert time.monotonic() - started >= 0.25
    assert produced.sent[topics.predictions] == 300

    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    stopped = produce(path, config, rate=100.0, stop=stop)
    assert 0 < stopped.sent[topics.predictions] < 300


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "produce", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_flag_wins_over_the_environment(broker: EmbeddedBroker, topic_prefix: str, tmp_path):
    topics = _topics(topic_prefix)
    create_topics(broker.bootstrap_servers, [topics.predictions, topics.feedback])
    path = tmp_path / "stream.jsonl"
    path.write_bytes(orjson.dumps({"topic": "predictions", "value": PREDICTION}) + b"\n")

    done = _cli(
        str(path),
        "--bootstrap-servers",
        broker.bootstrap_servers,
        DRIFTGATE_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1",
        DRIFTGATE_KAFKA__TOPICS__PREDICTIONS=topics.predictions,
        DRIFTGATE_KAFKA__TOPICS__FEEDBACK=topics.feedback,
    )

    assert done.returncode == 0, done.stderr
    assert f"1 to {topics.predictions}" in done.stderr
    assert [m.key for m in read_all(broker.bootstrap_servers, topics.predictions)] == [b"fraud"]


def test_cli_rejects_a_rate_that_is_not_positive(tmp_path):
    path = tmp_path / "stream.jsonl"
    path.write_bytes(b"")
    done = _cli(str(path), "--rate", "0")
    assert done.returncode == 2
    assert "rate must be a positive number" in done.stderr
