"""One order per incident on the simulated streams that used to give several: a concept
drift confined to one cohort, and a gradual shift that crosses the threshold in one scope
before another."""

from __future__ import annotations

import pytest

from evaluation.simulate import SCENARIOS, generate, write_replay
from tests.support import replay_service

pytestmark = pytest.mark.slow

EVENTS = 200_000


@pytest.mark.parametrize(("scenario", "seed"), [("cohort_concept", 0), ("gradual_drift", 1)])
def test_an_incident_gets_exactly_one_order(tmp_path, scenario, seed):
    spec, (incident,) = SCENARIOS[scenario](EVENTS)
    records = generate(spec, EVENTS, seed=seed, incidents=[incident])
    write_replay(tmp_path / "stream.jsonl", records)
    _, decisions = replay_service(tmp_path / "stream.jsonl", tmp_path / "decisions.jsonl")
    orders = [d for d in decisions if d.phase == "opened" and d.action != "hold"]
    assert [(d.action, d.cause) for d in orders] == [
        (incident.expected_action, incident.expected_cause)
    ]
    (order,) = orders
    # every follow-up (another scope, a resolution) shares the order's incident
    assert {d.incident_id for d in decisions} == {order.incident_id}
    assert [d.phase for d in decisions].count("opened") == 1
    assert [d.phase for d in decisions].count("resolved") <= 1
