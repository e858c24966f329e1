"""Real streams with documented drift (data/real/), default config."""

from __future__ import annotations

import pytest

from tests.support import replay_service, write_real_stream

pytestmark = pytest.mark.slow


def test_insects_temperature_change_is_drift_not_an_upstream_fault(tmp_path):
    """The temperature change scales wing-beat features: the world moved, no unit did."""
    write_real_stream("insects", tmp_path / "insects.jsonl")
    _, decisions = replay_service(tmp_path / "insects.jsonl", tmp_path / "d.jsonl")
    # Wing-beat features drift gradually: some cross the threshold for a window or two and
    # fall back (informational transient holds) before the change persists.
    causes = {d.cause for d in decisions if d.action != "hold"}
    assert causes == {"covariate_drift"}, [d.to_dict() for d in decisions]
    assert {d.cause for d in decisions if d.action == "hold"} <= {"transient_shift"}
    features = {d.feature for d in decisions if d.feature}
    features |= {f for d in decisions for f in d.evidence.get("features", ())}
    assert len(features) >= 3
    # The features that moved together at the change are reported once, together.
    assert any(len(d.evidence.get("features", ())) >= 3 for d in decisions)


def test_weather_seasons_raise_no_upstream_fault(tmp_path):
    write_real_stream("weather", tmp_path / "weather.jsonl")
    _, decisions = replay_service(tmp_path / "weather.jsonl", tmp_path / "d.jsonl")
    actions = [d for d in decisions if d.cause != "transient_shift"]
    assert all(d.cause == "covariate_drift" for d in actions), [d.to_dict() for d in decisions]
    assert len(actions) <= 4


def test_elec2_signals_that_come_to_life_are_reported_once_and_never_as_retrain(tmp_path):
    """vicprice, vicdemand and transfer are constant (filled-in) for the first 17,424 rows
    and vary after that: the reference knows them constant, so their coming to life is
    one change of three features at once, and nothing here is a retraining order (there
    are no labels)."""
    write_real_stream("elec2", tmp_path / "elec2.jsonl")
    _, decisions = replay_service(tmp_path / "elec2.jsonl", tmp_path / "d.jsonl")
    assert {d.action for d in decisions} <= {"investigate", "hold"}, [
        d.to_dict() for d in decisions
    ]
    revived = {"vicprice", "vicdemand", "transfer"}
    grouped = [d for d in decisions if revived <= set(d.evidence.get("features", ()))]
    assert len(grouped) == 1
    (group,) = grouped
    assert group.action == "investigate" and group.cause == "covariate_drift"
    # First seen in a window after they started varying (60 s per row here).
    assert group.evidence["first_seen"] >= 1_600_000_000.0 + 60.0 * (17_424 - 2_000)
    # And not reported again one by one.
    assert not [d for d in decisions if d.feature in revived and d.action != "hold"]
