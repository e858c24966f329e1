from __future__ import annotations

import itertools
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from river import drift

from detectors.score_change import ChangePoint, ScopedADWIN, ScopedPageHinkley
from evaluation.simulate import SCENARIOS, generate, write_replay
from streamer.metrics import EngineCollector
from tests.support import Change, replay_service, river_changes

Stream = tuple[np.ndarray, np.ndarray, np.ndarray, int]


@st.composite
def streams(draw: st.DrawFn, max_rows: int) -> Stream:
    """Values in segments of different means and spreads (so detectors fire), some NaN,
    and each row's scopes: column 0 the population (scope 0), then one column per
    dimension with its own range of scope ids."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Long streams and their segments from the seed: hypothesis' draws stay small.
    n = draw(st.integers(0, 40)) if draw(st.booleans()) else int(rng.integers(40, max_rows))
    values = np.empty(n)
    cuts = np.sort(rng.integers(0, n + 1, int(rng.integers(0, 5))))
    for a, b in itertools.pairwise([0, *cuts.tolist(), n]):
        spread = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5]))
        values[a:b] = rng.uniform(-1.0, 1.0) + spread * rng.standard_normal(b - a)
    if draw(st.booleans()):
        values = np.round(values, 1)  # ties and repeated values
    values[rng.random(n) < draw(st.sampled_from([0.0, 0.05]))] = np.nan
    columns = [np.zeros(n, dtype=np.intp)]
    n_scopes = 1
    for size in draw(st.lists(st.integers(1, 4), max_size=2)):
        columns.append(n_scopes + rng.integers(0, size, n).astype(np.intp))
        n_scopes += size
    return values, np.stack(columns, axis=1), 10.0 + 0.5 * np.arange(n), n_scopes


def fired(changes: list[Change]) -> str:
    return f"river fired {'3+' if len(changes) >= 3 else len(changes)} times"


def batched(detector: Any, stream: Stream, cuts: list[int]) -> list[Change]:
    values, scopes, ts, _ = stream
    got: list[Change] = []
    bounds = [0, *sorted(c for c in cuts if c <= len(values)), len(values)]
    for a, b in itertools.pairwise(bounds):
        changes = detector.update(values[a:b], scopes[a:b], ts[a:b])
        assert all(isinstance(c, ChangePoint) for c in changes)
        got.extend((c.scope, c.row, c.ts, c.mean_after) for c in changes)
    return got


def ph_mean(detector: Any) -> float:
    return float(detector._x_mean.get())


def ph_state(detector: ScopedPageHinkley) -> list[tuple[float, float, float, float, bool]]:
    return list(
        zip(
            detector._sum_increase,
            detector._sum_decrease,
            detector._min_increase,
            detector._max_decrease,
            detector._drifted,
        )
    )


def adwin_mean(detector: Any) -> float:
    return float(detector.estimation)


ph_params = st.fixed_dictionaries(
    {
        "min_instances": st.sampled_from([1, 5, 30]),
        "delta": st.sampled_from([0.0, 0.005, 0.1]),
        "threshold": st.sampled_from([0.5, 5.0, 50.0]),
        "alpha": st.sampled_from([1 - 0.0001, 0.99, 1.0]),
        "mode": st.sampled_from(["up", "down", "both"]),
    }
)


@settings(max_examples=200, deadline=None)
@given(streams(max_rows=1500), st.lists(st.integers(0, 1500), max_size=8), ph_params)
def test_page_hinkley_equals_river_per_event(
    stream: Stream, cuts: list[int], params: dict[str, Any]
) -> None:
    values, scopes, ts, n_scopes = stream
    reference = [drift.PageHinkley(**params) for _ in range(n_scopes)]
    expected = river_changes(reference, values, scopes, ts, ph_mean)
    event(fired(expected))
    detector = ScopedPageHinkley(n_scopes, **params)
    # Bit-identical: detections, times and means compare with ==.
    assert batched(detector, stream, cuts) == expected
    counts = np.bincount([c[0] for c in expected], minlength=n_scopes)
    assert detector.detections.tolist() == counts.tolist()
    assert detector.means().tolist() == [ph_mean(d) for d in reference]
    # The cumulative sums too, to the bit: a detection may hang on their last digit.
    assert ph_state(detector) == [
        (d._sum_increase, d._sum_decrease, d._min_increase, d._max_decrease, d.drift_detected)
        for d in reference
    ]


@settings(max_examples=100, deadline=None)
@given(streams(max_rows=3000), st.lists(st.integers(0, 3000), max_size=8))
def test_adwin_equals_river_per_event(stream: Stream, cuts: list[int]) -> None:
    values, scopes, ts, n_scopes = stream
    reference = [drift.ADWIN(delta=0.01) for _ in range(n_scopes)]
    expected = river_changes(reference, values, scopes, ts, adwin_mean)
    event(fired(expected))
    detector = ScopedADWIN(n_scopes, delta=0.01)
    assert batched(detector, stream, cuts) == expected
    counts = np.bincount([c[0] for c in expected], minlength=n_scopes)
    assert detector.detections.tolist() == counts.tolist()
    assert detector.means().tolist() == [adwin_mean(d) for d in reference]


def two_segments(n: int = 4000) -> Stream:
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(0.2, 0.05, n // 2), rng.normal(0.6, 0.05, n // 2)])
    scopes = np.stack([np.zeros(n, dtype=np.intp), 1 + rng.integers(0, 2, n)], axis=1)
    return values, scopes, np.arange(n, dtype=float), 3


def test_two_segments_fire_in_every_scope() -> None:
    stream = two_segments()
    for detector in (ScopedPageHinkley(3), ScopedADWIN(3)):
        changes = batched(detector, stream, [1000, 2000, 2001])
        assert {c[0] for c in changes} == {0, 1, 2}
        assert all(c[1] >= 2000 for c in changes)


@pytest.mark.parametrize("constant", [0.0, 0.3, -7.25, 1e6])
@pytest.mark.parametrize("mode", ["up", "down", "both"])
def test_constant_stream_never_fires(constant: float, mode: str) -> None:
    n = 20_000
    stream = (np.full(n, constant), np.zeros((n, 1), dtype=np.intp), np.arange(float(n)), 1)
    detectors: list[ScopedPageHinkley | ScopedADWIN] = [
        ScopedPageHinkley(1, threshold=0.5, min_instances=1, mode=mode),
        ScopedADWIN(1),
    ]
    for detector in detectors:
        assert batched(detector, stream, [7, 5000]) == []
        assert detector.detections.tolist() == [0]
        assert detector.means()[0] == pytest.approx(constant)  # ADWIN's is total / width


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_scopes": 0}, "n_scopes must be an int >= 1"),
        ({"n_scopes": 1.0}, "n_scopes must be an int >= 1"),
        ({"min_instances": 0}, "min_instances must be an int >= 1"),
        ({"min_instances": True}, "min_instances must be an int >= 1"),
        ({"delta": -0.1}, r"delta must be a finite number >= 0"),
        ({"delta": math.nan}, r"delta must be a finite number >= 0"),
        ({"threshold": 0.0}, r"threshold must be a finite number > 0"),
        ({"threshold": math.inf}, r"threshold must be a finite number > 0"),
        ({"alpha": 0.0}, r"alpha must be in \(0, 1\]"),
        ({"alpha": 1.01}, r"alpha must be in \(0, 1\]"),
        ({"alpha": math.nan}, r"alpha must be in \(0, 1\]"),
        ({"mode": "either"}, r"mode must be one of \('up', 'down', 'both'\)"),
    ],
)
def test_page_hinkley_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScopedPageHinkley(**{"n_scopes": 1, **kwargs})


@pytest.mark.parametrize(
    ("make", "make_river", "mean"),
    [
        (lambda: ScopedPageHinkley(3), drift.PageHinkley, ph_mean),
        (lambda: ScopedADWIN(3), drift.ADWIN, adwin_mean),
    ],
)
def test_pickle_mid_stream_continues_identically(make: Any, make_river: Any, mean: Any) -> None:
    values, scopes, ts, n_scopes = stream = two_segments()
    whole = batched(make(), stream, [])
    assert whole
    # Also right after a detection, while the detector's reset is still pending.
    for cut in (1000, 2100, whole[0][1] + 1):
        detector = make()
        head = (values[:cut], scopes[:cut], ts[:cut])
        first = batched(detector, (*head, n_scopes), [])
        reference = [make_river() for _ in range(n_scopes)]
        river_changes(reference, *head, mean)
        assert detector.means().tolist() == [mean(d) for d in reference]
        restored = pickle.loads(pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL))
        rest = (values[cut:], scopes[cut:], ts[cut:], n_scopes)
        assert first + batched(restored, rest, [400]) == whole
        batched(detector, rest, [])
        assert restored.detections.tolist() == detector.detections.tolist()
        assert restored.means().tolist() == detector.means().tolist()


def test_monitor_feeds_page_hinkley_and_the_metrics_export_it(tmp_path: Path) -> None:
    spec, incidents = SCENARIOS["covariate_shift"](40_000)
    path = tmp_path / "stream.jsonl"
    write_replay(path, generate(spec, 40_000, seed=1, incidents=incidents))
    service = replay_service(path, tmp_path / "decisions.jsonl")[0]
    monitor = service.engine.monitors["fraud"]
    assert monitor.score_shifts is not None
    registry = CollectorRegistry()
    registry.register(EngineCollector(service))
    families = text_string_to_metric_families(generate_latest(registry).decode())
    samples = {f.name: f.samples for f in families}
    shifts = {s.labels["scope"]: s.value for s in samples["driftgate_score_shifts"]}
    changes = {s.labels["scope"]: s.value for s in samples["driftgate_score_changes"]}
    assert shifts.keys() == changes.keys()
    assert list(shifts.values()) == monitor.score_shifts.detections.tolist()
    assert shifts["all"] >= 1  # the scores moved with the inputs
