from __future__ import annotations

import json

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from evaluation.simulate import SCENARIOS, generate, write_replay
from streamer.config import load_settings
from streamer.engine import PREDICTIONS, Engine, InputRecord
from streamer.http import MetricsServer
from streamer.metrics import EngineCollector
from streamer.service import Service
from streamer.sinks import JsonLinesDecisionSink, ReportingDeadLetterSink
from tests.support import http_get, replay_service


def _service_after_replay(tmp_path, scenario="covariate_shift", events=40_000) -> Service:
    spec, incidents = SCENARIOS[scenario](events)
    path = tmp_path / "stream.jsonl"
    write_replay(path, generate(spec, events, seed=1, incidents=incidents))
    with path.open("ab") as out:
        out.write(b"garbage\n")
    return replay_service(path, tmp_path / "decisions.jsonl")[0]


def _samples(registry: CollectorRegistry) -> dict[str, list]:
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {f.name: f.samples for f in families}


def test_collector_reads_engine_state_at_scrape_time(tmp_path):
    service = _service_after_replay(tmp_path)
    registry = CollectorRegistry()
    registry.register(EngineCollector(service))
    samples = _samples(registry)
    consumed = {s.labels["topic"]: s.value for s in samples["driftgate_events_consumed"]}
    assert consumed["predictions"] == 40_000
    rejected = [s for s in samples["driftgate_events_rejected"] if s.name.endswith("_total")]
    assert [(s.labels["reason"], s.value) for s in rejected] == [("invalid_record", 1.0)]
    decisions = {
        (s.labels["action"], s.labels["cause"]): s.value
        for s in samples["driftgate_decisions"]
        if s.name.endswith("_total")
    }
    assert decisions[("investigate", "covariate_drift")] >= 1
    psi = {
        (s.labels["feature"], s.labels["scope"]): s.value for s in samples["driftgate_feature_psi"]
    }
    assert psi[("amount", "all")] > 0.2 > psi[("age_days", "all")]
    open_now = {
        (s.labels["feature"], s.labels["scope"])
        for s in samples["driftgate_feature_drift_open"]
        if s.value == 1
    }
    assert ("amount", "all") in open_now
    assert {s.labels["model"]: s.value for s in samples["driftgate_reference_progress_ratio"]} == {
        "fraud": 1.0
    }
    batches = [
        s for s in samples["driftgate_batch_processing_seconds"] if s.name.endswith("_count")
    ]
    assert batches[0].value == service.batches > 0


def test_a_fresh_registry_per_test_starts_empty():
    assert _samples(CollectorRegistry()) == {}


def test_health_readiness_and_metrics_endpoints():
    ready = {"partitions_assigned": True, "broker_reachable": False, "reference_warm": True}
    registry = CollectorRegistry()
    server = MetricsServer(registry, lambda: dict(ready), "127.0.0.1", 0).start()
    try:
        assert http_get(server.port, "/healthz") == (200, b"ok\n")
        status, body = http_get(server.port, "/readyz")
        assert status == 503
        assert json.loads(body)["checks"]["broker_reachable"] is False
        ready["broker_reachable"] = True
        assert http_get(server.port, "/readyz")[0] == 200
        assert http_get(server.port, "/metrics")[0] == 200
        assert http_get(server.port, "/nope")[0] == 404
    finally:
        server.stop()


def test_upstream_and_outcome_series(tmp_path):
    service = _service_after_replay(tmp_path, "rescaled", 60_000)
    registry = CollectorRegistry()
    registry.register(EngineCollector(service))
    samples = _samples(registry)
    open_upstream = {
        (s.labels["feature"], s.labels["scope"], s.labels["cause"])
        for s in samples["driftgate_feature_upstream_open"]
    }
    assert open_upstream == {
        ("amount", "all", "rescaled_signal"),
        ("session_seconds", "all", "rescaled_signal"),
    }
    factors = {
        s.labels["feature"]: s.value
        for s in samples["driftgate_feature_rescale_factor"]
        if s.labels["scope"] == "all"
    }
    assert 80 < factors["amount"] < 125
    conditions = {s.labels["cause"]: s.value for s in samples["driftgate_open_conditions"]}
    assert conditions["rescaled_signal"] == 2
    early = [s for s in samples["driftgate_labels_before_reference"] if s.name.endswith("_total")]
    assert early[0].value == service.engine.monitors["fraud"].labels_before_reference > 0
    joined = samples["driftgate_labels_joined"][0].value
    assert joined > 0
    delays = [s for s in samples["driftgate_label_delay_seconds"] if s.name.endswith("_count")]
    assert delays[0].value == joined


