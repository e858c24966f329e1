"""A fast stream's first day: sampled while it lasts, then the hours it taught.

A stream too fast for a day of it to fit in ``reference_max_events`` is compared with
its first ``reference_events`` predictions from the start (minutes of one hour), so that
the monitor judges at once. Meanwhile :class:`FirstDay` samples the whole first day,
every hour evenly and in bounded memory (:class:`detectors.day_sample.DaySample`, at most
``reference_max_events`` rows in all). When the day is over, each feature whose
distribution follows the hour of the day gets hourly reference histograms from the
sample, and its windows are compared with the same hours from then on; the others keep
the reference they had. (The hours are kept on the day type they fell on, weekday or
weekend; :mod:`detectors.monitor.first_week` samples the rest of the week.)

Before the day is over, a drift cannot be told from the time of day by its size, but it
can by its speed: traffic that follows the hour drifts away from a reference of one hour
over hours, window after window, while a change in the world or in a feed is a step. So
while the first day is sampled, a streak of drifted windows that began more than
``SLOW_ONSET_S`` (or two windows, if longer) after the last calm window of its scope (one
the G-test found like the reference), or while the population had not been calm for that
long, is deferred: it is not counted as drift (nor is a mild rescale seen in it a broken
feed) until the day is in the reference, and then judged against the same hours. A streak
whose first window differs from the window before it as much as a drift would (a step:
the time of day takes hours to move that far) counts at once, however long its scope or
the population was not calm (a cohort's drift leaks into the population); a deferred
streak ends at such a step too (by a whole threshold, at ``STEP_PVALUE``). A cycle
steeper than that (at 5 predictions/s, the log-mean of a lognormal feature swinging by
1.4 standard deviations either way over the day passes, 1.6 does not) is still reported
on its first day (tests/unit/test_first_day.py).

Speed shows only in windows short against ``SLOW_ONSET_S``. A scope whose windows span
more than a third of it at the reference's rates (the population's ``window_events`` below
1.67 predictions/s by default, a small cohort's carried over until it holds
``min_window_events``) goes from calm to drifted in one or two windows on the time of day
alone, and a cycle's window differs from the one before it as a step's does. In such a
*blind* scope, what tells a cycle is its approach: traffic that follows the hour moves
away from the reference window after window, significantly (G-test at ``alpha``) long
before it drifts by the threshold, while a stationary stream's windows stay like it until
a step. So a streak there counts at once only if no window before it, of its scope or of
the population, differed from the reference; otherwise it is deferred, a step's too.
A frozen or renamed feed, and a rescale by a factor no cycle takes, are not deferred.

A feature reported drifting or broken since the sampling began keeps the reference it
drifted from (``FirstWeek.reported``): the day's sample holds the change too, and would
hide it; unless only its drift is open as the day ends and it follows the hour: then it
is compared by the hour, its hours since the drift began suspect (below). A real change
that began during the first day but was not reported yet is in the hours of the sample
after its onset only: the next day's windows at the hours before it are compared with
hours that did not have it, and show it. The hours after it are marked
(``FeatureDrift.suspect_slots``, where a streak is still deferred as the day ends): once
the change is reported, their windows say nothing of the feature's drift
(detectors.monitor.feature_drift.window_statistics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.binning import scope_histograms
from detectors.cohorts import POPULATION
from detectors.day_sample import DaySample, has_cycle
from detectors.divergence import g_test, psi
from detectors.monitor.config import MonitorConfig
from detectors.monitor.feature_drift import FeatureDrift
from detectors.monitor.reference import Reference
from detectors.monitor.windows import ScopeWindows
from detectors.seasonal import HOURS, SLOTS, hour_of_day, is_weekend
from detectors.signal_health import HealthVerdict, mild_factor

# An hour: the time of day moves a feature no faster than that from calm to drifted
# unless its cycle is very steep (documented in docs/detection.md).
SLOW_ONSET_S = 3_600.0
# A window at least this likely under the reference (G-test) is calm. Strict, so that a
# window of a cycle under way looks calm by chance rarely; a step's window before it is
# calm nine times in ten, and the one before that is looked at otherwise.
CALM_PVALUE = 0.1
# The test of speed needs this many windows within SLOW_ONSET_S to tell a ramp of an hour
# from a step: with longer windows, the time of day moves a window from calm to drifted
# in one or two of them.
WINDOWS_PER_ONSET = 3
# A deferred streak's windows are each tested for a step: dozens a day per scope, so a
# p-value noise between two windows reaches about once in a million (a real step of the
# threshold between two windows of 2,000 events is below 1e-30).
STEP_PVALUE = 1e-6


class FirstDay:
    """The first day of a stream whose reference covers less than a day."""

    def __init__(self, reference: Reference, config: MonitorConfig) -> None:
        self.config = config
        cap = max(2, config.reference_max_events // HOURS)
        # What every hour the stream filled holds at least (DaySample keeps half its cap).
        self._min_hour_events = min(config.min_reference_events, cap // 2)
        self.sample = DaySample(
            start_ts=float(reference.batch.ts.min()),
            cap_per_hour=cap,
            n_scopes=reference.scopes.n_scopes,
            features=list(reference.features),
            span_s=config.reference_span_s,
        )
        self.sample.add(reference.batch.ts, reference.rows, reference.row_bins)
        n_scopes, end = reference.scopes.n_scopes, reference.end
        # Per feature and scope: when its last calm window ended, when its current streak
        # of drifted windows began (NaN: none), and whether that streak is deferred.
        self._calm_end = {name: np.full(n_scopes, end) for name in reference.features}
        self._streak_start = {name: np.full(n_scopes, np.nan) for name in reference.features}
        self._deferred = {name: np.zeros(n_scopes, dtype=bool) for name in reference.features}
        # ... and when its first deferred streak of the day began (NaN: none yet).
        self._first_deferred = {name: np.full(n_scopes, np.nan) for name in reference.features}
        # Per scope: windows too long for the test of speed.
        self.blind = window_spans_s(reference, config) > SLOW_ONSET_S / WINDOWS_PER_ONSET
        # Per feature and scope: the reference's own first and last thirds differed, or
        # some window so far differed from the reference (G-tests at alpha).
        self._moved = {
            name: _trend(reference, name, state.bins.n_bins, config.alpha)
            for name, state in reference.features.items()
        }

    @staticmethod
    def needed(reference: Reference, config: MonitorConfig, pinned: bool) -> bool:
        """Whether the monitor should sample a first day: a reference taken from the
        stream (a pinned one is the user's choice) that covers less than the span."""
        return not pinned and not reference.seasonal and config.reference_span_s > 0

    @property
    def complete(self) -> bool:
        return self.sample.complete

    @property
    def remaining_s(self) -> float:
        return self.sample.remaining_s

    def add(self, ts: FloatArray, rows: IndexArray, bins: Mapping[str, IndexArray]) -> None:
        self.sample.add(ts, rows, bins)

    def defer_slow(
        self,
        states: Sequence[FeatureDrift],
        drifted: BoolArray,
        verdicts: list[HealthVerdict],
        judged: BoolArray,
        window_start: FloatArray,
        window_end: FloatArray,
    ) -> BoolArray:
        """Each feature's drifted scopes (rows of ``drifted``) that count as drift now:
        those of streaks that did not build up slowly, or, in a blind scope, that began
        before anything moved. Mild rescales seen in deferred streaks are taken out of
        ``verdicts`` (in place) too."""
        counted, config = drifted.copy(), self.config
        for i, state in enumerate(states):
            calm_end, start = self._calm_end[state.name], self._streak_start[state.name]
            deferred = self._deferred[state.name]
            # A window with too few of a sparse feature's values counts neither way.
            decided = judged if state.undecided is None else judged & ~state.undecided
            hit = decided & drifted[i]
            ended = decided & ~drifted[i]
            start[ended], deferred[ended] = np.nan, False
            calm = ended & (state.pvalue >= CALM_PVALUE)
            calm_end[calm] = window_end[calm]
            begins = hit & np.isnan(start)
            start[begins] = window_start[begins]
            # A step in the middle of a long window leaves that window neither calm nor
            # drifted: two windows' time is never slow.
            limit = np.maximum(SLOW_ONSET_S, 2 * (window_end - window_start))
            slow = (start - calm_end > limit) | (window_start - calm_end[POPULATION] > limit)
            moved = self._moved[state.name]
            restless = moved | moved[POPULATION]
            stepped = self._stepped(state, begins, config.psi_threshold / 2, config.alpha)
            deferred[begins] = np.where(self.blind, restless, slow & ~stepped)[begins]
            # A step on top of a deferred streak (a change in the evening of a cycle that
            # drifted since noon) ends its deferral: by a whole threshold in one window,
            # and tested at every window of a streak, so at STEP_PVALUE.
            going = hit & deferred & ~begins & ~self.blind
            deferred[going] = ~self._stepped(state, going, config.psi_threshold, STEP_PVALUE)[going]
            first = self._first_deferred[state.name]
            first[deferred] = np.fmin(first, start)[deferred]
            moved |= decided & (state.pvalue < config.alpha)
            counted[i] &= ~deferred
            verdicts[i] = without_mild_rescales(verdicts[i], judged & deferred)
        return counted

    @staticmethod
    def _stepped(
        state: FeatureDrift, scopes: BoolArray, min_psi: float, pvalue: float
    ) -> BoolArray:
        """Per scope of ``scopes``: its window differs from its window before (PSI of
        ``min_psi``, G-test below ``pvalue``), a step that no cycle takes in one window."""
        stepped = np.zeros(len(scopes), dtype=bool)
        if state.last_window is None or not scopes.any():
            return stepped
        before, now = state.last_window[scopes], state.current[scopes]
        jump = psi(before, now) >= min_psi
        stepped[scopes] = jump & (g_test(before, now)[1] < pvalue)
        return stepped

    def make_seasonal(
        self,
        features: Mapping[str, FeatureDrift],
        window: ScopeWindows,
        reported: Collection[str],
    ) -> bool:
        """Give the features that follow the hour their hourly reference, and have
        ``window`` count its hours; True when any does. A feature ``reported`` drifting
        or broken since the day began keeps its reference, unless only a drift is open:
        then its hours since the drift began are suspect (the sample holds the change
        there) and the others compared by the hour, where one reference of the morning
        would make the drift come and go with the time of day. Called as a window
        closes: the next is the first compared with the same hours (the closing one
        counted no hours and is compared as before)."""
        config = self.config
        for state in features.values():
            if state.reference_hourly is not None:
                continue
            drifting = state.drift.open & ~np.isnan(state.drift.first_seen)
            if state.name in reported and (state.broken or not drifting.any()):
                continue
            hourly = self.sample.hourly(state.name, state.bins.n_bins)
            if has_cycle(hourly, config.psi_threshold, config.alpha, self._min_hour_events):
                state.reference_hourly = self._slots(hourly)
                if state.name in reported:  # confirmed at the next window: it is open
                    onset = float(state.drift.first_seen[drifting].min())
                    state.suspect_slots = self._hours_since(onset)
                else:
                    state.suspect_slots = self._sampled_while_deferred(state.name)
                window.seasonal = True
        return window.seasonal

    def _sampled_while_deferred(self, name: str) -> BoolArray | None:
        """Where a streak of feature ``name`` is still deferred as the day ends (the
        same hour a day later still drifted: a change that began in the day, or a
        weekend), the slots of the hours the day's sample took since that scope's first
        deferred streak began; None where none is. Both day types: a window of a slot
        not sampled yet is compared with the other type's same hour. (A cycle's streak
        can end in its trough and start again: the change began with the first.)"""
        starts = self._first_deferred[name][self._deferred[name]]
        starts = starts[~np.isnan(starts)]  # unknown in a first day of state format 4
        return self._hours_since(float(starts.min())) if len(starts) else None

    def _hours_since(self, onset: float) -> BoolArray:
        """The slots, of both day types, of the hours the day's sample took from the
        hour of ``onset`` on."""
        end = self.sample.start_ts + self.sample.span_s
        began = np.arange(np.floor(onset / 3_600.0) * 3_600.0, end, 3_600.0)
        hours = hour_of_day(began)
        suspect = np.zeros(SLOTS, dtype=bool)
        suspect[hours] = suspect[hours + HOURS] = True
        return suspect

    def _slots(self, hourly: IntArray) -> IntArray:
        """The day's (hour, scope, bin) counts at their slots (detectors.seasonal): each
        hour on the day type it fell on. (The hour the day began in also ends it, on the
        next day: it counts as the first.)"""
        start = self.sample.start_ts
        hours = np.arange(HOURS)
        after = (hours - hour_of_day(np.array([start]))[0]) % HOURS
        began = np.maximum(start, (np.floor(start / 3_600.0) + after) * 3_600.0)
        slots = np.zeros((SLOTS, *hourly.shape[1:]), dtype=hourly.dtype)
        slots[hours + HOURS * is_weekend(began)] = hourly
        return slots


def _trend(reference: Reference, name: str, n_bins: int, alpha: float) -> BoolArray:
    """Per scope: whether the first and the last third of the reference (by event time)
    differ in feature ``name``, as traffic that follows the hour does over hours."""
    ts, n_scopes = reference.batch.ts, reference.scopes.n_scopes
    first, last = np.quantile(ts, [1 / 3, 2 / 3])
    counts = [
        scope_histograms(reference.row_bins[name][part], reference.rows[part], n_scopes, n_bins)
        for part in (ts <= first, ts >= last)
    ]
    return np.asarray(g_test(counts[0], counts[1])[1] < alpha)


def window_spans_s(reference: Reference, config: MonitorConfig) -> FloatArray:
    """How much event time each scope's window spans at the reference's rates: the
    population's, or a cohort's carried over until it holds min_window_events."""
    span = float(reference.batch.ts.max() - reference.batch.ts.min())
    per_event = span / max(1, len(reference.batch) - 1)
    population = config.window_s if config.window_s > 0 else config.window_events * per_event
    cohort = config.min_window_events * span / np.maximum(reference.scope_events, 1)
    return np.maximum(population, cohort)


def without_mild_rescales(
    verdict: HealthVerdict, scopes: BoolArray, mild_only: bool = True
) -> HealthVerdict:
    """``verdict`` without the mild rescales (or, without ``mild_only``, any rescale) it
    found in ``scopes``: the peak of a daily cycle looks like a steady factor of 1.6 for
    an hour."""
    cause = list(verdict.cause)
    for scope in np.flatnonzero(scopes).tolist():
        factor = float(verdict.rescale_factor[scope])
        if cause[scope] == "rescaled_signal" and (mild_factor(factor) or not mild_only):
            cause[scope] = ""
    return dataclasses.replace(verdict, cause=tuple(cause))
