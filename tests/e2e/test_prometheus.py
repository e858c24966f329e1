"""Prometheus against driftgate: the alert rules' own tests, and a real Prometheus server
scraping a real `driftgate run` through an incident replayed on the embedded broker.

The end-to-end test loads ``deploy/prometheus/prometheus.yml`` and ``alerts.yml`` as they are
(only the target and the intervals change), checks that the injected incident's alerts
reach ``firing``, that every query of the Grafana dashboard returns data, and that
``promtool check metrics`` has nothing to say about the scraped text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detectors.decision import Action
from evaluation.simulate import SCENARIOS, generate, write_replay
from streamer.broker import EmbeddedBroker, create_topics, free_port
from streamer.config import KafkaConfig, TopicsConfig, load_settings
from streamer.metrics import EngineCollector
from streamer.produce import produce
from tests.support import ROOT, replay_service

pytestmark = pytest.mark.slow

DEPLOY = ROOT / "deploy"
EVENTS = 80_000
# Late enough for a reference of up to 30,000 predictions to be built first, early enough
# for three 2,000-prediction windows after it.
INCIDENT_AT = 50_000
MALFORMED_EVERY = 20_000
# Grafana's variables, as a user who picked "All" would send them.
DASHBOARD_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$model": ".*",
    "$feature": ".*",
    "$scope": ".*",
}

T = TypeVar("T")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: install Debian's prometheus package "
            "(apt-get install --no-install-recommends prometheus), as .ci/run does"
        )
    return path


def test_alert_rules_and_prometheus_config_are_valid_and_their_unit_tests_pass():
    promtool = _tool("promtool")
    for args in (
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["test", "rules", "deploy/prometheus/alerts_test.yml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
    ):
        done = subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_alerted_counters_are_exported_at_zero_before_their_first_event(tmp_path):
    # Prometheus sees no increase in a series born at 1: the decision alerts depend on this.
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    registry = CollectorRegistry()
    registry.register(EngineCollector(replay_service(empty, tmp_path / "d.jsonl")[0]))
    samples = [
        s
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    ]
    decisions = {
        s.labels["action"]: s.value for s in samples if s.name == "driftgate_decisions_total"
    }
    assert decisions == dict.fromkeys(get_args(Action), 0.0)
    consumed = {
        s.labels["topic"]: s.value for s in samples if s.name == "driftgate_events_consumed_total"
    }
    assert consumed == {"predictions": 0.0, "feedback": 0.0}


def test_deploy_files_parse_and_hold_valid_driftgate_configs(tmp_path, monkeypatch):
    for path in DEPLOY.rglob("*"):
        if path.suffix in (".yml", ".yaml"):
            assert all(doc for doc in yaml.safe_load_all(path.read_text())), path
        elif path.suffix == ".json":
            assert json.loads(path.read_text()), path
    configmap = yaml.safe_load((DEPLOY / "k8s/configmap.yaml").read_text())
    config = tmp_path / "config.yml"
    config.write_text(configmap["data"]["config.yml"])
    settings = load_settings(config)
    deployment = yaml.safe_load((DEPLOY / "k8s/deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": settings.metrics.port
    }
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert container["args"] == ["--config", f"{mounts['config']}/config.yml"]
    # the checkpoint directory is on the persistent volume
    assert settings.checkpoint.dir == mounts["state"]
    for variable in container["env"]:
        monkeypatch.setenv(variable["name"], variable["value"])
    load_settings(config)

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for service in ("driftgate", "traffic"):
        with monkeypatch.context() as env:
            for name, value in compose["services"][service]["environment"].items():
                env.setenv(name, str(value))
            load_settings()


class PrometheusApi:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            # A bad query is an error of the dashboard or the rules: report it, do not wait.
            raise AssertionError(f"{path} {params}: {error.read().decode()}") from error
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def query_range(self, expr: str, start: float) -> list[dict[str, Any]]:
        data = self.get(
            "/api/v1/query_range", query=expr, start=str(start), end=str(time.time()), step="1"
        )
        return list(data["result"])

    def firing(self) -> set[tuple[str, str, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get("cause", ""), a["labels"].get("feature", ""))
            for a in self.get("/api/v1/alerts")["alerts"]
            if a["state"] == "firing"
        }


def _wait(what: str, check: Callable[[], T], timeout_s: float, logs: list[Path]) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except OSError:
            result = None  # not listening yet
        if result:
            return result
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.read_text()[-3000:]}" for p in logs)
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tails}")
        time.sleep(0.5)


def dashboard_queries() -> tuple[list[str], list[str]]:
    """The PromQL of every panel target and of every annotation, variables substituted."""
    dashboard = json.loads((DEPLOY / "grafana/driftgate.json").read_text())

    def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for item in items for p in (item, *panels(item.get("panels", [])))]

    def substituted(expr: str) -> str:
        for name in sorted(DASHBOARD_VARIABLES, key=len, reverse=True):
            expr = expr.replace(name, DASHBOARD_VARIABLES[name])
        assert "$" not in expr, f"a dashboard variable this test does not know: {expr}"
        return expr

    targets = [
        substituted(t["expr"]) for p in panels(dashboard["panels"]) for t in p.get("targets", [])
    ]
    annotations = [substituted(a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    return targets, annotations


def _incident_stream(path: Path) -> None:
    """Labelled fraud traffic; from INCIDENT_AT, `balance` freezes and `amount` is sent
    in cents instead of euros (x100); a malformed prediction every MALFORMED_EVERY."""
    spec, _ = SCENARIOS["labelled_stationary"](EVENTS)
    frozen = SCENARIOS["frozen"](EVENTS)[1]
    rescaled = [i for i in SCENARIOS["rescaled"](EVENTS)[1] if i.feature == "amount"]
    incidents = [dataclasses.replace(i, start_event=INCIDENT_AT) for i in frozen + rescaled]
    records = list(generate(spec, EVENTS, seed=11, incidents=incidents))
    for at in range(MALFORMED_EVERY, len(records), MALFORMED_EVERY):
        records.insert(at, {"topic": "predictions", "value": '{"event_id": "broken", "ts": '})
    write_replay(path, records)


def _prometheus_config(path: Path, metrics_port: int) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / f) for f in config["rule_files"]]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "driftgate"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    config["scrape_configs"] = [job]
    path.write_text(yaml.safe_dump(config))


def test_prometheus_scrapes_driftgate_through_an_incident(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
):
    prometheus, promtool = _tool("prometheus"), _tool("promtool")
    bootstrap = broker.bootstrap_servers
    topics = TopicsConfig(
        predictions=f"{topic_prefix}-predictions",
        feedback=f"{topic_prefix}-feedback",
        decisions=f"{topic_prefix}-decisions",
    )
    create_topics(
        bootstrap,
        [
            topics.predictions,
            topics.feedback,
            topics.decisions,
            topics.dead_letter(topics.predictions),
            topics.dead_letter(topics.feedback),
        ],
    )
    stream = tmp_path / "stream.jsonl"
    _incident_stream(stream)
    metrics_port, prometheus_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    _prometheus_config(config, metrics_port)
    logs = [tmp_path / "driftgate.log", tmp_path / "prometheus.log"]
    env = {
        **os.environ,
        "DRIFTGATE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTGATE_KAFKA__GROUP_ID": f"{topic_prefix}-group",
        "DRIFTGATE_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "DRIFTGATE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "DRIFTGATE_KAFKA__TOPICS__PREDICTIONS": topics.predictions,
        "DRIFTGATE_KAFKA__TOPICS__FEEDBACK": topics.feedback,
        "DRIFTGATE_KAFKA__TOPICS__DECISIONS": topics.decisions,
        "DRIFTGATE_METRICS__HOST": "127.0.0.1",
        "DRIFTGATE_METRICS__PORT": str(metrics_port),
        "DRIFTGATE_CHECKPOINT__DIR": str(tmp_path / "state"),
    }
    commands = [
        [sys.executable, "-m", "streamer.cli", "run"],
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
    ]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for command, log in zip(commands, logs):
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
                    )
                )
        api = PrometheusApi(prometheus_port)
        started = time.time()
        # Before the first event, so that the alerts see the decision counters go up.
        _wait(
            "Prometheus to scrape driftgate's decision counters",
            lambda: api.query('driftgate_decisions_total{action="fix_upstream"}'),
            60,
            logs,
        )

        produce(stream, KafkaConfig(bootstrap_servers=bootstrap, topics=topics))

        expected = {
            ("DriftgateFixUpstreamDecision", "frozen_signal", ""),
            ("DriftgateFixUpstreamDecision", "rescaled_signal", ""),
            ("DriftgateInputBroken", "frozen_signal", "balance"),
            ("DriftgateInputBroken", "rescaled_signal", "amount"),
        }
        firing = _wait(
            f"the incident's alerts to fire: {sorted(expected)}",
            lambda: (alerts := api.firing()) >= expected and alerts,
            90,
            logs,
        )
        assert not {a for a in firing if a[0] == "DriftgateRetrainDecision"}, firing

        targets, annotations = dashboard_queries()
        assert len(targets) >= 20 and annotations

        def empty_queries() -> list[str]:
            return [q for q in targets if not api.query(q)] + [
                q for q in annotations if not api.query_range(q, started)
            ]

        # Outcome figures come last: after the reference labels, once a label window closes.
        deadline = time.monotonic() + 60
        while (empty := empty_queries()) and time.monotonic() < deadline:
            time.sleep(1)
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            scraped = response.read()
        assert re.search(rb"^driftgate_feature_upstream_open\{", scraped, re.M)
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=scraped, capture_output=True, timeout=30
        )
        assert checked.returncode == 0 and not (checked.stdout + checked.stderr), (
            checked.stdout + checked.stderr
        ).decode()
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
