"""Joins late labels (feedback) to the predictions they are about, in bounded memory.

:class:`JoinStore` (:mod:`~detectors.join.store`, where the rules are told) is what
callers use; it returns :class:`Joined` results (:mod:`~detectors.join.joined`). What it
owns, one module each: the stored predictions (:mod:`~detectors.join.entries`), the
feedback waiting for its prediction (:mod:`~detectors.join.pending`), the tombstones of
removed predictions (:mod:`~detectors.join.tombstones`), the label-delay histogram
(:mod:`~detectors.join.delays`) and the interned model, version and source names
(:mod:`~detectors.join.names`).
"""

from __future__ import annotations

from detectors.join.delays import DAY, DELAY_BUCKETS_S, delay_bucket_counts
from detectors.join.joined import Joined
from detectors.join.names import MAX_NAMES, MAX_SOURCES
from detectors.join.store import JoinStore

__all__ = [
    "DAY",
    "DELAY_BUCKETS_S",
    "MAX_NAMES",
    "MAX_SOURCES",
    "JoinStore",
    "Joined",
    "delay_bucket_counts",
]
