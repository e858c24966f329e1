"""Upstream faults that must not be mistaken for drift: frozen, rescaled and renamed signals."""

from __future__ import annotations

from detectors.upstream.frozen import (
    FrozenCheck,
    FrozenVerdict,
    RescaleCheck,
    RescaleVerdict,
    ScopeStats,
    histogram_collision,
    match_renamed,
    match_renamed_categorical,
    nearest_unit,
    quantile_distance,
)

__all__ = [
    "FrozenCheck",
    "FrozenVerdict",
    "RescaleCheck",
    "RescaleVerdict",
    "ScopeStats",
    "histogram_collision",
    "match_renamed",
    "match_renamed_categorical",
    "nearest_unit",
    "quantile_distance",
]
