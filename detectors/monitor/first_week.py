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
of the other day type, which can differ by the weekend's shift. Such a window cannot
tell a change from a weekend where weekends differ, so in the first week a drift streak
is not counted (nor a rescale in it as a broken feed) in the windows with events in
a slot their scope's reference has not seen (a day at most), when the stream's weekend
hours differed from its weekday hours before the streak began, or could not be told
apart yet (no hour of the day seen on both day types). Whether they differ is judged on
the population's complete counts of each hour of the week before the streak (at most
168 histograms a feature): an hour of the day whose weekday and weekend histograms differ
by the G-test, or those hours pooled, each feature at ``alpha`` over the number of
features (each hour with ``min_reference_events``), or the feature's step at midnight
(:func:`boundary_steps`); or the same hours of another feature, up to the window. Where
weekends are like weekdays, a change in those hours counts at once. A change that began
in deferred hours shows from the next windows of seen slots (those of hours before it:
the sample's later hours hold the change, as on the first day, see
:mod:`detectors.monitor.first_day`). A slow stream's reference (a whole day) goes into
the sample first; a fast stream's first day is sampled by
:class:`detectors.monitor.first_day.FirstDay` as well, and this one takes over after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.binning import scope_histograms
from detectors.day_sample import DaySample, has_cycle
from detectors.divergence import g_test, pooled_g_test
from detectors.monitor.config import MonitorConfig
from detectors.monitor.feature_drift import FeatureDrift
from detectors.monitor.first_day import without_mild_rescales
from detectors.monitor.reference import Reference
from detectors.monitor.windows import ScopeWindows
from detectors.seasonal import DAY_S, HOURS, SLOTS, WEEK_S, is_weekend, slot_of, unseen_slots
from detectors.signal_health import HealthVerdict

