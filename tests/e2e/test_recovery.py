"""Crashes and outages against a real broker and real `driftgate run` processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from evaluation.simulate import SCENARIOS, generate, write_replay
from streamer.broker import EmbeddedBroker, create_topics, free_port
from streamer.checkpoint_format import MAGIC
from tests.support import (
    ROOT,
    final_state,
    read_decisions,
    run_env,
    start_run,
    state_summary,
    topics_for,
    wait_for,
)

pytestmark = pytest.mark.slow

EVENTS = 200_000


def test_kill_9_at_five_points_changes_nothing(broker: EmbeddedBroker, topic_prefix, tmp_path):
    bootstrap = broker.bootstrap_servers
    topics = topics_for(topic_prefix)
    create_topics(bootstrap, [topics["predictions"]], partitions=2)
    create_topics(bootstrap, [topics["feedback"]])
    spec, incidents = SCENARIOS["covariate_shift"](EVENTS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 18)
    for record in generate(spec, EVENTS, seed=8, incidents=incidents):
        if record["topic"] == "predictions":
            producer.send(topics["predictions"], orjson.dumps(record["value"]), key=b"fraud")
    producer.flush()
    producer.close()

    runs = {}
    for run, kills in (("straight", 0), ("killed", 5)):
        name = f"{topic_prefix}-{run}"
        state = tmp_path / run
        env = run_env(bootstrap, topics, name, state)
        log = tmp_path / f"{run}.log"
        rng = random.Random(20)
        for _ in range(kills):
            process = start_run(env, log)
            time.sleep(rng.uniform(4.0, 9.0))  # a group join takes ~3 s, then it works
            process.send_signal(signal.SIGKILL)
            process.wait()
        # idle long enough for the killed member's session to time out and a rejoin
        done = start_run(env, log, "--exit-when-idle", "15")
        assert done.wait(timeout=240) == 0, log.read_text()[-3000:]
        decisions = read_decisions(bootstrap, f"{name}-decisions", f"{name}-group")
        runs[run] = (
            state_summary(final_state(state, f"{name}-group", topics["predictions"])),
            {d["decision_id"] for d in decisions},
            len(decisions),
        )
    straight, killed = runs["straight"], runs["killed"]
    assert straight[0]["fraud"]["events"] == EVENTS
    assert killed[0] == straight[0]
    assert straight[1], "the shift gave no decision"
    assert killed[1] == straight[1]
    # decisions made again after a crash carry the same ids: at least once, deduplicable
    assert killed[2] >= straight[2]


def _ready(port: int) -> bool | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(json.loads(answer.read())["ready"])
    except urllib.error.HTTPError as error:
        return bool(json.loads(error.read())["ready"])
    except OSError:
        return None  # not serving (yet)


def test_a_broker_outage_is_survived(topic_prefix, tmp_path):
    """Stopped for 30 seconds and started again: /readyz goes false, then true."""
    port = free_port()
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log").start()
    topics = topics_for(topic_prefix)
    process = None
    try:

        def produce(n: int, seed: int) -> None:
            create_topics(broker.bootstrap_servers, list(topics.values()))
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
            spec, _ = SCENARIOS["stationary"](n)
            for record in generate(spec, n, seed=seed):
                producer.send(topics[record["topic"]], orjson.dumps(record["value"]))
            producer.flush()
            producer.close()

        produce(15_000, 1)
        env = run_env(broker.bootstrap_servers, topics, topic_prefix, tmp_path / "state", port)
        process = start_run(env, tmp_path / "driftgate.log")
        wait_for(lambda: _ready(port) is True, 60, "/readyz to be true")
        broker.stop()
        wait_for(lambda: _ready(port) is False, 30, "/readyz to turn false")
        time.sleep(30)
        assert process.poll() is None, "driftgate exited during the outage"
        assert _ready(port) is False
        broker.start()  # memory storage: the topics are gone, a producer brings them back
        produce(5_000, 2)
        wait_for(lambda: _ready(port) is True, 90, "/readyz to be true again")
        assert process.poll() is None
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        broker.stop()


def _checkpointed_line(path: Path) -> int:
    """The replay line the checkpoint at ``path`` reflects (0 while there is none)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    header = json.loads(data[len(MAGIC) : data.index(b"\n", len(MAGIC))])
    return max((offset for _, _, offset in header["positions"]), default=1) - 1


def test_a_killed_replay_resumes_with_the_same_decisions(tmp_path):
    spec, incidents = SCENARIOS["covariate_shift"](EVENTS)
    stream = tmp_path / "stream.jsonl"
    write_replay(stream, generate(spec, EVENTS, seed=9, incidents=incidents))
    env = {**os.environ, "DRIFTGATE_CHECKPOINT__INTERVAL_EVENTS": "20000"}

    def replay(out: Path, *extra: str) -> subprocess.Popen:
        command = ["replay", str(stream), "--decisions", str(out), *extra]
        return subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", *command],
            env=env,
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )

    assert replay(tmp_path / "straight.jsonl").wait(timeout=300) == 0
    state = tmp_path / "state"
    killed = replay(tmp_path / "killed.jsonl", "--checkpoint-dir", str(state))
    checkpoint = state / f"replay.{stream.name}.ckpt"
    # killed once the state reflects half of the stream, before the shift is decided
    wait_for(lambda: _checkpointed_line(checkpoint) >= 100_000, 300, "a checkpoint")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = replay(tmp_path / "killed.jsonl", "--checkpoint-dir", str(state))
    assert resumed.wait(timeout=300) == 0

    def ids(path: Path) -> list[str]:
        return [orjson.loads(line)["decision_id"] for line in path.read_bytes().splitlines()]

    assert ids(tmp_path / "straight.jsonl"), "the shift gave no decision"
    assert set(ids(tmp_path / "killed.jsonl")) == set(ids(tmp_path / "straight.jsonl"))
