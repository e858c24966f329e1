"""`driftgate run --exit-when-idle`: a backfill ends when the whole group is done."""

from __future__ import annotations

import signal
import threading
import time

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.range import RangePartitionAssignor

from evaluation.simulate import SCENARIOS, generate
from streamer.app import internal_topic, judge_group
from streamer.backfill import committed_behind
from streamer.broker import EmbeddedBroker, create_topics
from streamer.config import KafkaConfig
from tests.support import (
    final_state,
    read_decisions,
    run_env,
    start_run,
    state_summary,
    topics_for,
)

EVENTS = 100_000


def _produce(bootstrap: str, topics: dict[str, str], seed: int) -> None:
    create_topics(bootstrap, [topics["predictions"]], partitions=2)
    create_topics(bootstrap, [topics["feedback"]])
    spec, incidents = SCENARIOS["covariate_shift"](EVENTS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 18)
    for i, record in enumerate(generate(spec, EVENTS, seed=seed, incidents=incidents)):
        if record["topic"] == "predictions":
            # both partitions, so that a killed member holds some of the input
            producer.send(topics["predictions"], orjson.dumps(record["value"]), partition=i % 2)
    producer.flush()
    producer.close()


def _kafka(bootstrap: str, topics: dict[str, str], group: str) -> KafkaConfig:
    return KafkaConfig(
        bootstrap_servers=bootstrap,
        group_id=group,
        topics={"predictions": topics["predictions"], "feedback": topics["feedback"]},
    )


@pytest.mark.slow
def test_a_backfill_killed_and_restarted_finishes_every_partition(
    broker: EmbeddedBroker, topic_prefix, tmp_path
):
    bootstrap = broker.bootstrap_servers
    topics = topics_for(topic_prefix)
    _produce(bootstrap, topics, seed=12)
    runs = {}
    for run, kill in (("straight", False), ("killed", True)):
        name = f"{topic_prefix}-{run}"
        state = tmp_path / run
        # A session longer than the idle time: a dead member holds its partitions past it.
        env = {
            **run_env(bootstrap, topics, name, state),
            "DRIFTGATE_KAFKA__SESSION_TIMEOUT_MS": "20000",
        }
        log = tmp_path / f"{run}.log"
        members = [start_run(env, log, "--exit-when-idle", "8")]
        if kill:
            members.append(start_run(env, log, "--exit-when-idle", "8"))
            time.sleep(10.0)  # joined (~3 s) and part way through the backfill
            members[0].send_signal(signal.SIGKILL)
            members[0].wait()
            # started again at once: the killed member holds its partitions for 20 s, while
            # the other one runs out of its own input
            members[0] = start_run(env, log, "--exit-when-idle", "8")
        for member in members:
            assert member.wait(timeout=300) == 0, log.read_text()[-3000:]
        kafka = _kafka(bootstrap, topics, f"{name}-group")
        inputs = (topics["predictions"], topics["feedback"])
        assert committed_behind(kafka, kafka.group_id, inputs) == {}
        assert committed_behind(kafka, judge_group(kafka), [internal_topic(kafka)]) == {}
        decisions = read_decisions(bootstrap, f"{name}-decisions", kafka.group_id)
        runs[run] = (
            state_summary(final_state(state, kafka.group_id, topics["predictions"])),
            {d["decision_id"] for d in decisions},
        )
    straight, killed = runs["straight"], runs["killed"]
    assert straight[0]["fraud"]["events"] == EVENTS
    assert straight[0]["buffered"] == 0
    assert killed[0] == straight[0]
    assert straight[1], "the shift gave no decision"
    assert killed[1] == straight[1]


@pytest.mark.slow
def test_a_partition_nobody_commits_ends_the_wait_with_its_name(
    broker: EmbeddedBroker, topic_prefix, tmp_path
):
    bootstrap = broker.bootstrap_servers
    topics = topics_for(topic_prefix)
    _produce(bootstrap, topics, seed=13)
    group = f"{topic_prefix}-group"
    # A member of the group that reads its share and never commits it.
    stuck = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        partition_assignment_strategy=[RangePartitionAssignor],
    )
    stuck.subscribe([topics["predictions"], topics["feedback"]])
    stop = threading.Event()

    def hold() -> None:
        while not stop.is_set():
            stuck.poll(timeout_ms=200)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        deadline = time.monotonic() + 30
        while not stuck.assignment() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stuck.assignment(), "the stuck member did not join"
        log = tmp_path / "run.log"
        env = run_env(bootstrap, topics, topic_prefix, tmp_path / "state")
        started = time.monotonic()
        process = start_run(env, log, "--exit-when-idle", "3", "--exit-timeout", "10")
        assert process.wait(timeout=120) == 2, log.read_text()[-3000:]
        assert time.monotonic() - started < 90
        message = log.read_text().splitlines()[-1]
        assert "no progress for 10 s (--exit-timeout)" in message
        held = {(tp.topic, tp.partition) for tp in stuck.assignment()}
        for topic, partition in held:
            assert f"{topic}[{partition}] at 0 of " in message
    finally:
        stop.set()
        holder.join()
        stuck.close(autocommit=False)
