from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from evaluation.simulate import (
    SCENARIOS,
    Incident,
    TrafficSpec,
    generate,
    reference_std,
    write_replay,
    write_truth,
)
from evaluation.simulate.calendar import is_weekend

SPEC = TrafficSpec()
N = 40_000  # several generation chunks, enough rows for ~1/8 cohorts to be measurable
SEED = 1  # one seed for most tests, so that the cached stationary run is shared


@functools.lru_cache(maxsize=16)
def run(
    spec: TrafficSpec, n: int, seed: int, incidents: tuple[Incident, ...] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    records = list(generate(spec, n, seed, incidents))
    preds = [r["value"] for r in records if r["topic"] == "predictions"]
    feedback = [r["value"] for r in records if r["topic"] == "feedback"]
    return records, preds, feedback


def column(preds: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([p["features"][name] for p in preds], dtype=np.float64)


def scenario(name: str, n: int) -> tuple[TrafficSpec, tuple[Incident, ...]]:
    spec, incidents = SCENARIOS[name](n)
    return spec, tuple(incidents)


# --- determinism -------------------------------------------------------------------------


def test_same_seed_gives_identical_records() -> None:
    a = list(generate(SPEC, 3_000, seed=7))
    b = list(generate(SPEC, 3_000, seed=7))
    assert a == b
    assert orjson.dumps(a) == orjson.dumps(b)


def test_different_seed_gives_different_records() -> None:
    a = [r for r in generate(SPEC, 500, seed=7) if r["topic"] == "predictions"]
    b = [r for r in generate(SPEC, 500, seed=8) if r["topic"] == "predictions"]
    assert len(a) == len(b) == 500
    differing = sum(x["value"]["features"] != y["value"]["features"] for x, y in zip(a, b))
    assert differing > 490


def test_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    short = run(SPEC, 9_000, SEED)[1]
    long = run(SPEC, N, SEED)[1]
    assert short == long[: len(short)]


def test_wider_spec_keeps_the_base_features() -> None:
    wide = TrafficSpec(n_numeric=9, n_categorical=4)
    narrow_preds = run(SPEC, 2_000, 5)[1]
    wide_preds = run(wide, 2_000, 5)[1]
    assert list(wide_preds[0]["features"]) == [
        *SPEC.feature_names[:6],
        "num_07",
        "num_08",
        "num_09",
        *SPEC.feature_names[6:],
        "cat_03",
        "cat_04",
    ]
    for a, b in zip(narrow_preds, wide_preds, strict=True):
        assert {k: b["features"][k] for k in a["features"]} == a["features"]
        assert a["score"] == b["score"]


# --- event contract ----------------------------------------------------------------------


def test_records_arrive_in_event_time_order() -> None:
    records = run(SPEC, N, SEED)[0]
    ts = np.array([r["value"]["ts"] for r in records])
    assert np.all(np.diff(ts) >= 0)
    assert {r["topic"] for r in records} == {"predictions", "feedback"}
    ids = [r["value"]["event_id"] for r in records if r["topic"] == "predictions"]
    assert ids == [f"p-{i}" for i in range(N)]


def test_every_feedback_labels_an_earlier_prediction_once() -> None:
    records = run(SPEC, N, SEED)[0]
    seen: dict[str, float] = {}
    labelled: set[str] = set()
    delays = []
    for record in records:
        value = record["value"]
        if record["topic"] == "predictions":
            seen[value["event_id"]] = value["ts"]
            continue
        assert value["event_id"] in seen, value
        assert value["event_id"] not in labelled
        labelled.add(value["event_id"])
        assert value["ts"] >= seen[value["event_id"]]
        assert set(value) == {"event_id", "ts", "label", "source", "override"}
        assert value["label"] in (0, 1) and type(value["label"]) is int
        assert type(value["override"]) is bool
        assert value["source"] == SPEC.label_source
        delays.append(value["ts"] - seen[value["event_id"]])
    assert np.mean(delays) == pytest.approx(SPEC.label_delay_seconds, rel=0.1)
    # Delays are skewed (a few labels come very late), not constant.
    assert np.median(delays) < 0.9 * np.mean(delays)


def test_event_rate_matches_spec() -> None:
    preds = run(SPEC, N, SEED)[1]
    ts = np.array([p["ts"] for p in preds])
    assert ts[0] >= SPEC.start_ts
    gaps = np.diff(ts)
    assert gaps.mean() == pytest.approx(1 / SPEC.events_per_second, rel=0.05)
    # Poisson arrivals: inter-arrival std close to its mean.
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.1)


@pytest.mark.parametrize("fraction", [0.05, SPEC.label_fraction, 0.6])
def test_label_fraction_matches_spec(fraction: float) -> None:
    spec = TrafficSpec(label_fraction=fraction)
    _, preds, feedback = run(spec, N if spec == SPEC else 10_000, SEED)
    tolerance = 4 * math.sqrt(fraction * (1 - fraction) / len(preds))
    assert abs(len(feedback) / len(preds) - fraction) < tolerance


def test_override_rate_matches_spec() -> None:
    feedback = run(SPEC, N, SEED)[2]
    rate = np.mean([f["override"] for f in feedback])
    p = SPEC.override_rate
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / len(feedback))


