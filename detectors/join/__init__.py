"""Joins late labels (feedback) to the predictions they are about, in bounded memory."""

from __future__ import annotations

from detectors.join.store import (
    DAY,
    DELAY_BUCKETS_S,
    MAX_NAMES,
    MAX_SOURCES,
    Joined,
    JoinStore,
    delay_bucket_counts,
)

__all__ = [
    "DAY",
    "DELAY_BUCKETS_S",
    "MAX_NAMES",
    "MAX_SOURCES",
    "JoinStore",
    "Joined",
    "delay_bucket_counts",
]
