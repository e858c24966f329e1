"""End to end against a real broker and a real `driftgate run` process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import jsonschema
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from evaluation.simulate import SCENARIOS, generate
from streamer.broker import EmbeddedBroker, create_topics
from streamer.config import KafkaConfig, TopicsConfig
from streamer.sinks import KafkaSinks, decision_json
from tests.support import ROOT, read_all, read_decisions, sample_decision

pytestmark = pytest.mark.slow

EVENTS = 40_000
BAD_PREDICTIONS = [
    (b"this is not json", "invalid_json"),
    (b'{"event_id": "x", "ts": 1763712000.0, "model": "fraud"}', "missing_field"),
    (
        b'{"event_id": "y", "ts": 1763712000.0, "model": "fraud", "model_version": "v1",'
        b' "features": {"amount": [1, 2]}, "score": 0.5}',
        "wrong_type",
    ),
]
BAD_FEEDBACK = [(b'{"event_id": "p-1", "ts": "yesterday", "label": 1}', "invalid_value")]


def test_run_consumes_decides_dead_letters_and_commits(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path
):
    bootstrap = broker.bootstrap_servers
    topics = {
        "predictions": f"{topic_prefix}-predictions",
        "feedback": f"{topic_prefix}-feedback",
        "decisions": f"{topic_prefix}-decisions",
    }
    create_topics(bootstrap, [topics["predictions"], topics["feedback"]], partitions=2)
    create_topics(bootstrap, [topics["decisions"]] + [f"{t}.dlq" for t in topics.values()])

    spec, incidents = SCENARIOS["covariate_shift"](EVENTS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=10)
    for i, record in enumerate(generate(spec, EVENTS, seed=3, incidents=incidents)):
        value = record["value"]
        # Key by model so that one model's predictions stay in order on one partition.
        producer.send(
            topics[record["topic"]],
            orjson.dumps(value),
            key=value.get("model", b"").encode() if record["topic"] == "predictions" else None,
        )
        if i in (1_000, 2_000, 3_000):
            raw, _ = BAD_PREDICTIONS[(i // 1_000) - 1]
            producer.send(topics["predictions"], raw, key=b"fraud")
    producer.send(topics["feedback"], BAD_FEEDBACK[0][0])
    producer.flush()

    group = f"{topic_prefix}-group"
    env = {
        **os.environ,
        "DRIFTGATE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTGATE_KAFKA__GROUP_ID": group,
        "DRIFTGATE_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "DRIFTGATE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "DRIFTGATE_KAFKA__TOPICS__PREDICTIONS": topics["predictions"],
        "DRIFTGATE_KAFKA__TOPICS__FEEDBACK": topics["feedback"],
        "DRIFTGATE_KAFKA__TOPICS__DECISIONS": topics["decisions"],
        "DRIFTGATE_METRICS__PORT": "0",
        "DRIFTGATE_CHECKPOINT__DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "run", "--exit-when-idle", "4"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=180,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    decisions = read_decisions(bootstrap, topics["decisions"], group)
    schema = json.loads((ROOT / "deploy/schemas/decision.json").read_text())
    for decision in decisions:
        jsonschema.validate(decision, schema)
    found = {
        (d["action"], d["cause"], d["scope"]["feature"], json.dumps(d["scope"]["cohort"]))
        for d in decisions
    }
    assert ("investigate", "covariate_drift", "amount", "null") in found
    assert all(d["scope"]["feature"] == "amount" for d in decisions), found

    dead = read_all(bootstrap, f"{topics['predictions']}.dlq")
    assert sorted(m.value for m in dead) == sorted(raw for raw, _ in BAD_PREDICTIONS)
    reasons = {m.value: dict(m.headers)["driftgate.reason"].decode() for m in dead}
    assert reasons == {raw: reason for raw, reason in BAD_PREDICTIONS}
    dead_feedback = read_all(bootstrap, f"{topics['feedback']}.dlq")
    assert [dict(m.headers)["driftgate.reason"].decode() for m in dead_feedback] == [
        "invalid_value"
    ]

    checker = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    for topic in (topics["predictions"], topics["feedback"]):
        ends: dict[int, int] = {}
        for message in read_all(bootstrap, topic):
            ends[message.partition] = max(ends.get(message.partition, 0), message.offset + 1)
        committed = {p: checker.committed(TopicPartition(topic, p)) for p in ends}
        assert committed == ends, topic
    checker.close()


def test_the_documented_consumer_routes_by_type_and_deduplicates_by_id(
    broker: EmbeddedBroker, topic_prefix: str, capsys
):
    """docs/event-contract.md's example consumer, run as written against decisions that
    driftgate's Kafka sink published: one retrain sent three times acts once, investigate
    is not routed, rollback pages."""
    doc = (ROOT / "docs/event-contract.md").read_text()
    example = re.search(r"## CloudEvents\n.*?```python\n(.*?)```", doc, re.S)
    assert example is not None
    topic = f"{topic_prefix}-decisions"
    create_topics(broker.bootstrap_servers, [topic])
    sinks = KafkaSinks(
        KafkaConfig(
            bootstrap_servers=broker.bootstrap_servers,
            group_id=f"{topic_prefix}-g",
            topics=TopicsConfig(decisions=topic),
        )
    )
    retrain = sample_decision(action="retrain")
    rollback = sample_decision(action="rollback", cause="deployment_regression", feature=None)
    sinks.decisions.write(
        [retrain, retrain, sample_decision(action="investigate"), retrain, rollback]
    )
    sinks.flush()
    sinks.close()

    # as written, but on the test's broker and topic, and over once both orders are handled
    code = example.group(1)
    for written, here in [
        ("127.0.0.1:9092", broker.bootstrap_servers),
        ('"retraining"', f'"{topic_prefix}-retraining"'),
        ('["decisions"]', f'["{topic}"]'),
        ("while True:", "while len(handled) < 2 and time.monotonic() < deadline:"),
    ]:
        assert written in code, written
        code = code.replace(written, here)
    exec(
        compile(code, "event-contract.md", "exec"),
        {"time": time, "deadline": time.monotonic() + 90},
    )
    scopes = [orjson.loads(decision_json(d))["scope"] for d in (retrain, rollback)]
    assert capsys.readouterr().out.splitlines() == [
        f"retrain fraud {scopes[0]}",
        f"page rollback deployment_regression {scopes[1]}",
    ]
