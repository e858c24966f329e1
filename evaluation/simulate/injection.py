"""Incidents turned into plans (which rows, by how much) and applied to the drawn columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.arrays import FloatArray, IntArray
from evaluation.simulate.checks import fail
from evaluation.simulate.spec import MODEL_KINDS, OUTCOME_KINDS, UPSTREAM_KINDS, Incident
from evaluation.simulate.world import (
    DECIMALS,
    EXTRA_DECIMALS,
    World,
    reference_std,
    reference_values,
)


@dataclass(frozen=True)
class Plan:
    """One incident as the generator applies it: the rows it affects (a cohort, by value
    positions, and the events ``[start, end)``) and the change to them."""

    index: int
    feature: str
    kind: str
    cohort: dict[int, int]
    start: int
    end: int
    shift: float
    move_p: float
    target: int
    incident: str = "covariate_shift"
    factor: float = 1.0
    new_name: str | None = None
    ramp: int = 0
    share: float = 1.0
    rank_noise: float = 0.0


def plan_incident(world: World, j: int, incident: Incident) -> Plan:
    spec = world.spec
    if incident.kind in OUTCOME_KINDS + MODEL_KINDS:
        cohort = world.cohort_index(incident.cohort)
        end = incident.end_event if incident.end_event is not None else 2**62
        return Plan(
            j, "", "outcome", cohort, incident.start_event, end, 0.0, 0.0, 0,
            incident.kind, incident.magnitude, incident.new_version,
            share=incident.share, rank_noise=incident.rank_noise,
        )  # fmt: skip
    feature = incident.feature
    if feature is None or feature not in world.kinds:
        raise fail("incident feature", f"one of {list(world.names)}", feature)
    kind = world.kinds[feature]
    cohort = world.cohort_index(incident.cohort)
    end = incident.end_event if incident.end_event is not None else 2**62
    if incident.kind in UPSTREAM_KINDS:
        if incident.kind in ("frozen", "rescale") and kind not in ("float", "int"):
            raise fail("a frozen or rescaled feature", "a numeric feature", feature)
        # A frozen feed repeats one plausible value: the reference median of the cohort.
        frozen = float(np.median(reference_values(spec, feature, incident.cohort)))
        return Plan(
            j, feature, kind, cohort, incident.start_event, end, frozen, 0.0, 0,
            incident.kind, incident.magnitude, incident.new_name,
        )  # fmt: skip
    if kind in ("float", "int"):
        shift = incident.magnitude * reference_std(spec, feature, incident.cohort)
        if kind == "int":
            shift = float(round(shift))
        return Plan(
            j, feature, kind, cohort, incident.start_event, end, shift, 0.0, 0,
            ramp=incident.ramp_events,
        )  # fmt: skip
    # Categorical/bool: move ~30% of the mass per unit of magnitude to the rarest category,
    # the direction in which a change is most visible and most plausible (a new market,
    # a device type that suddenly appears).
    target = len(world.vocab[feature]) - 1
    move_p = min(1.0, 0.3 * abs(incident.magnitude))
    return Plan(j, feature, kind, cohort, incident.start_event, end, 0.0, move_p, target)


def affected_rows(plan: Plan, cidx: list[IntArray], first: int, n: int) -> NDArray[np.bool_]:
    g = np.arange(first, first + n)
    mask = (g >= plan.start) & (g < plan.end)
    for d, v in plan.cohort.items():
        mask &= cidx[d] == v
    return mask


def apply_plan(
    plan: Plan,
    cols: dict[str, NDArray[Any]],
    cidx: list[IntArray],
    first: int,
    n: int,
    rng: np.random.Generator,
) -> None:
    mask = affected_rows(plan, cidx, first, n)
    col = cols[plan.feature]
    if plan.incident == "frozen":
        cols[plan.feature] = np.where(mask, plan.shift, col)
    elif plan.incident == "rescale":
        decimals = DECIMALS.get(plan.feature, EXTRA_DECIMALS) + 4
        cols[plan.feature] = np.where(mask, np.round(col * plan.factor, decimals), col)
    elif plan.incident == "rename":
        return  # the served key changes when the event is built
    elif plan.kind in ("float", "int"):
        shift: FloatArray | float = plan.shift
        if plan.ramp:
            done = (np.arange(first, first + n) - plan.start + 1) / plan.ramp
            shift = plan.shift * np.clip(done, 0.0, 1.0)
        if plan.kind == "int":
            cols[plan.feature] = np.where(mask, col + np.round(shift).astype(np.int64), col)
        else:
            decimals = DECIMALS.get(plan.feature, EXTRA_DECIMALS)
            cols[plan.feature] = np.where(mask, np.round(col + shift, decimals), col)
    else:
        move = mask & (rng.random(n) < plan.move_p)
        if plan.kind == "bool":
            cols[plan.feature] = np.where(move, bool(plan.target), col)
        else:
            cols[plan.feature] = np.where(move, plan.target, col)
