"""The replay file (JSON Lines of records) and the truth file written beside it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from evaluation.simulate.checks import fail
from evaluation.simulate.spec import Incident, TrafficSpec


def write_replay(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> int:
    """Write records as JSON Lines; returns the count so callers need not re-read the file."""
    count = 0
    with open(path, "wb", buffering=1 << 20) as fh:
        for record in records:
            fh.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    return count


def write_truth(
    path: str | os.PathLike[str],
    spec: TrafficSpec,
    incidents: Sequence[Incident],
    n_events: int,
    *,
    scenario: str = "custom",
    seed: int | None = None,
    event_ts: Sequence[float] | None = None,
) -> None:
    """Write the ground truth next to a replay so a benchmark can score it on its own.

    ``event_ts`` (the ``ts`` of every prediction written, by event index) gives each
    incident its start and end times too, and adds ``event_times``: ``[index, ts]`` of every
    1,000th event and of the last, so that a scorer can place a decision, which carries an
    event time, on the event axis (the rate of a stream need not be constant).
    """
    truth: dict[str, Any] = {
        "scenario": scenario,
        "events": n_events,
        "seed": seed,
        "spec": spec.to_dict(),
        "incidents": [incident.to_dict(event_ts) for incident in incidents],
    }
    if event_ts is not None:
        if len(event_ts) != n_events:
            raise fail("event_ts", f"{n_events} event times", len(event_ts))
        marks = sorted({*range(0, n_events, 1_000), n_events - 1}) if n_events else []
        truth["event_times"] = [[i, event_ts[i]] for i in marks]
    with open(path, "wb") as fh:
        fh.write(orjson.dumps(truth, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
