"""Deterministic synthetic prediction and feedback traffic for demos, tests and benchmarks.

The simulated world is meant to look like real fraud-model traffic (skewed money amounts,
overdispersed counts with missing values, cohorts with unequal traffic and their own feature
distributions, delayed and partial labels) rather than like anything a particular detector
finds easy, so that a detector's results on it mean something. Output is a pure function of
(spec, n_events, seed, incidents): no wall clock, no global random state.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from detectors.arrays import FloatArray, IntArray

__all__ = [
    "ACTIONS",
    "DEFAULT_COHORTS",
    "INCIDENT_KINDS",
    "SCENARIOS",
    "Incident",
    "TrafficSpec",
    "generate",
    "reference_std",
    "write_replay",
    "write_truth",
]

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
UNTRUSTED_SOURCE = "click"
# Faults of the served copy of a feature: the world (and so the labels) did not change.
UPSTREAM_KINDS = ("frozen", "rescale", "rename")
ACTIONS: tuple[str, ...] = ("retrain", "rollback", "fix_upstream", "investigate", "hold")

DEFAULT_COHORTS: dict[str, tuple[str, ...]] = {
    # Listed in decreasing traffic share (Zipf over the list order).
    "region": ("us", "apac", "eu", "latam", "uk", "ca", "anz", "mea"),
    "channel": ("web", "app", "pos", "partner", "call"),
}

_NUMERIC_BASE = ("amount", "age_days", "clicks_7d", "is_new", "balance", "session_seconds")
_CATEGORICAL_BASE = ("country", "device")
_VOCAB_BASE: dict[str, tuple[str, ...]] = {
    "country": ("US", "GB", "DE", "FR", "IN", "BR", "CA", "JP", "MX", "AU"),
    "device": ("android", "ios", "windows", "macos", "linux", "other"),
}
# Known cohort values pull categoricals towards plausible categories (an "eu" customer is
# mostly German or French); unknown cohort names only get the random tilt.
_AFFINITY: dict[tuple[str, str], dict[str, dict[str, float]]] = {
    ("region", "us"): {"country": {"US": 3.0}},
    ("region", "apac"): {"country": {"IN": 2.5, "JP": 2.5, "AU": 1.0}},
    ("region", "eu"): {"country": {"DE": 2.5, "FR": 2.5}},
    ("region", "latam"): {"country": {"BR": 3.0, "MX": 3.0}},
    ("region", "uk"): {"country": {"GB": 3.0}},
    ("region", "ca"): {"country": {"CA": 3.0}},
    ("region", "anz"): {"country": {"AU": 3.5}},
    ("channel", "app"): {"device": {"android": 1.5, "ios": 1.5, "windows": -2.0, "linux": -2.0}},
    ("channel", "pos"): {"device": {"other": 3.0}},
    ("channel", "call"): {"device": {"other": 3.0}},
}
# Standard deviation of a cohort value's effect on each latent feature location.
_LOC_SD: dict[str, float] = {
    "amount": 0.35,
    "age_days": 0.25,
    "balance": 0.3,
    "clicks_7d": 0.25,
    "session_seconds": 0.2,
}
_EXTRA_LOC_SD = 0.3
# Behaviour that follows the time of day (account age and balance do not).
_CYCLIC = ("amount", "clicks_7d", "session_seconds")
_TILT_SD = 0.3
_DECIMALS: dict[str, int] = {"amount": 2, "balance": 2, "session_seconds": 1}
_EXTRA_DECIMALS = 4
_CHUNK = 8192
_REFERENCE_ROWS = 1 << 16
_MAX_COMBINATIONS = 1_000_000
# Logistic fraud model over a few features; the intercept puts the base rate near 5%.
_INTERCEPT = -3.55
_DELAY_SIGMA = 1.0
_SCORE_EPS = 1e-6


Record = dict[str, Any]


def _fail(name: str, allowed: str, got: object) -> ValueError:
    return ValueError(f"{name} must be {allowed}, got {got!r}")


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < lo
        or (hi is not None and value > hi)
    ):
        span = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise _fail(name, f"an int {span}", value)


def _check_float(
    name: str, value: object, lo: float, hi: float | None = None, *, lo_open: bool = False
) -> None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > lo if lo_open else value >= lo)
        and (hi is None or value <= hi)
    )
    if not ok:
        if hi is None:
            allowed = f"a finite number {'>' if lo_open else '>='} {lo}"
        else:
            allowed = f"a number in {'(' if lo_open else '['}{lo}, {hi}]"
        raise _fail(name, allowed, value)


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise _fail(name, "a non-empty str", value)


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
    # A covariate shift that grows linearly to its magnitude over this many events
    # (0: a step at start_event).
    ramp_events: int = 0

    def __post_init__(self) -> None:
        _check_name("Incident.name", self.name)
        if self.kind not in INCIDENT_KINDS:
            raise _fail("Incident.kind", f"one of {list(INCIDENT_KINDS)}", self.kind)
        if self.kind in OUTCOME_KINDS + MODEL_KINDS:
            if self.feature is not None:
                raise _fail("Incident.feature", "None for an outcome incident", self.feature)
        elif self.kind == "covariate_shift" or self.feature is not None:
            _check_name("Incident.feature", self.feature)
        if self.kind == "rename":
            _check_name("Incident.new_name", self.new_name)
        if self.kind == "deployment":
            _check_name("Incident.new_version", self.new_version)
        if self.cohort is not None:
            if (
                not isinstance(self.cohort, Mapping)
                or not self.cohort
                or not all(isinstance(k, str) and k for k in self.cohort)
                or not all(isinstance(v, str) and v for v in self.cohort.values())
            ):
                raise _fail(
                    "Incident.cohort",
                    "None (whole population) or a non-empty dict of str -> str",
                    self.cohort,
                )
            object.__setattr__(self, "cohort", dict(self.cohort))
        _check_int("Incident.start_event", self.start_event, 0)
        _check_int("Incident.ramp_events", self.ramp_events, 0)
        if self.ramp_events and self.kind != "covariate_shift":
            raise _fail(
                "Incident.ramp_events", "0 unless kind is covariate_shift", self.ramp_events
            )
        if self.end_event is not None:
            _check_int("Incident.end_event", self.end_event, self.start_event + 1)
        if (
            not isinstance(self.magnitude, (int, float))
            or isinstance(self.magnitude, bool)
            or not math.isfinite(self.magnitude)
        ):
            raise _fail("Incident.magnitude", "a finite number", self.magnitude)
        object.__setattr__(self, "magnitude", float(self.magnitude))
        # "none": a benign change (a healthy deployment) about which nothing may be decided.
        if self.expected_action not in (*ACTIONS, "none"):
            allowed = f"one of {[*ACTIONS, 'none']}"
            raise _fail("Incident.expected_action", allowed, self.expected_action)
        _check_name("Incident.expected_cause", self.expected_cause)

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

    def __post_init__(self) -> None:
        _check_name("model", self.model)
        _check_name("model_version", self.model_version)
        _check_int("n_numeric", self.n_numeric, 1, 99)
        _check_int("n_categorical", self.n_categorical, 0, 99)
        if not isinstance(self.cohorts, Mapping):
            raise _fail("cohorts", "a dict of dimension -> sequence of values", self.cohorts)
        cohorts: dict[str, tuple[str, ...]] = {}
        combinations = 1
        for dim, values in self.cohorts.items():
            _check_name("cohorts key", dim)
            allowed = "a non-empty sequence of distinct non-empty str"
            if isinstance(values, str) or not isinstance(values, Iterable):
                raise _fail(f"cohorts[{dim!r}]", allowed, values)
            vals = tuple(values)
            if not vals or not all(isinstance(v, str) and v for v in vals):
                raise _fail(f"cohorts[{dim!r}]", allowed, values)
            if len(set(vals)) != len(vals):
                raise _fail(f"cohorts[{dim!r}]", allowed, values)
            cohorts[dim] = vals
            combinations *= len(vals)
        if combinations > _MAX_COMBINATIONS:
            raise _fail("cohorts", f"at most {_MAX_COMBINATIONS} value combinations", combinations)
        object.__setattr__(self, "cohorts", cohorts)
        _check_float("cohort_skew", self.cohort_skew, 0.0, 5.0)
        _check_float("start_ts", self.start_ts, 0.0, 1e11)
        _check_float("events_per_second", self.events_per_second, 0.0, 1e9, lo_open=True)
        _check_float("label_fraction", self.label_fraction, 0.0, 1.0)
        _check_float("label_delay_seconds", self.label_delay_seconds, 0.0, 1e9)
        _check_name("label_source", self.label_source)
        _check_float("override_rate", self.override_rate, 0.0, 1.0)
        _check_float("untrusted_share", self.untrusted_share, 0.0, 1.0)
        _check_float("missing_rate", self.missing_rate, 0.0, 1.0)
        _check_float("daily_cycle", self.daily_cycle, 0.0, 5.0)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return _feature_names(self.n_numeric, self.n_categorical)

    def cohort_shares(self) -> dict[str, dict[str, float]]:
        """Expected traffic share of each cohort value, so callers can pick cohorts by size."""
        return {
            dim: dict(zip(values, _zipf(len(values), self.cohort_skew).tolist(), strict=True))
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
        }


def _feature_names(n_numeric: int, n_categorical: int) -> tuple[str, ...]:
    numeric = _NUMERIC_BASE[:n_numeric] + tuple(
        f"num_{i:02d}" for i in range(len(_NUMERIC_BASE) + 1, n_numeric + 1)
    )
    categorical = _CATEGORICAL_BASE[:n_categorical] + tuple(
        f"cat_{i:02d}" for i in range(len(_CATEGORICAL_BASE) + 1, n_categorical + 1)
    )
    return numeric + categorical


def _zipf(k: int, s: float) -> FloatArray:
    w = 1.0 / np.arange(1, k + 1, dtype=np.float64) ** s
    return np.asarray(w / w.sum(), dtype=np.float64)


def _world_rng(*parts: str) -> np.random.Generator:
    # crc32 rather than hash(): str hashing is salted per process.
    return np.random.default_rng(zlib.crc32("\x1f".join(parts).encode()))


class _World:
    """Fixed parameters of the simulated population, derived from the spec alone."""

    def __init__(self, spec: TrafficSpec) -> None:
        self.spec = spec
        self.dims = list(spec.cohorts)
        self.values = [spec.cohorts[d] for d in self.dims]
        self.cum_shares = [np.cumsum(_zipf(len(v), spec.cohort_skew)) for v in self.values]
        strides, stride = [], 1
        for v in reversed(self.values):
            strides.append(stride)
            stride *= len(v)
        self.strides = list(reversed(strides))
        self.names = spec.feature_names
        self.kinds: dict[str, str] = {}
        self.vocab: dict[str, tuple[str, ...]] = {}
        self.base_logits: dict[str, FloatArray] = {}
        self.tilt: dict[str, list[FloatArray]] = {}
        self.loc: dict[str, list[FloatArray]] = {}
        self.extra: dict[str, tuple[float, float, float]] = {}
        for name in self.names:
            if name in ("age_days", "clicks_7d"):
                self.kinds[name] = "int"
            elif name == "is_new":
                self.kinds[name] = "bool"
            elif name.startswith("cat_") or name in _CATEGORICAL_BASE:
                self.kinds[name] = "category"
            else:
                self.kinds[name] = "float"
        self.vocab["is_new"] = ("False", "True")
        # Base features are always drawn (see _draw_features), so always parametrised.
        for name in dict.fromkeys(_NUMERIC_BASE + _CATEGORICAL_BASE + self.names):
            if name in _LOC_SD or name.startswith("num_"):
                sd = _LOC_SD.get(name, _EXTRA_LOC_SD)
                self.loc[name] = [
                    np.array([_world_rng("loc", d, v, name).normal(0.0, sd) for v in vals])
                    for d, vals in zip(self.dims, self.values, strict=True)
                ]
            if name.startswith("num_"):
                r = _world_rng("num", name)
                mean = float(np.round(r.normal(0.0, 20.0), 1))
                scale = float(np.exp(r.normal(0.5, 1.0)))
                self.extra[name] = (mean, scale, float(r.uniform(-0.5, 0.5)))
            elif name.startswith("cat_") or name in _CATEGORICAL_BASE:
                self._init_category(name)
        self.risk = {
            "country": _world_rng("risk", "country").normal(0.0, 0.4, len(_VOCAB_BASE["country"])),
            "device": _world_rng("risk", "device").normal(0.0, 0.25, len(_VOCAB_BASE["device"])),
        }
        self.vocab_arrays = {k: np.array(v, dtype=object) for k, v in self.vocab.items()}

    def _init_category(self, name: str) -> None:
        if name in _VOCAB_BASE:
            vocab = _VOCAB_BASE[name]
            skew = 1.1
        else:
            r = _world_rng("vocab", name)
            vocab = tuple(f"v{j:02d}" for j in range(int(r.integers(3, 13))))
            skew = float(r.uniform(0.6, 1.4))
        self.vocab[name] = vocab
        self.base_logits[name] = np.log(_zipf(len(vocab), skew))
        tilts = []
        for d, vals in zip(self.dims, self.values, strict=True):
            rows = []
            for v in vals:
                t = _world_rng("tilt", d, v, name).normal(0.0, _TILT_SD, len(vocab))
                for cat, boost in _AFFINITY.get((d, v), {}).get(name, {}).items():
                    t[vocab.index(cat)] += boost
                rows.append(t)
            tilts.append(np.array(rows))
        self.tilt[name] = tilts

    def cohort_index(self, cohort: Mapping[str, str] | None) -> dict[int, int]:
        """Map a cohort filter to (dimension position -> value position), validating it."""
        if cohort is None:
            return {}
        out = {}
        for dim, value in cohort.items():
            if dim not in self.dims:
                raise _fail("incident cohort dimension", f"one of {self.dims}", dim)
            vals = self.values[self.dims.index(dim)]
            if value not in vals:
                raise _fail(f"incident cohort value for {dim!r}", f"one of {list(vals)}", value)
            out[self.dims.index(dim)] = vals.index(value)
        return out


@functools.lru_cache(maxsize=32)
def _world(spec: TrafficSpec) -> _World:
    return _World(spec)


def _draw_cohorts(world: _World, rng: np.random.Generator, n: int) -> list[IntArray]:
    out = []
    for cum in world.cum_shares:
        idx = np.searchsorted(cum, rng.random(n), side="right")
        out.append(np.minimum(idx, len(cum) - 1).astype(np.int64))
    return out


def _effect(world: _World, name: str, cidx: list[IntArray], n: int) -> FloatArray:
    total = np.zeros(n)
    for table, idx in zip(world.loc[name], cidx, strict=True):
        total += table[idx]
    return total


def _draw_category(
    world: _World, name: str, rng: np.random.Generator, cidx: list[IntArray], n: int
) -> IntArray:
    logits = np.broadcast_to(world.base_logits[name], (n, len(world.vocab[name]))).copy()
    for table, idx in zip(world.tilt[name], cidx, strict=True):
        logits += table[idx]
    # Gumbel-max: one vectorised categorical draw per row with row-specific probabilities.
    logits += rng.gumbel(size=logits.shape)
    return np.asarray(np.argmax(logits, axis=1), dtype=np.int64)


def _draw_features(
    world: _World,
    rng: np.random.Generator,
    rng_extra: np.random.Generator,
    cidx: list[IntArray],
    n: int,
    ts: FloatArray | None = None,
) -> tuple[dict[str, NDArray[Any]], NDArray[np.bool_]]:
    """Draw every feature column (unshifted) plus the null mask of clicks_7d.

    The base features are always drawn, in a fixed order, whatever n_numeric is, so that
    a wider spec shares its first features with a narrower one for the same seed. With
    event times ``ts``, the behavioural features follow the spec's daily cycle.
    """
    spec = world.spec
    eff = {name: _effect(world, name, cidx, n) for name in world.loc}
    if ts is not None and spec.daily_cycle > 0:
        day = 2.0 * math.pi * (ts % 86_400.0) / 86_400.0
        for name in eff:
            if name in _CYCLIC or name.startswith("num_"):
                phase = 2.0 * math.pi * (zlib.crc32(name.encode()) % 24) / 24
                eff[name] = eff[name] + spec.daily_cycle * np.sin(day + phase)

    def e(name: str) -> FloatArray | float:
        return eff.get(name, 0.0)

    # Account age in days: gamma, heavy right tail; "new" accounts are under 30 days old.
    age = np.floor(rng.gamma(0.9, 600.0 * np.exp(e("age_days")), n)).astype(np.int64)
    is_new = age < 30
    z_age = (np.log1p(age) - 5.6) / 1.4
    # Older accounts hold more money; bigger balances spend more.
    z_bal = 0.5 * z_age + math.sqrt(0.75) * rng.standard_normal(n)
    balance = np.round(np.exp(6.0 + 1.2 * (z_bal + e("balance"))), 2)
    z_amt = 0.3 * z_bal + math.sqrt(0.91) * rng.standard_normal(n)
    amount = np.maximum(np.round(np.exp(3.4 + 1.0 * (z_amt + e("amount"))), 2), 0.01)
    # Gamma-Poisson style overdispersion via a lognormal rate; new accounts click less.
    rate = np.exp(1.5 + 0.7 * rng.standard_normal(n) + e("clicks_7d") - 0.5 * is_new)
    clicks = rng.poisson(rate).astype(np.int64)
    clicks_null = rng.random(n) < spec.missing_rate
    session = np.round(np.exp(4.6 + 0.8 * (rng.standard_normal(n) + e("session_seconds"))), 1)
    country = _draw_category(world, "country", rng, cidx, n)
    device = _draw_category(world, "device", rng, cidx, n)
    cols: dict[str, NDArray[Any]] = {
        "amount": amount,
        "age_days": age,
        "clicks_7d": clicks,
        "is_new": is_new,
        "balance": balance,
        "session_seconds": session,
        "country": country,
        "device": device,
    }
    for name in world.names:
        if name in cols:
            continue
        if name.startswith("num_"):
            mean, scale, rho = world.extra[name]
            z = rho * z_amt + math.sqrt(1.0 - rho * rho) * rng_extra.standard_normal(n)
            cols[name] = np.round(mean + scale * (z + e(name)), _EXTRA_DECIMALS)
        else:
            cols[name] = _draw_category(world, name, rng_extra, cidx, n)
    return {name: cols[name] for name in world.names}, clicks_null


def _logit(
    world: _World, cols: Mapping[str, NDArray[Any]], clicks_null: NDArray[np.bool_], n: int
) -> FloatArray:
    """Fraud log-odds; missing features (narrow specs, nulls) contribute their mean, 0."""
    z = np.full(n, _INTERCEPT)
    if "amount" in cols:
        z += 0.8 * (np.log(np.maximum(cols["amount"], 0.01)) - 3.4)
    if "age_days" in cols:
        z -= 0.3 * (np.log1p(np.maximum(cols["age_days"], 0)) - 5.6)
    if "clicks_7d" in cols:
        z -= np.where(clicks_null, 0.0, 0.25 * (np.log1p(np.maximum(cols["clicks_7d"], 0)) - 1.6))
    if "is_new" in cols:
        z += 0.9 * cols["is_new"]
    if "session_seconds" in cols:
        z -= 0.4 * (np.log(np.maximum(cols["session_seconds"], 0.1)) - 4.6) / 0.8
    for name in ("country", "device"):
        if name in cols:
            z += world.risk[name][cols[name]]
    return z


@dataclass(frozen=True)
class _Plan:
    index: int
    feature: str
    kind: str
    cohort: dict[int, int]
    start: int
    end: int
    shift: float
    move_p: float
    target: int
    incident: str = "covariate_shift"
    factor: float = 1.0
    new_name: str | None = None
    ramp: int = 0


def reference_std(
    spec: TrafficSpec, feature: str, cohort: Mapping[str, str] | None = None
) -> float:
    """Stationary standard deviation of a numeric feature in a cohort (None = everyone).

    Incident magnitudes are in these units so that "+1 std" means the same thing for a
    skewed money amount and for a small count, and for a big cohort and a small one.
    """
    world = _world(spec)
    kind = world.kinds.get(feature)
    if kind not in ("float", "int"):
        numeric = [n for n, k in world.kinds.items() if k in ("float", "int")]
        raise _fail("feature", f"a numeric feature of this spec, one of {numeric}", feature)
    key = tuple(sorted(world.cohort_index(cohort).items()))
    return _reference_std(spec, feature, key)


def _reference_values(
    spec: TrafficSpec, feature: str, cohort: Mapping[str, str] | None
) -> FloatArray:
    world = _world(spec)
    key = tuple(sorted(world.cohort_index(cohort).items()))
    return _reference_sample(spec, feature, key)


@functools.lru_cache(maxsize=256)
def _reference_std(spec: TrafficSpec, feature: str, key: tuple[tuple[int, int], ...]) -> float:
    return float(np.std(_reference_sample(spec, feature, key), ddof=1))


@functools.lru_cache(maxsize=256)
def _reference_sample(
    spec: TrafficSpec, feature: str, key: tuple[tuple[int, int], ...]
) -> FloatArray:
    world = _world(spec)
    # A fixed stream independent of any seed: the reference belongs to the world.
    rng = np.random.default_rng([0x5EED, 1])
    rng_extra = np.random.default_rng([0x5EED, 2])
    n = _REFERENCE_ROWS
    cidx = _draw_cohorts(world, rng, n)
    for d, v in key:
        cidx[d] = np.full(n, v, dtype=np.int64)
    cols, clicks_null = _draw_features(world, rng, rng_extra, cidx, n)
    values = cols[feature]
    if feature == "clicks_7d":
        values = values[~clicks_null]
    return np.asarray(values, dtype=np.float64)


def _plan(world: _World, j: int, incident: Incident) -> _Plan:
    spec = world.spec
    if incident.kind in OUTCOME_KINDS + MODEL_KINDS:
        cohort = world.cohort_index(incident.cohort)
        end = incident.end_event if incident.end_event is not None else 2**62
        return _Plan(
            j, "", "outcome", cohort, incident.start_event, end, 0.0, 0.0, 0,
            incident.kind, incident.magnitude, incident.new_version,
        )  # fmt: skip
    feature = incident.feature
    if feature is None or feature not in world.kinds:
        raise _fail("incident feature", f"one of {list(world.names)}", feature)
    kind = world.kinds[feature]
    cohort = world.cohort_index(incident.cohort)
    end = incident.end_event if incident.end_event is not None else 2**62
    if incident.kind in UPSTREAM_KINDS:
        if incident.kind in ("frozen", "rescale") and kind not in ("float", "int"):
            raise _fail("a frozen or rescaled feature", "a numeric feature", feature)
        # A frozen feed repeats one plausible value: the reference median of the cohort.
        frozen = float(np.median(_reference_values(spec, feature, incident.cohort)))
        return _Plan(
            j, feature, kind, cohort, incident.start_event, end, frozen, 0.0, 0,
            incident.kind, incident.magnitude, incident.new_name,
        )  # fmt: skip
    if kind in ("float", "int"):
        shift = incident.magnitude * reference_std(spec, feature, incident.cohort)
        if kind == "int":
            shift = float(round(shift))
        return _Plan(
            j, feature, kind, cohort, incident.start_event, end, shift, 0.0, 0,
            ramp=incident.ramp_events,
        )  # fmt: skip
    # Categorical/bool: move ~30% of the mass per unit of magnitude to the rarest category,
    # the direction in which a change is most visible and most plausible (a new market,
    # a device type that suddenly appears).
    target = len(world.vocab[feature]) - 1
    move_p = min(1.0, 0.3 * abs(incident.magnitude))
    return _Plan(j, feature, kind, cohort, incident.start_event, end, 0.0, move_p, target)


def _affected(plan: _Plan, cidx: list[IntArray], first: int, n: int) -> NDArray[np.bool_]:
    g = np.arange(first, first + n)
    mask = (g >= plan.start) & (g < plan.end)
    for d, v in plan.cohort.items():
        mask &= cidx[d] == v
    return mask


def _apply(
    plan: _Plan,
    cols: dict[str, NDArray[Any]],
    cidx: list[IntArray],
    first: int,
    n: int,
    rng: np.random.Generator,
) -> None:
    mask = _affected(plan, cidx, first, n)
    col = cols[plan.feature]
    if plan.incident == "frozen":
        cols[plan.feature] = np.where(mask, plan.shift, col)
    elif plan.incident == "rescale":
        decimals = _DECIMALS.get(plan.feature, _EXTRA_DECIMALS) + 4
        cols[plan.feature] = np.where(mask, np.round(col * plan.factor, decimals), col)
    elif plan.incident == "rename":
        return  # the served key changes when the event is built
    elif plan.kind in ("float", "int"):
        shift: FloatArray | float = plan.shift
        if plan.ramp:
            done = (np.arange(first, first + n) - plan.start + 1) / plan.ramp
            shift = plan.shift * np.clip(done, 0.0, 1.0)
        if plan.kind == "int":
            cols[plan.feature] = np.where(mask, col + np.round(shift).astype(np.int64), col)
        else:
            decimals = _DECIMALS.get(plan.feature, _EXTRA_DECIMALS)
            cols[plan.feature] = np.where(mask, np.round(col + shift, decimals), col)
    else:
        move = mask & (rng.random(n) < plan.move_p)
        if plan.kind == "bool":
            cols[plan.feature] = np.where(move, bool(plan.target), col)
        else:
            cols[plan.feature] = np.where(move, plan.target, col)


def generate(
    spec: TrafficSpec, n_events: int, seed: int, incidents: Sequence[Incident] = ()
) -> Iterator[Record]:
    """Yield replay records ({"topic", "value"}) in arrival (event-time) order.

    Validation happens here, eagerly, rather than at the first ``next()``. Each chunk of
    rows is drawn from its own (seed, chunk, purpose) stream and always at full size, so
    a shorter run is an exact prefix of a longer one and adding an incident leaves every
    unaffected value of the same seed unchanged (useful for paired comparisons).
    """
    if not isinstance(spec, TrafficSpec):
        raise _fail("spec", "a TrafficSpec", spec)
    _check_int("n_events", n_events, 0)
    _check_int("seed", seed, 0)
    world = _world(spec)
    plans = []
    for j, incident in enumerate(incidents):
        if not isinstance(incident, Incident):
            raise _fail("incidents[]", "an Incident", incident)
        plans.append(_plan(world, j, incident))
    return _stream(world, n_events, seed, plans)


def _stream(world: _World, n_events: int, seed: int, plans: list[_Plan]) -> Iterator[Record]:
    spec = world.spec
    names = world.names
    kinds = world.kinds
    model, version, source = spec.model, spec.model_version, spec.label_source
    mean_gap = 1.0 / spec.events_per_second
    no_delay = spec.label_delay_seconds == 0.0
    # Lognormal delays with the requested mean: most labels come quickly, a long tail late.
    delay_mu = 0.0 if no_delay else math.log(spec.label_delay_seconds) - _DELAY_SIGMA**2 / 2
    cohort_cache: dict[int, dict[str, str]] = {}
    heap: list[tuple[float, int, Record]] = []
    offset = 0.0
    for k in range(-(-n_events // _CHUNK)):
        first = k * _CHUNK
        n = _CHUNK
        m = min(_CHUNK, n_events - first)
        rng_time = np.random.default_rng([seed, k, 0])
        rng_feat = np.random.default_rng([seed, k, 1])
        rng_label = np.random.default_rng([seed, k, 2])
        rng_extra = np.random.default_rng([seed, k, 3])

        gaps = rng_time.exponential(mean_gap, n)
        elapsed = offset + np.cumsum(gaps)
        offset = float(elapsed[-1])
        ts = np.round(spec.start_ts + elapsed, 3)
        cidx = _draw_cohorts(world, rng_time, n)
        cols, clicks_null = _draw_features(world, rng_feat, rng_extra, cidx, n, ts)
        world_plans = [
            plan
            for plan in plans
            if plan.incident not in UPSTREAM_KINDS + OUTCOME_KINDS + MODEL_KINDS
        ]
        served_plans = [plan for plan in plans if plan.incident in UPSTREAM_KINDS]
        outcome_plans = [plan for plan in plans if plan.incident in OUTCOME_KINDS]
        for plan in world_plans:
            _apply(plan, cols, cidx, first, n, np.random.default_rng([seed, k, 100 + plan.index]))
        # Labels come from the true P(y | x): a covariate shift moves x, not the relation.
        logit = _logit(world, cols, clicks_null, n)
        p = 1.0 / (1.0 + np.exp(-logit))
        p_label = p
        untrusted = rng_extra.random(n) < spec.untrusted_share
        override_p = np.full(n, spec.override_rate)
        for plan in outcome_plans:
            affected = _affected(plan, cidx, first, n)
            if plan.incident == "concept":
                # The relation moved: the same inputs now carry more risk (in logits).
                moved = 1.0 / (1.0 + np.exp(-(logit + plan.factor)))
                p_label = np.where(affected, moved, p_label)
            elif plan.incident == "label_inflation":
                # A UI change: the proxy fires more often, whatever the truth.
                inflated = np.minimum(1.0, p_label * plan.factor + 0.05 * (plan.factor - 1.0))
                p_label = np.where(affected & untrusted, inflated, p_label)
            else:
                override_p = np.where(affected, plan.factor, override_p)
        label = (rng_label.random(n) < p_label).astype(np.int64)
        # The model scores the served values: after an upstream fault (a frozen, rescaled
        # or renamed feed) they differ from the true ones, and so may the score.
        for plan in served_plans:
            _apply(plan, cols, cidx, first, n, np.random.default_rng([seed, k, 100 + plan.index]))
        if served_plans:
            p = 1.0 / (1.0 + np.exp(-_logit(world, cols, clicks_null, n)))
        versions = np.full(n, version, dtype=object)
        for plan in plans:
            if plan.incident != "deployment":
                continue
            live = _affected(plan, cidx, first, n)
            # The new version is another fit of the same model (a little noise in its
            # logits) plus its fault: a bias of `factor` logits, e.g. a training set's
            # negative downsampling that was not undone.
            noise = np.random.default_rng([seed, k, 100 + plan.index]).normal(0.0, 0.1, n)
            shipped = np.log(p / (1.0 - p)) + plan.factor + noise
            p = np.where(live, 1.0 / (1.0 + np.exp(-shipped)), p)
            versions = np.where(live, str(plan.new_name), versions)
        score = np.round(np.clip(p, _SCORE_EPS, 1.0 - _SCORE_EPS), 6)
        renames = [
            (plan.feature, plan.new_name, _affected(plan, cidx, first, n)[:m].tolist())
            for plan in served_plans
            if plan.incident == "rename"
        ]
        has_fb = rng_label.random(n) < spec.label_fraction
        if no_delay:
            delay = np.zeros(n)
        else:
            delay = np.exp(delay_mu + _DELAY_SIGMA * rng_label.standard_normal(n))
        fb_ts = np.round(ts + delay, 3)
        override = rng_label.random(n) < override_p

        code = np.zeros(n, dtype=np.int64)
        for idx, stride in zip(cidx, world.strides, strict=True):
            code += idx * stride

        lists: list[list[Any]] = []
        for name in names:
            col = cols[name][:m]
            kind = kinds[name]
            if kind == "category":
                lists.append(world.vocab_arrays[name][col].tolist())
            else:
                values = col.tolist()
                if name == "clicks_7d":
                    for i in np.flatnonzero(clicks_null[:m]).tolist():
                        values[i] = None
                lists.append(values)

        fb_ts_l = fb_ts[:m].tolist()
        label_l = label[:m].tolist()
        override_l = override[:m].tolist()
        untrusted_l = untrusted[:m].tolist()
        version_l = versions[:m].tolist()
        rows = zip(
            ts[:m].tolist(),
            score[:m].tolist(),
            code[:m].tolist(),
            has_fb[:m].tolist(),
            zip(*lists, strict=True),
            strict=True,
        )
        for j, (t, s, c, fb, vals) in enumerate(rows):
            while heap and heap[0][0] <= t:
                yield heapq.heappop(heap)[2]
            template = cohort_cache.get(c)
            if template is None:
                template = {
                    d: world.values[i][(c // world.strides[i]) % len(world.values[i])]
                    for i, d in enumerate(world.dims)
                }
                cohort_cache[c] = template
            event_id = f"p-{first + j}"
            features = dict(zip(names, vals, strict=True))
            for old, new, affected in renames:
                if affected[j]:
                    features[new] = features.pop(old)  # type: ignore[index]
            yield {
                "topic": "predictions",
                "value": {
                    "event_id": event_id,
                    "ts": t,
                    "model": model,
                    "model_version": version_l[j],
                    "cohort": template.copy(),
                    "features": features,
                    "score": s,
                },
            }
            if fb:
                fts = fb_ts_l[j]
                feedback = {
                    "event_id": event_id,
                    "ts": fts,
                    "label": label_l[j],
                    "source": UNTRUSTED_SOURCE if untrusted_l[j] else source,
                    "override": override_l[j],
                }
                heapq.heappush(heap, (fts, first + j, {"topic": "feedback", "value": feedback}))
    while heap:
        yield heapq.heappop(heap)[2]


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


SCENARIOS: dict[str, Callable[[int], tuple[TrafficSpec, list[Incident]]]] = {
    "stationary": _stationary,
    "covariate_shift": _covariate_shift,
    "cohort_covariate_shift": _cohort_covariate_shift,
    "frozen": _frozen,
    "cohort_frozen": _cohort_frozen,
    "rescaled": _rescaled,
    "renamed": _renamed,
    "concept": _concept,
    "cohort_concept": _cohort_concept,
    "click_inflation": _click_inflation,
    "rising_overrides": _rising_overrides,
    "labelled_stationary": _labelled_stationary,
    # v2 shipped without undoing its training set's 10x negative downsampling.
    "deployment_regression": _deployment("deployment_regression", math.log(10.0)),
    # v2 is another fit of the same model: nothing to decide.
    "healthy_deployment": _deployment("healthy_deployment", 0.0),
    "gradual_drift": _gradual_drift,
    "campaign": _campaign,
    "daily_cycle": _daily_cycle,
}


def write_replay(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> int:
    """Write records as JSON Lines; returns the count so callers need not re-read the file."""
    count = 0
    with open(path, "wb", buffering=1 << 20) as fh:
        for record in records:
            fh.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    return count


def write_truth(
    path: str | os.PathLike[str],
    spec: TrafficSpec,
    incidents: Sequence[Incident],
    n_events: int,
    *,
    scenario: str = "custom",
    seed: int | None = None,
    event_ts: Sequence[float] | None = None,
) -> None:
    """Write the ground truth next to a replay so a benchmark can score it on its own.

    ``event_ts`` (the ``ts`` of every prediction written, by event index) gives each
    incident its start and end times too, and adds ``event_times``: ``[index, ts]`` of every
    1,000th event and of the last, so that a scorer can place a decision, which carries an
    event time, on the event axis (the rate of a stream need not be constant).
    """
    truth: dict[str, Any] = {
        "scenario": scenario,
        "events": n_events,
        "seed": seed,
        "spec": spec.to_dict(),
        "incidents": [incident.to_dict(event_ts) for incident in incidents],
    }
    if event_ts is not None:
        if len(event_ts) != n_events:
            raise _fail("event_ts", f"{n_events} event times", len(event_ts))
        marks = sorted({*range(0, n_events, 1_000), n_events - 1}) if n_events else []
        truth["event_times"] = [[i, event_ts[i]] for i in marks]
    with open(path, "wb") as fh:
        fh.write(orjson.dumps(truth, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
