"""Mergeable, bounded-memory per-scope summaries of micro-batch columns."""

from __future__ import annotations

from detectors.sketches.numeric import CategoricalSketch, NumericSketch

__all__ = ["CategoricalSketch", "NumericSketch"]
