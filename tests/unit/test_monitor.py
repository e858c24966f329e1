from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from river import drift

from detectors.batch import PredictionBatch, numeric_column
from detectors.binning import CategoricalBins, NumericBins
from detectors.decision import Decision
from detectors.divergence import g_test, psi
from detectors.monitor import ModelMonitor, MonitorConfig
from detectors.score_change import ScopedADWIN
from tests.support import feed, river_changes

REGIONS = ("eu", "us", "apac")
COUNTRIES = ("DE", "FR", "IT", "ES", "NL")


def make_stream(
    n: int,
    seed: int,
    *,
    shift: float = 0.0,
    start: int = 0,
    stop: int | None = None,
    feature: str = "amount",
    cohorts: tuple[str, ...] | None = None,
    region_p: tuple[float, ...] = (0.4, 0.35, 0.25),
    regions: tuple[str, ...] = REGIONS,
    versions: tuple[tuple[int, str], ...] = ((0, "v1"),),
) -> PredictionBatch:
    """A stationary stream; ``feature`` moves by ``shift`` standard deviations on rows
    [start, stop), for every row or only those of the ``cohorts`` regions."""
    rng = np.random.default_rng(seed)
    region = rng.choice(list(regions), size=n, p=list(region_p))
    amount = rng.normal(0.0, 1.0, n)
    age = rng.normal(40.0, 9.0, n)
    flag = (rng.random(n) < 0.3).astype(float)
    country = rng.choice(list(COUNTRIES), size=n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    score = rng.beta(2, 5, n)
    moved = np.zeros(n, dtype=bool)
    moved[start : n if stop is None else stop] = True
    if cohorts is not None:
        moved &= np.isin(region, list(cohorts))
    sd = {"amount": 1.0, "age": 9.0}[feature]
    if feature == "amount":
        amount = np.where(moved, amount + shift * sd, amount)
    else:
        age = np.where(moved, age + shift * sd, age)
    model_version = []
    for i in range(n):
        current = [v for at, v in versions if at <= i][-1]
        model_version.append(current)
    return PredictionBatch(
        ts=1_700_000_000.0 + np.arange(n, dtype=float),
        score=score,
        model_version=model_version,
        cohorts={"region": region.tolist()},
        features={
            "amount": amount.tolist(),
            "age": age.tolist(),
            "flag": flag.tolist(),
            "country": country.tolist(),
        },
    )


def per_event(monitor: ModelMonitor, batch: PredictionBatch) -> list[Decision]:
    out: list[Decision] = []
    for i in range(len(batch)):
        out.extend(monitor.update(batch.slice(i, i + 1)))
    return out


def snapshot(monitor: ModelMonitor) -> dict[str, Any]:
    state: dict[str, Any] = {
        "events": monitor.events,
        "windows": monitor.windows,
        "scope_events": monitor.scope_events.tolist(),
        "reference_scope_events": monitor.reference_scope_events.tolist(),
        "unknown": dict(monitor.new_features.totals),
    }
    assert monitor.score_changes is not None
    state["adwin"] = monitor.score_changes.detections.tolist()
    state["adwin_means"] = monitor.score_changes.means().tolist()
    for name, f in monitor.features.items():
        state[name] = {
            "reference": f.reference.tolist(),
            "current": f.current.tolist(),
            "streak": f.drift.streak.tolist(),
            "clean": f.drift.clean_streak.tolist(),
            "open": f.drift.open.tolist(),
            "wrong_type": f.wrong_type,
        }
        # NaN-aware exact arrays
        state[name]["psi"] = [repr(float(x)) for x in f.psi]
        state[name]["pvalue"] = [repr(float(x)) for x in f.pvalue]
        state[name]["js"] = [repr(float(x)) for x in f.js]
    return state


SMALL = MonitorConfig(
    reference_events=300,
    window_events=100,
    min_window_events=20,
    min_reference_events=20,
)
SPLIT_N = 2000


@functools.lru_cache(maxsize=1)
def split_stream() -> PredictionBatch:
    # A small cohort ("latam", ~8%) is under min_window_events per window and carries over.
    return make_stream(
        SPLIT_N,
        seed=3,
        shift=1.5,
        start=777,
        stop=1333,
        regions=(*REGIONS, "latam"),
        region_p=(0.37, 0.3, 0.25, 0.08),
    )


@functools.lru_cache(maxsize=1)
def split_reference() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    monitor = ModelMonitor("m", SMALL)
    decisions = monitor.update(split_stream())
    return [d.to_dict() for d in decisions], snapshot(monitor)


def test_whole_stream_equals_one_event_at_a_time() -> None:
    whole_decisions, whole_state = split_reference()
    # the stream has teeth: the shift is confirmed and later resolved
    actions = [(d["action"], d["scope"]["feature"]) for d in whole_decisions]
    assert ("investigate", "amount") in actions
    assert ("hold", "amount") in actions
    monitor = ModelMonitor("m", SMALL)
    decisions = per_event(monitor, split_stream())
    assert [d.to_dict() for d in decisions] == whole_decisions
    assert snapshot(monitor) == whole_state


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=SPLIT_N), max_size=25))
def test_any_batch_split_gives_the_same_result(cuts: list[int]) -> None:
    whole_decisions, whole_state = split_reference()
    monitor = ModelMonitor("m", SMALL)
    decisions = feed(monitor, split_stream(), cuts)
    assert [d.to_dict() for d in decisions] == whole_decisions
    assert snapshot(monitor) == whole_state


