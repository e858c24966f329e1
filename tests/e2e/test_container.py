"""The image, built and run for real: deploy/Dockerfile built with podman on the base image
deploy/base-image.sh prepares without a registry, then the container run on the host
network against the embedded broker, judged through Kafka and /metrics, and stopped.

Never skipped: without podman it fails and says how to get it (.ci/run installs it).
Podman's settings come from deploy/containers.conf unless CONTAINERS_CONF is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka
import orjson
import pytest
from kafka import KafkaProducer

from evaluation.simulate import SCENARIOS, generate
from streamer.broker import EmbeddedBroker, create_topics, free_port
from streamer.checkpoint_directory import CheckpointDirectory
from streamer.checkpoint_format import config_fingerprint
from streamer.config import load_settings
from tests.support import ROOT, cloudevent_body

pytestmark = pytest.mark.slow

IMAGE = "localhost/driftgate:test"
EVENTS = 40_000
# `podman stop`'s grace period: SIGTERM, then SIGKILL (exit code 137) when it runs out.
GRACE_S = 30
# Hosts without systemd and with a hybrid cgroup hierarchy: see deploy/containers.conf.
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")


def _podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.setdefault("CONTAINERS_CONF", str(ROOT / "deploy/containers.conf"))
    return subprocess.run(
        ["podman", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def image() -> str:
    """The image of the working tree, built on the registry-free base image (prepared once:
    the script does nothing when its tag exists)."""
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        pytest.fail(
            "the container test needs podman and debootstrap: run .ci/run (it installs "
            "them) or `apt-get install podman buildah runc debootstrap`"
        )
    started = time.monotonic()
    base = subprocess.run(
        [str(ROOT / "deploy/base-image.sh")], capture_output=True, text=True, timeout=900
    )
    assert base.returncode == 0, base.stdout[-2000:] + base.stderr[-3000:]
    based = time.monotonic()
    build = _podman(
        "build",
        "--pull=never",
        "--network=host",
        "--format=docker",  # keeps the Dockerfile's HEALTHCHECK (OCI images have none)
        "--file=deploy/Dockerfile",
        f"--tag={IMAGE}",
        ".",
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(
        f"\ncontainer: base image {based - started:.0f} s, "
        f"podman build {time.monotonic() - based:.0f} s"
    )
    return IMAGE


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"driftgate-test-{uuid.uuid4().hex[:8]}"
    yield name
    _podman("rm", "--force", "--time=0", name)


def _first_decision(bootstrap: str, topic: str, group: str, running: str, timeout_s: float) -> dict:
    """The first decision on ``topic``, read by an independent librdkafka client and
    checked as a CloudEvent of driftgate's ``group``; fails early with the container's
    log when the container stops."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-container-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None:
                assert message.error() is None, message.error()
                return cloudevent_body(message, group)
            state = _podman("inspect", "--format={{.State.Status}}", running).stdout.strip()
            assert state == "running", f"the container is {state}:\n{_logs(running)}"
    finally:
        consumer.close()
    raise AssertionError(f"no decision within {timeout_s} s:\n{_logs(running)}")


def _logs(name: str) -> str:
    logs = _podman("logs", name)
    return (logs.stdout + logs.stderr)[-4000:]


def _metrics(port: int) -> dict[str, float]:
    """The unlabelled sum of every sample of each metric family /metrics serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample, value = line.rsplit(" ", 1)
            name = sample.split("{", 1)[0]
            sums[name] = sums.get(name, 0.0) + float(value)
    return sums


def test_the_image_reads_kafka_decides_serves_metrics_and_stops_cleanly(
    image: str, container_name: str, broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
):
    bootstrap = broker.bootstrap_servers
    topics = {name: f"{topic_prefix}-{name}" for name in ("predictions", "feedback", "decisions")}
    create_topics(bootstrap, [topics["predictions"], topics["feedback"]], partitions=2)
    create_topics(bootstrap, [topics["decisions"]] + [f"{t}.dlq" for t in topics.values()])
    spec, incidents = SCENARIOS["covariate_shift"](EVENTS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 18)
    for record in generate(spec, EVENTS, seed=3, incidents=incidents):
        value = record["value"]
        key = b"fraud" if record["topic"] == "predictions" else None
        producer.send(topics[record["topic"]], orjson.dumps(value), key=key)
    producer.flush()
    producer.close()

    # The checkpoint volume: the image runs as uid 10001, which must be able to write it.
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    group = f"{topic_prefix}-group"
    port = free_port()
    settings = {
        "KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA__GROUP_ID": group,
        "KAFKA__SESSION_TIMEOUT_MS": "6000",
        "KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "KAFKA__TOPICS__PREDICTIONS": topics["predictions"],
        "KAFKA__TOPICS__FEEDBACK": topics["feedback"],
        "KAFKA__TOPICS__DECISIONS": topics["decisions"],
        "METRICS__HOST": "127.0.0.1",
        "METRICS__PORT": str(port),
    }
    started = time.monotonic()
    run = _podman(
        "run",
        "--detach",
        f"--name={container_name}",
        "--network=host",  # the broker listens on the host's 127.0.0.1
        *ULIMITS,
        f"--volume={state}:/var/lib/driftgate",
        *(f"--env=DRIFTGATE_{name}={value}" for name, value in settings.items()),
        image,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    decision = _first_decision(bootstrap, topics["decisions"], group, container_name, timeout_s=180)
    decided = time.monotonic()
    assert (decision["action"], decision["cause"]) == ("investigate", "covariate_drift")
    assert decision["scope"]["feature"] == "amount"

    metrics = _metrics(port)
    assert metrics["driftgate_events_consumed_total"] >= EVENTS / 2, metrics
    assert metrics["driftgate_decisions_total"] >= 1, metrics

    stop_started = time.monotonic()
    stop = _podman("stop", f"--time={GRACE_S}", container_name, timeout=GRACE_S + 60)
    stopped_s = time.monotonic() - stop_started
    assert stop.returncode == 0, stop.stderr[-3000:]
    exit_code = _podman("inspect", "--format={{.State.ExitCode}}", container_name).stdout.strip()
    assert exit_code == "0", f"exit code {exit_code}:\n{_logs(container_name)}"
    assert stopped_s < GRACE_S, f"took {stopped_s:.1f} s of a {GRACE_S} s grace period"

    settings_now = load_settings()
    fingerprint = config_fingerprint(
        settings_now.monitor, settings_now.limits, settings_now.feedback
    )
    name = f"{group}.{topics['predictions']}"
    checkpoint = CheckpointDirectory(state).load(name, fingerprint)
    assert checkpoint is not None, f"no checkpoint in {state}: {os.listdir(state)}"
    # written on the way out, not only by the periodic checkpoints before the stop
    assert (state / f"{name}.ckpt").stat().st_mtime >= stop_started - 1.0
    assert checkpoint.engine.monitors["fraud"].events > 0
    print(
        f"\ncontainer: first decision {decided - started:.0f} s after `podman run`, "
        f"`podman stop` {stopped_s:.1f} s"
    )
