from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.binning import CategoricalBins, NumericBins
from detectors.cohorts import MISSING, OTHER, POPULATION, CohortScopes
from tests.support import through_state_codec

# --- NumericBins ---


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=50, max_value=5000),
    st.integers(min_value=2, max_value=20),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.sampled_from(["normal", "lognormal", "uniform"]),
)
def test_numeric_edges_are_reference_quantiles(n: int, n_bins: int, seed: int, dist: str) -> None:
    rng = np.random.default_rng(seed)
    reference = getattr(rng, dist)(size=n)  # continuous: distinct values
    bins = NumericBins.from_reference(reference, n_bins)
    # n_bins value bins, one above the reference's maximum, the null bin
    assert bins.n_bins == n_bins + 2
    assert np.all(np.diff(bins.edges) > 0)
    assert bins.edges[-1] > reference.max()
    counts = np.bincount(bins.assign(reference), minlength=bins.n_bins)
    assert counts[bins.null_bin] == 0 and counts[-2] == 0
    assert counts.sum() == n
    # every value bin holds ~1/n_bins of the reference (exact quantiles: within one row)
    assert np.all(np.abs(counts[:-2] - n / n_bins) <= 1.0 + 1e-9), counts


def test_numeric_bins_track_a_shift() -> None:
    rng = np.random.default_rng(5)
    bins = NumericBins.from_reference(rng.normal(0, 1, 20_000), n_bins=10)
    shifted = np.bincount(bins.assign(rng.normal(1, 1, 20_000)), minlength=bins.n_bins)
    # P(N(1,1) > q90 of N(0,1)) = P(Z > 1.2816 - 1) ~ 0.389: the top decile, and the bin
    # above the reference's maximum (P(Z > ~3.9 - 1) ~ 0.002)
    assert shifted[-3:-1].sum() / 20_000 == pytest.approx(0.389, abs=0.02)
    assert shifted[-2] / 20_000 == pytest.approx(0.002, abs=0.002)


@pytest.mark.parametrize("factor", [1_000.0, 0.001, -1.0])
def test_a_unit_change_of_a_small_count_moves_its_histogram(factor: float) -> None:
    """Deciles of a small count are 0 and 1 only: 1, 2 and 1,000 must not share a bin."""
    rng = np.random.default_rng(8)
    reference = rng.poisson(0.3, 10_000).astype(float)
    bins = NumericBins.from_reference(reference, n_bins=10)
    window = rng.poisson(0.3, 2_000).astype(float)
    before = np.bincount(bins.assign(window), minlength=bins.n_bins) / window.size
    after = np.bincount(bins.assign(window * factor), minlength=bins.n_bins) / window.size
    # Every non-zero value (~26% of them) left its bin.
    assert np.abs(after - before).sum() / 2 == pytest.approx(np.mean(window > 0), abs=1e-12)


@pytest.mark.parametrize("kind", ["flag", "poisson"])
def test_discrete_features_get_one_bin_per_value_and_no_empty_interior_bins(kind: str) -> None:
    rng = np.random.default_rng(17)
    if kind == "flag":
        reference = (rng.random(5000) < 0.3).astype(float)
    else:
        reference = rng.poisson(0.3, 5000).astype(float)
    bins = NumericBins.from_reference(reference, n_bins=10)
    counts = np.bincount(bins.assign(reference), minlength=bins.n_bins)
    # No repeated edges, and each interior bin (between two edges) holds reference traffic.
    assert np.all(np.diff(bins.edges) > 0)
    interior = counts[1 : bins.edges.size]
    assert np.all(interior > 0), counts
    # 0 and 1 each get their own bin.
    b0, b1 = bins.assign(np.array([0.0, 1.0]))
    assert b0 != b1
    assert counts[b0] == np.sum(reference == 0)
    if kind == "flag":
        assert counts[b1] == np.sum(reference == 1)
    # only the bins below the reference's minimum and above its maximum may be empty
    assert np.count_nonzero(counts[:-1] == 0) <= 2
    assert counts[-2] == 0
    # few bins, not ten mostly-empty ones: below 0, 0, 1 (and up to the maximum), above
    # the maximum, null
    assert bins.n_bins <= 5


def test_numeric_nan_goes_to_null_bin_and_infinities_to_outer_bins() -> None:
    rng = np.random.default_rng(1)
    reference = np.concatenate([rng.normal(size=1000), [np.nan] * 50])
    bins = NumericBins.from_reference(reference, n_bins=5)
    # NaN ignored when fixing edges: 4 quantiles, then the top of the reference's range
    assert bins.edges.size == 5
    assert bins.edges[-1] == np.nextafter(np.nanmax(reference), np.inf)
    out = bins.assign(np.array([np.nan, -np.inf, np.inf, 0.0, np.nan]))
    assert out.tolist() == [bins.null_bin, 0, bins.null_bin - 1, out[3], bins.null_bin]
    assert 0 < out[3] < bins.null_bin - 1
    counts = np.bincount(bins.assign(reference), minlength=bins.n_bins)
    assert counts[bins.null_bin] == 50


