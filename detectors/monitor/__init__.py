"""A model's monitor: what driftgate runs per model (see :mod:`detectors.monitor.monitor`)."""

from __future__ import annotations

from detectors.monitor.monitor import ModelMonitor, MonitorConfig

__all__ = ["ModelMonitor", "MonitorConfig"]