def _as_arrays(batch: PredictionBatch) -> PredictionBatch:
    """The batch as the decoder hands it over: each column of floats only as an array."""
    features = {
        name: np.array(column, dtype=np.float64) if {type(v) for v in column} == {float} else column
        for name, column in batch.features.items()
    }
    return dataclasses.replace(batch, features=features)


def _retyped_stream() -> PredictionBatch:
    """split_stream whose categorical country turns into one number (a broken feed,
    reported as frozen on the value it sends)."""
    stream = split_stream()
    country = [*stream.features["country"][:1200], *[3.0] * (SPLIT_N - 1200)]
    return dataclasses.replace(stream, features={**stream.features, "country": country})


def test_joined_and_taken_float_arrays_keep_their_floats() -> None:
    lists = split_stream().slice(0, 10)
    arrays = _as_arrays(lists)
    amount = list(lists.features["amount"])
    mixed = PredictionBatch.concat([arrays, lists]).features["amount"]
    assert isinstance(mixed, list) and mixed == amount * 2
    assert {type(v) for v in mixed} == {float}  # not numpy scalars
    joined = PredictionBatch.concat([arrays, arrays]).features["amount"]
    assert isinstance(joined, np.ndarray) and joined.tolist() == amount * 2
    taken = arrays.take(np.array([3, 1])).features["amount"]
    assert isinstance(taken, np.ndarray) and taken.tolist() == [amount[3], amount[1]]


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=SPLIT_N), max_size=12),
    st.lists(st.booleans(), min_size=13, max_size=13),
    st.booleans(),
)
@example(cuts=[1200], arrays=[False] + [True] * 12, retyped=True)  # the number as an array
def test_float_columns_as_arrays_are_judged_as_the_same_floats(
    cuts: list[int], arrays: list[bool], retyped: bool
) -> None:
    """Parts whose float columns are arrays (as the decoder gives them) or lists, in any
    mix and cut: the same decisions and state, a categorical feature's floats included."""
    stream = _retyped_stream() if retyped else split_stream()
    expected = ModelMonitor("m", SMALL)
    expected_decisions = [d.to_dict() for d in expected.update(stream)]
    assert expected_decisions
    monitor = ModelMonitor("m", SMALL)
    decisions = []
    for (a, b), as_array in zip(itertools.pairwise([0, *sorted(cuts), SPLIT_N]), arrays):
        part = stream.slice(a, b)
        decisions += monitor.update(_as_arrays(part) if as_array else part)
    assert [d.to_dict() for d in decisions] == expected_decisions
    assert snapshot(monitor) == snapshot(expected)
    assert monitor.features["country"].last_unseen == expected.features["country"].last_unseen


