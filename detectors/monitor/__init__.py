"""A model's monitor: what driftgate runs per model (see :mod:`detectors.monitor.monitor`)."""

from __future__ import annotations

from detectors.monitor.config import MonitorConfig
from detectors.monitor.monitor import ModelMonitor
from detectors.monitor.snapshot import MonitorSnapshot

__all__ = ["ModelMonitor", "MonitorConfig", "MonitorSnapshot"]