def test_numeric_all_nan_reference_has_one_value_bin() -> None:
    bins = NumericBins.from_reference(np.full(10, np.nan), n_bins=10)
    assert bins.n_bins == 2
    assert bins.assign(np.array([1.0, np.nan, -5.0])).tolist() == [0, 1, 0]


def test_numeric_invalid_n_bins() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        NumericBins.from_reference(np.arange(10.0), n_bins=1)


def test_numeric_round_trip() -> None:
    rng = np.random.default_rng(2)
    bins = NumericBins.from_reference(rng.normal(size=500), 8)
    again = through_state_codec(bins)
    assert again is not bins and np.array_equal(again.edges, bins.edges)
    probe = np.concatenate([rng.normal(size=200), [np.nan, np.inf]])
    assert again.assign(probe).tolist() == bins.assign(probe).tolist()


# --- CategoricalBins ---


def test_categorical_top_k_other_and_null() -> None:
    values: list[object] = ["a"] * 5 + ["b"] * 9 + ["c"] * 5 + ["d"] * 1 + [None] * 30 + [3] * 40
    bins = CategoricalBins.from_reference(values, max_categories=3)
    # by volume, ties by name; None and non-strings are not categories
    assert bins.categories == ("b", "a", "c")
    assert bins.n_bins == 5
    assert (bins.other_bin, bins.null_bin) == (3, 4)
    out = bins.assign(["c", "d", None, "zzz", "b", "a"])
    assert out.tolist() == [2, 3, 4, 3, 0, 1]
    counts = np.bincount(bins.assign(["b"] * 9 + ["a"] * 5), minlength=bins.n_bins)
    assert counts.tolist() == [9, 5, 0, 0, 0]


def test_categorical_invalid_and_round_trip() -> None:
    with pytest.raises(ValueError, match="max_categories"):
        CategoricalBins.from_reference(["a"], max_categories=0)
    bins = CategoricalBins.from_reference(["x", "y", "y"], max_categories=5)
    again = through_state_codec(bins)
    assert again is not bins and again == bins
    assert again.assign(["y", "x", "q", None]).tolist() == [0, 1, 2, 3]


# --- CohortScopes ---


def _region_reference() -> dict[str, list[str | None]]:
    return {"region": ["eu"] * 50 + ["us"] * 30 + ["apac"] * 20 + ["latam"] * 5}


def test_cohorts_capped_by_volume_and_other() -> None:
    scopes = CohortScopes.from_reference(_region_reference(), [("region",)], max_values=2)
    assert scopes.values == ((("eu",), ("us",)),)
    assert scopes.n_scopes == 1 + 2 + 1
    assert scopes.labels == (
        {},
        {"region": "eu"},
        {"region": "us"},
        {"region": OTHER},
    )
    out = scopes.assign({"region": ["us", "apac", "latam", "mars", "eu"]}, 5)
    assert out.tolist() == [[0, 2], [0, 3], [0, 3], [0, 3], [0, 1]]


def test_cohorts_missing_attribute_and_none() -> None:
    ref = {"region": ["eu"] * 10 + [None] * 8 + ["us"] * 2}
    scopes = CohortScopes.from_reference(ref, [("region",)], max_values=2)
    assert scopes.values == ((("eu",), (MISSING,)),)
    # None and an absent attribute are both "__missing__"
    assert scopes.assign({"region": [None, "eu", "us"]}, 3).tolist() == [[0, 2], [0, 1], [0, 3]]
    assert scopes.assign({"channel": ["web", "app"]}, 2).tolist() == [[0, 2], [0, 2]]


def test_cohorts_combination_dimension() -> None:
    ref: dict[str, list[str | None]] = {
        "region": ["eu", "eu", "eu", "us", "us", "eu"],
        "channel": ["web", "web", "app", "web", "web", "web"],
    }
    scopes = CohortScopes.from_reference(ref, [("region",), ("region", "channel")], max_values=2)
    assert scopes.dimensions == (("region",), ("region", "channel"))
    # eu|web: 3, us|web: 2, eu|app: 1 -> kept: eu|web, us|web
    assert scopes.labels[scopes.scopes_of(1)[0]] == {"region": "eu", "channel": "web"}
    assert scopes.labels[scopes.scopes_of(1)[1]] == {"region": "us", "channel": "web"}
    assert scopes.labels[scopes.scopes_of(1)[-1]] == {"region": OTHER, "channel": OTHER}
    rows = scopes.assign({"region": ["us", "eu", "eu"], "channel": ["web", "app", None]}, 3)
    other = scopes.scopes_of(1)[-1]
    assert rows[:, 2].tolist() == [scopes.scopes_of(1)[1], other, other]
    # a combination with a missing attribute
    only_region = CohortScopes.from_reference(
        {"region": ["eu", "eu", "us"]}, [("region", "channel")], max_values=5
    )
    assert only_region.labels[1] == {"region": "eu", "channel": MISSING}