# --- Behaviour on generated streams ---

CONFIG = MonitorConfig(
    reference_events=3000,
    window_events=600,
    min_window_events=100,
    min_reference_events=100,
)
W = CONFIG.window_events
R = CONFIG.reference_events


def run(batch: PredictionBatch, config: MonitorConfig = CONFIG) -> list[Decision]:
    return ModelMonitor("fraud", config).update(batch)


def test_constant_stream_gives_no_decision() -> None:
    n = R + 20 * W
    batch = PredictionBatch(
        ts=np.arange(n, dtype=float),
        score=np.full(n, 0.5),
        model_version=["v1"] * n,
        cohorts={"region": ["eu"] * n},
        features={"amount": [3.0] * n, "flag": [1] * n, "country": ["DE"] * n},
    )
    monitor = ModelMonitor("m", CONFIG)
    assert monitor.update(batch) == []
    assert monitor.windows == 20
    for state in monitor.features.values():
        assert np.all(state.psi[~np.isnan(state.psi)] == 0.0)


def test_stationary_stream_gives_no_decision() -> None:
    monitor = ModelMonitor("m", CONFIG)
    decisions = monitor.update(make_stream(R + 40 * W, seed=11))
    assert decisions == []
    assert monitor.windows == 40
    # every scope was judged: the test is not vacuous
    for state in monitor.features.values():
        assert not np.isnan(state.pvalue[:4]).any()


def test_string_feature_is_categorical() -> None:
    monitor = ModelMonitor("m", CONFIG)
    monitor.update(make_stream(R, seed=1))
    assert monitor.warm
    country = monitor.features["country"]
    assert country.kind == "categorical"
    assert isinstance(country.bins, CategoricalBins)
    assert set(country.bins.categories) == set(COUNTRIES)
    assert isinstance(monitor.features["amount"].bins, NumericBins)
    assert monitor.features["flag"].kind == "numeric"


def _countries_replaced(replace: Any, seed: int = 41) -> list[Decision]:
    """Decisions on a stream whose ``country`` values are replaced, from event R + 4W on,
    by ``replace(value)``."""
    start = R + 4 * W
    batch = make_stream(R + 12 * W, seed=seed)
    country = batch.features["country"]
    batch.features["country"] = country[:start] + [replace(c) for c in country[start:]]
    return run(batch)


@pytest.mark.parametrize(
    ("replace", "frozen_value"), [(lambda c: "DE", "DE"), (lambda c: "unknown", "unknown")]
)
def test_a_categorical_frozen_on_one_value_names_it(replace: Any, frozen_value: str) -> None:
    (decision,) = _countries_replaced(replace)
    assert (decision.action, decision.cause, decision.feature) == (
        "fix_upstream",
        "frozen_signal",
        "country",
    )
    assert decision.evidence["frozen_value"] == frozen_value


def test_categories_that_all_changed_case_are_not_one_frozen_value() -> None:
    """Unseen values share the ``other`` bin, not one value: lower-cased countries are
    a shift of the feature's distribution, not a feed stuck on one value."""
    decisions = _countries_replaced(str.lower)
    assert [(d.action, d.cause, d.feature) for d in decisions] == [
        ("investigate", "covariate_drift", "country")
    ]


