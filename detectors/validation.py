"""Checks of constructor arguments, shared by the detectors: one wording everywhere."""

from __future__ import annotations

import numpy as np


def check_int(name: str, value: object, low: int) -> int:
    """``value`` as an int >= ``low``; booleans and floats are refused."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if int(value) < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)
