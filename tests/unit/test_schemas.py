from __future__ import annotations

import json

import jsonschema
import pytest

from detectors.decision import Decision
from streamer.events import EVENT_MODELS
from streamer.schemas import render, schemas
from tests.support import ROOT


@pytest.mark.parametrize("name", sorted(EVENT_MODELS))
def test_checked_in_schema_matches_the_model(name):
    """`driftgate schemas` regenerates these; a model change must come with them."""
    on_disk = (ROOT / "deploy" / "schemas" / f"{name}.json").read_text()
    assert on_disk == render(schemas()[name]), "run: driftgate schemas --out deploy/schemas"


def test_the_example_prediction_of_the_contract_validates():
    example = {
        "event_id": "p-17",
        "ts": 1763712000.0,
        "model": "fraud",
        "model_version": "v3",
        "cohort": {"region": "eu", "channel": "web"},
        "features": {
            "amount": 12.5,
            "age_days": 400,
            "country": "DE",
            "is_new": True,
            "clicks_7d": None,
        },
        "score": 0.12,
    }
    jsonschema.validate(example, schemas()["prediction"])
    jsonschema.validate({**example, "ts": "2025-11-21T08:00:00Z"}, schemas()["prediction"])


def test_a_decision_dataclass_serialises_to_a_valid_decision_event():
    decision = Decision(
        model="fraud",
        model_version="v3",
        action="investigate",
        cause="covariate_drift",
        feature="amount",
        cohort={"region": "eu"},
        ts=10.0,
        window_start=1.0,
        window_end=10.0,
        window_events=500,
        confirmed_at=10.0,
        evidence={"psi": 0.4},
    )
    event = decision.to_dict()
    jsonschema.validate(event, json.loads((ROOT / "deploy/schemas/decision.json").read_text()))
    assert event["severity"] == "warning"
    assert event["scope"] == {"feature": "amount", "cohort": {"region": "eu"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**event, "action": "panic"}, schemas()["decision"])
