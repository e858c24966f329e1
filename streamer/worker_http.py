"""The workers' parent's metrics port: what its workers serve, as one.

``/metrics`` is the union of the workers' series, each with a ``worker`` label, read from
them at scrape time (so a scrape of the parent costs one scrape of each worker);
``/readyz`` is ready when every worker answers, the broker is reachable and the references
are warm for all of them, and at least one has partitions (a worker left without any, when
the topics have fewer partitions than the group has members, waits as a standby);
``/incidents`` are the pages of the worker that judges, where the decisions are made, with
their headers' content type (so the page policy of ``streamer.http`` applies to them too).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from streamer.http import TEXT, Response

# (worker index, its metrics port) of the workers that announced their port.
WorkerPorts = Callable[[], Sequence[tuple[int, int]]]

SCRAPE_TIMEOUT_S = 5.0


def fetch(port: int, target: str) -> Response | None:
    """A worker's answer to ``GET target``, or None when it does not answer."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{target}", timeout=SCRAPE_TIMEOUT_S
        ) as answer:
            return answer.status, answer.read(), answer.headers.get("Content-Type", TEXT)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), error.headers.get("Content-Type", TEXT)
    except OSError:
        return None


class WorkersCollector(Collector):
    """The workers' series with a ``worker`` label, and ``driftgate_worker_up``."""

    def __init__(self, ports: WorkerPorts) -> None:
        self.ports = ports

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "driftgate_worker_up",
            "1 when the worker process answered this scrape, by worker.",
            labels=["worker"],
        )
        families: dict[str, Metric] = {}
        for index, port in self.ports():
            answer = fetch(port, "/metrics")
            answered = answer is not None and answer[0] == 200
            up.add_metric([str(index)], 1.0 if answered else 0.0)
            if answer is None or not answered:
                continue
            for family in text_string_to_metric_families(answer[1].decode()):
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                merged.samples.extend(
                    Sample(s.name, {**s.labels, "worker": str(index)}, s.value, s.timestamp)
                    for s in family.samples
                )
        yield up
        yield from families.values()


def workers_readiness(ports: WorkerPorts, count: int) -> dict[str, bool]:
    """The parent's readiness checks, from its workers' ``/readyz``."""
    reports = [_json(port, "/readyz") for _, port in ports()]
    checks = [report.get("checks", {}) for report in reports if report is not None]
    answered = len(checks) == count
    return {
        "workers_answering": answered,
        "partitions_assigned": any(c.get("partitions_assigned") for c in checks),
        "broker_reachable": answered and all(c.get("broker_reachable") for c in checks),
        "reference_warm": answered and all(c.get("reference_warm") for c in checks),
    }


def judging_worker_pages(ports: WorkerPorts) -> Callable[[str], Response]:
    """``/incidents...`` as the worker that judges serves it (the first worker's while
    none does, e.g. during a rebalance)."""

    def pages(target: str) -> Response:
        known = list(ports())
        judging = [port for _, port in known if (_json(port, "/readyz") or {}).get("judging")]
        for port in judging + [port for _, port in known]:
            answer = fetch(port, target)
            if answer is not None:
                return answer
        return 503, b"no worker answers\n", TEXT

    return pages


def _json(port: int, target: str) -> dict[str, Any] | None:
    answer = fetch(port, target)
    if answer is None:
        return None
    try:
        report = json.loads(answer[1])
    except ValueError:
        return None
    return report if isinstance(report, dict) else None
