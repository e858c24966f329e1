"""Deterministic synthetic prediction and feedback traffic for demos, tests and benchmarks.

The simulated world is meant to look like real fraud-model traffic (skewed money amounts,
overdispersed counts with missing values, cohorts with unequal traffic and their own feature
distributions, delayed and partial labels) rather than like anything a particular detector
finds easy, so that a detector's results on it mean something. Output is a pure function of
(spec, n_events, seed, incidents): no wall clock, no global random state.
"""

from __future__ import annotations

from evaluation.simulate.files import write_replay, write_truth
from evaluation.simulate.scenarios import DURATION_HOURS, SCENARIOS, events_over, natural_events
from evaluation.simulate.spec import (
    ACTIONS,
    DEFAULT_COHORTS,
    INCIDENT_KINDS,
    MODEL_KINDS,
    OUTCOME_KINDS,
    UPSTREAM_KINDS,
    Incident,
    TrafficSpec,
)
from evaluation.simulate.stream import generate
from evaluation.simulate.world import reference_std

__all__ = [
    "ACTIONS",
    "DEFAULT_COHORTS",
    "DURATION_HOURS",
    "INCIDENT_KINDS",
    "MODEL_KINDS",
    "OUTCOME_KINDS",
    "SCENARIOS",
    "UPSTREAM_KINDS",
    "Incident",
    "TrafficSpec",
    "events_over",
    "generate",
    "natural_events",
    "reference_std",
    "write_replay",
    "write_truth",
]