def test_labels_follow_the_scores() -> None:
    _, preds, feedback = run(SPEC, N, SEED)
    score = {p["event_id"]: p["score"] for p in preds}
    s = np.array([score[f["event_id"]] for f in feedback])
    y = np.array([f["label"] for f in feedback])
    # Calibrated in aggregate ...
    assert abs(y.mean() - s.mean()) < 4 * math.sqrt(np.sum(s * (1 - s))) / len(s)
    # ... and informative: positives score much higher than negatives.
    assert s[y == 1].mean() > 2 * s[y == 0].mean()
    # A fraud-like, rare positive class.
    assert 0.005 < y.mean() < 0.2


def test_prediction_fields_and_feature_types() -> None:
    preds = run(SPEC, N, SEED)[1]
    expected_types = {
        "amount": {float},
        "age_days": {int},
        "clicks_7d": {int, type(None)},
        "is_new": {bool},
        "balance": {float},
        "session_seconds": {float},
        "country": {str},
        "device": {str},
    }
    seen_types: dict[str, set[type]] = {name: set() for name in expected_types}
    for p in preds:
        assert set(p) == {
            "event_id",
            "ts",
            "model",
            "model_version",
            "cohort",
            "features",
            "score",
        }
        assert (p["model"], p["model_version"]) == (SPEC.model, SPEC.model_version)
        assert type(p["ts"]) is float
        assert set(p["cohort"]) == set(SPEC.cohorts)
        for dim, value in p["cohort"].items():
            assert value in SPEC.cohorts[dim]
        assert list(p["features"]) == list(expected_types)
        for name, value in p["features"].items():
            seen_types[name].add(type(value))
    assert seen_types == expected_types
    nulls = np.mean([p["features"]["clicks_7d"] is None for p in preds])
    assert abs(nulls - SPEC.missing_rate) < 0.005
    assert preds[0] == orjson.loads(orjson.dumps(preds[0]))


def test_scores_are_probabilities() -> None:
    preds = run(SPEC, N, SEED)[1]
    scores = np.array([p["score"] for p in preds])
    assert all(type(p["score"]) is float for p in preds)
    assert np.all((scores > 0) & (scores < 1))
    assert scores.std() > 0.01


def test_features_have_realistic_shapes() -> None:
    preds = run(SPEC, N, SEED)[1]
    amount = column(preds, "amount")
    assert amount.min() > 0
    assert amount.mean() > 1.3 * np.median(amount)  # right-skewed money amounts
    age = column(preds, "age_days")
    assert age.min() >= 0
    clicks = np.array([c for c in (p["features"]["clicks_7d"] for p in preds) if c is not None])
    assert clicks.min() >= 0 and clicks.var() > clicks.mean()  # overdispersed counts
    new = np.array([p["features"]["is_new"] for p in preds])
    assert 0.01 < new.mean() < 0.3
    countries = Counter(p["features"]["country"] for p in preds).most_common()
    assert 8 <= len(countries) <= 12
    assert countries[0][1] > 5 * countries[-1][1]  # a long tail of rare countries


def test_cohort_traffic_is_unequal_and_matches_shares() -> None:
    preds = run(SPEC, N, SEED)[1]
    shares = SPEC.cohort_shares()
    for dim in SPEC.cohorts:
        counts = Counter(p["cohort"][dim] for p in preds)
        for value, share in shares[dim].items():
            assert abs(counts[value] / len(preds) - share) < 4 * math.sqrt(share / len(preds))
        observed = sorted(counts.values())
        assert observed[-1] > 3 * observed[0]


