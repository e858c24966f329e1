"""Wiring: the engine, a source and sinks, the metrics server, for each command."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from detectors.decision import Decision
from streamer.backfill import EXIT_TIMEOUT_S, Finish, Left, committed_behind
from streamer.broker import create_topics
from streamer.checkpoint import Checkpoints
from streamer.config import KafkaConfig, Settings
from streamer.engine import CHUNKS, Engine
from streamer.errors import DriftgateError
from streamer.event_order import Position
from streamer.forwarder import Forwarder
from streamer.group_progress import KafkaGroupProgress
from streamer.http import MetricsServer
from streamer.incidents import IncidentStore
from streamer.metrics import EngineCollector
from streamer.reference import load_references
from streamer.retry import Backoff
from streamer.service import Service
from streamer.sinks import JsonLinesDecisionSink, KafkaSinks, ReportingDeadLetterSink
from streamer.sources import KafkaSource, ReplaySource

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
) -> Engine:
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
    if checkpoints is not None:
        engine = checkpoints.restore(engine) or engine
    # Replay offsets are line numbers (from 1), shared by both topics of the file: the
    # next offset after line N is N + 1.
    resume_line = max(engine.positions.values(), default=1) - 1
    source = ReplaySource(path, batch_events=settings.kafka.max_poll_records)
    if resume_line:
        log.info("resuming %s after line %d", path, resume_line)
        source.skip(resume_line)
    sink = JsonLinesDecisionSink(decisions_out, append=bool(resume_line))
    dead = ReportingDeadLetterSink(dead_letters_out, append=bool(resume_line))
    service = Service(engine, source, sink, dead, checkpoints=checkpoints)
    service.has_state = True
    try:
        service.run(threading.Event())
    finally:
        source.close()
        sink.close()
        dead.close()
    return service.engine


def connect(settings: Settings, stop: threading.Event) -> Connections | None:
    """Connect to Kafka, retrying with backoff while the broker is unreachable."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            return Connections.open(settings.kafka)
        except DriftgateError as exc:
            if not exc.retriable:
                raise
            backoff.wait(stop, str(exc))
    return None


@dataclass(frozen=True)
class Connections:
    """A member's Kafka clients: its ingest (input topics, in the group), its judge
    (the internal topic, in ``<group>.judge``) and a producer for each."""

    inputs: KafkaSource
    ingest_sinks: KafkaSinks
    judge: KafkaSource
    sinks: KafkaSinks
    progress: KafkaGroupProgress
    internal_topic: str
    expected: frozenset[Position]

    @staticmethod
    def open(kafka: KafkaConfig) -> Connections:
        internal = internal_topic(kafka)
        progress_topic = kafka.progress_topic or f"{kafka.group_id}.progress"
        try:
            # One partition: one member judges; decoding scales with the input partitions.
            create_topics(kafka.bootstrap_servers, [internal, progress_topic], partitions=1)
        except Exception as exc:  # kafka-python raises several unrelated types here
            raise DriftgateError(
                f"cannot create the internal topics {internal}, {progress_topic}: {exc}",
                retriable=True,
            ) from exc
        opened: list[KafkaSource | KafkaSinks | KafkaGroupProgress] = []
        try:
            inputs = KafkaSource(kafka)
            opened.append(inputs)
            topics = (kafka.topics.predictions, kafka.topics.feedback)
            expected = frozenset((t, p) for t in topics for p in inputs.partitions_of(t))
            ingest_sinks = KafkaSinks(kafka)
            opened.append(ingest_sinks)
            judge = KafkaSource(kafka, {internal: CHUNKS}, judge_group(kafka))
            opened.append(judge)
            progress = KafkaGroupProgress(
                kafka,
                progress_topic,
                lambda topic, said: ingest_sinks.send(topic, said, None, []),
                expected,
            )
            opened.append(progress)
            sinks = KafkaSinks(kafka)
        except DriftgateError:
            for client in opened:
                client.close()
            raise
        return Connections(inputs, ingest_sinks, judge, sinks, progress, internal, expected)

    def close(self) -> None:
        for client in (self.inputs, self.ingest_sinks, self.judge, self.progress, self.sinks):
            client.close()


def internal_topic(kafka: KafkaConfig) -> str:
    return kafka.internal_topic or f"{kafka.group_id}.events"


def judge_group(kafka: KafkaConfig) -> str:
    return f"{kafka.group_id}.judge"


def group_left(
    kafka: KafkaConfig, connections: Connections, service: Service
) -> dict[Position, Left]:
    """What the group has not finished: the input partitions not committed to their end,
    and the internal topic not judged to its end: read to it by this member, its merge
    empty, when this member judges (it commits at its final checkpoint); else committed
    to it by the judge group."""
    left = committed_behind(
        kafka, kafka.group_id, (kafka.topics.predictions, kafka.topics.feedback)
    )
    internal = (connections.internal_topic, 0)
    # The judge group's offset, and the end as a fetch made now sees it: this member's
    # ingest may have sent its idle chunks since the judge's last fetch (the backfill
    # test found an exit on such a stale end, with three chunks left unjudged).
    judged = committed_behind(kafka, judge_group(kafka), [connections.internal_topic])
    if internal in connections.judge.assignment:
        position, _ = connections.judge.progress().get(internal, (0, None))
        end = judged[internal].end if internal in judged else position
        if not left and end is not None and position >= end:
            # Every input is read and committed to its end, and all of it is here: what
            # the merge holds back (the last seconds behind idle partitions) is final.
            service.judge_held()
        with service.lock:
            held = service.engine.order.buffered
        if end is None or position < end or held:
            left[internal] = Left(position, end, held)
    else:
        left.update(judged)
    return left


