"""Argument checks of the simulator: a ValueError that names the argument, what it must be
and what it got."""

from __future__ import annotations

import math


def fail(name: str, allowed: str, got: object) -> ValueError:
    return ValueError(f"{name} must be {allowed}, got {got!r}")


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < lo
        or (hi is not None and value > hi)
    ):
        span = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise fail(name, f"an int {span}", value)


def check_float(
    name: str, value: object, lo: float, hi: float | None = None, *, lo_open: bool = False
) -> None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > lo if lo_open else value >= lo)
        and (hi is None or value <= hi)
    )
    if not ok:
        if hi is None:
            allowed = f"a finite number {'>' if lo_open else '>='} {lo}"
        else:
            allowed = f"a number in {'(' if lo_open else '['}{lo}, {hi}]"
        raise fail(name, allowed, value)


def check_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise fail(name, "a non-empty str", value)
