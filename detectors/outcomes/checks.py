"""Checks of the outcome judges' arguments and of joined rows' scope ids."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def check_fraction(name: str, value: object, *, open_low: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    low_ok = number > 0 if open_low else number >= 0
    if not (low_ok and number < 1):
        bound = "(0, 1)" if open_low else "[0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")
    return number


def scope_rows(scopes: ArrayLike, n: int, n_scopes: int) -> NDArray[np.int32]:
    """``(n, d)`` scope ids below ``n_scopes``, every negative one as -1 ("no scope")."""
    rows = np.asarray(scopes)
    if rows.ndim != 2 or rows.shape[0] != n or rows.shape[1] < 1 or rows.dtype.kind not in "iu":
        raise ValueError(f"scopes must be an integer array of shape ({n}, d >= 1)")
    if rows.size and int(rows.max()) >= n_scopes:
        raise ValueError(f"scopes must be < n_scopes ({n_scopes}), got {int(rows.max())}")
    return np.where(rows < 0, -1, rows).astype(np.int32)