def test_population_shift_gives_one_population_decision() -> None:
    start = R + 5 * W
    n = R + 15 * W
    batch = make_stream(n, seed=21, shift=1.0, start=start)
    monitor = ModelMonitor("fraud", CONFIG)
    decisions = monitor.update(batch)
    assert [(d.action, d.cause, d.feature, d.cohort) for d in decisions] == [
        ("investigate", "covariate_drift", "amount", None)
    ]
    d = decisions[0]
    # confirmed at the end of the 3rd shifted window (windows are aligned with the shift)
    confirm_end = start + CONFIG.persistence_windows * W - 1
    assert d.window_end == d.confirmed_at == d.ts == float(batch.ts[confirm_end])
    assert d.window_start == float(batch.ts[confirm_end - W + 1])
    assert d.window_events == W
    assert d.model == "fraud"
    assert d.model_version == "v1"
    assert d.evidence["first_seen"] == float(batch.ts[start])
    assert d.evidence["persisted_windows"] == CONFIG.persistence_windows
    assert d.evidence["reference_events"] == R
    assert d.evidence["feature_kind"] == "numeric"
    # independent recomputation of the evidence from the raw rows
    bins = NumericBins.from_reference(np.asarray(batch.features["amount"][:R]), 10)
    ref_hist = np.bincount(
        bins.assign(np.asarray(batch.features["amount"][:R])), minlength=bins.n_bins
    )
    window = np.asarray(batch.features["amount"][confirm_end - W + 1 : confirm_end + 1])
    cur_hist = np.bincount(bins.assign(window), minlength=bins.n_bins)
    expected = float(psi(ref_hist[None], cur_hist[None])[0])
    assert d.evidence["psi"] == pytest.approx(expected, abs=1e-6)
    assert d.evidence["psi"] >= CONFIG.psi_threshold
    p_expected = float(g_test(ref_hist[None], cur_hist[None])[1][0])
    assert d.evidence["g_test_pvalue"] == pytest.approx(p_expected, rel=1e-5)
    assert d.evidence["g_test_pvalue"] < CONFIG.alpha
    assert len(d.evidence["psi_history"]) == CONFIG.persistence_windows
    assert all(x >= CONFIG.psi_threshold for x in d.evidence["psi_history"])


@pytest.mark.parametrize("region", ["eu", "apac"])
def test_cohort_shift_gives_a_cohort_decision(region: str) -> None:
    batch = make_stream(R + 15 * W, seed=31, shift=1.0, start=R + 4 * W, cohorts=(region,))
    decisions = run(batch)
    scoped = [(d.action, d.cause, d.feature, d.cohort) for d in decisions]
    assert scoped == [("investigate", "covariate_drift", "amount", {"region": region})]
    assert decisions[0].evidence["reference_events"] == sum(
        1 for r in batch.cohorts["region"][:R] if r == region
    )


def test_a_drift_in_progress_that_turns_into_a_steady_factor_is_not_a_unit_change() -> None:
    """The peak of a multiplicative daily cycle the reference did not cover: the feature
    drifted first (here by a shift), then sat at one factor. A unit change is a step
    from the reference; this is the drift going on, and no reason to fix the feed."""
    config = MonitorConfig()  # windows of 2,000 events: a factor is measured within ~2%
    r, w = config.reference_events, config.window_events
    n = r + 16 * w
    rng = np.random.default_rng(17)
    amount = rng.lognormal(3.0, 1.0, n)
    phase = np.arange(n) - r
    amount[(phase >= 0) & (phase < 5 * w)] += 15.0
    amount[phase >= 5 * w] *= 2.54  # inches to cm, as it happens
    batch = make_stream(n, seed=17)
    batch.features["amount"] = amount.tolist()
    decisions = run(batch, config)
    assert [(d.action, d.cause, d.feature) for d in decisions] == [
        ("investigate", "covariate_drift", "amount")
    ]
    # a factor the world does not drift into is a unit change, drift or not
    amount[phase >= 5 * w] *= 1000 / 2.54
    batch.features["amount"] = amount.tolist()
    assert [(d.action, d.cause, d.feature) for d in run(batch, config)] == [
        ("investigate", "covariate_drift", "amount"),
        ("fix_upstream", "rescaled_signal", "amount"),
        ("hold", "covariate_drift", "amount"),
    ]


