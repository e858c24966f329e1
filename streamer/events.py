"""The event contract: what driftgate reads and what it writes.

These pydantic models are the single source of truth for the wire format: the
decoder validates with them and ``driftgate schemas`` writes their JSON Schema
into ``deploy/schemas/``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from detectors.decision import Action, Cause

FeatureValue = float | int | bool | str | None


def epoch_seconds(value: float | str) -> float:
    """Event time as epoch seconds, from a number or a zone-aware RFC 3339 string."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"ts {value[:64]!r} is not an RFC 3339 timestamp") from exc
        if parsed.tzinfo is None:
            raise ValueError(f"ts {value[:64]!r} has no timezone; add Z or an offset")
        seconds = parsed.timestamp()
    else:
        try:
            seconds = float(value)
        except OverflowError:
            # An integer literal like 10**400: pydantic turns only a ValueError into a
            # rejection, anything else would escape the decoder.
            raise ValueError("ts is an integer too large for epoch seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        # Before 1970 through a string too, as for a number.
        raise ValueError(f"ts {value!r:.80} must be a finite, non-negative epoch time")
    return seconds


# Epoch seconds past 1e11 would be after the year 5000: such a number is a producer's
# milliseconds (Java, Kafka's own record timestamps), or micro- or nanoseconds. For any
# date after 1973 the unit is unambiguous, so it is read as what it is rather than
# making a window of ~1,000 years or rejecting every event of that producer.
_UNIT_THRESHOLDS = (1e17, 1e14, 1e11)
_UNIT_SCALES = (1e-9, 1e-6, 1e-3)


def epoch_seconds_column(ts: Sequence[float]) -> NDArray[np.float64]:
    """Event times as epoch seconds, from seconds, milliseconds, micro- or nanoseconds.

    >>> epoch_seconds_column([1763712000.5, 1763712000500, 1763712000500000]).tolist()
    [1763712000.5, 1763712000.5, 1763712000.5]
    """
    seconds = np.asarray(ts, dtype=np.float64)
    if seconds.size and seconds.max() >= _UNIT_THRESHOLDS[-1]:
        scale = np.select(
            [seconds >= at for at in _UNIT_THRESHOLDS], list(_UNIT_SCALES), default=1.0
        )
        seconds = seconds * scale
    return seconds


class _Event(BaseModel):
    # Unknown top-level fields are ignored so producers can add fields without
    # breaking the monitor; NaN and infinities are not JSON and are rejected.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    event_id: str = Field(min_length=1, max_length=256)
    ts: float = Field(description="Event time: epoch seconds or an RFC 3339 string with zone.")

    @field_validator("ts", mode="before", json_schema_input_type=float | str)
    @classmethod
    def _ts(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("ts must be a number of epoch seconds or an RFC 3339 string")
        return epoch_seconds(value)


class PredictionEvent(_Event):
    """One prediction a model served."""

    model: str = Field(min_length=1, max_length=256)
    model_version: str = Field(min_length=1, max_length=256)
    cohort: dict[str, str] = Field(default_factory=dict)
    features: dict[str, FeatureValue]
    score: float = Field(
        strict=True,
        description="The model output: probability of the positive class, or the predicted value.",
    )

    @field_validator(
        "cohort", mode="before", json_schema_input_type=dict[str, str | float | int | bool] | None
    )
    @classmethod
    def _cohort(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            # Cohort values are labels; numbers and booleans are accepted as their text.
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v))
                if isinstance(v, int | float)
                else v
                for k, v in value.items()
            }
        return value


class FeedbackEvent(_Event):
    """A label (or an override) for an earlier prediction, joined by ``event_id``."""

    # Outcomes are judged as a binary classifier's (log loss, risk-band calibration,
    # positive rates): a label outside [0, 1], say a regression target, would make them
    # meaningless, so it is dead-lettered here rather than failing the judgement later.
    label: float = Field(
        strict=True,
        ge=0.0,
        le=1.0,
        description="The observed outcome of a binary classifier: 0 or 1 (a value in between "
        "is accepted as a soft label).",
    )
    source: str = Field(default="unknown", min_length=1, max_length=128)
    override: bool = False


class DecisionScope(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature: str | None
    cohort: dict[str, str] | None


class DecisionWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: float
    end: float
    events: int = Field(ge=0)


class DecisionEvent(BaseModel):
    """What driftgate publishes on the decisions topic, keyed by model."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = 2
    decision_id: str = Field(min_length=1)
    incident_id: str = Field(
        min_length=1,
        description="The incident the decision belongs to: the same for its opening order, "
        "its updates and its resolution, and the same on replay and after a restart. "
        "Deduplicate orders on it.",
    )
    phase: Literal["opened", "updated", "resolved"] = Field(
        description="opened: the incident's one order, act on it; updated: a follow-up "
        "(another scope or feature, a condition back), for people; resolved: the hold that "
        "ends it."
    )
    ts: float = Field(description="Event time of the window that triggered the decision.")
    model: str
    model_version: str | None
    action: Action
    cause: Cause
    scope: DecisionScope
    severity: Literal["info", "warning", "critical"]
    evidence: dict[str, Any]
    window: DecisionWindow


EVENT_MODELS: dict[str, type[BaseModel]] = {
    "prediction": PredictionEvent,
    "feedback": FeedbackEvent,
    "decision": DecisionEvent,
}
