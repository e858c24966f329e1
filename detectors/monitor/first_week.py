"""A stream's first week: weekdays and weekends sampled, each compared with its own hours.

A reference of one day holds each hour of one day type only: taken from a Friday 08:00,
its hours 8-23 are a weekday's and its hours 0-7 a Saturday's. Where a weekend moves a
feature (bigger baskets on Saturdays), every weekday morning is then compared with a
Saturday's, and every weekend afternoon with a Friday's, for good. So over the stream's
first week :class:`FirstWeek` keeps an even sample of every hour of the weekdays and of
the weekends (:class:`detectors.day_sample.DaySample`, one per day type, each at most
``reference_max_events / 24`` rows an hour: at most ``2 * reference_max_events`` rows in
all, 100,000 by default), and at the end of each whole day from the second on gives the
features that follow the time (those already compared by the hour, and those whose
slots differ by :func:`detectors.day_sample.has_cycle`) the sample's histograms per slot
(:mod:`detectors.seasonal`), an hour of a weekday or of a weekend day. After seven days
the sample is dropped: each slot then holds the first week's events.

Until a slot is in the reference, a window of its hours is compared with the same hours
of the other day type, which can differ by the weekend's shift. Such a window can tell
neither a change nor a weekend, so in the first week a drifted window with events in a
slot its scope's reference has not seen does not count as drift (nor a mild rescale in
it as a broken feed), until the sample holds that slot (a day later at most). A change
that began in such hours shows from the next day's windows, compared with the hours
before it (the sample's later hours hold the change: as on the first day, see
:mod:`detectors.monitor.first_day`). A slow stream's reference (a whole day) goes into
the sample first; a fast stream's first day is sampled by
:class:`detectors.monitor.first_day.FirstDay` as well, and this one takes over after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.day_sample import DaySample, has_cycle
from detectors.monitor.config import MonitorConfig
from detectors.monitor.feature_drift import FeatureDrift
from detectors.monitor.first_day import without_mild_rescales
from detectors.monitor.reference import Reference
from detectors.monitor.windows import ScopeWindows
from detectors.seasonal import DAY_S, HOURS, WEEK_S, is_weekend, unseen_slots
from detectors.signal_health import HealthVerdict


class FirstWeek:
    """The first week of a stream whose reference was taken from it."""

    def __init__(self, reference: Reference, config: MonitorConfig) -> None:
        self.config = config
        cap = max(2, config.reference_max_events // HOURS)
        self._min_hour_events = min(config.min_reference_events, cap // 2)
        self.start_ts = start = float(reference.batch.ts.min())
        n_scopes, features = reference.scopes.n_scopes, list(reference.features)
        # Weekdays, then weekends: their slots in that order (detectors.seasonal).
        self.samples = tuple(
            DaySample(start, cap, n_scopes, features, span_s=WEEK_S) for _ in range(2)
        )
        self._newest = -math.inf
        self.add(reference.batch.ts, reference.rows, reference.row_bins)
        # The whole days given to the features so far: the first is the first day's
        # (the slow stream's reference, or FirstDay's sample).
        self.days = max(1, self._whole_days())

    @staticmethod
    def needed(config: MonitorConfig, pinned: bool) -> bool:
        """Whether the monitor should sample a first week: a reference taken from the
        stream (a pinned one is the user's choice), compared by the hour."""
        return not pinned and config.reference_span_s > 0

    @property
    def complete(self) -> bool:
        return self._newest >= self.start_ts + WEEK_S

    def _whole_days(self) -> int:
        if self._newest == -math.inf:
            return 0
        return min(7, math.floor((self._newest - self.start_ts) / DAY_S))

    def add(self, ts: FloatArray, rows: IndexArray, bins: Mapping[str, IndexArray]) -> None:
        if not len(ts):
            return
        self._newest = max(self._newest, float(ts.max()))
        weekend = is_weekend(ts)
        for day_type, sample in enumerate(self.samples):
            mask = weekend == bool(day_type)
            sample.add(ts[mask], rows[mask], {name: b[mask] for name, b in bins.items()})

    def slots(self, name: str, n_bins: int) -> IntArray:
        """A feature's sampled counts per (slot, scope, bin)."""
        return np.concatenate([sample.hourly(name, n_bins) for sample in self.samples])

    def update(self, features: Mapping[str, FeatureDrift], window: ScopeWindows) -> bool:
        """At the first window close after a whole day more: give the features that follow
        the time (and are not drifting) the sample's slots, and have ``window`` count its
        slots; True when any feature is compared by the slot."""
        days = self._whole_days()
        if days > self.days:
            self.days = days
            config = self.config
            for state in features.values():
                if state.drifting:
                    continue
                slots = self.slots(state.name, state.bins.n_bins)
                if state.reference_hourly is not None or has_cycle(
                    slots, config.psi_threshold, config.alpha, self._min_hour_events
                ):
                    state.reference_hourly = slots
                    window.seasonal = True
        return window.seasonal

    def defer_unseen(
        self,
        states: Sequence[FeatureDrift],
        drifted: BoolArray,
        verdicts: list[HealthVerdict],
        judged: BoolArray,
        slot_events: IntArray,
    ) -> BoolArray:
        """Each feature's drifted scopes (rows of ``drifted``) that count as drift now: not
        those whose window (``slot_events``, scope x slot) has events in a slot the scope's
        reference has not seen. Mild rescales seen in them are taken out of ``verdicts``
        (in place) too."""
        counted = drifted.copy()
        for i, state in enumerate(states):
            if state.reference_hourly is None:
                continue
            unseen = unseen_slots(state.reference_hourly).T  # (scope, slot)
            borrowed = judged & (slot_events * unseen).any(axis=1)
            counted[i] &= ~borrowed
            verdicts[i] = without_mild_rescales(verdicts[i], borrowed)
        return counted