def test_cohorts_have_their_own_feature_distributions() -> None:
    preds = run(SPEC, N, SEED)[1]
    medians = {}
    for region in SPEC.cohorts["region"]:
        amounts = [p["features"]["amount"] for p in preds if p["cohort"]["region"] == region]
        medians[region] = np.median(amounts)
    assert max(medians.values()) > 1.3 * min(medians.values())
    top_country = {
        region: Counter(
            p["features"]["country"] for p in preds if p["cohort"]["region"] == region
        ).most_common(1)[0][0]
        for region in SPEC.cohorts["region"]
    }
    assert len(set(top_country.values())) >= 3


# --- incidents ---------------------------------------------------------------------------


def shift_in_std_units(
    preds: list[dict[str, Any]], feature: str, start: int, rows: np.ndarray
) -> float:
    values = column(preds, feature)
    index = np.arange(len(preds))
    before = values[rows & (index < start)]
    after = values[rows & (index >= start)]
    return float((after.mean() - before.mean()) / before.std(ddof=1))


def regions(preds: list[dict[str, Any]]) -> np.ndarray:
    return np.array([p["cohort"]["region"] for p in preds])


def test_cohort_shift_moves_only_the_affected_cohort() -> None:
    spec, incidents = scenario("cohort_covariate_shift", N)
    (incident,) = incidents
    assert incident.cohort is not None and incident.feature == "session_seconds"
    region = incident.cohort["region"]
    preds = run(spec, N, SEED, incidents)[1]
    region_of = regions(preds)
    in_cohort = region_of == region
    moved = shift_in_std_units(preds, incident.feature, incident.start_event, in_cohort)
    assert moved == pytest.approx(incident.magnitude, abs=0.2)
    others = shift_in_std_units(preds, incident.feature, incident.start_event, ~in_cohort)
    assert abs(others) < 0.05
    for other in SPEC.cohorts["region"]:
        if other != region:
            mask = region_of == other
            assert (
                abs(shift_in_std_units(preds, incident.feature, incident.start_event, mask)) < 0.2
            )


def test_shift_changes_nothing_but_the_affected_values() -> None:
    spec, incidents = scenario("cohort_covariate_shift", N)
    (incident,) = incidents
    assert incident.cohort is not None and incident.feature is not None
    base = run(spec, N, SEED)[1]
    shifted = run(spec, N, SEED, incidents)[1]
    expected = incident.magnitude * reference_std(spec, incident.feature, incident.cohort)
    assert expected > 0
    changed = 0
    for i, (b, s) in enumerate(zip(base, shifted, strict=True)):
        affected = i >= incident.start_event and b["cohort"] == s["cohort"] == {
            **b["cohort"],
            **incident.cohort,
        }
        others_b = {k: v for k, v in b["features"].items() if k != incident.feature}
        others_s = {k: v for k, v in s["features"].items() if k != incident.feature}
        assert others_b == others_s
        delta = s["features"][incident.feature] - b["features"][incident.feature]
        if affected:
            assert delta == pytest.approx(expected, abs=0.06)
            changed += 1
        else:
            assert delta == 0 and s["score"] == b["score"]
    assert changed > 0.05 * N


def test_population_shift_moves_every_cohort() -> None:
    spec, incidents = scenario("covariate_shift", N)
    (incident,) = incidents
    assert incident.cohort is None and incident.feature == "amount"
    preds = run(spec, N, SEED, incidents)[1]
    everyone = np.ones(len(preds), dtype=bool)
    assert shift_in_std_units(preds, "amount", incident.start_event, everyone) == pytest.approx(
        1.0, abs=0.15
    )
    # Same raw shift everywhere: in each region the median moves by the population std.
    raw = reference_std(spec, "amount")
    amount = column(preds, "amount")
    after = np.arange(len(preds)) >= incident.start_event
    region_of = regions(preds)
    for region in SPEC.cohorts["region"]:
        rows = region_of == region
        moved = np.median(amount[rows & after]) - np.median(amount[rows & ~after])
        assert moved == pytest.approx(raw, rel=0.25)
    # The model sees the shifted input: larger amounts, higher fraud scores.
    scores = np.array([p["score"] for p in preds])
    assert scores[after].mean() > scores[~after].mean() * 1.1


