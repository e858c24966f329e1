"""The decision policy: which action each situation asks for, chosen here and only here.

The detectors say *what* changed; this module says what to *do* about it. Every rule that
picks an action is below; the monitors call it and write the evidence. ``K`` is
``persistence_windows``: a condition counts once it held for K judged windows in a row,
and a decision is made once per condition, for the narrowest scope that explains it
(:func:`detectors.persistence.announce`).

==========================================================  ============  =====================
situation                                                   action        cause
==========================================================  ============  =====================
an input is broken upstream for K windows: frozen or a      fix_upstream  frozen_signal,
null spike, rescaled by one steady factor, missing or                     rescaled_signal,
retyped (or renamed: a new name matches a vanished                        schema_change
input's reference)
a name the reference never had carries values in most       fix_upstream  schema_change
events for K windows (and is no vanished input's new name)
a feature drifted (PSI and G-test) for K windows while its  investigate   covariate_drift
input was healthy: a broken input explains its own shift,
and a drift is a question, not a retraining order
a shift of two windows or more reverted before K (a         hold          transient_shift
campaign, a short outage): worth knowing, nothing to do
a new version's scores differ from the incumbent's for K    rollback      deployment_regression
windows, in scopes whose inputs did not move
outcomes dropped (performance or ROC AUC, and calibration)  rollback      deployment_regression
for K label windows, on labels mostly of a version whose
own outcomes have not cleared it yet
a new version's trusted labels are worse than the           rollback      deployment_regression
incumbent's of the same period (log loss, or ROC AUC: a
ranking that collapsed) for K comparison windows
outcomes dropped (performance or ROC AUC, and calibration)  rollback      deployment_regression
while a version's labels are worse than the incumbent's
of the same period: the version dragged the window down
outcomes dropped while an input is reported broken          hold          concept_drift
outcomes dropped while another version's scores regressed   hold          concept_drift
outcomes dropped otherwise                                  retrain       concept_drift
the untrusted labels' positive rate moved alone (trusted    investigate   label_quality
labels and outcomes steady), while no input drifts or is
broken
the share of feedback overriding the model rose for K       investigate   trust_decay
windows
every condition of an incident was clear for                hold          its cause (resolved)
``resolve_windows`` windows (>= K)
==========================================================  ============  =====================

Each decision is then placed in its incident (:mod:`detectors.incidents`): the first is
the order (phase ``opened``), later ones while it is open are ``updated``.

A rollback of a version and scope is made once, whether its scores or its outcomes found
the regression first (:meth:`DeploymentWatch.first_report`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from detectors.arrays import BoolArray
from detectors.decision import Action, Cause
from detectors.signal_health import mild_factor

if TYPE_CHECKING:
    from detectors.monitor.feature_drift import FeatureDrift

# The conditions a monitor opens, each asking for one action when it is reported.
Condition = Literal[
    "broken_input",
    "new_feature",
    "covariate_drift",
    "transient_shift",
    "score_regression",
    "outcome_regression",
    "label_quality",
    "trust_decay",
]
OPENED: dict[Condition, Action] = {
    "broken_input": "fix_upstream",
    "new_feature": "fix_upstream",
    "covariate_drift": "investigate",
    "transient_shift": "hold",
    "score_regression": "rollback",
    "outcome_regression": "rollback",
    "label_quality": "investigate",
    "trust_decay": "investigate",
}
# A report that resolved is a hold under the cause it was reported with.
CLEARED: Action = "hold"

# Window-to-window spread (max / min) of a rescale factor that is still one factor.
STEADY_FACTOR_RATIO = 1.25


@dataclass(frozen=True)
class Gates:
    """What the rest of the monitor knows when outcomes are judged."""

    broken_inputs: tuple[str, ...] = ()
    drifting_inputs: tuple[str, ...] = ()
    # New model versions not yet cleared by their own outcomes, and those whose scores
    # regressed (see detectors.monitor.deployment).
    suspect_versions: tuple[str, ...] = ()
    regressed_versions: tuple[str, ...] = ()
    # Versions whose outcomes are worse than the incumbent's over the same period
    # (detectors.monitor.version_outcomes).
    regressing_versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """What an outcome drop is reported as, and the evidence saying why."""

    action: Action
    cause: Cause
    version: str | None
    why: dict[str, Any] = field(default_factory=dict)


def gates(
    features: Iterable[FeatureDrift], suspects: Sequence[str], regressed: Sequence[str]
) -> Gates:
    """The gates outcomes are judged under, from the inputs' reported conditions and the
    deployments' verdicts."""
    states = list(features)
    return Gates(
        broken_inputs=tuple(sorted(f.name for f in states if f.broken)),
        drifting_inputs=tuple(sorted(f.name for f in states if f.drifting)),
        suspect_versions=tuple(suspects),
        regressed_versions=tuple(regressed),
    )