@pytest.mark.parametrize("shift", [0.0, 2.0])
def test_a_feature_absent_from_most_events_is_judged_on_its_values(shift: float) -> None:
    """Present in 5% of events: ~100 values a window. Their move by 2 standard deviations
    moves 5% of the histogram with its null bin, under any threshold; the values alone
    show it, and windows with too few of them count neither way (no flapping)."""
    config = MonitorConfig()
    r, w = config.reference_events, config.window_events
    n = r + 30 * w
    rng = np.random.default_rng(23)
    rare = rng.normal(10.0, 2.0, n) + shift * 2.0 * (np.arange(n) >= r + 5 * w)
    batch = make_stream(n, seed=23)
    batch.features["rare"] = [None if rng.random() < 0.95 else v for v in rare.tolist()]
    decisions = run(batch, config)
    found = [(d.action, d.cause, d.feature) for d in decisions]
    assert found == ([("investigate", "covariate_drift", "rare")] if shift else [])
    if shift:
        # 3 windows with enough values, ~half of them: well within 10 windows
        assert decisions[0].ts <= batch.ts[r + 15 * w]


def test_only_windows_short_of_present_values_are_left_undecided() -> None:
    """Undecided means: events enough, values (nulls apart) too few. A small window
    without nulls, or a matched reference with few expected events, is judged as ever."""
    from types import SimpleNamespace

    from detectors.monitor.feature_drift import _psi_of_present_values

    reference = np.array([[40, 30, 30, 0], [10, 10, 10, 970], [300, 300, 300, 100]], float)
    current = np.array([[30, 30, 20, 0], [5, 5, 5, 985], [300, 300, 300, 100]], float)
    state = SimpleNamespace(bins=SimpleNamespace(null_bin=3))
    combined, undecided = _psi_of_present_values(reference, current, [state], 0.2)  # type: ignore[list-item]
    assert undecided.tolist() == [False, True, False]
    assert combined.tolist() == psi(reference, current).tolist()  # nothing moved among values


def test_short_shift_gives_only_an_informational_hold() -> None:
    assert CONFIG.persistence_windows == 3
    start = R + 5 * W
    batch = make_stream(R + 15 * W, seed=41, shift=1.5, start=start, stop=start + 2 * W)
    monitor = ModelMonitor("m", CONFIG)
    decisions = monitor.update(batch)
    assert [(d.action, d.cause, d.feature, d.cohort) for d in decisions] == [
        ("hold", "transient_shift", "amount", None)
    ]
    (hold,) = decisions
    assert hold.evidence["persisted_windows"] == 2
    assert hold.evidence["reverted"] is True
    # reported when the shift is over: in the first window after it
    assert hold.window_start >= float(batch.ts[start + 2 * W - 1]) - 1.0
    assert hold.evidence["psi"] >= CONFIG.psi_threshold
    # the shift was seen (two drifted windows) but never confirmed
    assert not monitor.features["amount"].drift.open.any()
    psi_history = []
    monitor2 = ModelMonitor("m", CONFIG)
    for k in range(15):
        monitor2.update(batch.slice(0 if k == 0 else R + k * W, R + (k + 1) * W))
        psi_history.append(float(monitor2.features["amount"].psi[0]))
    assert sum(p >= CONFIG.psi_threshold for p in psi_history) == 2


