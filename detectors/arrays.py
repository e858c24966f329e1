"""The numpy array types the detectors pass around, named once for every module."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
IndexArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]
# Histogram counts: integers while counted, floats once weighted or scaled.
CountArray = NDArray[np.int64] | NDArray[np.float64]