def concept_route(gates: Gates, main_version: str | None, version: str | None) -> Route:
    """A drop in outcomes on labels mostly of ``main_version``, the monitor's current
    ``version`` being the one a retrain would replace. Retraining on broken inputs bakes
    the fault in, and a drop that came with a new version is the version's: hold (saying
    which gate) or roll back instead."""
    after_deployment = main_version in gates.suspect_versions
    if gates.broken_inputs:
        why = {"gate": "upstream_condition_active", "broken_inputs": list(gates.broken_inputs)}
        return Route("hold", "concept_drift", version, why)
    if after_deployment:
        # Compared with the reference's outcomes, which are the previous version's: the
        # drop came with the new version.
        why = {"detector": "outcomes_of_new_version_against_incumbent"}
        return Route("rollback", "deployment_regression", main_version, why)
    if gates.regressing_versions:
        # A version whose own labels are worse than the incumbent's of the same period
        # drags a window mixing both down: the drop is the version's, not the world's.
        version_at_fault = gates.regressing_versions[0]
        why = {
            "detector": "outcomes_against_incumbent_same_period",
            "regressing_versions": list(gates.regressing_versions),
        }
        return Route("rollback", "deployment_regression", version_at_fault, why)
    if gates.regressed_versions:
        why = {
            "gate": "deployment_under_suspicion",
            "regressed_versions": list(gates.regressed_versions),
        }
        return Route("hold", "concept_drift", version, why)
    return Route("retrain", "concept_drift", version)


def label_quality_judged(gates: Gates) -> bool:
    """Untrusted labels moving while inputs drift or are broken say nothing of the labels:
    the traffic they label changed."""
    return not (gates.drifting_inputs or gates.broken_inputs)


def drift_hit(drifted: BoolArray, broken: BoolArray) -> BoolArray:
    """The scopes whose window counts as drifted: a broken input explains its own shift,
    which is reported as upstream, not as drift."""
    return drifted & ~broken


def rescale_is_upstream(
    window_factors: Sequence[float],
    factor: float,
    drifting: bool,
    step: bool,
    by_hour: bool = False,
) -> bool:
    """Whether a scope that looks rescaled by ``factor`` (estimated on the windows pooled
    since its condition started, each of which had its own factor in ``window_factors``)
    is a broken feed to fix. A unit change has one factor; one that wanders from window
    to window is a drift. And a unit change is a step away from the reference (``step``:
    the windows just before the condition looked like the reference): a feature already
    in a confirmed drift, or one that slid into the factor, that then looks mildly scaled
    is that drift going on (the peak of a multiplicative daily cycle the reference did
    not cover is a steady factor of 1.6 for an hour, reached over hours, and no reason
    to fix the feed). A factor of 1,000 is not something the world drifts into.

    A feature compared ``by_hour`` has its factor measured against the quantiles of the
    whole reference, not of the same hours: the hour alone makes a mild factor (with an
    offset that can match a conversion), and a weekend's evening against a weekday
    morning's reference is a steady 3.4x (docs/detection.md). There only a step outside
    a drift to a factor beyond mild is a broken feed."""
    if not _steady(window_factors):
        return False
    if by_hour:
        return step and not drifting and not mild_factor(factor)
    return not ((drifting or not step) and mild_factor(factor))


def _steady(window_factors: Sequence[float]) -> bool:
    factors = [f for f in window_factors if math.isfinite(f) and f != 0]
    if not factors:
        return True
    if len({math.copysign(1.0, f) for f in factors}) > 1:
        return False
    sizes = [abs(f) for f in factors]
    return max(sizes) <= STEADY_FACTOR_RATIO * min(sizes)


def inputs_moved(features: Iterable[FeatureDrift], n_scopes: int) -> BoolArray:
    """The scopes whose inputs moved in the window (drifted or broken, now or still
    open): a new version's scores are compared with the incumbent's only elsewhere, where
    a score shift is the model's doing."""
    moved = np.zeros(n_scopes, dtype=bool)
    for state in features:
        moved |= state.moved
    return moved
