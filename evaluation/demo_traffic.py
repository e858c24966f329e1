"""What ``driftgate demo`` streams into its broker: five models, one story each, in one
stream, so that the five stories run side by side and each is decided within the demo.

Each story is a scenario of ``evaluation.simulate`` (its spec and incident, the same
generator) for its own model: an input shift (``investigate``), a frozen feed
(``fix_upstream``), a campaign that reverts (``hold``), a release that regresses
(``rollback``) and a concept change that the labels confirm (``retrain``). The incidents
start one after the other, once the references are built, so the decisions arrive in
that order. Labels come seconds after their predictions, not the scenarios' hour, or the
two stories that need them would not be decided within a demo. Now and then a malformed
prediction comes too, so that the dead-letter path has something to show.

The sending, pacing and printing are the demo's own (``streamer/demo.py``).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from evaluation.simulate import SCENARIOS, Incident, TrafficSpec, generate

MALFORMED_EVERY = 20_000
# Cut off mid-object: a message that is not JSON at all.
MALFORMED_PREDICTION = b'{"event_id": "broken", "ts": '
# A model's first 10,000 predictions are its reference (MonitorConfig.reference_events) and
# its first 5,000 labels, half of them labelled, its outcome reference: the first incident
# starts soon after, the others follow at this many predictions of each model apart.
FIRST_INCIDENT_AT = 12_000
INCIDENT_EVERY = 4_000
# Mean seconds from a prediction to its label (the scenarios' hour would outlast the demo).
LABEL_DELAY_S = 1.0
# More than a demo sends: over an hour at the default rate.
_EVENTS = 10_000_000
_SEED = 7

Record = dict[str, Any]


@dataclass(frozen=True)
class Story:
    """One model's part of the demo: the scenario it plays and what driftgate should do.

    ``alert`` names the incident as a retrain-on-every-alert policy would have met it, and
    ``cost`` what retraining on it would have done.
    """

    model: str
    scenario: str
    action: str
    title: str
    alert: str
    cost: str


STORIES: tuple[Story, ...] = (
    Story(
        "checkout", "covariate_shift", "investigate", "an input shift",
        "the input shift", "with no label saying the model got worse",
    ),
    Story(
        "payments", "frozen", "fix_upstream", "a frozen feed",
        "the dead feed", "learning the breakage",
    ),
    Story(
        "promotions", "campaign", "hold", "a campaign that reverts",
        "the campaign", "learning a weekend as the new normal",
    ),
    Story(
        "scoring", "deployment_regression", "rollback", "a release that regresses",
        "the bad release", "hiding it",
    ),
    Story(
        "chargebacks", "concept", "retrain", "a concept change confirmed by labels",
        "the concept change", "the one retrain the labels asked for",
    ),
)  # fmt: skip
STORY_OF_MODEL = {story.model: story for story in STORIES}
DESCRIPTION = "five models, one story each: " + ", ".join(story.title for story in STORIES)


def story_traffic(
    story: Story, position: int, rate: float, start_ts: float
) -> tuple[TrafficSpec, list[Incident]]:
    """The spec of a story's model (``rate`` predictions/s from ``start_ts`` on) and its
    incident, which starts ``position`` incidents after the first.

    >>> spec, (incident,) = story_traffic(STORIES[4], 4, 1_000.0, 0.0)
    >>> spec.model, spec.events_per_second, spec.label_delay_seconds, spec.label_fraction
    ('chargebacks', 1000.0, 1.0, 0.5)
    >>> incident.kind, incident.start_event, incident.expected_action
    ('concept', 28000, 'retrain')
    """
    start = FIRST_INCIDENT_AT + position * INCIDENT_EVERY
    # The scenarios start their incidents half-way through the stream's length.
    spec, incidents = SCENARIOS[story.scenario](2 * start)
    spec = dataclasses.replace(
        spec,
        model=story.model,
        start_ts=start_ts,
        events_per_second=rate,
        label_delay_seconds=min(spec.label_delay_seconds, LABEL_DELAY_S),
    )
    return spec, incidents


def _own_event_ids(model: str, records: Iterator[Record]) -> Iterator[Record]:
    # Every stream numbers its events from p-0, and a label finds its prediction by id.
    for record in records:
        record["value"]["event_id"] = f"{model}-{record['value']['event_id']}"
        yield record


def messages(rate: float, start_ts: float) -> Iterator[tuple[str, bytes]]:
    """(topic, message value) in the order the demo sends them: the stories' records merged
    by event time (``rate`` predictions/s in all, shared equally), and a malformed
    prediction before every ``MALFORMED_EVERY``-th one.

    >>> import itertools
    >>> sent = list(itertools.islice(messages(5_000.0, 0.0), 30_000))
    >>> broken = [i for i, (_, value) in enumerate(sent) if value == MALFORMED_PREDICTION]
    >>> len(broken), sum(topic == "predictions" for topic, _ in sent[: broken[0]])
    (1, 19999)
    >>> first = [orjson.loads(value) for topic, value in sent[:5_000] if topic == "predictions"]
    >>> sorted({prediction["model"] for prediction in first})
    ['chargebacks', 'checkout', 'payments', 'promotions', 'scoring']
    >>> len({prediction["event_id"] for prediction in first}) == len(first)
    True
    """
    streams = []
    for position, story in enumerate(STORIES):
        spec, incidents = story_traffic(story, position, rate / len(STORIES), start_ts)
        records = generate(spec, _EVENTS, seed=_SEED + position, incidents=incidents)
        streams.append(_own_event_ids(story.model, records))
    predictions = 0
    for record in heapq.merge(*streams, key=lambda record: record["value"]["ts"]):
        if record["topic"] == "predictions":
            predictions += 1
            if predictions % MALFORMED_EVERY == 0:
                yield "predictions", MALFORMED_PREDICTION
        yield record["topic"], orjson.dumps(record["value"])