def test_ended_shift_gives_a_later_hold() -> None:
    start, stop = R + 4 * W, R + 9 * W
    batch = make_stream(R + 16 * W, seed=51, shift=1.0, start=start, stop=stop)
    decisions = run(batch)
    assert [(d.action, d.feature, d.cohort) for d in decisions] == [
        ("investigate", "amount", None),
        ("hold", "amount", None),
    ]
    investigate, hold = decisions
    assert hold.ts > investigate.ts
    assert hold.evidence["resolved"] is True
    assert (investigate.phase, hold.phase) == ("opened", "resolved")
    assert hold.incident_id == investigate.incident_id
    assert CONFIG.resolve_windows > CONFIG.persistence_windows
    assert hold.evidence["clean_windows"] == CONFIG.resolve_windows
    # the hold comes at the end of the resolve_windows-th clean window after the shift
    # ended, not when the condition closed (persistence_windows clean windows)
    assert hold.ts == float(batch.ts[stop + CONFIG.resolve_windows * W - 1])
    assert hold.severity == "info"
    assert investigate.severity == "warning"
    assert "resolved" not in investigate.evidence
    assert hold.decision_id != investigate.decision_id


def test_decision_ids_are_deterministic_and_scope_specific() -> None:
    def ids(region: str) -> list[tuple[Any, str]]:
        batch = make_stream(R + 12 * W, seed=61, shift=1.2, start=R + 3 * W, cohorts=(region,))
        return [(d.cohort, d.decision_id) for d in run(batch)]

    first, second = ids("eu"), ids("eu")
    assert first == second
    other = ids("us")
    assert [c for c, _ in first] == [{"region": "eu"}]
    assert [c for c, _ in other] == [{"region": "us"}]
    assert first[0][1] != other[0][1]
    assert all(len(i) == 32 and int(i, 16) >= 0 for _, i in first + other)


def test_a_shift_in_most_cohorts_is_reported_for_the_population() -> None:
    batch = make_stream(R + 12 * W, seed=61, shift=1.2, start=R + 3 * W, cohorts=("eu", "us"))
    assert [(d.feature, d.cohort) for d in run(batch)] == [("amount", None)]


# --- ScopedADWIN ---


@functools.lru_cache(maxsize=1)
def adwin_stream() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    n = 4000
    cohort = rng.integers(1, 4, n)
    values = rng.normal(0.2, 0.05, n)
    values[1500:] += np.where(cohort[1500:] == 2, 0.3, 0.02)  # scope 2 jumps
    values[2500:] -= 0.15  # everyone moves
    values[rng.random(n) < 0.02] = np.nan
    scopes = np.stack([np.zeros(n, dtype=np.intp), cohort.astype(np.intp)], axis=1)
    return values, scopes, 100.0 + 0.5 * np.arange(n)


@functools.lru_cache(maxsize=1)
def adwin_expected() -> tuple[list[tuple[int, int, float, float]], list[int], list[float]]:
    values, scopes, ts = adwin_stream()
    detectors = [drift.ADWIN(delta=0.002) for _ in range(4)]
    changes = river_changes(detectors, values, scopes, ts, lambda d: d.estimation)
    counts = [sum(1 for c in changes if c[0] == s) for s in range(4)]
    return changes, counts, [d.estimation for d in detectors]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_scoped_adwin_equals_river_per_event(cuts: list[int]) -> None:
    values, scopes, ts = adwin_stream()
    expected, counts, means = adwin_expected()
    assert {c[0] for c in expected} >= {0, 2}  # the stream has detections to compare
    detector = ScopedADWIN(n_scopes=4, delta=0.002)
    got = []
    bounds = [0, *sorted(cuts), len(values)]
    for a, b in itertools.pairwise(bounds):
        for c in detector.update(values[a:b], scopes[a:b], ts[a:b]):
            got.append((c.scope, c.row, c.ts, c.mean_after))
    assert got == expected
    assert detector.detections.tolist() == counts
    assert detector.means().tolist() == means


def test_scoped_adwin_validation() -> None:
    with pytest.raises(ValueError, match="n_scopes"):
        ScopedADWIN(0)
    with pytest.raises(ValueError, match="delta"):
        ScopedADWIN(1, delta=1.0)


