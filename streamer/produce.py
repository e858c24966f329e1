"""``driftgate produce``: send a replay file's records to Kafka, as the model's producers do.

Any replay file works (the format ``driftgate replay`` reads); ``/dev/stdin`` reads a
pipe, which is how the traffic generator of ``deploy/docker-compose.yml`` streams
``driftgate simulate`` into an external broker without writing the stream to disk.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streamer.config import KafkaConfig
from streamer.engine import FEEDBACK, PREDICTIONS
from streamer.errors import DriftgateError
from streamer.sources import ReplaySource

# Sleep only once the schedule is this far ahead: one wait per record would cost more
# than the records themselves at thousands of events a second.
PACING_SLACK_S = 0.05
# Labels usually come within a few hundred thousand predictions of theirs in a replay
# file; one arriving later is sent unkeyed.
KEYED_LABELS = 1_000_000


@dataclass
class Produced:
    sent: Counter[str] = field(default_factory=Counter)  # records per Kafka topic
    skipped: list[int] = field(default_factory=list)  # line numbers that are not records


def produce(
    path: Path | str,
    config: KafkaConfig,
    *,
    rate: float | None = None,
    stop: threading.Event | None = None,
) -> Produced:
    """Send every record of a replay file to its topic, in file order.

    Predictions are keyed by model, so that one model's predictions stay in order on one
    partition, and a label by the model of its prediction (remembered for the last
    ``KEYED_LABELS`` predictions), so that it lands in the same partition number, where
    the instance keeping that model's state reads it. ``rate`` paces the predictions (per
    second, feedback going along in file order). A ``value`` given as a string is sent as
    those exact bytes, malformed or not. Lines that are not replay records are skipped
    and reported.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    if rate is not None and rate <= 0:
        raise DriftgateError(f"the rate must be a positive number of events per second: {rate}")
    stop = stop or threading.Event()
    topics = {PREDICTIONS: config.topics.predictions, FEEDBACK: config.topics.feedback}
    source = ReplaySource(path, batch_events=1_000)
    try:
        producer = KafkaProducer(
            bootstrap_servers=config.bootstrap_servers.split(","),
            client_id=f"{config.client_id}-produce",
            linger_ms=20,
            batch_size=256 * 1024,
        )
    except KafkaError as exc:
        source.close()
        raise DriftgateError(f"cannot reach Kafka at {config.bootstrap_servers}: {exc}") from exc
    produced = Produced()
    models: dict[str, bytes] = {}  # event id -> key of its prediction, oldest first
    failures: list[BaseException] = []
    predictions = 0
    started = time.monotonic()
    try:
        while not stop.is_set() and (records := source.poll()) is not None:
            for record in records:
                topic = topics.get(record.kind)
                if topic is None:
                    produced.skipped.append(record.offset)
                    continue
                value = record.value if record.parsed is None else orjson.dumps(record.parsed)
                parsed = record.parsed if isinstance(record.parsed, dict) else {}
                event_id = parsed.get("event_id")
                if record.kind == PREDICTIONS:
                    predictions += 1
                    model = parsed.get("model")
                    key = model.encode() if isinstance(model, str) else None
                    if key is not None and isinstance(event_id, str):
                        models[event_id] = key
                        if len(models) > KEYED_LABELS:
                            del models[next(iter(models))]
                else:
                    key = models.get(event_id) if isinstance(event_id, str) else None
                producer.send(topic, value, key=key).add_errback(failures.append)
                produced.sent[topic] += 1
                if rate is not None:
                    ahead = predictions / rate - (time.monotonic() - started)
                    if ahead > PACING_SLACK_S and stop.wait(ahead):
                        break
        producer.flush()
    finally:
        producer.close()
        source.close()
    if failures:
        raise DriftgateError(
            f"{len(failures)} of {sum(produced.sent.values())} records were not delivered to "
            f"{config.bootstrap_servers}; the first error: {failures[0]}"
        )
    return produced