def test_shift_stops_at_end_event() -> None:
    incident = Incident("window", "covariate_shift", "balance", None, 2_000, 6_000, 2.0)
    base = run(SPEC, 9_000, SEED)[1]
    shifted = run(SPEC, 9_000, SEED, (incident,))[1]
    delta = column(shifted, "balance") - column(base, "balance")
    window = np.zeros(len(delta), dtype=bool)
    window[2_000:6_000] = True
    assert np.all(delta[~window] == 0)
    assert np.all(delta[window] > 0)


@pytest.mark.parametrize("feature", ["country", "is_new"])
def test_categorical_shift_moves_mass_to_another_category(feature: str) -> None:
    start = 5_000
    incident = Incident("cat", "covariate_shift", feature, None, start, None, 1.0)
    preds = run(SPEC, 2 * start, SEED, (incident,))[1]
    values = [p["features"][feature] for p in preds]
    before = Counter(values[:start])
    after = Counter(values[start:])
    share_before = {k: v / start for k, v in before.items()}
    share_after = {k: v / (len(values) - start) for k, v in after.items()}
    gained = max(share_after, key=lambda k: share_after[k] - share_before.get(k, 0.0))
    assert 0.15 < share_after[gained] - share_before[gained] < 0.4
    # Total variation distance ~ moved mass (~30% per unit magnitude).
    keys = set(share_before) | set(share_after)
    tvd = 0.5 * sum(abs(share_after.get(k, 0.0) - share_before.get(k, 0.0)) for k in keys)
    assert 0.15 < tvd < 0.4


def test_integer_feature_stays_integer_after_shift() -> None:
    incident = Incident("clicks", "covariate_shift", "clicks_7d", {"channel": "app"}, 0)
    preds = run(SPEC, 3_000, 15, (incident,))[1]
    assert {type(p["features"]["clicks_7d"]) for p in preds} == {int, type(None)}


# --- scenarios and files -----------------------------------------------------------------


CYCLES = ("daily_cycle_5_per_s", "daily_cycle_50_per_s", "weekly_cycle", "weekly_cycle_1_per_s")


def test_scenarios() -> None:
    assert {"stationary", "covariate_shift", "cohort_covariate_shift"} <= set(SCENARIOS)
    for name, make in SCENARIOS.items():
        spec, incidents = make(1_000)
        assert isinstance(spec, TrafficSpec)
        expected = {
            "covariate_shift": ("investigate", "covariate_drift"),
            "frozen": ("fix_upstream", "frozen_signal"),
            "rescale": ("fix_upstream", "rescaled_signal"),
            "rename": ("fix_upstream", "schema_change"),
            "concept": ("retrain", "concept_drift"),
            "label_inflation": ("investigate", "label_quality"),
            "override_rise": ("investigate", "trust_decay"),
        }
        for incident in incidents:
            assert 0 <= incident.start_event < 1_000
            outcome = (incident.expected_action, incident.expected_cause)
            if incident.kind == "deployment":
                # broken or healthy: a rollback, or nothing at all
                assert outcome in {("rollback", "deployment_regression"), ("none", "none")}
            elif incident.end_event is not None:  # shorter than the persistence horizon
                assert outcome == ("hold", "transient_shift")
            else:
                assert outcome == expected[incident.kind]
        no_incident = ("stationary", "labelled_stationary", "daily_cycle", *CYCLES)
        assert bool(incidents) == (name not in no_incident)
    spec, (incident,) = SCENARIOS["cohort_covariate_shift"](1_000)
    assert incident.cohort is not None
    assert spec.cohort_shares()["region"][incident.cohort["region"]] == pytest.approx(
        1 / 8, abs=0.02
    )


