"""When an idle member of `driftgate run --exit-when-idle` exits: streamer/backfill.py's
Finish, on a fake clock (the real broker and processes: tests/e2e/test_backfill.py)."""

from __future__ import annotations

import pytest

from streamer.backfill import Finish, Left
from streamer.errors import DriftgateError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_finish_waits_for_the_group_and_gives_up_only_without_progress() -> None:
    clock = Clock()
    answers = [
        {("p", 0): Left(10, 50)},
        {("p", 0): Left(10, 50)},
        {("p", 0): Left(30, 50)},  # progress: the wait starts again
        {("p", 0): Left(30, 50)},
        {("p", 0): Left(30, 50)},
    ]
    finish = Finish(lambda: answers.pop(0), timeout_s=10.0, clock=clock, check_every_s=2.0)
    assert finish.check() is False  # t=0
    clock.now = 1.0
    assert finish.check() is False and len(answers) == 4  # too soon to look again
    clock.now = 8.0
    assert finish.check() is False
    clock.now = 9.0
    assert finish.check() is False  # too soon after the look at t=8
    clock.now = 10.0
    assert finish.check() is False  # progress at t=10
    clock.now = 19.0
    assert finish.check() is False
    clock.now = 21.0  # 11 s without progress
    with pytest.raises(DriftgateError, match=r"p\[0\] at 30 of 50"):
        finish.check()


def test_finish_is_done_when_nothing_is_left_and_starts_afresh_when_busy() -> None:
    clock = Clock()
    left = {("p", 1): Left(0, None, held=7)}
    finish = Finish(lambda: dict(left), timeout_s=5.0, clock=clock, check_every_s=0.0)
    assert finish.check() is False
    clock.now = 4.0
    finish.busy()  # records came in: the member was not waiting
    assert finish.check() is False
    clock.now = 8.0
    assert finish.check() is False  # 4 s since the wait began again
    assert str(left[("p", 1)]) == "at 0 of unknown, 7 events held in the merge"
    left.clear()
    assert finish.check() is True