# --- MonitorConfig validation ---


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reference_events", 0),
        ("window_events", 0),
        ("window_events", -5),
        ("min_window_events", 0),
        ("min_reference_events", 0),
        ("max_categories", 0),
        ("persistence_windows", 0),
        ("max_cohort_values", 0),
        ("max_cohort_dimensions", 0),
        ("max_features", 0),
        ("numeric_bins", 1),
        ("psi_threshold", 0.0),
        ("psi_threshold", -0.1),
        ("alpha", 0.0),
        ("alpha", 1.0),
        ("alpha", float("nan")),
        ("adwin_delta", 0.0),
        ("adwin_delta", 2.0),
        ("cohort_dimensions", ((),)),
        ("cohort_dimensions", (("",),)),
        ("cohort_dimensions", (("region", 3),)),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MonitorConfig(**{field: value})  # type: ignore[arg-type]


def test_config_normalises_dimensions() -> None:
    config = MonitorConfig(cohort_dimensions=[["region"], ["region", "channel"]])  # type: ignore[arg-type]
    assert config.cohort_dimensions == (("region",), ("region", "channel"))


def test_config_rejects_nan_psi_threshold() -> None:
    with pytest.raises(ValueError, match="psi_threshold"):
        MonitorConfig(psi_threshold=float("nan"))


def test_config_rejects_flat_cohort_dimensions() -> None:
    try:
        config = MonitorConfig(cohort_dimensions=("region",))  # type: ignore[arg-type]
    except ValueError as e:
        assert "cohort_dimensions" in str(e)
    else:
        assert config.cohort_dimensions == (("region",),)


# --- Bugs found: batch dependence ---


def test_decision_model_version_does_not_depend_on_batching() -> None:
    start = R + 4 * W
    n = R + 12 * W
    batch = make_stream(n, seed=21, shift=1.0, start=start, versions=((0, "v1"), (n - 10, "v2")))
    whole = run(batch)
    assert whole, "the shift must be confirmed"
    monitor = ModelMonitor("fraud", CONFIG)
    windowed = feed(monitor, batch, [R + k * W for k in range(12)])
    assert [d.to_dict() for d in windowed] == [d.to_dict() for d in whole]


def test_batch_without_cohorts_counts_each_row_once() -> None:
    monitor = ModelMonitor("m", CONFIG)
    monitor.update(make_stream(R, seed=1))
    part = make_stream(50, seed=2)
    bare = PredictionBatch(
        ts=part.ts, score=part.score, model_version=part.model_version,
        cohorts={}, features=part.features,
    )  # fmt: skip
    monitor.update(bare)
    assert monitor.scope_events[0] == 50
    assert int(monitor.features["amount"].current[0].sum()) == 50


def test_numeric_strings_do_not_depend_on_the_batch() -> None:
    alone, mixed = numeric_column(["1.5"])[0], numeric_column(["1.5", "n/a"])[0]
    assert np.array_equal(alone, mixed[:1], equal_nan=True)


def test_monitor_numeric_strings_do_not_depend_on_batching() -> None:
    reference = make_stream(R, seed=1)
    n = 40
    later = make_stream(n, seed=2)
    amount: list[object] = [f"{v:.3f}" for v in later.features["amount"]]
    amount[-1] = "n/a"
    typed = PredictionBatch(
        ts=later.ts + R, score=later.score, model_version=later.model_version,
        cohorts=later.cohorts, features={**later.features, "amount": amount},
    )  # fmt: skip
    whole, single = ModelMonitor("m", CONFIG), ModelMonitor("m", CONFIG)
    whole.update(reference)
    single.update(reference)
    whole.update(typed)
    per_event(single, typed)
    assert snapshot(whole) == snapshot(single)


def test_numeric_strings_are_counted_as_wrong_type() -> None:
    values, wrong = numeric_column(["1.5", "2"])
    assert np.isnan(values).all()
    assert wrong == 2


