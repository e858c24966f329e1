"""The retraining baselines: hand-computed PSI windows, river's own ADWIN, the schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from river import drift

from evaluation.baselines import adwin_retrains, psi_retrains, scheduled_retrains, windowed_psi


def test_the_schedule_retrains_after_every_block():
    assert scheduled_retrains(200_000) == [49_999, 99_999, 149_999, 199_999]
    assert scheduled_retrains(49_999) == []
    assert scheduled_retrains(10, every=4) == [3, 7]


def _psi_all_a() -> float:
    # Reference 50 "a" and 50 "b"; a window of 50 "a". Bins used on either side: a, b
    # (the other and null bins are empty on both and dropped); pseudo-count 0.5 each.
    p = [50.5 / 101, 50.5 / 101]
    q = [50.5 / 51, 0.5 / 51]
    return sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))


def test_psi_per_window_against_the_first_events():
    values = ["a", "b"] * 50 + ["b", "a"] * 25 + ["a"] * 50 + ["a"] * 10
    psis = windowed_psi(values, reference_events=100, window_events=50)
    # The trailing 10 values are not a full window.
    assert psis.tolist() == pytest.approx([0.0, _psi_all_a()])
    assert _psi_all_a() == pytest.approx(2.2623, abs=1e-4)
    features = {"channel": values, "steady": [1.0, 2.0] * 105}
    assert psi_retrains(features, reference_events=100, window_events=50) == [199]
    assert psi_retrains(features, 100, 50, threshold=3.0) == []


def test_a_feature_that_goes_missing_is_a_shift_to_the_null_bin():
    values: list[object] = [0.0, 1.0] * 50 + [None] * 50
    (psi,) = windowed_psi(values, 100, 50).tolist()
    # Edges at 0 and 1: the bin below 0 is empty on both sides and dropped, 0 and 1 get
    # 50 each; the null bin is empty in the reference and holds the whole window.
    p = [50.5 / 101.5, 50.5 / 101.5, 0.5 / 101.5]
    q = [0.5 / 51.5, 0.5 / 51.5, 50.5 / 51.5]
    assert psi == pytest.approx(sum((b - a) * math.log(b / a) for a, b in zip(p, q)))
    assert psi_retrains({"x": values}, 100, 50) == [149]


def test_adwin_fires_where_river_does_on_each_numeric_feature():
    rng = np.random.default_rng(11)
    jump = np.concatenate([rng.normal(0, 1, 3_000), rng.normal(2, 1, 3_000)]).tolist()
    late = np.concatenate([rng.normal(5, 1, 4_500), rng.normal(0, 1, 1_500)]).tolist()
    late[100:200] = [None] * 100  # missing values are skipped, not zeros
    words = ["x", "y"] * 1_500 + ["z"] * 3_000  # categorical: no ADWIN
    expected = set()
    for values in (jump, late):
        detector = drift.ADWIN()
        for i, value in enumerate(values):
            if value is not None:
                detector.update(value)
                if detector.drift_detected:
                    expected.add(i)
    fired = adwin_retrains({"jump": jump, "late": late, "words": words})
    assert fired == sorted(expected)
    assert any(3_000 <= i < 3_200 for i in fired)
    assert any(4_500 <= i < 4_700 for i in fired)
    assert adwin_retrains({"words": words}) == []
