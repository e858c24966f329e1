"""Label delays (feedback event time minus prediction event time) as a histogram."""

from __future__ import annotations

import numpy as np

from detectors.arrays import FloatArray, IntArray

DAY = 86_400.0
# Upper bounds (seconds, inclusive as Prometheus' ``le``) of the label-delay buckets:
# roughly log-spaced from a second to a quarter; one more bucket is +Inf.
DELAY_BUCKETS_S: tuple[float, ...] = (
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3_600.0,
    4 * 3_600.0,
    12 * 3_600.0,
    DAY,
    3 * DAY,
    7 * DAY,
    14 * DAY,
    30 * DAY,
    90 * DAY,
)
_BOUNDS = np.array(DELAY_BUCKETS_S, dtype=np.float64)


def delay_bucket_counts(delay_s: FloatArray) -> IntArray:
    """Delays counted per bucket of :data:`DELAY_BUCKETS_S` (last one is +Inf), not
    cumulative. A delay equal to a bound falls in that bound's bucket; a negative delay
    (clock skew between producers) in the first.

    >>> import numpy as np
    >>> delay_bucket_counts(np.array([0.5, 1.0, 30.0, 1e9])).tolist()
    [2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    """
    buckets = np.searchsorted(_BOUNDS, np.asarray(delay_s, dtype=np.float64), side="left")
    return np.bincount(buckets, minlength=len(_BOUNDS) + 1).astype(np.int64)


class DelayHistogram:
    """Every joined label's delay, counted per bucket, and their sum.

    >>> import numpy as np
    >>> delays = DelayHistogram()
    >>> delays.record(np.array([0.5, 30.0, 30.0]))
    >>> bounds, cumulative, total = delays.cumulative()
    >>> bounds[:3].tolist(), cumulative[:3].tolist(), total
    ([1.0, 10.0, 60.0], [1, 1, 3], 60.5)
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._counts = np.zeros(len(DELAY_BUCKETS_S) + 1, dtype=np.int64)
        self._sum = 0.0

    def record(self, delay_s: FloatArray) -> None:
        self._counts += delay_bucket_counts(delay_s)
        self._sum += float(delay_s.sum())

    def cumulative(self) -> tuple[FloatArray, IntArray, float]:
        """As a Prometheus histogram: (upper bounds with +Inf last, cumulative counts,
        sum of delays in seconds)."""
        bounds = np.append(_BOUNDS, np.inf)
        return bounds, np.cumsum(self._counts), float(self._sum)
