"""Where decisions and dead letters go: JSON Lines files or Kafka topics."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

import orjson

from detectors.decision import Decision
from streamer.cloud_events import decision_headers
from streamer.config import KafkaConfig
from streamer.engine import DeadLetter
from streamer.errors import DriftgateError

log = logging.getLogger(__name__)


def decision_json(decision: Decision) -> bytes:
    """The decision event's bytes: sorted keys, so a replay is byte-for-byte repeatable."""
    return orjson.dumps(decision.to_dict(), option=orjson.OPT_SORT_KEYS)


class DecisionSink(Protocol):
    def write(self, decisions: Sequence[Decision]) -> None: ...

    def flush(self) -> None:
        """Return only once everything written is durable; raise DriftgateError if not."""

    def close(self) -> None: ...


class DeadLetterSink(Protocol):
    def write(self, dead_letters: Sequence[DeadLetter]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonLinesDecisionSink:
    """Decisions as JSON Lines, to a file or to standard output."""

    def __init__(self, path: Path | None = None, append: bool = False) -> None:
        self._owned = path is not None
        mode = "ab" if append else "wb"
        self._out: IO[bytes] = open(path, mode) if path else sys.stdout.buffer  # noqa: SIM115

    def write(self, decisions: Sequence[Decision]) -> None:
        for decision in decisions:
            self._out.write(decision_json(decision) + b"\n")

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._owned:
            self._out.close()


class ReportingDeadLetterSink:
    """Dead letters of a replay: one line each on stderr (and optionally to a file)."""

    def __init__(
        self, path: Path | None = None, stream: IO[str] | None = None, append: bool = False
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        mode = "ab" if append else "wb"
        self._file: IO[bytes] | None = open(path, mode) if path else None  # noqa: SIM115

    def write(self, dead_letters: Sequence[DeadLetter]) -> None:
        for dead in dead_letters:
            where = f"line {dead.record.offset}" if dead.record.offset >= 0 else "record"
            self._stream.write(
                f"rejected {where} ({dead.record.kind}): {dead.rejected.reason}: "
                f"{dead.rejected.detail}\n"
            )
            if self._file:
                self._file.write(
                    orjson.dumps(
                        {
                            "line": dead.record.offset,
                            "topic": dead.record.kind,
                            "reason": dead.rejected.reason,
                            "detail": dead.rejected.detail,
                            "value": dead.record.value.decode("utf-8", "replace"),
                        }
                    )
                    + b"\n"
                )

    def flush(self) -> None:
        self._stream.flush()
        if self._file:
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file:
            self._file.close()


class KafkaSinks:
    """One producer for the decisions topic and the dead-letter topics."""

    def __init__(self, config: KafkaConfig, flush_timeout_s: float = 30.0) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.config = config
        self.flush_timeout_s = flush_timeout_s
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=config.bootstrap_servers.split(","),
                client_id=f"{config.client_id}-producer",
                acks="all",
                linger_ms=5,
                request_timeout_ms=config.request_timeout_ms,
                reconnect_backoff_max_ms=config.reconnect_backoff_max_ms,
                max_request_size=max(1_048_576, config.max_partition_fetch_bytes),
            )
        except KafkaError as exc:
            raise DriftgateError(
                f"cannot reach Kafka at {config.bootstrap_servers}: {exc}", retriable=True
            ) from exc
        self.decisions = _KafkaDecisions(self)
        self.dead_letters = _KafkaDeadLetters(self)

    def send(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        from kafka.errors import KafkaError

        try:
            self._producer.send(topic, value=value, key=key, headers=headers or None)
        except KafkaError as exc:
            raise DriftgateError(f"cannot send to {topic}: {exc}", retriable=True) from exc

    def flush(self) -> None:
        from kafka.errors import KafkaError

        started = time.monotonic()
        try:
            self._producer.flush(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            raise DriftgateError(f"producer flush failed: {exc}", retriable=True) from exc
        log.debug("producer flushed in %.3fs", time.monotonic() - started)

    def close(self) -> None:
        self._producer.close(timeout=self.flush_timeout_s)


class _KafkaDecisions:
    def __init__(self, sinks: KafkaSinks) -> None:
        self._sinks = sinks

    def write(self, decisions: Sequence[Decision]) -> None:
        config = self._sinks.config
        for decision in decisions:
            self._sinks.send(
                config.topics.decisions,
                decision_json(decision),
                decision.model.encode(),
                decision_headers(decision, config.group_id),
            )

    def flush(self) -> None:
        self._sinks.flush()

    def close(self) -> None:
        self._sinks.flush()


class _KafkaDeadLetters:
    def __init__(self, sinks: KafkaSinks) -> None:
        self._sinks = sinks

    def write(self, dead_letters: Sequence[DeadLetter]) -> None:
        topics = self._sinks.config.topics
        for dead in dead_letters:
            record = dead.record
            headers = [
                ("driftgate.reason", dead.rejected.reason.encode()),
                ("driftgate.detail", dead.rejected.detail.encode()),
                ("driftgate.source.topic", record.topic.encode()),
                ("driftgate.source.partition", str(record.partition).encode()),
                ("driftgate.source.offset", str(record.offset).encode()),
            ]
            self._sinks.send(
                topics.dead_letter(record.topic), record.value or b"", record.key, headers
            )

    def flush(self) -> None:
        self._sinks.flush()

    def close(self) -> None:
        self._sinks.flush()