def run(
    settings: Settings,
    stop: threading.Event,
    *,
    exit_when_idle_s: float | None = None,
    exit_timeout_s: float = EXIT_TIMEOUT_S,
    on_decisions: Callable[[Sequence[Decision]], None] | None = None,
    on_metrics_port: Callable[[int], None] | None = None,
) -> Engine:
    """The long-running service: Kafka in, decisions and dead letters out, /metrics.

    With ``exit_when_idle_s``, it returns once its input was idle that long and its group
    finished every partition (``streamer.backfill``), or raises after ``exit_timeout_s``
    without progress by the group.

    Two loops share the engine: the ingest (``Forwarder``, a thread) decodes this
    member's input partitions and forwards them to the internal topic; the judge (the
    ``Service``, this thread) runs the monitors on the internal topic when this member
    owns it, so that every model is judged once whatever the partitioning.
    """
    engine = new_engine(settings)
    kafka = settings.kafka
    checkpoints = None
    if settings.checkpoint.dir is not None or settings.checkpoint.topic is not None:
        # The group and the topic are in the name: deployments may share a volume.
        name = f"{kafka.group_id}.{kafka.topics.predictions}"
        checkpoints = Checkpoints(settings.checkpoint, name, kafka=kafka)
    state: dict[str, object] = {}
    registry = CollectorRegistry()

    def judging() -> bool:
        connections = state.get("connections")
        return isinstance(connections, Connections) and bool(connections.judge.assignment)

    def readiness() -> dict[str, bool]:
        connections = state.get("connections")
        service = state.get("service")
        assigned = isinstance(connections, Connections) and bool(connections.inputs.assignment)
        reachable = (
            isinstance(service, Service)
            and isinstance(connections, Connections)
            and service.healthy_io
            and connections.inputs.reachable()
        )
        # The service's engine: a checkpoint may have replaced the one it started with.
        monitors = service.engine.monitors if isinstance(service, Service) else {}
        # A member that does not judge has no monitors: its readiness is its ingest's.
        warm = not judging() or (bool(monitors) and all(m.warm for m in monitors.values()))
        return {
            "partitions_assigned": assigned,
            "broker_reachable": reachable,
            "reference_warm": warm,
        }

    incidents = IncidentStore(settings.metrics.incidents_kept)
    server = MetricsServer(
        registry,
        readiness,
        settings.metrics.host,
        settings.metrics.port,
        incidents,
        judging=judging,
    ).start()
    if on_metrics_port:
        on_metrics_port(server.port)
    log.info("metrics on http://%s:%d/metrics", settings.metrics.host, server.port)
    try:
        connections = connect(settings, stop)
        if connections is None:
            return engine

        def published(decisions: Sequence[Decision]) -> None:
            # On the judge's thread, which alone updates the monitors read here.
            incidents.record(decisions, service.engine.monitors)
            if on_decisions:
                on_decisions(decisions)

        service = Service(
            engine,
            connections.judge,
            connections.sinks.decisions,
            connections.sinks.dead_letters,
            on_decisions=published,
            checkpoints=checkpoints,
        )
        service.expected_sources = connections.expected
        engine.order.expect(connections.expected)
        connections.judge.handler = service
        forwarder = Forwarder(
            connections.inputs,
            connections.ingest_sinks,
            connections.internal_topic,
            service,
            kafka.idle_ms,
            progress=connections.progress,
            # Half the merge's bound over the partitions: what the judge holds while the
            # group's least advanced partition catches up, with room for the polls in
            # flight.
            lead_events=max(
                1, settings.limits.max_buffered_events // (2 * max(1, len(connections.expected)))
            ),
        )
        connections.inputs.handler = forwarder
        service.caught_up = lambda: forwarder.caught_up
        service.input_lag = lambda: dict(forwarder.lag)
        state.update(connections=connections, service=service)
        registry.register(EngineCollector(service))
        ingest = threading.Thread(target=forwarder.run, args=(stop,), name="ingest", daemon=True)

        def stop_ingest() -> None:
            stop.set()
            ingest.join()
            if forwarder.failure is not None:
                raise forwarder.failure

        service.before_final_checkpoint = stop_ingest
        ingest.start()
        try:
            finish = Finish(lambda: group_left(kafka, connections, service), exit_timeout_s)
            service.run(stop, exit_when_idle_s=exit_when_idle_s, finish=finish)
        finally:
            stop_ingest()
            connections.close()
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