COHORT_VALUE = st.one_of(st.none(), st.sampled_from(["eu", "us", "apac", "latam", "x", "y"]))


@st.composite
def cohort_columns(draw: st.DrawFn, n_min: int = 0) -> dict[str, list[str | None]]:
    n = draw(st.integers(min_value=n_min, max_value=40))
    return {
        "region": [draw(COHORT_VALUE) for _ in range(n)],
        "channel": [draw(COHORT_VALUE) for _ in range(n)],
    }


DIMENSIONS = [("region",), ("channel",), ("region", "channel")]


@settings(max_examples=80, deadline=None)
@given(cohort_columns(n_min=1), st.integers(min_value=1, max_value=6), cohort_columns())
def test_cohort_scope_consistency(
    reference: dict[str, list[str | None]], max_values: int, rows: dict[str, list[str | None]]
) -> None:
    scopes = CohortScopes.from_reference(reference, DIMENSIONS, max_values)
    labels = scopes.labels
    assert len(labels) == scopes.n_scopes
    assert labels[POPULATION] == {}
    assert scopes.dimension_of(POPULATION) == -1
    seen: list[int] = []
    for d, dimension in enumerate(scopes.dimensions):
        members = list(scopes.scopes_of(d))
        assert len(members) == len(scopes.values[d]) + 1 <= max_values + 1
        seen.extend(members)
        for s in members:
            assert scopes.dimension_of(s) == d
            assert tuple(labels[s]) == dimension
        assert labels[members[-1]] == dict.fromkeys(dimension, OTHER)
    assert seen == list(range(1, scopes.n_scopes))
    with pytest.raises(ValueError):
        scopes.dimension_of(scopes.n_scopes)
    # kept values are the most frequent reference keys
    for d, dimension in enumerate(scopes.dimensions):
        keys = [
            tuple(MISSING if reference[a][i] is None else reference[a][i] for a in dimension)
            for i in range(len(reference["region"]))
        ]
        counts = {k: keys.count(k) for k in set(keys)}
        kept = scopes.values[d]
        assert len(kept) == min(max_values, len(counts))
        dropped = [c for k, c in counts.items() if k not in kept]
        assert all(counts[k] >= max(dropped, default=0) for k in kept)
    # each row lands in the scope whose label is its own cohort, or in __other__
    n = len(rows["region"])
    out = scopes.assign(rows, n)
    assert out.shape == ((n, 1 + len(DIMENSIONS)) if n else (0, 1 + len(DIMENSIONS)))
    for i in range(n):
        assert out[i, 0] == POPULATION
        for d, dimension in enumerate(scopes.dimensions):
            own = {a: MISSING if rows[a][i] is None else rows[a][i] for a in dimension}
            scope = int(out[i, d + 1])
            assert scope in scopes.scopes_of(d)
            if scope == scopes.scopes_of(d)[-1]:
                assert own not in [labels[s] for s in scopes.scopes_of(d)]
            else:
                assert labels[scope] == own
    # round trip through the state codec of checkpoints
    again = through_state_codec(scopes)
    assert again == scopes
    assert again.labels == labels
    assert np.array_equal(again.assign(rows, n), out)


@settings(max_examples=80, deadline=None)
@given(cohort_columns(n_min=1), st.lists(cohort_columns(n_min=1), min_size=1, max_size=4))
def test_assign_of_concatenation_is_concatenation_of_assigns(
    reference: dict[str, list[str | None]], parts: list[dict[str, list[str | None]]]
) -> None:
    scopes = CohortScopes.from_reference(reference, DIMENSIONS, max_values=3)
    whole = {k: [v for p in parts for v in p[k]] for k in ("region", "channel")}
    stacked = np.concatenate([scopes.assign(p, len(p["region"])) for p in parts])
    assert np.array_equal(scopes.assign(whole, len(whole["region"])), stacked)


def test_invalid_max_values() -> None:
    with pytest.raises(ValueError, match="max_values"):
        CohortScopes.from_reference({"region": ["eu"]}, [("region",)], max_values=0)


def test_combination_values_containing_the_separator_stay_distinct() -> None:
    ref: dict[str, list[str | None]] = {
        "region": ["a|b"] * 5 + ["a"] * 3,
        "channel": ["c"] * 5 + ["b|c"] * 3,
    }
    scopes = CohortScopes.from_reference(ref, [("region", "channel")], max_values=5)
    rows = scopes.assign({"region": ["a|b", "a"], "channel": ["c", "b|c"]}, 2)
    assert rows[0, 1] != rows[1, 1]
    assert scopes.labels[int(rows[0, 1])] == {"region": "a|b", "channel": "c"}
