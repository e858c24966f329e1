"""Tests for detectors.sketches: golden values against numpy / collections.Counter / a textbook
Misra-Gries, plus hypothesis properties (batching, merging, checkpoints' state codec, edge cases).

Quantile rank definition used throughout (and documented on NumericSketch): the rank-q value of
n non-missing values is the element at 0-based index floor(q * (n - 1)) of the sorted values,
i.e. ``np.quantile(x, q, method="lower")``.
"""

from __future__ import annotations

import ast
import copy
import itertools
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.sketches import CategoricalSketch, NumericSketch
from tests.support import ROOT, through_state_codec

SKETCHES = ROOT / "detectors" / "sketches"
FAST = settings(max_examples=150, deadline=None)
NAN, INF = math.nan, math.inf

# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def true_quantile(x: np.ndarray, q: float) -> float:
    """Rank-q value: sorted(x)[floor(q * (n - 1))]."""
    xs = np.sort(x)
    value = float(xs[math.floor(q * (len(xs) - 1))])
    assert value == float(np.quantile(x, q, method="lower"))  # same definition as numpy's
    return value


def within_alpha(estimate: float, truth: float, alpha: float) -> bool:
    # 1e-9 relative slack for float rounding of log/exp in the bucket maths
    return abs(estimate - truth) <= alpha * abs(truth) * (1 + 1e-9)


def numeric(values: Any, scopes: Any, n_scopes: int, **kw: Any) -> NumericSketch:
    sk = NumericSketch(n_scopes, **kw)
    sk.update(np.asarray(values, dtype=np.float64), np.asarray(scopes, dtype=np.intp))
    return sk


def exact_parts(sk: NumericSketch) -> dict[str, Any]:
    """The parts of a sketch that do not depend on batching or merging: settings, counts,
    missing counts, min, max (+-inf for an empty scope) and buckets."""
    moments = sk._moments
    return {
        "settings": sk._settings(),
        "count": moments.count.tolist(),
        "missing": sk._missing.tolist(),
        "min": moments.min.tolist(),
        "max": moments.max.tolist(),
        "buckets": sk._buckets,  # LogBuckets compare their buckets and counts
    }


def assert_same_stream(a: NumericSketch, b: NumericSketch, values: np.ndarray) -> None:
    """Exact on counts/min/max/buckets; floating tolerance on mean and M2."""
    assert exact_parts(a) == exact_parts(b)
    finite = values[np.isfinite(values)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    for key in ("mean", "m2"):
        ma, mb = getattr(a._moments, key), getattr(b._moments, key)
        tol = 1e-9 * (scale if key == "mean" else max(len(values), 1) * scale * scale) + 1e-300
        assert np.all(np.abs(ma - mb) <= tol), (key, ma, mb)


# values with a sane magnitude for moment comparisons, plus every kind of "missing"
moderate = st.one_of(
    st.floats(-1e6, 1e6, allow_subnormal=False),
    st.sampled_from([NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0]),
)
# anything finite and normal (the quantile guarantee's domain)
finite_normal = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def numeric_batches(draw: Any, values: Any = moderate, max_size: int = 60) -> Any:
    n_scopes = draw(st.integers(1, 3))
    rows = draw(st.lists(st.tuples(values, st.integers(0, n_scopes - 1)), max_size=max_size))
    vals = np.array([v for v, _ in rows], dtype=np.float64)
    scopes = np.array([s for _, s in rows], dtype=np.intp)
    return n_scopes, vals, scopes


def cuts(n: int) -> Any:
    return st.lists(st.integers(0, n), max_size=4).map(sorted)


# ----------------------------------------------------------------------------------------------
# NumericSketch: golden values against numpy
# ----------------------------------------------------------------------------------------------

DISTRIBUTIONS = {
    "normal": lambda rng, n: rng.normal(3.0, 2.0, n),
    "lognormal": lambda rng, n: rng.lognormal(0.0, 3.0, n),
    "signed_heavy_tail": lambda rng, n: rng.standard_cauchy(n),
    "integers_with_zeros": lambda rng, n: rng.integers(-3, 4, n).astype(np.float64),
    "tiny_and_huge": lambda rng, n: rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-200, 200, n),
}


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_moments_min_max_match_numpy(dist: str) -> None:
    rng = np.random.default_rng(1234)
    n = 4_000
    x = DISTRIBUTIONS[dist](rng, n)
    scopes = rng.integers(0, 3, n)
    sk = NumericSketch(3)
    # several micro-batches, rows of all scopes interleaved
    for chunk in np.array_split(np.arange(n), 7):
        sk.update(x[chunk], scopes[chunk])
    for s in range(3):
        xs = x[scopes == s]
        assert sk.count(s) == xs.size
        assert sk.missing(s) == 0
        assert sk.min(s) == xs.min()
        assert sk.max(s) == xs.max()
        if dist != "tiny_and_huge":  # variance of 1e200-sized values overflows float64
            assert sk.mean(s) == pytest.approx(np.mean(xs), rel=1e-9, abs=1e-12)
            assert sk.variance(s) == pytest.approx(np.var(xs), rel=1e-9, abs=1e-12)
    np.testing.assert_array_equal(sk.counts, np.bincount(scopes, minlength=3))
    if dist != "tiny_and_huge":
        np.testing.assert_allclose(sk.means, [np.mean(x[scopes == s]) for s in range(3)], 1e-9)
        np.testing.assert_allclose(sk.variances, [np.var(x[scopes == s]) for s in range(3)], 1e-9)


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.05, 0.3])
@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_quantiles_within_relative_accuracy_of_numpy(dist: str, alpha: float) -> None:
    rng = np.random.default_rng(99)
    x = DISTRIBUTIONS[dist](rng, 3_000)
    # no bucket folding here (that is tested separately): the guarantee then holds for all q
    sk = numeric(x, np.zeros(x.size), 1, relative_accuracy=alpha, max_buckets=100_000)
    for q in np.linspace(0.0, 1.0, 201):
        truth = true_quantile(x, float(q))
        assert within_alpha(sk.quantile(0, float(q)), truth, alpha), (q, truth)


