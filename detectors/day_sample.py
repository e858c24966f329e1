"""A whole day of a fast stream in bounded memory, to compare like hours with like.

A reference of the first ``reference_events`` predictions covers half an hour of a stream
of 5 predictions/s, three minutes at 50/s: on traffic that follows the time of day, every
evening then looks drifted. :class:`DaySample` keeps, for each hour of the stream's first
day, an even sample of that hour's predictions (each row's scopes and every feature's
bin), at most ``cap_per_hour`` of them whatever the rate. Once the day is over, the
monitor gives the features whose distribution follows the hour (:func:`has_cycle`)
hourly reference histograms from it, and compares each window with the same hours.

The sample is systematic, not random: an hour keeps its rows whose index within the hour
is a multiple of a step, and the step doubles whenever the hour holds more than its cap.
So it depends on the events and their order alone, never on how they were batched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.binning import scope_histograms
from detectors.divergence import g_test, psi
from detectors.seasonal import DAY_S, HOURS, hour_of_day


class DaySample:
    """An even sample of each hour of the day that starts at ``start_ts``.

    >>> import numpy as np
    >>> sample = DaySample(start_ts=0.0, cap_per_hour=100, n_scopes=1, features=["amount"])
    >>> ts = np.arange(0.0, 86_400.0, 2.0)  # a day at 0.5 predictions/s: 1,800 an hour
    >>> bins = {"amount": (ts // 3600 % 2).astype(np.intp)}  # odd hours in bin 1
    >>> sample.add(ts, np.zeros((len(ts), 1), dtype=np.intp), bins)
    >>> sample.complete, sample.remaining_s
    (False, 2.0)
    >>> one = np.zeros((1, 1), dtype=np.intp)
    >>> sample.add(np.array([86_400.0]), one, {"amount": one[:, 0]})  # the next day's first
    >>> sample.complete, int(sample.rows_per_hour().max()) <= 100
    (True, True)
    >>> hourly = sample.hourly("amount", n_bins=2)  # (hour, scope, bin)
    >>> hourly[0, 0].tolist(), hourly[1, 0].tolist()
    ([57, 0], [0, 57])
    """

    def __init__(
        self,
        start_ts: float,
        cap_per_hour: int,
        n_scopes: int,
        features: Sequence[str],
        span_s: float = DAY_S,
    ) -> None:
        if not math.isfinite(start_ts):
            raise ValueError(f"start_ts must be a finite event time, got {start_ts}")
        if cap_per_hour < 2:
            raise ValueError(f"cap_per_hour must be >= 2, got {cap_per_hour}")
        if n_scopes < 1:
            raise ValueError(f"n_scopes must be >= 1, got {n_scopes}")
        if not 0 < span_s < math.inf:
            raise ValueError(f"span_s must be a finite number of seconds > 0, got {span_s}")
        self.start_ts = start_ts
        self.cap_per_hour = cap_per_hour
        self.n_scopes = n_scopes
        self.features = tuple(features)
        self.span_s = span_s
        self._reset()

    def _reset(self) -> None:
        self._seen = np.zeros(HOURS, dtype=np.int64)
        self._step = np.ones(HOURS, dtype=np.int64)
        self._kept = np.zeros(HOURS, dtype=np.int64)
        self._newest = -math.inf
        # The kept rows, one array per part: hour, index within the hour, scopes, bins.
        self._hours: list[IndexArray] = []
        self._index: list[IntArray] = []
        self._rows: list[IndexArray] = []
        self._bins: dict[str, list[IndexArray]] = {name: [] for name in self.features}

    @property
    def complete(self) -> bool:
        """The stream went past the end of the day."""
        return self._newest >= self.start_ts + self.span_s

    @property
    def remaining_s(self) -> float:
        """Event time until the day is complete (0 once it is)."""
        if self._newest == -math.inf:
            return self.span_s
        return max(0.0, self.start_ts + self.span_s - self._newest)

    def add(self, ts: FloatArray, rows: IndexArray, bins: Mapping[str, IndexArray]) -> None:
        """Sample a part of the stream: event times, each row's scopes, each feature's bin
        of each row. Rows past the end of the day are not sampled; they complete it."""
        if not len(ts):
            return
        self._newest = max(self._newest, float(ts.max()))
        within = ts < self.start_ts + self.span_s
        hours = hour_of_day(ts[within])
        if not hours.size:
            return
        # Each row's index within its hour, counting the hour's earlier rows.
        order = np.argsort(hours, kind="stable")
        counts = np.bincount(hours, minlength=HOURS)
        first = np.cumsum(counts) - counts
        rank = np.empty(hours.size, dtype=np.int64)
        rank[order] = np.arange(hours.size) - np.repeat(first, counts)
        index = self._seen[hours] + rank
        self._seen += counts
        keep = index % self._step[hours] == 0
        self._kept += np.bincount(hours[keep], minlength=HOURS)
        # Narrow types: the sample of a wide model holds 50,000 rows of every feature.
        self._hours.append(hours[keep].astype(np.int8))
        self._index.append(index[keep])
        self._rows.append(rows[within][keep].astype(np.int32))
        for name in self.features:
            self._bins[name].append(bins[name][within][keep].astype(np.int32))
        if (self._kept > self.cap_per_hour).any():
            self._thin()

    def rows_per_hour(self) -> IntArray:
        """The rows kept for each hour of the day."""
        return self._kept.copy()

    def hourly(self, name: str, n_bins: int) -> IntArray:
        """A feature's sampled counts per (hour, scope, bin)."""
        hours, rows = self._joined()
        kept = self._bins[name]
        bins = np.concatenate(kept).astype(np.intp) if kept else np.zeros(0, np.intp)
        hour_scopes = hours.astype(np.intp)[:, None] * self.n_scopes + rows.astype(np.intp)
        counts = scope_histograms(bins, hour_scopes, HOURS * self.n_scopes, n_bins)
        return counts.reshape(HOURS, self.n_scopes, n_bins)

    def _joined(self) -> tuple[IndexArray, IndexArray]:
        if not self._hours:
            return np.zeros(0, dtype=np.intp), np.zeros((0, 1), dtype=np.intp)
        return np.concatenate(self._hours), np.concatenate(self._rows)

    def _thin(self) -> None:
        """Double the step of every hour over its cap and drop the rows it skips."""
        hours, rows = self._joined()
        index = np.concatenate(self._index)
        per_hour = np.bincount(hours, minlength=HOURS)
        while (per_hour > self.cap_per_hour).any():
            self._step[per_hour > self.cap_per_hour] *= 2
            per_hour = np.bincount(hours[index % self._step[hours] == 0], minlength=HOURS)
        keep: BoolArray = index % self._step[hours] == 0
        self._kept = per_hour.astype(np.int64)
        self._hours, self._index, self._rows = [hours[keep]], [index[keep]], [rows[keep]]
        for name in self.features:
            self._bins[name] = [np.concatenate(self._bins[name])[keep]]


def has_cycle(hourly: IntArray, psi_threshold: float, alpha: float, min_events: int) -> bool:
    """Whether a feature's distribution follows the hour of the day in the population
    (scope 0 of ``hourly``, counts per hour, scope and bin): some hour with ``min_events``
    sampled rows differs from the rest of the day significantly (G-test at ``alpha``)
    and by at least half the drift threshold in PSI, what a window of that hour would
    show against a reference of other hours.

    >>> import numpy as np
    >>> flat = np.full((24, 1, 2), 500)
    >>> has_cycle(flat, 0.2, 0.001, 200)
    False
    >>> evening = flat.copy()
    >>> evening[18:, 0] = [200, 800]
    >>> has_cycle(evening, 0.2, 0.001, 200)
    True
    """
    population = hourly[:, 0, :].astype(np.int64)
    sized = population.sum(axis=1) >= min_events
    if sized.sum() < 2:
        return False
    hours = population[sized]
    rest = hours.sum(axis=0)[None, :] - hours
    shift = psi(rest, hours)
    pvalue = g_test(rest, hours)[1]
    return bool(((shift >= psi_threshold / 2) & (pvalue < alpha)).any())
