"""Checks of the join store's arguments: one wording for its parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def check_seconds(name: str, value: object, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not np.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return seconds


def column(name: str, values: ArrayLike, n: int, dtype: type[Any]) -> NDArray[Any]:
    array = np.asarray(values, dtype=dtype)
    if array.shape != (n,):
        raise ValueError(f"{name} must be a 1-D array of {n} rows, got shape {array.shape}")
    return array


def strings(name: str, values: Sequence[str], n: int) -> Sequence[str]:
    if isinstance(values, str) or len(values) != n:
        raise ValueError(f"{name} must be a list of {n} strings")
    return values