def test_write_replay_and_truth(tmp_path: Any) -> None:
    spec, incidents = SCENARIOS["covariate_shift"](2_000)
    path = tmp_path / "replay.jsonl"
    count = write_replay(path, generate(spec, 2_000, 3, incidents))
    lines = path.read_bytes().splitlines()
    assert count == len(lines) > 2_000
    assert [orjson.loads(line) for line in lines] == list(generate(spec, 2_000, 3, incidents))
    truth_path = tmp_path / "truth.json"
    write_truth(truth_path, spec, incidents, 2_000, scenario="covariate_shift", seed=3)
    truth = orjson.loads(truth_path.read_bytes())
    assert truth["scenario"] == "covariate_shift"
    assert truth["events"] == 2_000
    assert truth["incidents"] == [i.to_dict() for i in incidents]
    assert Incident(**truth["incidents"][0]) == incidents[0]


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_numeric": 0}, r"n_numeric must be an int in \[1, 99\]"),
        ({"n_numeric": True}, "n_numeric"),
        ({"n_categorical": -1}, "n_categorical"),
        ({"label_fraction": 1.5}, r"label_fraction must be a number in \[0.0, 1.0\]"),
        ({"label_fraction": math.nan}, "label_fraction"),
        ({"events_per_second": 0}, r"events_per_second must be a number in \(0.0"),
        ({"label_delay_seconds": -1.0}, "label_delay_seconds"),
        ({"override_rate": 2}, "override_rate"),
        ({"missing_rate": -0.1}, "missing_rate"),
        ({"model": ""}, "model must be a non-empty str"),
        ({"cohorts": {"region": []}}, "distinct"),
        ({"cohorts": {"region": ["eu", "eu"]}}, "distinct"),
        ({"cohorts": {"": ["eu"]}}, "cohorts key"),
        ({"cohorts": {"region": "eu"}}, "distinct"),
        ({"cohorts": {"region": [1, 2]}}, "distinct"),
        ({"cohort_skew": -1}, "cohort_skew"),
        ({"weekend_volume": 0.0}, r"weekend_volume must be a number in \(0.0, 10.0\]"),
        ({"weekend_shift": math.inf}, "weekend_shift"),
    ],
)
def test_spec_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrafficSpec(**kwargs)


def test_incident_validation() -> None:
    with pytest.raises(ValueError, match="covariate_shift"):
        Incident("x", "concept_flip", "amount", None, 0)
    with pytest.raises(ValueError, match=r"Incident\.feature"):
        Incident("x", "covariate_shift", None, None, 0)
    with pytest.raises(ValueError, match="end_event"):
        Incident("x", "covariate_shift", "amount", None, 10, 10)
    with pytest.raises(ValueError, match="start_event"):
        Incident("x", "covariate_shift", "amount", None, -1)
    with pytest.raises(ValueError, match="magnitude"):
        Incident("x", "covariate_shift", "amount", None, 0, None, math.inf)
    with pytest.raises(ValueError, match="fix_upstream"):
        Incident("x", "covariate_shift", "amount", None, 0, expected_action="panic")
    with pytest.raises(ValueError, match="cohort"):
        Incident("x", "covariate_shift", "amount", {}, 0)


def test_generate_validation() -> None:
    with pytest.raises(ValueError, match="amount"):
        generate(SPEC, 10, 0, [Incident("x", "covariate_shift", "nope", None, 0)])
    with pytest.raises(ValueError, match="'eu'"):
        generate(SPEC, 10, 0, [Incident("x", "covariate_shift", "amount", {"region": "x"}, 0)])
    with pytest.raises(ValueError, match="region"):
        generate(SPEC, 10, 0, [Incident("x", "covariate_shift", "amount", {"tier": "a"}, 0)])
    with pytest.raises(ValueError, match="n_events"):
        generate(SPEC, -1, 0)
    with pytest.raises(ValueError, match="seed"):
        generate(SPEC, 10, -5)
    with pytest.raises(ValueError, match="numeric feature"):
        reference_std(SPEC, "country")


def test_spec_is_frozen_hashable_and_normalised() -> None:
    spec = TrafficSpec(cohorts={"tier": ["gold", "silver"]})
    assert spec.cohorts == {"tier": ("gold", "silver")}
    assert hash(spec) == hash(TrafficSpec(cohorts={"tier": ("gold", "silver")}))
    assert hash(Incident("x", "covariate_shift", "amount", {"tier": "gold"}, 0))
    with pytest.raises(AttributeError):
        spec.model = "other"  # type: ignore[misc]
    assert list(generate(spec, 0, 1)) == []


# --- any valid spec honours the contract -------------------------------------------------


