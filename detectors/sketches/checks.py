"""Checks of the sketches' arguments: one wording for both sketches."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.arrays import IndexArray


def as_int(x: object) -> int | None:
    """``x`` as an int if it is a (numpy) integer but not a bool, else None."""
    if isinstance(x, (bool, np.bool_)):
        return None
    if isinstance(x, (int, np.integer)):
        return int(x)
    return None


def is_real(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


def check_scope(scope: object, n_scopes: int) -> int:
    s = as_int(scope)
    if s is None or not 0 <= s < n_scopes:
        raise ValueError(f"scope must be an int in [0, {n_scopes}), got {scope!r}")
    return s


def check_scopes(scopes: npt.ArrayLike, n_rows: int, n_scopes: int) -> IndexArray:
    sc = np.asarray(scopes)
    if sc.ndim != 1 or sc.shape[0] != n_rows:
        raise ValueError(
            f"scopes must be a 1-D array with one entry per value ({n_rows}), got shape {sc.shape}"
        )
    if n_rows == 0:
        return np.zeros(0, dtype=np.intp)
    if sc.dtype.kind not in "iu":
        raise ValueError(f"scopes must be an integer array, got dtype {sc.dtype}")
    lo, hi = sc.min(), sc.max()
    if lo < 0 or hi >= n_scopes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"scopes must be in [0, {n_scopes}), got {int(bad)}")
    return sc.astype(np.intp, copy=False)
