"""The simulator's week: which events fall on a weekend (Saturday and Sunday, UTC), and
the event times of traffic that runs slower on weekends (``TrafficSpec.weekend_volume``).

The stream draws its arrivals as a Poisson process of the weekday rate in *busy time*;
a weekend second holds ``weekend_volume`` busy seconds, so mapping busy time to event
time through the inverse of that clock gives a process whose rate drops (or rises) by
that factor on weekends, with the same draws whatever the volume.
"""

from __future__ import annotations

import numpy as np

from detectors.arrays import FloatArray
from detectors.seasonal import is_weekend

__all__ = ["event_times", "expected_events", "is_weekend"]

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
# 1970-01-01 was a Thursday: the Monday before it starts the simulator's weeks.
_MONDAY_S = -3 * DAY_S
_WEEKDAYS_S = 5 * DAY_S


def _busy(ts: FloatArray, volume: float) -> FloatArray:
    """Busy seconds from the Monday anchor to each event time."""
    weeks, within = np.divmod(ts - _MONDAY_S, WEEK_S)
    weekend = np.maximum(within - _WEEKDAYS_S, 0.0)
    busy_week = _WEEKDAYS_S + volume * (WEEK_S - _WEEKDAYS_S)
    return np.asarray(weeks * busy_week + within - weekend + volume * weekend, dtype=np.float64)


def event_times(start_ts: float, busy: FloatArray, volume: float) -> FloatArray:
    """The event times of arrivals ``busy`` busy seconds after ``start_ts``.

    >>> import numpy as np
    >>> friday_noon, day = 1_763_726_400.0, 86_400.0
    >>> hours = (event_times(friday_noon, np.array([0.0, day]), 0.5) - friday_noon) / 3_600
    >>> hours.tolist()  # 12 weekday hours, then 24 busy hours take 24 weekend hours
    [0.0, 36.0]
    """
    if volume == 1.0:
        return start_ts + busy
    busy_week = _WEEKDAYS_S + volume * (WEEK_S - _WEEKDAYS_S)
    total = _busy(np.array([start_ts]), volume)[0] + busy
    weeks, within = np.divmod(total, busy_week)
    weekend = np.maximum(within - _WEEKDAYS_S, 0.0)
    within = within - weekend + weekend / volume
    return np.asarray(_MONDAY_S + weeks * WEEK_S + within, dtype=np.float64)


def expected_events(start_ts: float, seconds: float, rate: float, volume: float) -> int:
    """How many events ``seconds`` of event time from ``start_ts`` hold on average, at
    ``rate`` events per weekday second and ``volume`` times that on weekends."""
    ends = _busy(np.array([start_ts, start_ts + seconds]), volume)
    return int(rate * float(ends[1] - ends[0]))
