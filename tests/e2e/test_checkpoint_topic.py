"""Checkpoints in a compacted Kafka topic, against the embedded broker.

(Tansu may not compact: nothing here depends on compaction having happened.)
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator

import orjson
import pytest
from kafka import KafkaProducer

from evaluation.simulate import SCENARIOS, generate
from streamer.broker import EmbeddedBroker, create_topics, free_port
from streamer.checkpoint import Checkpoints
from streamer.checkpoint_directory import CheckpointDirectory
from streamer.checkpoint_format import config_fingerprint
from streamer.checkpoint_topic import CHUNK_BYTES, CheckpointTopic
from streamer.cli import main
from streamer.config import CheckpointConfig, KafkaConfig, load_settings
from streamer.engine import Engine, InputRecord
from streamer.errors import DriftgateError
from tests.support import (
    engine_state,
    final_state,
    fingerprint_of,
    fraud_records,
    read_all,
    run_env,
    small_engine,
    start_run,
    state_summary,
    topics_for,
    wait_for,
)

NOW = 1_700_000_000.0


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=broker.bootstrap_servers)


@pytest.fixture
def topic(topic_prefix: str) -> str:
    return f"{topic_prefix}-checkpoints"


@pytest.fixture
def store(kafka: KafkaConfig, topic: str) -> Iterator[CheckpointTopic]:
    store = CheckpointTopic(kafka, topic, wall_clock=lambda: NOW)
    yield store
    store.close()


@pytest.fixture
def reopen(kafka: KafkaConfig, topic: str) -> Iterator[Callable[[], CheckpointTopic]]:
    """The store as a restarted process sees it: nothing known but the topic."""
    opened: list[CheckpointTopic] = []

    def new() -> CheckpointTopic:
        opened.append(CheckpointTopic(kafka, topic))
        return opened[-1]

    yield new
    for store in opened:
        store.close()


def _history(kafka: KafkaConfig, topic: str) -> list[tuple[str, bytes | None]]:
    """Every record of the topic in order, tombstones included."""
    messages = read_all(kafka.bootstrap_servers, topic, idle_s=1.0)
    return [(m.key.decode(), m.value) for m in messages]


def _manifest(kafka: KafkaConfig, topic: str, name: str) -> dict[str, object]:
    return json.loads([v for k, v in _history(kafka, topic) if k == name and v][-1])


def test_a_checkpoint_in_a_topic_restores_the_state_and_its_offsets(store, kafka, topic, reopen):
    records = fraud_records(12_000)
    engine = small_engine()
    engine.process(records[:7_000])
    store.save("g.p", engine, engine.positions)
    assert store.saved == 1 and store.last_saved_at == NOW
    loaded = reopen().load("g.p", fingerprint_of(engine))
    assert loaded is not None
    assert loaded.positions == {("p", 0): 7_000}
    assert loaded.written_at == NOW
    assert engine_state(loaded.engine) == engine_state(engine)
    # ...and it goes on exactly as the original does
    engine.process(records[7_000:])
    loaded.engine.process(records[7_000:])
    assert engine_state(loaded.engine) == engine_state(engine)


def test_state_inspect_reads_a_checkpoint_topic(store, kafka, topic, monkeypatch, capsys):
    engine = small_engine()
    engine.process(fraud_records(3_000))
    store.save("g.p", engine, engine.positions)
    monkeypatch.setenv("DRIFTGATE_KAFKA__BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    assert main(["state", "inspect", "--topic", topic, "--name", "g.p"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{topic}/g.p:\n") and "p[0] @ 3,000" in out
    assert f"join store: {engine.join.size:,} predictions kept" in out
    assert main(["state", "inspect", "--topic", topic, "--name", "other"]) == 2
    assert "no checkpoint named other" in capsys.readouterr().err


def _big_engine() -> Engine:
    """A real engine whose checkpoint is over 3 MB: the join store keeps 12,000
    predictions with long event ids for their labels."""
    engine = small_engine()
    padded = []
    for record in fraud_records(12_000):
        value = orjson.loads(record.value)
        value["event_id"] = f"{value['event_id']}-{'x' * 240}"
        padded.append(InputRecord(record.kind, orjson.dumps(value), record.topic, 0, record.offset))
    engine.process(padded)
    return engine


def test_a_checkpoint_of_several_chunks_round_trips(store, kafka, topic, reopen):
    engine = _big_engine()
    store.save("g.p", engine, engine.positions)
    manifest = _manifest(kafka, topic, "g.p")
    assert manifest["bytes"] > 3_000_000
    assert manifest["chunks"] == -(-manifest["bytes"] // CHUNK_BYTES) >= 6
    loaded = reopen().load("g.p", fingerprint_of(engine))
    assert loaded is not None and engine_state(loaded.engine) == engine_state(engine)


def test_a_second_save_replaces_the_first_and_tombstones_its_chunks(store, kafka, topic, reopen):
    records = fraud_records(6_000)
    engine = small_engine()
    engine.process(records[:3_000])
    store.save("g.p", engine, engine.positions)
    first = _manifest(kafka, topic, "g.p")["generation"]
    engine.process(records[3_000:])
    store.save("g.p", engine, engine.positions)
    loaded = reopen().load("g.p", fingerprint_of(engine))
    assert loaded is not None and loaded.positions == {("p", 0): 6_000}
    assert engine_state(loaded.engine) == engine_state(engine)
    # the first generation's chunks end with a tombstone, for compaction to free them
    latest: dict[str, bytes | None] = dict(_history(kafka, topic))
    old = [key for key in latest if key.startswith(f"g.p/{first}/")]
    assert old and all(latest[key] is None for key in old)
    assert latest["g.p"] is not None


def test_a_save_before_any_load_still_tombstones_the_old_chunks(store, kafka, topic, reopen):
    engine = small_engine()
    engine.process(fraud_records(2_000))
    store.save("g.p", engine, engine.positions)
    first = _manifest(kafka, topic, "g.p")["generation"]
    reopened = reopen()
    reopened.save("g.p", engine, engine.positions)  # a save before any load
    latest = dict(_history(kafka, topic))
    assert all(v is None for k, v in latest.items() if k.startswith(f"g.p/{first}/"))


def test_a_checkpoint_made_under_other_settings_is_not_loaded(store, kafka, topic, reopen, caplog):
    engine = small_engine()
    engine.process(fraud_records(3_000))
    store.save("g.p", engine, engine.positions)
    other = small_engine(window_events=1_000)
    reopened = reopen()
    assert reopened.load("g.p", fingerprint_of(other)) is None
    assert reopened.rejected == 1
    assert "other detection" in caplog.text
    # left alone, not tombstoned: the settings rolled back, it loads again
    assert reopened.load("g.p", fingerprint_of(engine)) is not None


@pytest.mark.parametrize("damage", [b"garbage", None], ids=["corrupt", "missing"])
def test_a_corrupt_or_missing_chunk_is_not_loaded(store, kafka, topic, reopen, damage, caplog):
    engine = _big_engine()
    store.save("g.p", engine, engine.positions)
    generation = _manifest(kafka, topic, "g.p")["generation"]
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    producer.send(topic, key=f"g.p/{generation}/2".encode(), value=damage)
    producer.flush()
    producer.close()
    reopened = reopen()
    assert reopened.load("g.p", fingerprint_of(engine)) is None
    assert reopened.rejected == 1
    assert "not loaded" in caplog.text
    assert ("corrupt" if damage else "missing") in caplog.text
    # the next checkpoint supersedes it
    reopened.save("g.p", engine, engine.positions)
    assert reopen().load("g.p", fingerprint_of(engine)) is not None


def test_no_checkpoint_is_no_state(store):
    assert store.load("nothing", "x") is None
    assert store.rejected == 0


def test_an_unreachable_broker_is_a_retriable_error():
    address = f"127.0.0.1:{free_port()}"
    store = CheckpointTopic(KafkaConfig(bootstrap_servers=address, request_timeout_ms=1_000), "c")
    for attempt in (lambda: store.load("g.p", "x"), lambda: store.save("g.p", small_engine(), {})):
        with pytest.raises(DriftgateError, match=f"cannot reach Kafka at {address}") as raised:
            attempt()
        assert raised.value.retriable
        assert "checkpoint topic c" in str(raised.value)


def test_the_topic_is_used_instead_of_the_directory(tmp_path, kafka, topic):
    config = CheckpointConfig(dir=str(tmp_path / "unused"), topic=topic)
    checkpoints = Checkpoints(config, "g.p", kafka=kafka)
    assert isinstance(checkpoints.directory, CheckpointTopic)
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ValueError, match="Kafka settings"):
        Checkpoints(config, "g.p")
    directory = Checkpoints(CheckpointConfig(dir=str(tmp_path / "state")), "g.p").directory
    assert isinstance(directory, CheckpointDirectory)


@pytest.mark.slow
def test_run_resumes_from_its_checkpoint_topic(broker: EmbeddedBroker, topic_prefix, tmp_path):
    """`driftgate run` with a checkpoint topic and no volume, stopped with SIGTERM between
    two halves of the stream and started again, ends with the state of a run that saw
    the whole stream at once (that one checkpoints to a directory)."""
    bootstrap = broker.bootstrap_servers
    topics = topics_for(topic_prefix)
    create_topics(bootstrap, topics.values())
    events = 40_000
    spec, incidents = SCENARIOS["covariate_shift"](events)
    predictions = [
        orjson.dumps(r["value"])
        for r in generate(spec, events, seed=3, incidents=incidents)
        if r["topic"] == "predictions"
    ]
    half = len(predictions) // 2

    def produce(values: list[bytes]) -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        for value in values:
            producer.send(topics["predictions"], value, key=b"fraud")
        producer.flush()
        producer.close()

    checkpoint_topic = f"{topic_prefix}-checkpoints"
    stopped = f"{topic_prefix}-stopped"
    env = {
        **run_env(bootstrap, topics, stopped, tmp_path / "no-volume"),
        "DRIFTGATE_CHECKPOINT__TOPIC": checkpoint_topic,
        "DRIFTGATE_CHECKPOINT__INTERVAL_EVENTS": "5000",
        # The half rarely ends on a multiple of 5,000 records as the chunks are cut:
        # the time interval checkpoints its tail.
        "DRIFTGATE_CHECKPOINT__INTERVAL_S": "2",
    }
    settings = load_settings()
    fingerprint = config_fingerprint(settings.monitor, settings.limits, settings.feedback)
    name = f"{stopped}-group.{topics['predictions']}"
    reader = CheckpointTopic(KafkaConfig(bootstrap_servers=bootstrap), checkpoint_topic)

    def checkpointed() -> int:
        # The judge may checkpoint before its ingest read a record (its group can take a
        # rebalance longer to join): such a checkpoint has no position for the input.
        loaded = reader.load(name, fingerprint)
        return loaded.positions.get((topics["predictions"], 0), 0) if loaded else 0

    produce(predictions[:half])
    log = tmp_path / "stopped.log"
    first = start_run(env, log)
    wait_for(lambda: checkpointed() == half, 60, "a checkpoint of the first half")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0, log.read_text()[-3000:]
    produce(predictions[half:])
    second = start_run(env, log, "--exit-when-idle", "8")
    straight = f"{topic_prefix}-straight"
    whole = start_run(
        run_env(bootstrap, topics, straight, tmp_path / "straight"),
        tmp_path / "straight.log",
        "--exit-when-idle",
        "8",
    )
    assert second.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert whole.wait(timeout=60) == 0, (tmp_path / "straight.log").read_text()[-3000:]

    assert "restored from" in log.read_text()
    assert not (tmp_path / "no-volume").exists()
    loaded = reader.load(name, fingerprint)
    reader.close()
    assert loaded is not None
    resumed = loaded.engine
    whole_stream = final_state(tmp_path / "straight", f"{straight}-group", topics["predictions"])
    assert resumed.counters.consumed == {"predictions": len(predictions)}
    assert state_summary(resumed)["fraud"]["events"] == len(predictions)
    assert state_summary(resumed) == state_summary(whole_stream)