def test_numeric_column_contract() -> None:
    values, wrong = numeric_column([1, 2.5, None, True, "abc"])
    assert values[:2].tolist() == [1.0, 2.5]
    assert math.isnan(values[2])
    assert values[3] == 1.0
    assert math.isnan(values[4])
    assert wrong == 1


def test_features_shifting_together_are_one_decision() -> None:
    rng = np.random.default_rng(8)
    n = 30_000
    features = {f"f{i}": rng.normal(0, 1, n) for i in range(5)}
    for name in ("f0", "f2", "f4"):
        features[name][20_000:] += 1.0 + 0.5 * int(name[1])  # f4 moves most
    batch = PredictionBatch(
        ts=np.arange(n, dtype=float), score=rng.random(n), model_version=["v1"] * n,
        cohorts={}, features={k: v.tolist() for k, v in features.items()},
    )  # fmt: skip
    (decision,) = ModelMonitor("m").update(batch)
    assert (decision.action, decision.cause, decision.feature) == (
        "investigate",
        "covariate_drift",
        None,
    )
    assert decision.evidence["features"] == ["f4", "f2", "f0"]
    assert set(decision.evidence["psi"]) == {"f0", "f2", "f4"}


def test_a_snapshot_before_the_reference_holds_only_its_progress() -> None:
    monitor = ModelMonitor("fraud", CONFIG)
    monitor.update(make_stream(R // 4, seed=5))
    snapshot = monitor.snapshot()
    assert (snapshot.model, snapshot.events, snapshot.reference_progress) == ("fraud", R // 4, 0.25)
    assert (snapshot.scopes, snapshot.features, snapshot.unknown_features) == ((), (), ())
    assert (snapshot.outcomes, snapshot.deployment, snapshot.reference_age_s) == (None, None, None)
    assert snapshot.reported == ()


def test_a_snapshot_reads_the_monitor_state_at_the_time() -> None:
    start = R + 5 * W
    batch = make_stream(R + 15 * W, seed=21, shift=1.0, start=start)
    monitor = ModelMonitor("fraud", CONFIG)
    monitor.update(batch)
    snapshot = monitor.snapshot()
    assert snapshot.reference_progress == 1.0 and snapshot.windows == monitor.windows
    assert snapshot.reference_age_s == float(batch.ts[-1] - batch.ts[R - 1])
    assert monitor.scopes is not None
    assert [dict(s.cohort) for s in snapshot.scopes] == list(monitor.scopes.labels)
    assert [s.window_events for s in snapshot.scopes] == monitor.scope_events.tolist()
    assert [f.name for f in snapshot.features] == sorted(monitor.features)
    amount = snapshot.features[[f.name for f in snapshot.features].index("amount")]
    state = monitor.features["amount"]
    np.testing.assert_array_equal(amount.psi, state.psi)
    np.testing.assert_array_equal(amount.g_test_pvalue, state.pvalue)
    assert amount.drift_reported == tuple(state.drift.announced.tolist())
    assert amount.drift_reported[0] and amount.drifted[0]
    assert set(amount.upstream_reported) == {""}
    assert dict(snapshot.reported) == {
        "covariate_drift": 1,
        "concept_drift": 0,
        "label_quality": 0,
        "trust_decay": 0,
    }
    assert snapshot.outcomes is not None and math.isnan(snapshot.outcomes.log_loss[0])
    assert snapshot.deployment is not None and snapshot.deployment.incumbent == "v1"
    # read-only, and taken at the time: the monitor going on does not change it
    with pytest.raises(AttributeError):
        amount.psi = ()  # type: ignore[misc]
    taken = amount.psi
    monitor.update(make_stream(3 * W, seed=22))
    assert not np.array_equal(state.psi, taken, equal_nan=True)
    assert snapshot.events == len(batch) < monitor.events