WEEK_HOURS = 7 * HOURS


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
        # Per feature: the population's histogram of each clock hour of the week from the
        # one the stream began in, and per scope when its current drift streak began.
        self._first_hour = math.floor(start / 3_600.0)
        self._week_hours = {
            name: np.zeros((WEEK_HOURS + 1, state.bins.n_bins), dtype=np.int64)
            for name, state in reference.features.items()
        }
        self._streak_start = {name: np.full(n_scopes, np.nan) for name in features}
        # Features reported drifting or broken since the sampling began: their samples
        # hold the change from its onset, and would make it look normal at those hours
        # even after the condition was handed on or cleared, so they keep their reference.
        self.reported: set[str] = set()
        self.add(reference.batch.ts, reference.rows, reference.row_bins)
        # The whole days given to the features so far: the first is the first day's
        # (the slow stream's reference, or FirstDay's sample).
        self.days = max(1, self._whole_days())

    @classmethod
    def sample_for(
        cls, reference: Reference, config: MonitorConfig, pinned: bool
    ) -> FirstWeek | None:
        """The first week to sample after ``reference``, if any: when the reference was
        taken from the stream (a pinned one is the user's choice) and compared by the
        hour."""
        return None if pinned or not config.reference_span_s else cls(reference, config)

    @property
    def complete(self) -> bool:
        return self._newest >= self.start_ts + WEEK_S

    @property
    def remaining_s(self) -> float:
        """Event time until the week is sampled (0 once it is)."""
        if self._newest == -math.inf:
            return WEEK_S
        return max(0.0, self.start_ts + WEEK_S - self._newest)

    def _whole_days(self) -> int:
        if self._newest == -math.inf:
            return 0
        return min(7, math.floor((self._newest - self.start_ts) / DAY_S))

    def add(self, ts: FloatArray, rows: IndexArray, bins: Mapping[str, IndexArray]) -> None:
        if not len(ts):
            return
        self._newest = max(self._newest, float(ts.max()))
        hour = np.floor(ts / 3_600.0).astype(np.intp) - self._first_hour
        within = np.clip(hour, 0, WEEK_HOURS)
        for name, counts in self._week_hours.items():
            counts += scope_histograms(bins[name], within[:, None], WEEK_HOURS + 1, len(counts[0]))
        weekend = is_weekend(ts)
        for day_type, sample in enumerate(self.samples):
            mask = weekend == bool(day_type)
            sample.add(ts[mask], rows[mask], {name: b[mask] for name, b in bins.items()})

    def slots(self, name: str, n_bins: int) -> IntArray:
        """A feature's sampled counts per (slot, scope, bin)."""
        return np.concatenate([sample.hourly(name, n_bins) for sample in self.samples])

    def update(self, features: Mapping[str, FeatureDrift], window: ScopeWindows) -> bool:
        """Called at every window close: remember the features with a condition open (a
        reported condition stays open for resolve_windows windows at least). At the first
        close after a whole day more: give the features that follow the time (and were
        not reported) the sample's slots, and have ``window`` count its slots. True when
        any feature is compared by the slot."""
        self.reported |= reported_now(features)
        days = self._whole_days()
        if days > self.days:
            self.days = days
            config = self.config
            for state in features.values():
                if state.name in self.reported:
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
        window: ScopeWindows,
    ) -> BoolArray:
        """Each feature's drifted scopes (rows of ``drifted``) that count as drift now: not
        those whose ``window`` has events in a slot the scope's reference has not seen,
        where the day types differed before the streak began (a condition already
        reported is not deferred). Rescales seen in such windows are taken out of
        ``verdicts`` (in place) too, drifted or not."""
        counted = drifted.copy()
        hours: dict[int, dict[str, bool] | None] = {}  # by complete hours
        for i, state in enumerate(states):
            start = self._streak_start[state.name]
            decided = judged if state.undecided is None else judged & ~state.undecided
            start[decided & ~drifted[i]] = np.nan
            begins = decided & drifted[i] & np.isnan(start)
            start[begins] = window.start[begins]
            if state.reference_hourly is None:
                continue
            unseen = unseen_slots(state.reference_hourly).T  # (scope, slot)
            # A condition already reported goes on being judged as it was found.
            borrowed = judged & ~state.drift.reported
            borrowed &= (window.hour_events * unseen).any(axis=1)
            # Judged on the hours before the streak (before the window, out of one: a
            # rescale is looked for against the whole reference, which the
            # weekend's level can look like).
            onsets = np.where(np.isnan(start), window.start, start)
            for onset in np.unique(onsets[borrowed]).tolist():
                if not self._day_types_differ(state.name, onset, hours):
                    borrowed &= onsets != onset
            counted[i] &= ~borrowed
            # Any factor: the quantiles are compared with the whole reference, and the
            # hours of the other day type moved them by 3.2x-3.9x (docs/detection.md).
            verdicts[i] = without_mild_rescales(verdicts[i], borrowed, mild_only=False)
        return counted

    def _day_types_differ(
        self, name: str, before_ts: float, hours: dict[int, dict[str, bool] | None]
    ) -> bool:
        """Whether weekends differ from weekdays for a streak of feature ``name`` that
        began at ``before_ts``: its own hours of the day seen on both day types before
        then, or its step at midnight; or the same hours of any other feature until now
        (a weekend changes behaviour: where other features show it, this one's smaller
        shift in a cohort's windows is as suspect; a change of this feature alone, such as
        its own streak, does not move them). True while no hour of the day has been seen
        on both day types: they cannot be told apart yet (no step at midnight does not
        show that there is no weekend: four hours are few). ``hours`` caches
        :meth:`_hours_differ` by complete hours."""
        before = self._complete_hours(before_ts)
        for complete in (before, self._complete_hours(self._newest)):
            if complete not in hours:
                hours[complete] = self._hours_differ(complete)
        own, now = hours[before], hours[self._complete_hours(self._newest)]
        if own is not None and own.get(name, False):
            return True
        began = self._hour_starts(before)
        counts = self._week_hours[name][:before]
        steps = boundary_steps(counts, is_weekend(began), self.config.min_reference_events)
        if steps is not None and (steps < self.config.alpha / 2).any():
            return True
        return now is None or any(differ for other, differ in now.items() if other != name)

    def _complete_hours(self, ts: float) -> int:
        return max(0, min(WEEK_HOURS, math.floor(ts / 3_600.0) - self._first_hour))

    def _hour_starts(self, complete: int) -> FloatArray:
        return np.arange(self._first_hour, self._first_hour + complete, dtype=np.float64) * 3_600

    def _hours_differ(self, complete: int) -> dict[str, bool] | None:
        """Per feature, whether its weekday and weekend histograms of the same hour of the
        day differ (G-test) in the first ``complete`` hours, one hour or those hours pooled
        (a third of a standard deviation at 0.3 events/s is under any one hour's test and
        plain in ten), at ``alpha`` over the number of features, so that the stream is at
        ``alpha``; None when no hour was seen on both day types."""
        slots = slot_of(self._hour_starts(complete))
        floor = self.config.min_reference_events
        alpha = self.config.alpha / max(1, len(self._week_hours))
        verdicts: dict[str, bool] = {}
        for name, week_hours in self._week_hours.items():
            by_slot = np.zeros((SLOTS, week_hours.shape[1]), dtype=np.int64)
            np.add.at(by_slot, slots, week_hours[:complete])
            weekday, weekend = by_slot[:HOURS], by_slot[HOURS:]
            both = (weekday.sum(axis=1) >= floor) & (weekend.sum(axis=1) >= floor)
            if not both.any():
                continue
            weekday, weekend = weekday[both], weekend[both]
            verdicts[name] = bool(
                (g_test(weekday, weekend)[1] < alpha).any()
                or pooled_g_test(weekday, weekend) < alpha
            )
        return verdicts or None


