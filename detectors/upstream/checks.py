"""Checks of the upstream checks' arguments: one wording for all of them."""

from __future__ import annotations

import math

import numpy as np


def is_number(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


def check_unit_interval(name: str, value: object, *, open_low: bool = True) -> float:
    ok = is_number(value) and math.isfinite(float(value))  # type: ignore[arg-type]
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (0.0 < v <= 1.0) if open_low else (0.0 <= v <= 1.0)
    if not ok:
        allowed = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_positive(name: str, value: object) -> float:
    if not (is_number(value) and math.isfinite(float(value)) and float(value) > 0):  # type: ignore[arg-type]
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]