def test_quantile_error_is_not_trivially_zero() -> None:
    """Guard against the test above passing because the sketch stores raw values: at 5% the
    answers must actually be bucketed (and still within the bound)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(1.0, 2.0, 1_000)
    sk = numeric(x, np.zeros(x.size), 1, relative_accuracy=0.05)
    errors = [abs(sk.quantile(0, q) / true_quantile(x, q) - 1) for q in np.linspace(0.1, 0.9, 50)]
    assert 0.005 < max(errors) <= 0.05 * (1 + 1e-9)


@FAST
@given(
    st.lists(finite_normal, min_size=1, max_size=80),
    st.sampled_from([0.001, 0.01, 0.1, 0.5]),
    # fixed q's too: they hit integer ranks q * (n - 1), where an off-by-one would show
    st.lists(
        st.floats(0.0, 1.0) | st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=5
    ),
)
def test_quantile_error_bound_property(values: list[float], alpha: float, qs: list[float]) -> None:
    x = np.array(values)
    sk = numeric(x, np.zeros(x.size), 1, relative_accuracy=alpha)
    estimates = [sk.quantile(0, q) for q in sorted(qs)]
    for q, est in zip(sorted(qs), estimates, strict=True):
        assert within_alpha(est, true_quantile(x, q), alpha)
        assert x.min() <= est <= x.max()
    assert estimates == sorted(estimates)  # monotone in q
    # all q's in one pass over the buckets answer as one at a time
    assert sk.quantiles(0, np.array(sorted(qs))).tolist() == estimates


@FAST
@given(
    st.lists(st.tuples(finite_normal, st.integers(0, 3)), max_size=120),
    st.sampled_from([2048, 3]),
)
def test_every_scope_quantiles_as_a_sketch_of_its_values_alone(
    pairs: list[tuple[float, int]], max_buckets: int
) -> None:
    """The scopes share one store of buckets: a scope's quantiles must not depend on how
    many values the scopes before it hold (nor on float rounding of their count)."""
    probs = np.array([0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0])
    x = np.array([v for v, _ in pairs], dtype=np.float64)
    scopes = np.array([s for _, s in pairs], dtype=np.intp)
    together = NumericSketch(4, max_buckets=max_buckets)
    together.update(x, scopes)
    got = together.scope_quantiles(np.array([3, 0, 2, 1]), probs)
    for row, scope in zip(got, [3, 0, 2, 1], strict=True):
        alone = NumericSketch(1, max_buckets=max_buckets)
        mine = x[scopes == scope]
        alone.update(mine, np.zeros(mine.size, dtype=np.intp))
        assert np.array_equal(row, alone.quantiles(0, probs), equal_nan=True)


# ----------------------------------------------------------------------------------------------
# NumericSketch: batching, merging, serialisation (hypothesis)
# ----------------------------------------------------------------------------------------------


@FAST
@given(numeric_batches(), st.data(), st.sampled_from([1, 2, 3, 2048]))
def test_batch_equals_per_event_and_any_split(batch: Any, data: Any, max_buckets: int) -> None:
    n_scopes, x, scopes = batch
    whole = numeric(x, scopes, n_scopes, max_buckets=max_buckets)

    per_event = NumericSketch(n_scopes, max_buckets=max_buckets)
    for v, s in zip(x.tolist(), scopes.tolist(), strict=True):
        per_event.update_one(v, s)
    assert_same_stream(per_event, whole, x)

    split = NumericSketch(n_scopes, max_buckets=max_buckets)
    bounds = [0, *data.draw(cuts(x.size)), x.size]
    for lo, hi in itertools.pairwise(bounds):
        split.update(x[lo:hi], scopes[lo:hi])
    assert_same_stream(split, whole, x)


@FAST
@given(numeric_batches(values=st.one_of(finite_normal, st.just(NAN))), st.data())
def test_counts_extremes_and_buckets_exact_over_full_float_range(batch: Any, data: Any) -> None:
    n_scopes, x, scopes = batch
    whole = exact_parts(numeric(x, scopes, n_scopes, max_buckets=4))
    per_event = NumericSketch(n_scopes, max_buckets=4)
    for v, s in zip(x.tolist(), scopes.tolist(), strict=True):
        per_event.update_one(v, s)
    k = data.draw(st.integers(0, x.size))
    merged = numeric(x[:k], scopes[:k], n_scopes, max_buckets=4).merge(
        numeric(x[k:], scopes[k:], n_scopes, max_buckets=4)
    )
    for other in (per_event, merged):
        assert exact_parts(other) == whole


@FAST
@given(numeric_batches(), st.data(), st.sampled_from([1, 3, 2048]))
def test_merge_equals_concatenation(batch: Any, data: Any, max_buckets: int) -> None:
    n_scopes, x, scopes = batch
    k = data.draw(st.integers(0, x.size))
    a = numeric(x[:k], scopes[:k], n_scopes, max_buckets=max_buckets)
    b = numeric(x[k:], scopes[k:], n_scopes, max_buckets=max_buckets)
    a_before, b_before = copy.deepcopy(a), copy.deepcopy(b)
    merged = a.merge(b)
    assert merged is not a and merged is not b
    assert a == a_before and b == b_before  # inputs untouched
    assert_same_stream(merged, numeric(x, scopes, n_scopes, max_buckets=max_buckets), x)
    assert_same_stream(b.merge(a), merged, x)  # commutative up to rounding


@FAST
@given(numeric_batches(), st.sampled_from([0.005, 0.01, 0.2]), st.sampled_from([2, 2048]))
def test_numeric_state_codec_round_trip(batch: Any, alpha: float, max_buckets: int) -> None:
    n_scopes, x, scopes = batch
    sk = numeric(x, scopes, n_scopes, relative_accuracy=alpha, max_buckets=max_buckets)
    restored = through_state_codec(sk)
    assert restored is not sk and restored == sk
    for s in range(n_scopes):
        for q in (0.0, 0.3, 0.99, 1.0):
            a, b = restored.quantile(s, q), sk.quantile(s, q)
            assert a == b or (math.isnan(a) and math.isnan(b))
    # the restored sketch keeps working like the original
    restored.update(x, scopes)
    sk.update(x, scopes)
    assert restored == sk


@FAST
@given(
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),
    st.integers(1, 50),
    st.data(),
)
def test_constant_stream(c: float, n: int, data: Any) -> None:
    x = np.full(n, c)
    sk = NumericSketch(1)
    bounds = [0, *data.draw(cuts(n)), n]
    for lo, hi in itertools.pairwise(bounds):
        sk.update(x[lo:hi], np.zeros(hi - lo, dtype=np.intp))
    assert sk.count(0) == n
    assert sk.variance(0) == 0.0
    assert sk.mean(0) == c
    assert sk.min(0) == sk.max(0) == c
    for q in (0.0, 0.01, 0.5, 0.99, 1.0):
        assert within_alpha(sk.quantile(0, q), c, sk.relative_accuracy)


@FAST
@given(numeric_batches())
def test_nan_and_inf_counted_as_missing(batch: Any) -> None:
    n_scopes, x, scopes = batch
    sk = numeric(x, scopes, n_scopes)
    for s in range(n_scopes):
        xs = x[scopes == s]
        assert sk.missing(s) == int(np.sum(~np.isfinite(xs)))
        assert sk.count(s) == int(np.sum(np.isfinite(xs)))


def test_none_in_object_column_is_missing() -> None:
    sk = NumericSketch(2)
    sk.update(np.array([None, 1.5, None, NAN, 2.5], dtype=object), np.array([0, 0, 1, 1, 1]))
    assert [sk.missing(0), sk.missing(1)] == [1, 2]
    assert [sk.count(0), sk.count(1)] == [1, 1]
    sk.update_one(None, 0)
    assert sk.missing(0) == 2


@FAST
@given(st.integers(2, 5), st.lists(moderate.filter(math.isfinite), min_size=1, max_size=20))
def test_empty_scopes_are_nan(n_scopes: int, values: list[float]) -> None:
    sk = numeric(values, np.full(len(values), n_scopes - 1), n_scopes)
    sk.update([NAN, NAN], [0, 0])  # missing-only scope is still empty
    for s in range(n_scopes - 1):
        assert sk.count(s) == 0
        for got in (sk.mean(s), sk.variance(s), sk.min(s), sk.max(s), sk.quantile(s, 0.5)):
            assert math.isnan(got)
    assert np.isnan(sk.means[:-1]).all() and np.isnan(sk.variances[:-1]).all()
    assert not math.isnan(sk.mean(n_scopes - 1))
    assert sk.counts.tolist() == [0] * (n_scopes - 1) + [len(values)]


def test_fresh_sketch_is_empty_and_round_trips() -> None:
    sk = NumericSketch(2)
    assert sk.counts.tolist() == [0, 0]
    assert math.isnan(sk.quantile(1, 0.5))
    assert through_state_codec(sk) == sk
    sk.update([], [])  # empty batch is a no-op
    assert sk == NumericSketch(2)


def test_max_buckets_bounds_memory_and_only_affects_lowest_quantiles() -> None:
    rng = np.random.default_rng(3)
    bulk = rng.uniform(1.0, 2.0, 10_000)  # ~35 buckets at alpha=0.01
    tiny = 10.0 ** -np.arange(10.0, 300.0, 3.0)  # ~97 values, one bucket each
    x = np.concatenate([tiny, bulk])
    rng.shuffle(x)
    sk = numeric(x, np.zeros(x.size), 1, max_buckets=40)
    assert sk._buckets._size.tolist() == [40]  # bounded (and collapsing really happened)
    full = numeric(x, np.zeros(x.size), 1)
    assert full._buckets._size[0] > 40
    for q in np.linspace(0.0, 1.0, 501):
        truth = true_quantile(x, float(q))
        est = sk.quantile(0, float(q))
        if math.floor(q * (x.size - 1)) >= tiny.size:  # rank above the folded mass
            assert within_alpha(est, truth, 0.01)
        else:  # folded values are represented by a higher bucket: over-estimates only
            assert truth <= est <= 1e-10 * 1.02
    # exact extremes are unaffected by folding
    assert sk.min(0) == sk.quantile(0, 0.0) == tiny.min()
    assert sk.max(0) == sk.quantile(0, 1.0) == bulk.max()


# ----------------------------------------------------------------------------------------------
# NumericSketch: validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_scopes": 0}, r"n_scopes must be an int >= 1, got 0"),
        ({"n_scopes": -2}, r"n_scopes must be an int >= 1"),
        ({"n_scopes": 1.5}, r"n_scopes must be an int >= 1"),
        ({"n_scopes": True}, r"n_scopes must be an int >= 1"),
        ({"n_scopes": 1, "relative_accuracy": 2.0}, r"must be in \(0, 1\), got 2\.0"),
        ({"n_scopes": 1, "relative_accuracy": 0.0}, r"must be in \(0, 1\)"),
        ({"n_scopes": 1, "relative_accuracy": 1}, r"must be in \(0, 1\)"),
        ({"n_scopes": 1, "relative_accuracy": -0.1}, r"must be in \(0, 1\)"),
        ({"n_scopes": 1, "relative_accuracy": NAN}, r"must be in \(0, 1\)"),
        ({"n_scopes": 1, "relative_accuracy": "0.01"}, r"must be in \(0, 1\)"),
        ({"n_scopes": 1, "relative_accuracy": 1e-12}, r"must be >= 1e-09"),
        ({"n_scopes": 10**7, "relative_accuracy": 1e-9}, r"n_scopes must be <= \d+ at relative"),
        ({"n_scopes": 1, "max_buckets": 0}, r"max_buckets must be an int >= 1, got 0"),
        ({"n_scopes": 1, "max_buckets": 10.0}, r"max_buckets must be an int >= 1"),
    ],
)
def test_numeric_constructor_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NumericSketch(**kwargs)


def test_numeric_constructor_args_are_public() -> None:
    sk = NumericSketch(4, relative_accuracy=0.02, max_buckets=100)
    assert (sk.n_scopes, sk.relative_accuracy, sk.max_buckets) == (4, 0.02, 100)
    assert NumericSketch(np.int64(2)).n_scopes == 2  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "other",
    [
        NumericSketch(3),
        NumericSketch(2, relative_accuracy=0.02),
        NumericSketch(2, max_buckets=100),
    ],
)
def test_numeric_merge_mismatch(other: NumericSketch) -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        NumericSketch(2).merge(other)


def test_numeric_merge_wrong_type() -> None:
    with pytest.raises(TypeError):
        NumericSketch(2).merge(CategoricalSketch(2))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "scopes", "match"),
    [
        ([1.0, 2.0], [0, 2], r"scopes must be in \[0, 2\), got 2"),
        ([1.0, 2.0], [0, -1], r"scopes must be in \[0, 2\), got -1"),
        ([1.0, 2.0], [0], r"one entry per value"),
        ([1.0, 2.0], [0.0, 1.0], r"integer array"),
        ([[1.0], [2.0]], [0, 1], r"1-D"),
    ],
)
def test_numeric_update_validation_is_atomic(values: Any, scopes: Any, match: str) -> None:
    sk = numeric([5.0], [0], 2)
    before = copy.deepcopy(sk)
    with pytest.raises(ValueError, match=match):
        sk.update(np.asarray(values), np.asarray(scopes))
    assert sk == before


def test_numeric_query_validation() -> None:
    sk = numeric([1.0, 2.0], [0, 1], 2)
    for q in (-0.1, 1.1, NAN):
        with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
            sk.quantile(0, q)
    for scope in (2, -1, 0.0, True):
        with pytest.raises(ValueError, match=r"scope must be an int in \[0, 2\)"):
            sk.count(scope)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# CategoricalSketch
# ----------------------------------------------------------------------------------------------


def categorical(
    values: list[Any], scopes: list[int], n_scopes: int, top_k: int
) -> CategoricalSketch:
    sk = CategoricalSketch(n_scopes, top_k=top_k)
    sk.update(values, np.asarray(scopes, dtype=np.intp))
    return sk


def reference_misra_gries(stream: list[str], k: int) -> dict[str, int]:
    """Textbook one-at-a-time Misra-Gries with k counters."""
    counters: dict[str, int] = {}
    for x in stream:
        if x in counters:
            counters[x] += 1
        elif len(counters) < k:
            counters[x] = 1
        else:
            counters = {c: n - 1 for c, n in counters.items() if n > 1}
    return counters


categories = st.one_of(st.sampled_from(list("abcdefghijkl")), st.none(), st.just(NAN))


@st.composite
def categorical_batches(draw: Any, alphabet: int = 12, max_size: int = 60) -> Any:
    n_scopes = draw(st.integers(1, 3))
    cat = st.one_of(st.sampled_from(list("abcdefghijkl"[:alphabet])), st.none(), st.just(NAN))
    rows = draw(st.lists(st.tuples(cat, st.integers(0, n_scopes - 1)), max_size=max_size))
    return n_scopes, [v for v, _ in rows], [s for _, s in rows]


def truth_by_scope(values: list[Any], scopes: list[int], n_scopes: int) -> list[Counter[str]]:
    out: list[Counter[str]] = [Counter() for _ in range(n_scopes)]
    for v, s in zip(values, scopes, strict=True):
        if isinstance(v, str):
            out[s][v] += 1
    return out


@FAST
@given(categorical_batches(alphabet=5), st.integers(5, 8))
def test_categorical_exact_when_few_distinct(batch: Any, top_k: int) -> None:
    n_scopes, values, scopes = batch
    sk = categorical(values, scopes, n_scopes, top_k)
    truth = truth_by_scope(values, scopes, n_scopes)
    for s in range(n_scopes):
        assert sk.top(s) == sorted(truth[s].items(), key=lambda kv: (-kv[1], kv[0]))
        assert sk.other(s) == 0
        assert sk.count(s) == sum(truth[s].values())
        n_missing = sum(1 for v, sc in zip(values, scopes, strict=True) if sc == s and v is None)
        n_missing += sum(
            1 for v, sc in zip(values, scopes, strict=True) if sc == s and isinstance(v, float)
        )
        assert sk.missing(s) == n_missing


@FAST
@given(categorical_batches(), st.integers(1, 4), st.data())
def test_categorical_error_bound_under_any_batching_and_merging(
    batch: Any, top_k: int, data: Any
) -> None:
    n_scopes, values, scopes = batch
    bounds = [0, *data.draw(cuts(len(values))), len(values)]
    parts = [
        categorical(values[lo:hi], scopes[lo:hi], n_scopes, top_k)
        for lo, hi in itertools.pairwise(bounds)
    ]
    sequential = CategoricalSketch(n_scopes, top_k)
    for lo, hi in itertools.pairwise(bounds):
        sequential.update(values[lo:hi], scopes[lo:hi])
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    truth = truth_by_scope(values, scopes, n_scopes)
    for sk in (sequential, merged):
        for s in range(n_scopes):
            est = dict(sk.top(s))
            assert len(est) <= top_k
            assert sk.count(s) == sum(truth[s].values())
            assert sum(est.values()) + sk.other(s) == sk.count(s)
            assert sk.other(s) >= 0
            for c in set(truth[s]) | set(est):
                assert est.get(c, 0) <= truth[s][c] <= est.get(c, 0) + sk.other(s) / (top_k + 1)


@FAST
@given(st.lists(st.sampled_from(list("abcdefg")), max_size=80), st.integers(1, 4))
def test_categorical_per_event_is_textbook_misra_gries(stream: list[str], top_k: int) -> None:
    sk = CategoricalSketch(1, top_k)
    for v in stream:
        sk.update_one(v, 0)
    assert dict(sk.top(0)) == reference_misra_gries(stream, top_k)
    assert sk.count(0) == len(stream)


@FAST
@given(categorical_batches(alphabet=4), st.data())
def test_categorical_merge_and_batching_exact_when_few_distinct(batch: Any, data: Any) -> None:
    n_scopes, values, scopes = batch
    whole = categorical(values, scopes, n_scopes, top_k=4)
    k = data.draw(st.integers(0, len(values)))
    a = categorical(values[:k], scopes[:k], n_scopes, top_k=4)
    b = categorical(values[k:], scopes[k:], n_scopes, top_k=4)
    a_before = copy.deepcopy(a)
    assert a.merge(b) == whole
    assert b.merge(a) == whole
    assert a == a_before
    per_event = CategoricalSketch(n_scopes, top_k=4)
    for v, s in zip(values, scopes, strict=True):
        per_event.update_one(v, s)
    assert per_event == whole


@FAST
@given(categorical_batches(), st.integers(1, 5))
def test_categorical_state_codec_round_trip(batch: Any, top_k: int) -> None:
    n_scopes, values, scopes = batch
    sk = categorical(values, scopes, n_scopes, top_k)
    restored = through_state_codec(sk)
    assert restored is not sk and restored == sk
    assert [restored.other(s) for s in range(n_scopes)] == [sk.other(s) for s in range(n_scopes)]
    # the restored sketch keeps working like the original
    restored.update(values, scopes)
    sk.update(values, scopes)
    assert restored == sk


def test_categorical_ties_sorted_by_name_and_numpy_input() -> None:
    values = ["b", "a", "c", "a", "b", "c", "z", None]
    sk = categorical(values, [0] * len(values), 1, top_k=10)
    assert sk.top(0) == [("a", 2), ("b", 2), ("c", 2), ("z", 1)]
    from_numpy = CategoricalSketch(1, top_k=10)
    from_numpy.update(np.array(values, dtype=object), np.zeros(len(values), dtype=np.intp))
    assert from_numpy == sk
    unicode_col = CategoricalSketch(1, top_k=10)
    unicode_col.update(np.array(values[:-1]), np.zeros(len(values) - 1, dtype=np.intp))
    assert unicode_col.top(0) == sk.top(0)
    assert all(type(c) is str for c, _ in unicode_col.top(0))


def test_categorical_bounded_memory_drops_rare_categories() -> None:
    stream = ["hot"] * 50 + [f"rare{i}" for i in range(30)]
    sk = categorical(stream, [0] * len(stream), 1, top_k=2)
    (top_name, top_count), *_ = sk.top(0)
    assert top_name == "hot" and len(sk.top(0)) <= 2
    assert 50 - sk.other(0) / 3 <= top_count <= 50
    assert sk.count(0) == 80


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_scopes": 0}, r"n_scopes must be an int >= 1, got 0"),
        ({"n_scopes": 2.0}, r"n_scopes must be an int >= 1"),
        ({"n_scopes": 1, "top_k": 0}, r"top_k must be an int >= 1, got 0"),
        ({"n_scopes": 1, "top_k": False}, r"top_k must be an int >= 1"),
    ],
)
def test_categorical_constructor_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CategoricalSketch(**kwargs)


def test_categorical_update_validation_is_atomic() -> None:
    sk = categorical(["a"], [0], 2, top_k=3)
    before = copy.deepcopy(sk)
    with pytest.raises(TypeError, match="must be str or None"):
        sk.update(["a", 3], [0, 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be str or None"):
        sk.update([7, 3], [0, 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="single str"):
        sk.update("ab", [0, 1])
    with pytest.raises(ValueError, match=r"scopes must be in \[0, 2\), got 5"):
        sk.update(["a", "b"], [0, 5])
    with pytest.raises(ValueError, match="one entry per value"):
        sk.update(["a", "b"], [0])
    assert sk == before


def test_categorical_merge_mismatch() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        CategoricalSketch(2, top_k=3).merge(CategoricalSketch(2, top_k=4))
    with pytest.raises(ValueError, match="cannot merge"):
        CategoricalSketch(2).merge(CategoricalSketch(3))
    with pytest.raises(TypeError):
        CategoricalSketch(2).merge(NumericSketch(2))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# module purity
# ----------------------------------------------------------------------------------------------


def test_modules_are_pure() -> None:
    allowed = {"__future__", "math", "collections.abc", "typing", "numpy", "numpy.typing"}
    shared = {"detectors.arrays", "detectors.validation"}
    paths = sorted(SKETCHES.glob("*.py"))
    assert paths
    for path in paths:
        tree = ast.parse(path.read_text())
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
        outside = {m for m in imported if not m.startswith("detectors.sketches.")}
        assert outside <= allowed | shared, path.name
        first = tree.body[1]  # after the module docstring
        assert isinstance(first, ast.ImportFrom) and first.module == "__future__", path.name
        assert not {"open", "time", "datetime"} & {
            n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
        }, path.name
