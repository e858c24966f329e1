"""Outcomes of a binary model per scope, from joined labels, and the judges that read them."""

from __future__ import annotations

from detectors.outcomes.window import (
    EPS,
    CalibrationShift,
    CalibrationVerdict,
    DropVerdict,
    OutcomeStats,
    OutcomeWindow,
    PerformanceDrop,
    RateShift,
    RateVerdict,
    ScopedLossADWIN,
    band_edges_from_reference,
    log_loss,
)

__all__ = [
    "EPS",
    "CalibrationShift",
    "CalibrationVerdict",
    "DropVerdict",
    "OutcomeStats",
    "OutcomeWindow",
    "PerformanceDrop",
    "RateShift",
    "RateVerdict",
    "ScopedLossADWIN",
    "band_edges_from_reference",
    "log_loss",
]
