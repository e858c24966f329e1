"""Checks of the sketches' arguments and of their saved state: one wording for both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.arrays import FloatArray, IndexArray, IntArray


def as_int(x: object) -> int | None:
    """``x`` as an int if it is a (numpy) integer but not a bool, else None."""
    if isinstance(x, (bool, np.bool_)):
        return None
    if isinstance(x, (int, np.integer)):
        return int(x)
    return None


def is_int(x: object) -> bool:
    return as_int(x) is not None


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


def field(d: Mapping[str, Any], name: str) -> Any:
    try:
        return d[name]
    except KeyError:
        raise ValueError(f"malformed sketch dict: missing field {name!r}") from None


def check_header(d: object, kind: str, version: int) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise ValueError(f"{kind} must be deserialised from a dict, got {type(d).__name__}")
    got_kind = d.get("kind")
    if got_kind != kind:
        raise ValueError(f"expected kind {kind!r}, got {got_kind!r}")
    got_version = d.get("version")
    if got_version != version:
        raise ValueError(f"unsupported {kind} version {got_version!r} (supported: {version})")
    return d


def int_list(d: Mapping[str, Any], name: str, n: int) -> IntArray:
    raw = field(d, name)
    if not isinstance(raw, list) or len(raw) != n or not all(is_int(v) and v >= 0 for v in raw):
        raise ValueError(f"malformed sketch dict: {name!r} must be a list of {n} ints >= 0")
    return np.asarray(raw, dtype=np.int64).reshape(n)


def opt_float_list(d: Mapping[str, Any], name: str, count: IntArray) -> FloatArray:
    raw = field(d, name)
    n = count.shape[0]
    if not isinstance(raw, list) or len(raw) != n:
        raise ValueError(f"malformed sketch dict: {name!r} must be a list of {n} entries")
    out = np.full(n, np.nan)
    for s, v in enumerate(raw):
        if (v is None) != (count[s] == 0) or (v is not None and not is_real(v)):
            raise ValueError(
                f"malformed sketch dict: {name}[{s}] must be a number iff count[{s}] > 0, got {v!r}"
            )
        if v is not None:
            out[s] = float(v)
    return out