def test_a_figure_that_is_not_finite_is_not_exported(tmp_path):
    service = _service_after_replay(tmp_path)
    monitor = service.engine.monitors["fraud"]
    # an overflowed figure (values near the float maximum): no series, not +Inf
    monitor.features["amount"].psi[0] = float("inf")
    monitor.outcomes.last_override_rate[0] = float("-inf")
    registry = CollectorRegistry()
    registry.register(EngineCollector(service))
    samples = _samples(registry)
    psi = {(s.labels["feature"], s.labels["scope"]) for s in samples["driftgate_feature_psi"]}
    assert ("amount", "all") not in psi and ("age_days", "all") in psi
    # the window was judged: whether it drifted is still said
    drifted = {
        (s.labels["feature"], s.labels["scope"]) for s in samples["driftgate_feature_drifted"]
    }
    assert ("amount", "all") in drifted
    overrides = {s.labels["scope"] for s in samples["driftgate_outcome_override_ratio"]}
    assert "all" not in overrides and overrides


def test_the_event_time_merge_is_exported(tmp_path):
    service = _service_after_replay(tmp_path, events=5_000)
    engine = service.engine
    newest = max(engine.order.watermarks.values())
    late = {**generate_one_prediction(), "ts": newest - 3_600.0}
    engine.process([InputRecord(PREDICTIONS, orjson.dumps(late), "predictions", -1, 10**6)])
    registry = CollectorRegistry()
    registry.register(EngineCollector(service))
    samples = _samples(registry)

    def value(name: str) -> float:
        (sample,) = [s for s in samples[name] if not s.name.endswith("_created")]
        return sample.value

    assert value("driftgate_merge_late_events") == 1
    assert value("driftgate_merge_buffered_events") == 0  # a late event goes out at once
    assert value("driftgate_merge_duplicate_events") == 0
    assert value("driftgate_merge_forced_releases") == 0
    (watermark,) = samples["driftgate_merge_watermark_seconds"]
    assert watermark.labels == {"topic": "replay", "partition": "-1"}
    assert watermark.value == newest


def generate_one_prediction() -> dict:
    spec, _ = SCENARIOS["stationary"](10)
    return next(r["value"] for r in generate(spec, 10, seed=3) if r["topic"] == "predictions")


class _InternalTopic:
    """A judge's source: the internal topic, three records behind its end."""

    def poll(self) -> list:
        return []

    def commit(self, offsets=None) -> None:
        pass

    def lag(self) -> dict[tuple[str, int], int]:
        return {("g.events", 0): 3}

    def close(self) -> None:
        pass


def test_the_lag_of_the_input_partitions_is_exported_beside_the_internal_topics(tmp_path):
    settings = load_settings()
    service = Service(
        Engine(settings.monitor, settings.limits, settings.feedback),
        _InternalTopic(),
        JsonLinesDecisionSink(tmp_path / "d.jsonl"),
        ReportingDeadLetterSink(tmp_path / "dead.jsonl"),
    )
    service.input_lag = lambda: {("predictions", 1): 5, ("feedback", 0): 0}
    service.step()
    registry = CollectorRegistry()
    registry.register(EngineCollector(service))
    lag = {
        (s.labels["topic"], s.labels["partition"]): s.value
        for s in _samples(registry)["driftgate_consumer_lag_records"]
    }
    assert lag == {("g.events", "0"): 3, ("predictions", "1"): 5, ("feedback", "0"): 0}


def test_each_new_version_s_outcomes_are_exported_beside_the_incumbent_s(tmp_path):
    service = _service_after_replay(tmp_path, "canary_label_regression")
    registry = CollectorRegistry()
    registry.register(EngineCollector(service))
    samples = _samples(registry)
    auc = {
        (s.labels["version"], s.labels["side"]): s.value
        for s in samples["driftgate_version_outcome_auc"]
        if s.labels["scope"] == "all"
    }
    # v2 ranks at random within cohorts; the incumbent's labels of the same period do not.
    assert set(auc) == {("v2", "version"), ("v2", "incumbent")}
    assert auc["v2", "version"] < auc["v2", "incumbent"] - 0.1
    counts = {
        s.labels["side"]: s.value
        for s in samples["driftgate_version_outcome_labels"]
        if s.labels["scope"] == "all"
    }
    assert counts["version"] == 1_000 < counts["incumbent"]
    open_regressions = samples["driftgate_version_outcome_regression_open"]
    assert {s.labels["version"] for s in open_regressions} == {"v2"}
    errors = {s.labels["scope"]: s.value for s in samples["driftgate_outcome_auc_se"]}
    assert 0 < errors["all"] < 0.1