specs = st.builds(
    TrafficSpec,
    n_numeric=st.integers(1, 12),
    n_categorical=st.integers(0, 5),
    cohorts=st.dictionaries(
        st.sampled_from(["region", "channel", "tier"]),
        st.lists(st.sampled_from(["a", "b", "c", "eu", "app"]), min_size=1, unique=True),
        max_size=3,
    ),
    events_per_second=st.floats(0.5, 5_000),
    label_fraction=st.floats(0, 1),
    label_delay_seconds=st.sampled_from([0.0, 1.0, 3600.0]),
    missing_rate=st.floats(0, 1),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, n=st.integers(0, 300), seed=st.integers(0, 2**32))
def test_any_spec_honours_the_contract(spec: TrafficSpec, n: int, seed: int) -> None:
    records = list(generate(spec, n, seed))
    last_ts = -math.inf
    seen: set[str] = set()
    preds = 0
    for record in records:
        value = record["value"]
        assert value["ts"] >= last_ts
        last_ts = value["ts"]
        if record["topic"] == "predictions":
            preds += 1
            seen.add(value["event_id"])
            assert list(value["features"]) == list(spec.feature_names)
            assert all(
                v is None or type(v) in (int, float, str, bool) for v in value["features"].values()
            )
            assert set(value["cohort"]) == set(spec.cohorts)
            assert 0 < value["score"] < 1
        else:
            assert record["topic"] == "feedback"
            assert value["event_id"] in seen
    assert preds == n
    orjson.dumps(records)


def test_upstream_faults_change_the_served_values_only() -> None:
    n = 4_000
    for scenario in ("frozen", "rescaled", "renamed"):
        spec, incidents = SCENARIOS[scenario](n)
        broken = [
            r["value"] for r in generate(spec, n, 5, incidents) if r["topic"] == "predictions"
        ]
        clean = [r["value"] for r in generate(spec, n, 5) if r["topic"] == "predictions"]
        for incident in incidents:
            before = [e["features"][incident.feature] for e in broken[: incident.start_event]]
            assert before == [
                e["features"][incident.feature] for e in clean[: incident.start_event]
            ]
            after = broken[incident.start_event :]
            truth = clean[incident.start_event :]
            if incident.kind == "frozen":
                assert len({e["features"][incident.feature] for e in after}) == 1
            elif incident.kind == "rescale":
                ratio = [
                    b["features"][incident.feature] / c["features"][incident.feature]
                    for b, c in zip(after, truth)
                    if c["features"][incident.feature]
                ]
                assert np.median(ratio) == pytest.approx(incident.magnitude, rel=1e-3)
            else:
                assert all(incident.feature not in e["features"] for e in after)
                assert [e["features"][incident.new_name] for e in after] == [
                    e["features"][incident.feature] for e in truth
                ]


def test_a_deployment_switches_the_version_and_biases_its_scores() -> None:
    spec, incidents = SCENARIOS["deployment_regression"](20_000)
    (incident,) = incidents

    def predictions(incidents: list) -> list[dict[str, Any]]:
        records = generate(spec, 20_000, 1, incidents)
        return [r["value"] for r in records if r["topic"] == "predictions"]

    broken, clean = predictions(incidents), predictions([])
    start = incident.start_event
    assert {e["model_version"] for e in broken[:start]} == {"v1"}
    assert {e["model_version"] for e in broken[start:]} == {"v2"}

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    shift = np.mean([logit(b["score"]) - logit(c["score"]) for b, c in zip(broken, clean)][start:])
    assert shift == pytest.approx(math.log(10.0), abs=0.05)
    assert [b["features"] for b in broken] == [c["features"] for c in clean]


