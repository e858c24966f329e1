"""One model, one verdict, against a real broker and real `driftgate run` processes.

One log of four models, each with its own incident (a unit change, a cohort's covariate
drift, a cohort's concept drift with labels hours late, a release that regresses), is
replayed with `driftgate replay` and produced to Kafka with 1, 3 and 6 partitions keyed
by event id, and with 3 partitions unkeyed: every run gives the replay's decisions, one
each, and every label joins its prediction.
"""

from __future__ import annotations

import heapq
import signal

import orjson
import pytest

from evaluation.simulate import write_replay
from streamer import cli
from streamer.broker import EmbeddedBroker, free_port
from tests.support import (
    consumed_records,
    final_state,
    model_log,
    produce_log,
    read_decisions,
    run_env,
    start_run,
    topics_for,
    verdicts,
    wait_for,
)

pytestmark = pytest.mark.slow

EVENTS = 60_000
INCIDENTS = {
    "rescaled": "fix_upstream",
    "cohort_covariate_shift": "investigate",
    "cohort_concept": "retrain",
    "deployment_regression": "rollback",
}


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> tuple[list[dict[str, object]], list[tuple[str, ...]]]:
    """The log in time order, and `driftgate replay`'s verdicts on it."""
    logs = [model_log(scenario, seed, EVENTS) for seed, scenario in enumerate(INCIDENTS, 40)]
    merged = list(heapq.merge(*logs, key=lambda r: r["value"]["ts"]))
    folder = tmp_path_factory.mktemp("replay")
    write_replay(folder / "log.jsonl", merged)
    out = folder / "decisions.jsonl"
    assert cli.main(["replay", str(folder / "log.jsonl"), "--decisions", str(out)]) == 0
    replayed = verdicts([orjson.loads(line) for line in out.read_bytes().splitlines()])
    # the replay itself is right: one order per incident, the incident's action
    assert {(v[0], v[2]) for v in replayed} >= set(INCIDENTS.items()), replayed
    return merged, replayed


@pytest.mark.parametrize(
    ("partitions", "keyed"),
    [(1, True), (3, True), (6, True), (3, False)],
    ids=["1", "3-keyed-by-event-id", "6-keyed-by-event-id", "3-unkeyed"],
)
def test_the_replays_decisions_however_the_topics_are_partitioned(
    broker: EmbeddedBroker, topic_prefix, tmp_path, stream, partitions, keyed
):
    log, replayed = stream
    bootstrap = broker.bootstrap_servers
    topics = topics_for(topic_prefix)
    produce_log(bootstrap, topics, log, partitions, keyed)
    run = f"{topic_prefix}-run"
    process = start_run(
        run_env(bootstrap, topics, run, tmp_path), tmp_path / "run.log", "--exit-when-idle", "6"
    )
    assert process.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-3000:]
    decisions = read_decisions(bootstrap, f"{run}-decisions", f"{run}-group")
    assert verdicts(decisions) == replayed
    engine = final_state(tmp_path, f"{run}-group", topics["predictions"])
    labels = sum(r["topic"] == "feedback" for r in log)
    assert engine.join.unknown == 0 and engine.join.joined == labels
    assert engine.order.late == 0 and engine.order.buffered == 0


def test_two_members_judge_as_one_and_a_kill_changes_nothing(
    broker: EmbeddedBroker, topic_prefix, tmp_path, stream
):
    """Six partitions keyed by event id read by two members, one killed with SIGKILL
    midway: the decisions of one member alone."""
    log, replayed = stream
    bootstrap = broker.bootstrap_servers
    topics = topics_for(topic_prefix)
    produce_log(bootstrap, topics, log, 6, keyed=True)

    run = f"{topic_prefix}-pair"
    state = tmp_path / "pair"
    logs = {member: tmp_path / f"{member}.log" for member in ("survivor", "victim")}
    port = free_port()
    survivor = start_run(
        run_env(bootstrap, topics, run, state), logs["survivor"], "--exit-when-idle", "20"
    )
    victim = start_run(run_env(bootstrap, topics, run, state, port), logs["victim"])
    try:
        # both read their share of the input partitions, then the victim dies mid-stream
        wait_for(lambda: "reading " in logs["victim"].read_text(), 60, "the victim's share")
        wait_for(lambda: consumed_records(port) >= 30_000, 120, "the victim to work")
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    assert survivor.wait(timeout=300) == 0, logs["survivor"].read_text()[-3000:]
    shares = [
        line.split("reading ", 1)[1].count("[")
        for line in logs["victim"].read_text().splitlines()
        if " reading " in line
    ]
    assert shares and shares[-1] < 12, f"the victim read every partition alone: {shares}"
    decisions = read_decisions(bootstrap, f"{run}-decisions", f"{run}-group")
    # decisions made again after the kill carry the same ids: count each once
    unique = list({d["decision_id"]: d for d in decisions}.values())
    assert verdicts(unique) == replayed
    engine = final_state(state, f"{run}-group", topics["predictions"])
    assert engine.join.unknown == 0
    assert sum(m.events for m in engine.monitors.values()) == sum(
        r["topic"] == "predictions" for r in log
    )
