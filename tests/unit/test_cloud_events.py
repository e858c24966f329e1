"""Decision messages are CloudEvents in the Kafka binding's binary mode, checked by the
CloudEvents SDK itself, and their value is still the decision's JSON, byte for byte."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from streamer.cloud_events import decision_headers
from streamer.config import KafkaConfig
from streamer.sinks import _KafkaDecisions, decision_json
from tests.support import parse_decision_message, sample_decision


class _RecordingSinks:
    """What _KafkaDecisions needs of KafkaSinks: its config, and send() recorded."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []

    def send(self, topic, value, key, headers) -> None:
        self.sent.append((topic, value, key, headers))

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("action", ["retrain", "rollback", "fix_upstream", "investigate", "hold"])
def test_the_sdk_reads_every_attribute_back(action):
    decision = sample_decision(action=action)
    body = decision_json(decision)
    event = parse_decision_message(
        decision_headers(decision, "prod-eu"), decision.model.encode(), body
    )
    assert event.get_specversion() == "1.0"
    assert event.get_id() == decision.decision_id
    assert event.get_source() == "/driftgate/prod-eu"
    assert event.get_type() == f"io.driftgate.decision.{action}"
    assert event.get_time() == datetime(2025, 11, 21, 8, 35, 23, 577000, tzinfo=timezone.utc)
    assert event.get_subject() == "fraud/v1/feature=amount/cohort=channel:web,region:eu"
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("partitionkey") == "fraud"
    assert event.get_data() == orjson.loads(body)


def test_subject_and_source_keep_separators_inside_names_apart():
    decision = sample_decision(
        model="risk/eu", model_version=None, feature="a=b", cohort={"seg": "x:y,z"}
    )
    event = parse_decision_message(
        decision_headers(decision, "team a/prod"), b"risk/eu", decision_json(decision)
    )
    assert event.get_subject() == "risk%2Feu/feature=a%3Db/cohort=seg:x%3Ay%2Cz"
    assert event.get_source() == "/driftgate/team%20a%2Fprod"


def test_a_model_wide_decision_has_only_the_model_and_version_as_subject():
    decision = sample_decision(feature=None, cohort=None, action="rollback")
    event = parse_decision_message(decision_headers(decision, "g"), None, decision_json(decision))
    assert event.get_subject() == "fraud/v1"


def test_event_time_is_utc_whatever_the_local_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        headers = dict(decision_headers(sample_decision(ts=0.0), "g"))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert headers["ce_time"] == b"1970-01-01T00:00:00.000Z"


def test_the_kafka_sink_sends_the_same_body_and_key_with_the_headers():
    sinks = _RecordingSinks(KafkaConfig(group_id="prod-eu"))
    decisions = [sample_decision(), sample_decision(action="hold", feature=None)]
    _KafkaDecisions(sinks).write(decisions)  # type: ignore[arg-type]
    assert [(t, v, k) for t, v, k, _ in sinks.sent] == [
        (sinks.config.topics.decisions, decision_json(d), b"fraud") for d in decisions
    ]
    for (_, value, key, headers), decision in zip(sinks.sent, decisions, strict=True):
        assert headers == decision_headers(decision, "prod-eu")
        event = parse_decision_message(headers, key, value)
        assert (event.get_id(), event.get_type()) == (
            decision.decision_id,
            f"io.driftgate.decision.{decision.action}",
        )
