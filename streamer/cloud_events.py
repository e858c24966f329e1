"""Decisions as CloudEvents: the Kafka protocol binding's binary content mode.

Every decision on the decisions topic carries the CloudEvents 1.0 attributes as ``ce_*``
headers and ``content-type: application/json``, while its value stays the decision's JSON
(``streamer.sinks.decision_json``), byte for byte: consumers that read the body keep
working, and CloudEvents routers (Knative, Argo Events, Dapr) route by ``ce_type`` and
deduplicate by ``ce_source`` + ``ce_id`` without parsing it. The attributes are documented in
docs/event-contract.md#cloudevents.

>>> from detectors.decision import Decision
>>> decision = Decision(
...     model="fraud", model_version="v1", action="investigate", cause="covariate_drift",
...     feature="amount", cohort={"region": "eu"}, ts=1763714123.577,
...     window_start=1763714084.8, window_end=1763714123.6, window_events=233,
...     confirmed_at=1763714123.6,
... )
>>> for name, value in decision_headers(decision, "driftgate"):
...     print(name, value.decode())
ce_specversion 1.0
ce_id f481d0700978465db1737ac138850a40
ce_source /driftgate/driftgate
ce_type io.driftgate.decision.investigate
ce_time 2025-11-21T08:35:23.577Z
ce_subject fraud/v1/feature=amount/cohort=region:eu
content-type application/json
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import quote

from detectors.decision import Decision

SPEC_VERSION = "1.0"
TYPE_PREFIX = "io.driftgate.decision."
CONTENT_TYPE = "application/json"


def _segment(text: str) -> str:
    # Percent-encode everything but RFC 3986's unreserved characters, so that a '/', '=',
    # ':' or ',' inside a name can never be read as one of the subject's separators.
    return quote(text, safe="")


def event_source(group_id: str) -> str:
    """``/driftgate/<group_id>``: one deployment (consumer group) is one source, so two
    deployments judging the same model publish the same ``ce_id`` under different sources."""
    return "/driftgate/" + _segment(group_id)


def event_type(action: str) -> str:
    return TYPE_PREFIX + action


def event_time(ts: float) -> str:
    """The decision's event time, RFC 3339 in UTC to the millisecond."""
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_subject(
    model: str,
    model_version: str | None,
    feature: str | None,
    cohort: Mapping[str, str] | None,
) -> str:
    """``<model>[/<model_version>][/feature=<feature>][/cohort=<dim>:<value>,...]``.

    A part is left out when the decision has none (a decision about all features, or all
    traffic); cohort dimensions are sorted; every name and value is percent-encoded.

    >>> event_subject("fraud", "v1", None, None)
    'fraud/v1'
    >>> event_subject("risk/eu", None, "a=b", {"z": "1", "channel": "web,app"})
    'risk%2Feu/feature=a%3Db/cohort=channel:web%2Capp,z:1'
    """
    parts = [_segment(model)]
    if model_version is not None:
        parts.append(_segment(model_version))
    if feature is not None:
        parts.append("feature=" + _segment(feature))
    if cohort:
        pairs = (f"{_segment(k)}:{_segment(v)}" for k, v in sorted(cohort.items()))
        parts.append("cohort=" + ",".join(pairs))
    return "/".join(parts)


def decision_headers(decision: Decision, group_id: str) -> list[tuple[str, bytes]]:
    """The Kafka headers that make a decision message a binary-mode CloudEvent."""
    attributes = [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", decision.decision_id),
        ("ce_source", event_source(group_id)),
        ("ce_type", event_type(decision.action)),
        ("ce_time", event_time(decision.ts)),
        (
            "ce_subject",
            event_subject(
                decision.model, decision.model_version, decision.feature, decision.cohort
            ),
        ),
        ("content-type", CONTENT_TYPE),
    ]
    return [(name, value.encode()) for name, value in attributes]
