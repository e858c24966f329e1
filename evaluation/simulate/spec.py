"""What the simulated traffic looks like (``TrafficSpec``) and the scripted changes in it
(``Incident``), each validated when built and carrying its own ground truth."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.arrays import FloatArray
from evaluation.simulate.checks import check_float, check_int, check_name, fail

INCIDENT_KINDS: tuple[str, ...] = (
    "covariate_shift",
    "frozen",
    "rescale",
    "rename",
    "concept",
    "label_inflation",
    "override_rise",
    "deployment",
)
# Changes of the outcomes: the labels, their sources and the overrides (no feature).
OUTCOME_KINDS = ("concept", "label_inflation", "override_rise")
# A new model version: the world and the inputs are the same, the scores are not.
MODEL_KINDS = ("deployment",)
# Faults of the served copy of a feature: the world (and so the labels) did not change.
UPSTREAM_KINDS = ("frozen", "rescale", "rename")
ACTIONS: tuple[str, ...] = ("retrain", "rollback", "fix_upstream", "investigate", "hold")

DEFAULT_COHORTS: dict[str, tuple[str, ...]] = {
    # Listed in decreasing traffic share (Zipf over the list order).
    "region": ("us", "apac", "eu", "latam", "uk", "ca", "anz", "mea"),
    "channel": ("web", "app", "pos", "partner", "call"),
}

NUMERIC_BASE = ("amount", "age_days", "clicks_7d", "is_new", "balance", "session_seconds")
CATEGORICAL_BASE = ("country", "device")
_MAX_COMBINATIONS = 1_000_000


@dataclass(frozen=True)
class Incident:
    """A scripted change in the traffic, kept with what a monitor should conclude about it.

    Benchmarks score a detector against ``expected_action``/``expected_cause``, so the
    incident carries its own ground truth instead of it living in a test somewhere.
    """

    name: str
    kind: str
    feature: str | None
    cohort: dict[str, str] | None = field(hash=False)
    start_event: int
    end_event: int | None = None
    magnitude: float = 1.0
    expected_action: str = "investigate"
    expected_cause: str = "covariate_drift"
    new_name: str | None = None  # the feature's new key, for a rename
    new_version: str | None = None  # the model version a deployment ships
    # The share of the traffic a deployment's version serves (below 1: a canary, each
    # prediction drawn at random), and the noise in its logits that blurs its ranking, in
    # standard deviations of the incumbent's logits (its scores are then handed back the
    # incumbent's values, so that their distribution does not change).
    share: float = 1.0
    rank_noise: float = 0.0
    # A covariate shift that grows linearly to its magnitude over this many events
    # (0: a step at start_event).
    ramp_events: int = 0

    def __post_init__(self) -> None:
        check_name("Incident.name", self.name)
        if self.kind not in INCIDENT_KINDS:
            raise fail("Incident.kind", f"one of {list(INCIDENT_KINDS)}", self.kind)
        if self.kind in OUTCOME_KINDS + MODEL_KINDS:
            if self.feature is not None:
                raise fail("Incident.feature", "None for an outcome incident", self.feature)
        elif self.kind == "covariate_shift" or self.feature is not None:
            check_name("Incident.feature", self.feature)
        if self.kind == "rename":
            check_name("Incident.new_name", self.new_name)
        if self.kind == "deployment":
            check_name("Incident.new_version", self.new_version)
        check_float("Incident.share", self.share, 0.0, 1.0, lo_open=True)
        check_float("Incident.rank_noise", self.rank_noise, 0.0, 100.0)
        if (self.share, self.rank_noise) != (1.0, 0.0) and self.kind != "deployment":
            raise fail("Incident.share and rank_noise", "1 and 0 unless kind is deployment", self)
        if self.cohort is not None:
            if (
                not isinstance(self.cohort, Mapping)
                or not self.cohort
                or not all(isinstance(k, str) and k for k in self.cohort)
                or not all(isinstance(v, str) and v for v in self.cohort.values())
            ):
                raise fail(
                    "Incident.cohort",
                    "None (whole population) or a non-empty dict of str -> str",
                    self.cohort,
                )
            object.__setattr__(self, "cohort", dict(self.cohort))
        check_int("Incident.start_event", self.start_event, 0)
        check_int("Incident.ramp_events", self.ramp_events, 0)
        if self.ramp_events and self.kind != "covariate_shift":
            raise fail("Incident.ramp_events", "0 unless kind is covariate_shift", self.ramp_events)
        if self.end_event is not None:
            check_int("Incident.end_event", self.end_event, self.start_event + 1)
        if (
            not isinstance(self.magnitude, (int, float))
            or isinstance(self.magnitude, bool)
            or not math.isfinite(self.magnitude)
        ):
            raise fail("Incident.magnitude", "a finite number", self.magnitude)
        object.__setattr__(self, "magnitude", float(self.magnitude))
        # "none": a benign change (a healthy deployment) about which nothing may be decided.
        if self.expected_action not in (*ACTIONS, "none"):
            allowed = f"one of {[*ACTIONS, 'none']}"
            raise fail("Incident.expected_action", allowed, self.expected_action)
        check_name("Incident.expected_cause", self.expected_cause)

    def to_dict(self, event_ts: Sequence[float] | None = None) -> dict[str, Any]:
        """The fields (``Incident(**d)`` rebuilds the incident); given the event times of the
        stream it was injected in (``event_ts[i]``: the ``ts`` of prediction ``i``), also
        ``start_ts`` and ``end_ts``, the times of the first affected and of the first
        unaffected event (None when the stream ends before)."""
        out = {
            "name": self.name,
            "kind": self.kind,
            "feature": self.feature,
            "cohort": dict(self.cohort) if self.cohort is not None else None,
            "start_event": self.start_event,
            "end_event": self.end_event,
            "magnitude": self.magnitude,
            "expected_action": self.expected_action,
            "expected_cause": self.expected_cause,
            "new_name": self.new_name,
            "new_version": self.new_version,
            "ramp_events": self.ramp_events,
            "share": self.share,
            "rank_noise": self.rank_noise,
        }
        if event_ts is not None:
            for key, index in (("start_ts", self.start_event), ("end_ts", self.end_event)):
                out[key] = event_ts[index] if index is not None and index < len(event_ts) else None
        return out


def _default_cohorts() -> dict[str, tuple[str, ...]]:
    return dict(DEFAULT_COHORTS)


@dataclass(frozen=True)
class TrafficSpec:
    """Shape of the simulated traffic.

    Cohort effects and feature vocabularies are a fixed function of the spec (of the
    cohort and feature names), not of the seed, so every seed samples the same world and
    a seed only changes which events are drawn from it.
    """

    model: str = "fraud"
    model_version: str = "v1"
    n_numeric: int = 6
    n_categorical: int = 2
    # dimension -> values, in decreasing traffic share (Zipf with exponent cohort_skew);
    # stored as a new dict of tuples so the spec cannot change under a running generator.
    cohorts: Mapping[str, Sequence[str]] = field(default_factory=_default_cohorts, hash=False)
    cohort_skew: float = 1.0
    start_ts: float = 1_763_712_000.0
    events_per_second: float = 50.0
    label_fraction: float = 0.2
    label_delay_seconds: float = 3600.0
    label_source: str = "chargeback"
    override_rate: float = 0.02
    # Share of the feedback that comes from an untrusted proxy ("click") instead.
    untrusted_share: float = 0.0
    missing_rate: float = 0.02
    # Amplitude (in latent standard deviations) of a 24-hour cycle in the behavioural
    # features: bigger baskets in the evening, longer sessions at night.
    daily_cycle: float = 0.0
    # On Saturdays and Sundays (UTC) the behavioural features move by this many latent
    # standard deviations (bigger baskets, longer sessions) on top of the daily cycle,
    # and the traffic runs at weekend_volume times its weekday rate (events_per_second).
    weekend_shift: float = 0.0
    weekend_volume: float = 1.0

    def __post_init__(self) -> None:
        check_name("model", self.model)
        check_name("model_version", self.model_version)
        check_int("n_numeric", self.n_numeric, 1, 99)
        check_int("n_categorical", self.n_categorical, 0, 99)
        if not isinstance(self.cohorts, Mapping):
            raise fail("cohorts", "a dict of dimension -> sequence of values", self.cohorts)
        cohorts: dict[str, tuple[str, ...]] = {}
        combinations = 1
        for dim, values in self.cohorts.items():
            check_name("cohorts key", dim)
            allowed = "a non-empty sequence of distinct non-empty str"
            if isinstance(values, str) or not isinstance(values, Iterable):
                raise fail(f"cohorts[{dim!r}]", allowed, values)
            vals = tuple(values)
            if not vals or not all(isinstance(v, str) and v for v in vals):
                raise fail(f"cohorts[{dim!r}]", allowed, values)
            if len(set(vals)) != len(vals):
                raise fail(f"cohorts[{dim!r}]", allowed, values)
            cohorts[dim] = vals
            combinations *= len(vals)
        if combinations > _MAX_COMBINATIONS:
            raise fail("cohorts", f"at most {_MAX_COMBINATIONS} value combinations", combinations)
        object.__setattr__(self, "cohorts", cohorts)
        check_float("cohort_skew", self.cohort_skew, 0.0, 5.0)
        check_float("start_ts", self.start_ts, 0.0, 1e11)
        check_float("events_per_second", self.events_per_second, 0.0, 1e9, lo_open=True)
        check_float("label_fraction", self.label_fraction, 0.0, 1.0)
        check_float("label_delay_seconds", self.label_delay_seconds, 0.0, 1e9)
        check_name("label_source", self.label_source)
        check_float("override_rate", self.override_rate, 0.0, 1.0)
        check_float("untrusted_share", self.untrusted_share, 0.0, 1.0)
        check_float("missing_rate", self.missing_rate, 0.0, 1.0)
        check_float("daily_cycle", self.daily_cycle, 0.0, 5.0)
        check_float("weekend_shift", self.weekend_shift, -5.0, 5.0)
        check_float("weekend_volume", self.weekend_volume, 0.0, 10.0, lo_open=True)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return _feature_names(self.n_numeric, self.n_categorical)

    def cohort_shares(self) -> dict[str, dict[str, float]]:
        """Expected traffic share of each cohort value, so callers can pick cohorts by size."""
        return {
            dim: dict(zip(values, zipf(len(values), self.cohort_skew).tolist(), strict=True))
            for dim, values in self.cohorts.items()
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_version": self.model_version,
            "n_numeric": self.n_numeric,
            "n_categorical": self.n_categorical,
            "cohorts": {k: list(v) for k, v in self.cohorts.items()},
            "cohort_skew": self.cohort_skew,
            "start_ts": self.start_ts,
            "events_per_second": self.events_per_second,
            "label_fraction": self.label_fraction,
            "label_delay_seconds": self.label_delay_seconds,
            "label_source": self.label_source,
            "override_rate": self.override_rate,
            "untrusted_share": self.untrusted_share,
            "missing_rate": self.missing_rate,
            "daily_cycle": self.daily_cycle,
            "weekend_shift": self.weekend_shift,
            "weekend_volume": self.weekend_volume,
        }


def _feature_names(n_numeric: int, n_categorical: int) -> tuple[str, ...]:
    numeric = NUMERIC_BASE[:n_numeric] + tuple(
        f"num_{i:02d}" for i in range(len(NUMERIC_BASE) + 1, n_numeric + 1)
    )
    categorical = CATEGORICAL_BASE[:n_categorical] + tuple(
        f"cat_{i:02d}" for i in range(len(CATEGORICAL_BASE) + 1, n_categorical + 1)
    )
    return numeric + categorical


def zipf(k: int, s: float) -> FloatArray:
    w = 1.0 / np.arange(1, k + 1, dtype=np.float64) ** s
    return np.asarray(w / w.sum(), dtype=np.float64)