def test_a_canary_serves_a_share_with_the_same_scores_ranked_worse() -> None:
    # Whole generation chunks (8,192 rows): a chunk's v2 scores are reordered within it.
    n = 3 * 8_192
    spec, (incident,) = SCENARIOS["canary_label_regression"](n)
    healthy = dataclasses.replace(incident, rank_noise=0.0)

    def stream(incident: Incident) -> tuple[list[dict[str, Any]], dict[str, int]]:
        records = list(generate(spec, n, 2, [incident]))
        labels = {
            r["value"]["event_id"]: r["value"]["label"] for r in records if r["topic"] == "feedback"
        }
        return [r["value"] for r in records if r["topic"] == "predictions"], labels

    (canary, labels), (fair, fair_labels) = stream(incident), stream(healthy)
    start = incident.start_event
    assert labels == fair_labels  # the world is the same: only v2's ranking differs
    assert {e["model_version"] for e in canary[:start]} == {"v1"}
    after = [e for e in canary[start:] if e["model_version"] == "v2"]
    assert len(after) / (n - start) == pytest.approx(0.3, abs=0.02)
    # The same v2 rows, and in every cohort the same scores: only who gets which moved.
    assert [e["model_version"] for e in canary] == [e["model_version"] for e in fair]
    v2 = [k for k, e in enumerate(canary) if e["model_version"] == "v2"]

    def by_cohort(events: list[dict[str, Any]]) -> dict[tuple, list[float]]:
        out: dict[tuple, list[float]] = {}
        for k in v2:
            out.setdefault(tuple(sorted(events[k]["cohort"].items())), []).append(
                events[k]["score"]
            )
        return {key: sorted(values) for key, values in out.items()}

    assert by_cohort(canary) == by_cohort(fair)
    assert [e["features"] for e in canary] == [e["features"] for e in fair]
    assert canary[start - 1] == fair[start - 1]

    def auc(events: list[dict[str, Any]]) -> float:
        rows = [
            (events[k]["score"], labels[events[k]["event_id"]])
            for k in v2
            if events[k]["event_id"] in labels
        ]
        pos = [s for s, y in rows if y == 1]
        neg = [s for s, y in rows if y == 0]
        return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))

    assert auc(canary) < auc(fair) - 0.15


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"share": 0.0}, "share"),
        ({"share": 1.5}, "share"),
        ({"rank_noise": -1.0}, "rank_noise"),
        ({"kind": "concept", "share": 0.5, "new_version": None}, "share and rank_noise"),
    ],
)
def test_a_canary_s_share_and_noise_are_checked(changes: dict[str, Any], message: str) -> None:
    _, (incident,) = SCENARIOS["canary_label_regression"](1_000)
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(incident, **changes)


def test_a_daily_cycle_moves_behaviour_with_the_hour_but_not_accounts() -> None:
    spec, _ = SCENARIOS["daily_cycle"](60_000)
    events = [r["value"] for r in generate(spec, 60_000, 2) if r["topic"] == "predictions"]
    hours = np.array([int(e["ts"] % 86_400 // 3_600) for e in events])

    def hourly_spread(feature: str) -> float:
        values = np.log1p(np.array([e["features"][feature] for e in events], dtype=float))
        means = [values[hours == h].mean() for h in range(24)]
        return float(np.ptp(means) / values.std())

    assert hourly_spread("amount") > 0.5  # +-0.5 latent sd: about one sd peak to trough
    assert hourly_spread("age_days") < 0.15


def test_a_weekend_moves_behaviour_and_slows_traffic_from_saturday_on() -> None:
    # 2 predictions/s from Friday 08:00 UTC for ~3.5 days: Friday, the weekend, Monday.
    plain = TrafficSpec(events_per_second=2.0)
    weekly = dataclasses.replace(plain, weekend_shift=0.3, weekend_volume=0.7)
    n = 550_000
    _, before, _ = run(plain, n, SEED)
    _, after, _ = run(weekly, n, SEED)
    ts = np.array([p["ts"] for p in after])
    weekend = is_weekend(ts)
    saturday = int(np.argmax(weekend))
    # The weekdays before the first Saturday are the plain stream's, draw for draw, up to
    # the chunk of rows that holds it (the clicks' Poisson draws there use other numbers).
    chunk = saturday // 8_192 * 8_192
    assert chunk > 100_000 and after[:chunk] == before[:chunk]
    assert weekend.sum() == pytest.approx(2 * 86_400 * 2.0 * 0.7, rel=0.01)
    assert not weekend[-1]
    days = np.floor((ts - ts[saturday]) / 86_400).astype(int)
    per_day = np.bincount(days[days >= 0])[:3]  # Saturday, Sunday, Monday
    assert per_day[0] / per_day[2] == pytest.approx(0.7, abs=0.01)
    assert per_day[1] / per_day[2] == pytest.approx(0.7, abs=0.01)

    def weekend_gap(feature: str) -> float:
        values = np.log1p(column(after, feature))
        return float(values[weekend].mean() - values[~weekend].mean())

    assert weekend_gap("amount") == pytest.approx(0.3, abs=0.02)  # log-mean, log-sd 1
    assert weekend_gap("session_seconds") == pytest.approx(0.8 * 0.3, abs=0.02)
    assert abs(weekend_gap("age_days")) < 0.02