def boundary_steps(counts: IntArray, weekend: BoolArray, min_events: int) -> FloatArray | None:
    """P-values that the histograms of consecutive hours (``counts``, hour x bin) step
    where the day type (``weekend``) changes: each hour either side of a change against
    what the two hours before it (after it) predict, their trend carried on one hour
    (``2 * p1 - p2``, of effective size ``1 / (4 / n1 + 1 / n2)``). A smooth daily cycle
    is carried on; a weekend's level, starting at midnight, is not. None when no change
    has two hours of ``min_events`` either side.

    >>> import numpy as np
    >>> hours = np.arange(8)
    >>> weekend = hours >= 4
    >>> cycle = np.stack([1_000 - 20 * hours, 1_000 + 20 * hours], axis=1)
    >>> float(boundary_steps(cycle, weekend, 200).min()) > 0.5  # carried on exactly
    True
    >>> shifted = cycle + np.where(weekend, 300, 0)[:, None] * [-1, 1]
    >>> float(boundary_steps(shifted, weekend, 200).min()) < 1e-6
    True
    """
    sized = counts.sum(axis=1) >= min_events
    at = [
        i
        for i in range(2, len(counts) - 1)
        if weekend[i] != weekend[i - 1] and sized[i - 2 : i + 2].all() and i + 1 < len(counts)
    ]
    if not at:
        return None
    pvalues = []
    for i in at:
        for near, far, tested in ((i - 1, i - 2, i), (i, i + 1, i - 1)):
            n1, n2 = counts[near].sum(), counts[far].sum()
            trend = np.clip(2 * counts[near] / n1 - counts[far] / n2, 0.0, None)
            effective = 1.0 / (4.0 / n1 + 1.0 / n2)
            expected = trend / trend.sum() * effective
            pvalues.append(float(g_test(expected[None, :], counts[tested][None, :])[1][0]))
    return np.asarray(pvalues, dtype=np.float64)


def reported_now(features: Mapping[str, FeatureDrift]) -> set[str]:
    """The features with a condition reported and open: drifting or broken."""
    return {name for name, state in features.items() if state.drifting or state.broken}
