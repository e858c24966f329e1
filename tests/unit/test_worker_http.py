"""The workers' parent's view of its workers, against real HTTP servers in this process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamer.broker import free_port
from streamer.http import HTML, MetricsServer
from streamer.incidents import IncidentStore
from streamer.worker_http import WorkersCollector, judging_worker_pages, workers_readiness
from tests.support import sample_decision


def _worker(consumed: float, latency: list[float], ready: dict[str, bool], judging: bool, store):
    registry = CollectorRegistry()
    Counter("driftgate_events_consumed", "Records read.", ["topic"], registry=registry).labels(
        "predictions"
    ).inc(consumed)
    Gauge("driftgate_feature_psi", "PSI.", ["feature"], registry=registry).labels("amount").set(
        0.25
    )
    histogram = Histogram("driftgate_batch_processing_seconds", "Seconds.", registry=registry)
    for seconds in latency:
        histogram.observe(seconds)
    server = MetricsServer(
        registry, lambda: ready, "127.0.0.1", 0, store, judging=lambda: judging
    ).start()
    return registry, server


def _by_worker(text: str) -> dict[tuple[str, str], list]:
    out: dict[tuple[str, str], list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            worker = labels.pop("worker", None)
            out.setdefault((family.name, worker), []).append((s.name, labels, s.value))
    return out


def test_the_parent_serves_each_workers_series_with_its_label_and_who_answered():
    ready = {"partitions_assigned": True, "broker_reachable": True, "reference_warm": True}
    first, first_server = _worker(7, [0.1, 2.0], ready, False, None)
    second, second_server = _worker(5, [0.3], ready, True, None)
    gone = free_port()
    ports = [(0, first_server.port), (1, second_server.port), (2, gone)]
    parent = CollectorRegistry()
    parent.register(WorkersCollector(lambda: ports))
    try:
        merged = _by_worker(generate_latest(parent).decode())
        for index, registry in ((0, first), (1, second)):
            alone = _by_worker(generate_latest(registry).decode())
            for (name, _), samples in alone.items():
                assert merged[(name, str(index))] == samples, name
        up = {w: s[0][2] for (name, w), s in merged.items() if name == "driftgate_worker_up"}
        assert up == {"0": 1.0, "1": 1.0, "2": 0.0}
        assert {w for name, w in merged if name != "driftgate_worker_up"} == {"0", "1"}
    finally:
        first_server.stop()
        second_server.stop()


def test_the_parent_is_ready_when_all_workers_are_and_one_has_partitions():
    warm = {"partitions_assigned": True, "broker_reachable": True, "reference_warm": True}
    standby = {**warm, "partitions_assigned": False}
    _, reading = _worker(1, [], warm, True, None)
    _, waiting = _worker(1, [], standby, False, None)
    ports = [(0, reading.port), (1, waiting.port)]
    try:
        assert all(workers_readiness(lambda: ports, 2).values())
        # a worker that has not announced its port yet, or does not answer
        assert workers_readiness(lambda: ports[:1], 2)["workers_answering"] is False
        cold = {**warm, "reference_warm": False}
        _, warming = _worker(1, [], cold, False, None)
        checks = workers_readiness(lambda: [*ports, (2, warming.port)], 3)
        assert checks["reference_warm"] is False and checks["partitions_assigned"] is True
        warming.stop()
        only_standby = workers_readiness(lambda: ports[1:], 1)
        assert only_standby["partitions_assigned"] is False
    finally:
        reading.stop()
        waiting.stop()


def test_incident_pages_come_from_the_worker_that_judges():
    judged = IncidentStore(capacity=10)
    decision = sample_decision(action="retrain")
    judged.record([decision], {})
    stale = IncidentStore(capacity=10)
    stale.record([sample_decision(action="investigate")], {})
    ready = {"partitions_assigned": True}
    _, standby = _worker(0, [], ready, False, stale)
    _, judge = _worker(0, [], ready, True, judged)
    pages = judging_worker_pages(lambda: [(0, standby.port), (1, judge.port)])
    try:
        status, body, content_type = pages("/incidents?action=retrain")
        assert status == 200 and content_type == HTML
        assert decision.decision_id in body.decode()
        status, body, _ = pages(f"/incidents/{decision.decision_id}")
        assert status == 200 and b"retrain" in body
        assert pages("/incidents/" + "0" * 16)[0] == 404
    finally:
        standby.stop()
        judge.stop()
    assert pages("/incidents")[0] == 503
