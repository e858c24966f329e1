"""The simulated population: its cohorts' traffic shares and feature locations, the
categories' tilts and the fraud model, all fixed by the spec; the draws of feature columns
from it, and the reference spread of a feature (``reference_std``)."""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.arrays import FloatArray, IntArray
from evaluation.simulate.calendar import is_weekend
from evaluation.simulate.checks import fail
from evaluation.simulate.spec import CATEGORICAL_BASE, NUMERIC_BASE, TrafficSpec, zipf

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
# Behaviour that follows the time of day and the day of the week (account age and
# balance do not).
_CYCLIC = ("amount", "clicks_7d", "session_seconds")
_TILT_SD = 0.3
# Decimals of the values as served (a rescaled feed keeps 4 more).
DECIMALS: dict[str, int] = {"amount": 2, "balance": 2, "session_seconds": 1}
EXTRA_DECIMALS = 4
_REFERENCE_ROWS = 1 << 16
# Logistic fraud model over a few features; the intercept puts the base rate near 5%.
_INTERCEPT = -3.55


def _world_rng(*parts: str) -> np.random.Generator:
    # crc32 rather than hash(): str hashing is salted per process.
    return np.random.default_rng(zlib.crc32("\x1f".join(parts).encode()))


class World:
    """Fixed parameters of the simulated population, derived from the spec alone."""

    def __init__(self, spec: TrafficSpec) -> None:
        self.spec = spec
        self.dims = list(spec.cohorts)
        self.values = [spec.cohorts[d] for d in self.dims]
        self.cum_shares = [np.cumsum(zipf(len(v), spec.cohort_skew)) for v in self.values]
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
            elif name.startswith("cat_") or name in CATEGORICAL_BASE:
                self.kinds[name] = "category"
            else:
                self.kinds[name] = "float"
        self.vocab["is_new"] = ("False", "True")
        # Base features are always drawn (see draw_features), so always parametrised.
        for name in dict.fromkeys(NUMERIC_BASE + CATEGORICAL_BASE + self.names):
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
            elif name.startswith("cat_") or name in CATEGORICAL_BASE:
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
        self.base_logits[name] = np.log(zipf(len(vocab), skew))
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
                raise fail("incident cohort dimension", f"one of {self.dims}", dim)
            vals = self.values[self.dims.index(dim)]
            if value not in vals:
                raise fail(f"incident cohort value for {dim!r}", f"one of {list(vals)}", value)
            out[self.dims.index(dim)] = vals.index(value)
        return out


@functools.lru_cache(maxsize=32)
def world_of(spec: TrafficSpec) -> World:
    return World(spec)


def draw_cohorts(world: World, rng: np.random.Generator, n: int) -> list[IntArray]:
    out = []
    for cum in world.cum_shares:
        idx = np.searchsorted(cum, rng.random(n), side="right")
        out.append(np.minimum(idx, len(cum) - 1).astype(np.int64))
    return out


def _effect(world: World, name: str, cidx: list[IntArray], n: int) -> FloatArray:
    total = np.zeros(n)
    for table, idx in zip(world.loc[name], cidx, strict=True):
        total += table[idx]
    return total


def _draw_category(
    world: World, name: str, rng: np.random.Generator, cidx: list[IntArray], n: int
) -> IntArray:
    logits = np.broadcast_to(world.base_logits[name], (n, len(world.vocab[name]))).copy()
    for table, idx in zip(world.tilt[name], cidx, strict=True):
        logits += table[idx]
    # Gumbel-max: one vectorised categorical draw per row with row-specific probabilities.
    logits += rng.gumbel(size=logits.shape)
    return np.asarray(np.argmax(logits, axis=1), dtype=np.int64)


def draw_features(
    world: World,
    rng: np.random.Generator,
    rng_extra: np.random.Generator,
    cidx: list[IntArray],
    n: int,
    ts: FloatArray | None = None,
) -> tuple[dict[str, NDArray[Any]], NDArray[np.bool_]]:
    """Draw every feature column (unshifted) plus the null mask of clicks_7d.

    The base features are always drawn, in a fixed order, whatever n_numeric is, so that
    a wider spec shares its first features with a narrower one for the same seed. With
    event times ``ts``, the behavioural features follow the spec's daily cycle and weekends.
    """
    spec = world.spec
    eff = {name: _effect(world, name, cidx, n) for name in world.loc}
    if ts is not None and (spec.daily_cycle > 0 or spec.weekend_shift != 0.0):
        day = 2.0 * math.pi * (ts % 86_400.0) / 86_400.0
        weekend = spec.weekend_shift * is_weekend(ts)
        for name in eff:
            if name in _CYCLIC or name.startswith("num_"):
                phase = 2.0 * math.pi * (zlib.crc32(name.encode()) % 24) / 24
                eff[name] = eff[name] + spec.daily_cycle * np.sin(day + phase) + weekend

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
            cols[name] = np.round(mean + scale * (z + e(name)), EXTRA_DECIMALS)
        else:
            cols[name] = _draw_category(world, name, rng_extra, cidx, n)
    return {name: cols[name] for name in world.names}, clicks_null


def fraud_logit(
    world: World, cols: Mapping[str, NDArray[Any]], clicks_null: NDArray[np.bool_], n: int
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


def reference_std(
    spec: TrafficSpec, feature: str, cohort: Mapping[str, str] | None = None
) -> float:
    """Stationary standard deviation of a numeric feature in a cohort (None = everyone).

    Incident magnitudes are in these units so that "+1 std" means the same thing for a
    skewed money amount and for a small count, and for a big cohort and a small one.
    """
    world = world_of(spec)
    kind = world.kinds.get(feature)
    if kind not in ("float", "int"):
        numeric = [n for n, k in world.kinds.items() if k in ("float", "int")]
        raise fail("feature", f"a numeric feature of this spec, one of {numeric}", feature)
    key = tuple(sorted(world.cohort_index(cohort).items()))
    return _reference_std(spec, feature, key)


def reference_values(
    spec: TrafficSpec, feature: str, cohort: Mapping[str, str] | None
) -> FloatArray:
    """The stationary sample of a feature in a cohort that ``reference_std`` measures."""
    world = world_of(spec)
    key = tuple(sorted(world.cohort_index(cohort).items()))
    return _reference_sample(spec, feature, key)


@functools.lru_cache(maxsize=256)
def _reference_std(spec: TrafficSpec, feature: str, key: tuple[tuple[int, int], ...]) -> float:
    return float(np.std(_reference_sample(spec, feature, key), ddof=1))


@functools.lru_cache(maxsize=256)
def _reference_sample(
    spec: TrafficSpec, feature: str, key: tuple[tuple[int, int], ...]
) -> FloatArray:
    world = world_of(spec)
    # A fixed stream independent of any seed: the reference belongs to the world.
    rng = np.random.default_rng([0x5EED, 1])
    rng_extra = np.random.default_rng([0x5EED, 2])
    n = _REFERENCE_ROWS
    cidx = draw_cohorts(world, rng, n)
    for d, v in key:
        cidx[d] = np.full(n, v, dtype=np.int64)
    cols, clicks_null = draw_features(world, rng, rng_extra, cidx, n)
    values = cols[feature]
    if feature == "clicks_7d":
        values = values[~clicks_null]
    return np.asarray(values, dtype=np.float64)
