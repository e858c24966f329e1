"""What ``driftgate demo`` streams into its broker: a synthetic fraud model with two shifts
to find, in ``amount`` for all traffic and in ``session_seconds`` for one region, and now
and then a malformed prediction, so that the dead-letter path has something to show.

The sending, pacing and printing are the demo's own (``streamer/demo.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import orjson

from evaluation.simulate import SCENARIOS, Incident, TrafficSpec, generate

SHIFT_AT_EVENT = 60_000
MALFORMED_EVERY = 20_000
# Cut off mid-object: a message that is not JSON at all.
MALFORMED_PREDICTION = b'{"event_id": "broken", "ts": '
DESCRIPTION = (
    "a shift in 'amount' (all traffic) and in 'session_seconds' (one region) "
    f"after {SHIFT_AT_EVENT} events"
)
# More than a demo sends: over half an hour at the default 5,000 predictions/s.
_EVENTS = 10_000_000
_SEED = 7


def scenario(rate: float, start_ts: float) -> tuple[TrafficSpec, list[Incident]]:
    """The spec (``rate`` predictions/s from ``start_ts`` on) and the two incidents.

    >>> spec, incidents = scenario(5_000.0, 0.0)
    >>> spec.events_per_second, [(i.feature, i.cohort, i.start_event) for i in incidents]
    (5000.0, [('amount', None, 60000), ('session_seconds', {'region': 'eu'}, 60000)])
    """
    # Two scenarios' incidents in one stream: each starts half-way through its length.
    _, population = SCENARIOS["covariate_shift"](2 * SHIFT_AT_EVENT)
    spec, cohort = SCENARIOS["cohort_covariate_shift"](2 * SHIFT_AT_EVENT)
    spec = dataclasses.replace(spec, start_ts=start_ts, events_per_second=rate)
    return spec, [*population, *cohort]


def messages(rate: float, start_ts: float) -> Iterator[tuple[str, bytes]]:
    """(topic, message value) in the order the demo sends them: the stream's records, and a
    malformed prediction before every ``MALFORMED_EVERY``-th one.

    >>> import itertools
    >>> sent = list(itertools.islice(messages(5_000.0, 0.0), 20_001))
    >>> [i for i, (_, value) in enumerate(sent) if value == MALFORMED_PREDICTION]
    [19999]
    >>> sent[20_000][0], orjson.loads(sent[20_000][1])["event_id"]
    ('predictions', 'p-19999')
    """
    spec, incidents = scenario(rate, start_ts)
    predictions = 0
    for record in generate(spec, _EVENTS, seed=_SEED, incidents=incidents):
        if record["topic"] == "predictions":
            predictions += 1
            if predictions % MALFORMED_EVERY == 0:
                yield "predictions", MALFORMED_PREDICTION
        yield record["topic"], orjson.dumps(record["value"])
