"""Wiring: the engine, a source and sinks, the metrics server, for each command."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from detectors.decision import Decision
from streamer.checkpoint import Checkpoints
from streamer.config import Settings
from streamer.engine import Engine
from streamer.errors import DriftgateError
from streamer.http import MetricsServer
from streamer.metrics import EngineCollector
from streamer.reference import load_references
from streamer.service import Service
from streamer.shards import ShardedEngine
from streamer.sinks import JsonLinesDecisionSink, KafkaSinks, ReportingDeadLetterSink
from streamer.sources import REPLAY_PARTITION, KafkaSource, ReplaySource

log = logging.getLogger(__name__)


def new_engine(settings: Settings) -> Engine:
    """An engine for the settings, its models' references pinned from ``reference.file``
    when set (read once: the engines of other partitions share them, see Engine.fresh)."""
    references = None
    if settings.reference.file is not None:
        path = Path(settings.reference.file)
        references = load_references(path, settings.limits, settings.monitor.min_reference_events)
        log.info("references pinned from %s: %s", path, ", ".join(sorted(references)))
    return Engine(settings.monitor, settings.limits, settings.feedback, references)


def replay(
    settings: Settings,
    path: Path,
    decisions_out: Path | None = None,
    dead_letters_out: Path | None = None,
    checkpoint_dir: Path | None = None,
) -> ShardedEngine:
    """Feed a replay file through the engine; decisions to a file or stdout.

    With ``checkpoint_dir``, the state is checkpointed as in ``run`` and a replay that
    was stopped or killed resumes after the last line its checkpoint reflects (decision
    and dead-letter files are appended to): the same decisions with the same ids.
    """
    engine = new_engine(settings)
    checkpoints = None
    if checkpoint_dir is not None:
        config = settings.checkpoint.model_copy(update={"dir": str(checkpoint_dir), "topic": None})
        checkpoints = Checkpoints(config, f"replay.{path.name}")
    sharded = ShardedEngine(engine)
    # Replay offsets are line numbers (from 1), shared by both topics of the file: the
    # next offset after line N is N + 1.
    resume_line = max(sharded.restore([REPLAY_PARTITION], checkpoints).values(), default=1) - 1
    source = ReplaySource(path, batch_events=settings.kafka.max_poll_records)
    if resume_line:
        log.info("resuming %s after line %d", path, resume_line)
        source.skip(resume_line)
    sink = JsonLinesDecisionSink(decisions_out, append=bool(resume_line))
    dead = ReportingDeadLetterSink(dead_letters_out, append=bool(resume_line))
    service = Service(sharded, source, sink, dead, checkpoints=checkpoints)
    try:
        service.run(threading.Event())
    finally:
        source.close()
        sink.close()
        dead.close()
    return service.engine


def connect(settings: Settings, stop: threading.Event) -> tuple[KafkaSource, KafkaSinks] | None:
    """Connect to Kafka, retrying with backoff while the broker is unreachable."""
    backoff = 0.5
    while not stop.is_set():
        try:
            return KafkaSource(settings.kafka), KafkaSinks(settings.kafka)
        except DriftgateError as exc:
            if not exc.retriable:
                raise
            log.warning("%s; retrying in %.1fs", exc, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
    return None


def run(
    settings: Settings,
    stop: threading.Event,
    *,
    exit_when_idle_s: float | None = None,
    on_decisions: Callable[[Sequence[Decision]], None] | None = None,
    on_metrics_port: Callable[[int], None] | None = None,
) -> ShardedEngine:
    """The long-running service: Kafka in, decisions and dead letters out, /metrics."""
    engine = new_engine(settings)
    checkpoints = None
    if settings.checkpoint.dir is not None or settings.checkpoint.topic is not None:
        kafka = settings.kafka
        # The group and the topic are in the name: deployments may share a volume.
        name = f"{kafka.group_id}.{kafka.topics.predictions}"
        checkpoints = Checkpoints(settings.checkpoint, name, kafka=kafka)
    state: dict[str, object] = {}
    registry = CollectorRegistry()

    def readiness() -> dict[str, bool]:
        source = state.get("source")
        service = state.get("service")
        assigned = isinstance(source, KafkaSource) and bool(source.assignment)
        reachable = (
            isinstance(service, Service)
            and isinstance(source, KafkaSource)
            and service.healthy_io
            and source.reachable()
        )
        # The service's engine: a checkpoint may have replaced the one it started with.
        monitors = service.engine.monitors if isinstance(service, Service) else {}
        warm = bool(monitors) and all(m.warm for m in monitors.values())
        return {
            "partitions_assigned": assigned,
            "broker_reachable": reachable,
            "reference_warm": warm,
        }

    server = MetricsServer(
        registry, readiness, settings.metrics.host, settings.metrics.port
    ).start()
    if on_metrics_port:
        on_metrics_port(server.port)
    log.info("metrics on http://%s:%d/metrics", settings.metrics.host, server.port)
    try:
        connected = connect(settings, stop)
        if connected is None:
            return ShardedEngine(engine)
        source, sinks = connected
        service = Service(
            engine,
            source,
            sinks.decisions,
            sinks.dead_letters,
            on_decisions=on_decisions,
            checkpoints=checkpoints,
        )
        source.handler = service
        state.update(source=source, service=service)
        registry.register(EngineCollector(service))
        try:
            service.run(stop, exit_when_idle_s=exit_when_idle_s)
        finally:
            sinks.close()
            source.close()
        return service.engine
    finally:
        server.stop()


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT end the loop after the current batch (and its commit)."""

    def handler(signum: int, frame: object) -> None:
        log.info("signal %d: finishing the current batch and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
