"""The decision policy's rules, one by one (the scenarios test them end to end)."""

from __future__ import annotations

import pytest

from detectors.monitor.policy import (
    Gates,
    concept_route,
    label_quality_judged,
    rescale_is_upstream,
)


@pytest.mark.parametrize(
    ("gates", "main_version", "expected"),
    [
        (Gates(), "v1", ("retrain", "concept_drift", "v1", {})),
        (
            Gates(broken_inputs=("amount",), suspect_versions=("v2",)),
            "v2",
            (
                "hold",
                "concept_drift",
                "v1",
                {"gate": "upstream_condition_active", "broken_inputs": ["amount"]},
            ),
        ),
        (
            Gates(suspect_versions=("v2",), regressed_versions=("v2",)),
            "v2",
            (
                "rollback",
                "deployment_regression",
                "v2",
                {"detector": "outcomes_of_new_version_against_incumbent"},
            ),
        ),
        (
            Gates(suspect_versions=("v2",), regressed_versions=("v2",)),
            "v1",
            (
                "hold",
                "concept_drift",
                "v1",
                {"gate": "deployment_under_suspicion", "regressed_versions": ["v2"]},
            ),
        ),
        (Gates(drifting_inputs=("amount",)), "v1", ("retrain", "concept_drift", "v1", {})),
    ],
    ids=["retrain", "broken-input", "new-version", "other-version-regressed", "drifting-input"],
)
def test_an_outcome_drop_is_routed_by_its_gates(
    gates: Gates, main_version: str, expected: tuple[object, ...]
) -> None:
    route = concept_route(gates, main_version, "v1")
    assert (route.action, route.cause, route.version, route.why) == expected


def test_label_quality_is_not_judged_while_inputs_move() -> None:
    assert label_quality_judged(Gates())
    assert not label_quality_judged(Gates(drifting_inputs=("amount",)))
    assert not label_quality_judged(Gates(broken_inputs=("amount",)))


@pytest.mark.parametrize(
    ("window_factors", "factor", "drifting", "step", "upstream"),
    [
        ([1000.0], 1000.0, False, True, True),  # a unit change
        # not something the world drifts or slides into
        ([1000.0, 1010.0, 990.0], 1000.0, True, False, True),
        ([100.0, 1000.0], 400.0, False, True, False),  # a factor that wanders is a drift
        ([-2.0, 2.0], 2.0, False, True, False),
        ([1.6, 1.6, 1.6], 1.6, True, True, False),  # a mild factor within a drift is the drift
        ([1.6, 1.6, 1.6], 1.6, False, False, False),  # and so is one the feature slid into
        ([1.6, 1.6, 1.6], 1.6, False, True, True),
    ],
)
def test_a_rescale_is_upstream_only_with_one_factor(
    window_factors: list[float], factor: float, drifting: bool, step: bool, upstream: bool
) -> None:
    assert rescale_is_upstream(window_factors, factor, drifting, step) is upstream


@pytest.mark.parametrize(
    ("factor", "drifting", "step", "upstream"),
    [
        (1000.0, False, True, True),
        (3.4, False, True, True),
        (3.4, True, True, False),  # against the whole reference's quantiles, not the hour's
        (3.4, False, False, False),
        (1.8, False, True, False),  # the hour alone makes a mild factor
    ],
)
def test_compared_by_the_hour_a_rescale_is_upstream_only_as_a_step_beyond_mild(
    factor: float, drifting: bool, step: bool, upstream: bool
) -> None:
    factors = [factor] * 3
    assert rescale_is_upstream(factors, factor, drifting, step, by_hour=True) is upstream
    # what the same verdict is on a feature compared with its whole reference
    assert rescale_is_upstream(factors, factor, drifting, step) is (step or factor > 3.2)
