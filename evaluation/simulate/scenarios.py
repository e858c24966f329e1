"""The named scenarios of ``driftgate simulate``: a spec and its incidents for a stream of
n events."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from evaluation.simulate.calendar import expected_events
from evaluation.simulate.spec import Incident, TrafficSpec


def _stationary(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    return TrafficSpec(), []


def _covariate_shift(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    incident = Incident(
        name="amount_shift",
        kind="covariate_shift",
        feature="amount",
        cohort=None,
        start_event=n_events // 2,
        magnitude=1.0,
    )
    return TrafficSpec(), [incident]


def _cohort_covariate_shift(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    spec = TrafficSpec()
    # A mid-sized region (~1/8 of traffic): big enough to matter, small enough that the
    # shift is diluted in population-wide statistics.
    region = _mid_region(spec)
    incident = Incident(
        name=f"session_seconds_shift_{region}",
        kind="covariate_shift",
        feature="session_seconds",
        cohort={"region": region},
        start_event=n_events // 2,
        magnitude=1.0,
    )
    return spec, [incident]


def _mid_region(spec: TrafficSpec) -> str:
    shares = spec.cohort_shares()["region"]
    return min(shares, key=lambda v: abs(shares[v] - 1 / 8))


def _upstream(kind: str, feature: str, start: int, **extra: Any) -> Incident:
    cause = {"frozen": "frozen_signal", "rescale": "rescaled_signal", "rename": "schema_change"}
    return Incident(
        name=f"{feature}_{kind}",
        kind=kind,
        feature=feature,
        start_event=start,
        expected_action="fix_upstream",
        expected_cause=cause[kind],
        **{"cohort": None, **extra},
    )


def _frozen(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    return TrafficSpec(), [_upstream("frozen", "balance", n_events // 2)]


def _cohort_frozen(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    spec = TrafficSpec()
    region = _mid_region(spec)
    return spec, [_upstream("frozen", "balance", n_events // 2, cohort={"region": region})]


def _rescaled(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    # Cents become euros for one feed, seconds become kiloseconds for another.
    return TrafficSpec(), [
        _upstream("rescale", "amount", n_events // 2, magnitude=100.0),
        _upstream("rescale", "session_seconds", n_events // 2, magnitude=0.001),
    ]


def _cohort_unit_change(share: float) -> Callable[[int], tuple[TrafficSpec, list[Incident]]]:
    def scenario(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
        # Kilometres served as miles in one market: session_seconds stands in for a trip
        # distance (lognormal, log-sd 0.8): a factor of 0.62 moves it by 0.6 sd. On a
        # log-sd of 1.2, like balance's, it would be 0.4 sd, a PSI of ~0.16, under the
        # drift threshold: nothing would be reported, rescale or drift.
        spec = TrafficSpec()
        shares = spec.cohort_shares()["region"]
        region = min(shares, key=lambda v: abs(shares[v] - share))
        incident = _upstream(
            "rescale", "session_seconds", n_events // 2, cohort={"region": region},
            magnitude=1 / 1.609344,
        )  # fmt: skip
        return spec, [dataclasses.replace(incident, name=f"session_seconds_km_to_mi_{region}")]

    return scenario


def _renamed(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    return TrafficSpec(), [_upstream("rename", "balance", n_events // 2, new_name="acct_balance")]


def _labelled() -> TrafficSpec:
    # Half the predictions labelled by a trusted source, hours later; 2 predictions a
    # second, so an hour of delay is 7,200 events.
    return TrafficSpec(events_per_second=2.0, label_fraction=0.5, label_delay_seconds=3_600.0)


def _outcome(kind: str, start: int, magnitude: float, cause: str, **extra: Any) -> Incident:
    action = "retrain" if cause == "concept_drift" else "investigate"
    return Incident(
        name=kind, kind=kind, feature=None, start_event=start, magnitude=magnitude,
        expected_action=action, expected_cause=cause, **{"cohort": None, **extra},
    )  # fmt: skip


def _concept(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    return _labelled(), [_outcome("concept", n_events // 2, 1.5, "concept_drift")]


def _cohort_concept(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    spec = _labelled()
    cohort = {"region": _mid_region(spec)}
    return spec, [_outcome("concept", n_events // 2, 2.5, "concept_drift", cohort=cohort)]


def _click_inflation(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    spec = dataclasses.replace(_labelled(), untrusted_share=0.5)
    return spec, [_outcome("label_inflation", n_events // 2, 2.0, "label_quality")]


def _rising_overrides(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    return _labelled(), [_outcome("override_rise", n_events // 2, 0.15, "trust_decay")]


def _labelled_stationary(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    return _labelled(), []


def _deployment(kind: str, bias: float) -> Callable[[int], tuple[TrafficSpec, list[Incident]]]:
    def scenario(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
        broken = bias != 0.0
        incident = Incident(
            name=kind,
            kind="deployment",
            feature=None,
            cohort=None,
            start_event=n_events // 2,
            magnitude=bias,
            new_version="v2",
            expected_action="rollback" if broken else "none",
            expected_cause="deployment_regression" if broken else "none",
        )
        return _labelled(), [incident]

    return scenario


def _canary_label_regression(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    # v2 serves 30% of the traffic and was trained with a feature pipeline that does
    # not match serving: its scores have the incumbent's distribution in every cohort (a
    # score histogram sees nothing) but rank almost at random. Only its labels show it.
    incident = Incident(
        name="canary_label_regression",
        kind="deployment",
        feature=None,
        cohort=None,
        start_event=n_events // 2,
        magnitude=0.0,
        new_version="v2",
        share=0.3,
        rank_noise=10.0,
        expected_action="rollback",
        expected_cause="deployment_regression",
    )
    return _labelled(), [incident]


def _gradual_drift(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    # Baskets grow by one standard deviation over 100,000 events (or the stream's last
    # three quarters, if shorter): no single window looks much unlike the one before.
    start = n_events // 4
    incident = Incident(
        name="amount_gradual",
        kind="covariate_shift",
        feature="amount",
        cohort=None,
        start_event=start,
        magnitude=1.0,
        ramp_events=min(100_000, n_events - start),
    )
    return TrafficSpec(), [incident]


def _campaign(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    # A weekend promotion in one region: bigger baskets for 3,000 events, then back to
    # normal, shorter than driftgate's persistence horizon (3 windows of 2,000).
    spec = TrafficSpec()
    start = n_events // 2
    incident = Incident(
        name="campaign",
        kind="covariate_shift",
        feature="amount",
        cohort={"region": _mid_region(spec)},
        start_event=start,
        end_event=start + 3_000,
        magnitude=1.5,
        expected_action="hold",
        expected_cause="transient_shift",
    )
    return spec, [incident]


def _daily_cycle(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    # A week of traffic whatever n_events is: the cycle is in event time, not in counts.
    rate = n_events / (7 * 86_400.0)
    return TrafficSpec(events_per_second=rate, daily_cycle=0.5), []


def _cycle_at(
    rate: float, weekend_shift: float = 0.0, weekend_volume: float = 1.0
) -> Callable[[int], tuple[TrafficSpec, list[Incident]]]:
    """Behavioural inputs that follow the hour of day by half a standard deviation at
    ``rate`` predictions per weekday second; with ``weekend_shift``, weekends move them by
    that many standard deviations more and run at ``weekend_volume`` times the rate."""

    def scenario(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
        spec = TrafficSpec(
            events_per_second=rate,
            daily_cycle=0.5,
            weekend_shift=weekend_shift,
            weekend_volume=weekend_volume,
        )
        return spec, []

    return scenario


def _amount_shift(name: str, start_event: int) -> Incident:
    """The amount moved by half a standard deviation from ``start_event`` on."""
    return Incident(
        name=name,
        kind="covariate_shift",
        feature="amount",
        cohort=None,
        start_event=start_event,
        magnitude=0.5,
    )


def _shift_on_daily_cycle(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    # Two days at 2/s: the first day is sampled by the hour, and the amount moves by half
    # a standard deviation 36 hours in (a Saturday at 20:00), against the same hours.
    spec, _ = _cycle_at(2.0)(n_events)
    return spec, [_amount_shift("amount_shift_on_cycle", 3 * n_events // 4)]


def _shift_on_weekly_cycle(n_events: int) -> tuple[TrafficSpec, list[Incident]]:
    # Four days of the weekly pattern at 2/s from a Friday at 08:00: the amount moves by
    # half a standard deviation on the first Sunday at 10:00, while the first week is
    # sampled and the weekend's hours are compared with the Saturday's.
    spec, _ = _cycle_at(2.0, weekend_shift=0.3, weekend_volume=0.7)(n_events)

    def events_in(hours: float) -> int:
        return expected_events(
            spec.start_ts, hours * 3_600, spec.events_per_second, spec.weekend_volume
        )

    start = n_events * events_in(50) // events_in(96)
    return spec, [_amount_shift("amount_shift_on_weekend", start)]


SCENARIOS: dict[str, Callable[[int], tuple[TrafficSpec, list[Incident]]]] = {
    "stationary": _stationary,
    "covariate_shift": _covariate_shift,
    "cohort_covariate_shift": _cohort_covariate_shift,
    "frozen": _frozen,
    "cohort_frozen": _cohort_frozen,
    "rescaled": _rescaled,
    "renamed": _renamed,
    # ~12% and ~5% of the traffic (~250 and ~100 predictions per 2,000-event window)
    "cohort_unit_change_12": _cohort_unit_change(0.12),
    "cohort_unit_change_5": _cohort_unit_change(0.05),
    "concept": _concept,
    "cohort_concept": _cohort_concept,
    "click_inflation": _click_inflation,
    "rising_overrides": _rising_overrides,
    "labelled_stationary": _labelled_stationary,
    # v2 shipped without undoing its training set's 10x negative downsampling.
    "deployment_regression": _deployment("deployment_regression", math.log(10.0)),
    # v2 is another fit of the same model: nothing to decide.
    "healthy_deployment": _deployment("healthy_deployment", 0.0),
    "canary_label_regression": _canary_label_regression,
    "gradual_drift": _gradual_drift,
    "campaign": _campaign,
    "daily_cycle": _daily_cycle,
    "daily_cycle_5_per_s": _cycle_at(5.0),
    "daily_cycle_50_per_s": _cycle_at(50.0),
    "weekly_cycle": _cycle_at(0.3, weekend_shift=0.3, weekend_volume=0.7),
    # Windows of 33 minutes: too long for the first day's test of speed.
    "weekly_cycle_1_per_s": _cycle_at(1.0, weekend_shift=0.3, weekend_volume=0.7),
    "shift_on_daily_cycle": _shift_on_daily_cycle,
    "shift_on_weekly_cycle": _shift_on_weekly_cycle,
}

# Streams defined by their rate and duration rather than their length: hours of event time.
DURATION_HOURS: dict[str, float] = {
    "daily_cycle_5_per_s": 7 * 24,
    "daily_cycle_50_per_s": 24,
    "weekly_cycle": 28 * 24,
    "weekly_cycle_1_per_s": 4 * 24,
    "shift_on_daily_cycle": 2 * 24,
    "shift_on_weekly_cycle": 4 * 24,
}


def events_over(scenario: str, hours: float) -> int:
    """How many predictions ``hours`` of the scenario's event time hold on average.

    >>> events_over("daily_cycle_5_per_s", 24)
    432000
    """
    spec, _ = SCENARIOS[scenario](0)
    return expected_events(
        spec.start_ts, hours * 3_600, spec.events_per_second, spec.weekend_volume
    )


def natural_events(scenario: str, default: int) -> int:
    """The scenario's length: its duration's events, or ``default`` for one that has none.

    >>> natural_events("weekly_cycle", 200_000), natural_events("stationary", 200_000)
    (663552, 200000)
    """
    hours = DURATION_HOURS.get(scenario)
    return default if hours is None else events_over(scenario, hours)
