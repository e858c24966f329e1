"""The soak of benchmarks/soak.py, shortened: 90 s of paced traffic through the real
broker with a broker outage, a second instance joining and leaving, and 1% malformed
messages, ends in the state and decisions of a straight run (the RSS bound is the full
run's only: 90 s is too short for it)."""

from __future__ import annotations

import pytest

from benchmarks.soak import SoakPlan, run_soak

pytestmark = pytest.mark.slow

PLAN = SoakPlan(
    duration_s=90.0,
    rate=1000.0,
    outage_s=6.0,
    # full after 20 s, before B joins: the state that moves between the members holds a
    # full join store, evictions and tombstones included
    join_max_entries=20_000,
    checkpoint_events=20_000,
    sample_s=2.0,
)


def test_a_soak_with_an_outage_a_rebalance_and_malformed_messages(tmp_path):
    figures = run_soak(PLAN, tmp_path)
    produced = figures["produced"]
    assert produced["predictions"] == PLAN.predictions
    assert produced["malformed"] == PLAN.predictions // (PLAN.malformed_every - 1)
    assert figures["connections_dropped"] > 0, "the outage dropped no connection"
    assert set(figures["events"]) == {"b_joined_s", "outage_s", "b_left_s"}
    # nothing lost or counted twice: the straight run's events and windows
    assert figures["straight_events"] == produced["predictions"]
    soak, straight = figures["events_and_windows_equal"]
    assert soak == straight
    # and its whole state, event for event, unless the live merge judged events late:
    # their order then depended on timing (1,435 late in one CI run of 2026-12-06, after
    # the outage and the rebalance; docs/operations.md, Soak), which shifts windows
    assert figures["states_equal"] or figures["late_events"] > 0, figures["first_difference"]
    assert figures["decision_ids"] > 0, "the shift gave no decision"
    assert figures["decision_ids_equal"], (
        figures["decisions_only_soak"],
        figures["decisions_only_straight"],
    )
    # every malformed message dead-lettered and nothing else (again after a rebalance)
    assert figures["dead_letters_are_the_malformed"]
    assert figures["malformed_in_topic"] >= produced["malformed"]  # a retry may write twice
    assert figures["dead_letters_distinct"] == figures["malformed_in_topic"]
    assert figures["rss"]["fill_s"] is not None, "the join store never filled"
