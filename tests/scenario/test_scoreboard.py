"""A reduced scoreboard (one seed, shorter streams where a scenario allows) against the
targets of the scoreboard issue, so that a regression in diagnosis fails the build."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from benchmarks.scoreboard import EVENTS, Run, run_all, scoreboard_table
from evaluation.scorecard import problems
from evaluation.scoring import Tally
from evaluation.simulate import DURATION_HOURS, SCENARIOS, events_over

pytestmark = pytest.mark.slow

SEED = 0  # the scoreboard's first seed: this is a subset of it


# Streams with a duration are cut to hours of it: two days hold the first day's sample and
# a day judged against it, four the first weekend and the Monday after it (the whole 1/s
# and weekly-shift streams); at 50/s six hours of the first day (1,080,000 predictions),
# where the cycle is not yet sampled.
REDUCED_HOURS = {
    "daily_cycle_5_per_s": 48,
    "daily_cycle_50_per_s": 6,
    "weekly_cycle": 96,
    "weekly_cycle_1_per_s": 96,
    "shift_on_daily_cycle": 48,
    "shift_on_weekly_cycle": 96,
}


def _events(scenario: str) -> int:
    """A change of an input is confirmed within a few 2,000-event windows, so half the
    scoreboard's stream leaves ample room on both sides of the onset; a change of the model
    (no feature: its outcomes, a deployment) is judged on delayed labels over whole label
    windows and keeps the full length."""
    if scenario in DURATION_HOURS:
        return events_over(scenario, REDUCED_HOURS[scenario])
    _, incidents = SCENARIOS[scenario](EVENTS)
    return EVENTS if any(i.feature is None for i in incidents) else EVENTS // 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    jobs = [(name, SEED, _events(name)) for name in SCENARIOS]
    return run_all(jobs, tmp_path_factory.mktemp("scoreboard"), workers=2, baselines=False)


def _check(runs: list[Run], ok: Callable[[Run], bool]) -> None:
    if bad := [r for r in runs if not ok(r)]:
        pytest.fail("\n".join([scoreboard_table(bad), *problems([r.score for r in bad])]))


def test_every_incident_is_found_with_its_action_and_cause(runs: list[Run]) -> None:
    with_incidents = [r for r in runs if r.score.truth.incidents]
    assert with_incidents

    def perfect(r: Run) -> bool:
        tally = Tally.of([r.score])
        return (tally.recall, tally.action_accuracy, tally.cause_accuracy) == (1.0, 1.0, 1.0)

    _check(with_incidents, perfect)


def test_no_decision_on_streams_without_incidents(runs: list[Run]) -> None:
    quiet = [r for r in runs if not r.score.truth.incidents]
    assert quiet

    def silent(r: Run) -> bool:
        return not r.score.false_decisions

    _check(quiet, silent)


def test_no_retrain_during_transient_incidents(runs: list[Run]) -> None:
    def calm(r: Run) -> bool:
        during = [d for res in r.score.results if res.incident.transient for d in res.decisions]
        return not any(d.action == "retrain" for d in during)

    _check(runs, calm)


def test_the_reduced_scoreboard_covers_every_scenario(runs: list[Run]) -> None:
    assert [r.scenario for r in runs] == list(SCENARIOS)
    table = scoreboard_table(runs, markdown=True)
    assert len(table.splitlines()) == 2 + len(SCENARIOS) + 1
