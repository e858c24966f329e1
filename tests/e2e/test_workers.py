"""`driftgate run` with two workers against a real broker: one verdict, one metrics port,
and the workers' lives tied to their parent's."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import orjson
import pytest

from evaluation.simulate import write_replay
from streamer import cli
from streamer.broker import EmbeddedBroker, free_port
from tests.support import (
    consumed_records,
    http_get,
    model_log,
    produce_log,
    read_decisions,
    run_env,
    start_run,
    topics_for,
    verdicts,
    wait_for,
)

EVENTS = 40_000


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first, then the parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _workers_of(pid: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _stat(entry.name)[1:2] == [str(pid)]
    ]


def _running(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"])


def test_two_workers_split_the_partitions_and_decide_as_the_replay(
    broker: EmbeddedBroker, topic_prefix, tmp_path
):
    log = model_log("covariate_shift", 7, EVENTS)
    write_replay(tmp_path / "log.jsonl", log)
    out = tmp_path / "replayed.jsonl"
    assert cli.main(["replay", str(tmp_path / "log.jsonl"), "--decisions", str(out)]) == 0
    replayed = verdicts([orjson.loads(line) for line in out.read_bytes().splitlines()])
    assert replayed, "the scenario has an incident"
    bootstrap = broker.bootstrap_servers
    topics = topics_for(topic_prefix)
    produce_log(bootstrap, topics, log, 4, keyed=True)

    run = f"{topic_prefix}-run"
    port = free_port()
    env = {**run_env(bootstrap, topics, run, tmp_path / "state", port), "DRIFTGATE_WORKERS": "2"}
    run_log = tmp_path / "run.log"
    process = start_run(env, run_log, "--exit-when-idle", "8")
    try:
        # One port for both: every worker's series, labelled, while they work.
        wait_for(lambda: consumed_records(port) > 0, 60, "the workers to read")
        status, body = http_get(port, "/metrics")
        text = body.decode()
        assert status == 200
        for worker in ("0", "1"):
            assert f'driftgate_worker_up{{worker="{worker}"}} 1.0' in text, text[:2000]
        workers_reading = set(re.findall(r'driftgate_events_consumed_total\{.*worker="(\d)"', text))
        assert workers_reading <= {"0", "1"} and workers_reading
        status, body = http_get(port, "/readyz")
        report = json.loads(body)
        assert set(report["checks"]) == {
            "workers_answering",
            "partitions_assigned",
            "broker_reachable",
            "reference_warm",
        }
        assert report["checks"]["workers_answering"] is True
        assert http_get(port, "/healthz") == (200, b"ok\n")
    finally:
        assert process.wait(timeout=300) == 0, run_log.read_text()[-3000:]
    text = run_log.read_text()
    shares = {
        worker: line.split("reading ", 1)[1].count("[")
        for worker, line in re.findall(r"worker (\d) (streamer\.forwarder: reading .*)", text)
    }
    assert set(shares) == {"0", "1"}, text[-3000:]
    decisions = read_decisions(bootstrap, f"{run}-decisions", f"{run}-group")
    assert verdicts(decisions) == replayed


@pytest.mark.parametrize("how", ["sigterm", "sigkill", "a-worker-killed"])
def test_the_workers_stop_cleanly_with_their_parent(
    broker: EmbeddedBroker, topic_prefix, tmp_path, how
):
    """SIGTERM: the parent stops its workers and exits 0; SIGKILL: the workers see their
    parent gone and stop by themselves, writing their checkpoints; a worker killed: the
    parent stops the other and exits with the killed one's status, 128 + 9."""
    bootstrap = broker.bootstrap_servers
    topics = topics_for(topic_prefix)
    produce_log(bootstrap, topics, model_log("covariate_shift", 8, 4_000), 2, keyed=True)
    port = free_port()
    run = f"{topic_prefix}-run"
    state = tmp_path / "state"
    env = {**run_env(bootstrap, topics, run, state, port), "DRIFTGATE_WORKERS": "2"}
    run_log = tmp_path / "run.log"
    process = start_run(env, run_log)
    wait_for(lambda: consumed_records(port) >= 4_000, 90, "the workers to read the topics")
    workers = _workers_of(process.pid)
    assert len(workers) == 2, workers
    if how == "a-worker-killed":
        os.kill(workers[0], signal.SIGKILL)
        assert process.wait(timeout=60) == 128 + signal.SIGKILL
    else:
        process.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        status = process.wait(timeout=60)
        assert status == (0 if how == "sigterm" else -signal.SIGKILL)
    deadline = time.monotonic() + 60
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in workers), run_log.read_text()[-3000:]
    text = run_log.read_text()
    if how == "sigkill":
        assert text.count("the workers' parent is gone: stopping") == 2, text[-3000:]
    if how == "a-worker-killed":
        assert re.search(r"worker \d exited with status -9: stopped the others", text), text[-3000:]
    else:
        assert list(state.glob("*.ckpt")), "the judging worker checkpointed on its way out"
    assert "Traceback" not in text, text[-3000:]
