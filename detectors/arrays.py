"""The numpy array types the detectors pass around, named once for every module."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
IndexArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]
# A feature's values in a batch: raw values (None when missing), or a float64 array when
# every value is a float (the decoder's numbers, converted once).
FeatureColumn = Sequence[object] | NDArray[np.float64]
# Histogram counts: integers while counted, floats once weighted or scaled.
CountArray = NDArray[np.int64] | NDArray[np.float64]


def as_run(rows: IndexArray) -> slice | None:
    """The rows as a slice when they are consecutive and ascending, else None: a merge of
    events already in order takes runs of rows, and slicing a list of Python objects
    costs a fraction of gathering it row by row.

    >>> as_run(np.array([3, 4, 5])), as_run(np.array([3, 5])), as_run(np.array([], np.intp))
    (slice(3, 6, None), None, slice(0, 0, None))
    """
    if not len(rows):
        return slice(0, 0)
    first, last = int(rows[0]), int(rows[-1])
    if last - first != len(rows) - 1 or (len(rows) > 1 and not bool(np.all(np.diff(rows) == 1))):
        return None
    return slice(first, last + 1)
