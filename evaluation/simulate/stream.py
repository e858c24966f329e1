"""The replay records of a spec, a length, a seed and incidents: predictions in event-time
order, their feedback interleaved when it arrives."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IntArray
from evaluation.simulate.calendar import event_times
from evaluation.simulate.checks import check_int, fail
from evaluation.simulate.injection import Plan, affected_rows, apply_plan, plan_incident
from evaluation.simulate.spec import (
    MODEL_KINDS,
    OUTCOME_KINDS,
    UPSTREAM_KINDS,
    Incident,
    TrafficSpec,
)
from evaluation.simulate.world import World, draw_cohorts, draw_features, fraud_logit, world_of

# The source of the untrusted share of the feedback (TrafficSpec.untrusted_share).
UNTRUSTED_SOURCE = "click"
_CHUNK = 8192
_DELAY_SIGMA = 1.0
_SCORE_EPS = 1e-6


Record = dict[str, Any]


def generate(
    spec: TrafficSpec, n_events: int, seed: int, incidents: Sequence[Incident] = ()
) -> Iterator[Record]:
    """Yield replay records ({"topic", "value"}) in arrival (event-time) order.

    Validation happens here, eagerly, rather than at the first ``next()``. Each chunk of
    rows is drawn from its own (seed, chunk, purpose) stream and always at full size, so
    a shorter run is an exact prefix of a longer one and adding an incident leaves every
    unaffected value of the same seed unchanged (useful for paired comparisons).
    """
    if not isinstance(spec, TrafficSpec):
        raise fail("spec", "a TrafficSpec", spec)
    check_int("n_events", n_events, 0)
    check_int("seed", seed, 0)
    world = world_of(spec)
    plans = []
    for j, incident in enumerate(incidents):
        if not isinstance(incident, Incident):
            raise fail("incidents[]", "an Incident", incident)
        plans.append(plan_incident(world, j, incident))
    return _stream(world, n_events, seed, plans)


def _blur_ranking(
    logit: FloatArray, live: BoolArray, code: IntArray, noise: float, rng: np.random.Generator
) -> FloatArray:
    """The live rows' logits reordered by a noisy copy of them, within each cohort: the
    same values in every cohort of the chunk (a score histogram sees nothing), ranked
    worse (``noise`` standard deviations of the logits)."""
    blurred = logit + noise * float(np.std(logit)) * rng.standard_normal(len(logit))
    rows = np.flatnonzero(live)
    by_blur = rows[np.lexsort((blurred[rows], code[rows]))]
    by_value = rows[np.lexsort((logit[rows], code[rows]))]
    out = logit.copy()
    # Both orders group the rows by cohort alike: the k-th noisiest of a cohort gets its
    # k-th smallest logit.
    out[by_blur] = logit[by_value]
    return out


def _stream(world: World, n_events: int, seed: int, plans: list[Plan]) -> Iterator[Record]:
    spec = world.spec
    names = world.names
    kinds = world.kinds
    model, version, source = spec.model, spec.model_version, spec.label_source
    mean_gap = 1.0 / spec.events_per_second
    no_delay = spec.label_delay_seconds == 0.0
    # Lognormal delays with the requested mean: most labels come quickly, a long tail late.
    delay_mu = 0.0 if no_delay else math.log(spec.label_delay_seconds) - _DELAY_SIGMA**2 / 2
    cohort_cache: dict[int, dict[str, str]] = {}
    heap: list[tuple[float, int, Record]] = []
    offset = 0.0
    for k in range(-(-n_events // _CHUNK)):
        first = k * _CHUNK
        n = _CHUNK
        m = min(_CHUNK, n_events - first)
        rng_time = np.random.default_rng([seed, k, 0])
        rng_feat = np.random.default_rng([seed, k, 1])
        rng_label = np.random.default_rng([seed, k, 2])
        rng_extra = np.random.default_rng([seed, k, 3])

        gaps = rng_time.exponential(mean_gap, n)
        elapsed = offset + np.cumsum(gaps)
        offset = float(elapsed[-1])
        ts = np.round(event_times(spec.start_ts, elapsed, spec.weekend_volume), 3)
        cidx = draw_cohorts(world, rng_time, n)
        cols, clicks_null = draw_features(world, rng_feat, rng_extra, cidx, n, ts)
        world_plans = [
            plan
            for plan in plans
            if plan.incident not in UPSTREAM_KINDS + OUTCOME_KINDS + MODEL_KINDS
        ]
        served_plans = [plan for plan in plans if plan.incident in UPSTREAM_KINDS]
        outcome_plans = [plan for plan in plans if plan.incident in OUTCOME_KINDS]
        for plan in world_plans:
            apply_plan(
                plan, cols, cidx, first, n, np.random.default_rng([seed, k, 100 + plan.index])
            )
        # Labels come from the true P(y | x): a covariate shift moves x, not the relation.
        logit = fraud_logit(world, cols, clicks_null, n)
        p = 1.0 / (1.0 + np.exp(-logit))
        p_label = p
        untrusted = rng_extra.random(n) < spec.untrusted_share
        override_p = np.full(n, spec.override_rate)
        for plan in outcome_plans:
            affected = affected_rows(plan, cidx, first, n)
            if plan.incident == "concept":
                # The relation moved: the same inputs now carry more risk (in logits).
                moved = 1.0 / (1.0 + np.exp(-(logit + plan.factor)))
                p_label = np.where(affected, moved, p_label)
            elif plan.incident == "label_inflation":
                # A UI change: the proxy fires more often, whatever the truth.
                inflated = np.minimum(1.0, p_label * plan.factor + 0.05 * (plan.factor - 1.0))
                p_label = np.where(affected & untrusted, inflated, p_label)
            else:
                override_p = np.where(affected, plan.factor, override_p)
        label = (rng_label.random(n) < p_label).astype(np.int64)
        # The model scores the served values: after an upstream fault (a frozen, rescaled
        # or renamed feed) they differ from the true ones, and so may the score.
        for plan in served_plans:
            apply_plan(
                plan, cols, cidx, first, n, np.random.default_rng([seed, k, 100 + plan.index])
            )
        if served_plans:
            p = 1.0 / (1.0 + np.exp(-fraud_logit(world, cols, clicks_null, n)))
        code = np.zeros(n, dtype=np.int64)
        for idx, stride in zip(cidx, world.strides, strict=True):
            code += idx * stride
        versions = np.full(n, version, dtype=object)
        for plan in plans:
            if plan.incident != "deployment":
                continue
            live = affected_rows(plan, cidx, first, n)
            # The new version is another fit of the same model (a little noise in its
            # logits) plus its fault: a bias of `factor` logits, e.g. a training set's
            # negative downsampling that was not undone.
            rng_deploy = np.random.default_rng([seed, k, 100 + plan.index])
            noise = rng_deploy.normal(0.0, 0.1, n)
            shipped = np.log(p / (1.0 - p)) + plan.factor + noise
            if plan.share < 1.0:  # a canary: each prediction served by it at random
                live &= rng_deploy.random(n) < plan.share
            if plan.rank_noise:
                shipped = _blur_ranking(shipped, live, code, plan.rank_noise, rng_deploy)
            p = np.where(live, 1.0 / (1.0 + np.exp(-shipped)), p)
            versions = np.where(live, str(plan.new_name), versions)
        score = np.round(np.clip(p, _SCORE_EPS, 1.0 - _SCORE_EPS), 6)
        renames = [
            (plan.feature, plan.new_name, affected_rows(plan, cidx, first, n)[:m].tolist())
            for plan in served_plans
            if plan.incident == "rename"
        ]
        has_fb = rng_label.random(n) < spec.label_fraction
        if no_delay:
            delay = np.zeros(n)
        else:
            delay = np.exp(delay_mu + _DELAY_SIGMA * rng_label.standard_normal(n))
        fb_ts = np.round(ts + delay, 3)
        override = rng_label.random(n) < override_p

        lists: list[list[Any]] = []
        for name in names:
            col = cols[name][:m]
            kind = kinds[name]
            if kind == "category":
                lists.append(world.vocab_arrays[name][col].tolist())
            else:
                values = col.tolist()
                if name == "clicks_7d":
                    for i in np.flatnonzero(clicks_null[:m]).tolist():
                        values[i] = None
                lists.append(values)

        fb_ts_l = fb_ts[:m].tolist()
        label_l = label[:m].tolist()
        override_l = override[:m].tolist()
        untrusted_l = untrusted[:m].tolist()
        version_l = versions[:m].tolist()
        rows = zip(
            ts[:m].tolist(),
            score[:m].tolist(),
            code[:m].tolist(),
            has_fb[:m].tolist(),
            zip(*lists, strict=True),
            strict=True,
        )
        for j, (t, s, c, fb, vals) in enumerate(rows):
            while heap and heap[0][0] <= t:
                yield heapq.heappop(heap)[2]
            template = cohort_cache.get(c)
            if template is None:
                template = {
                    d: world.values[i][(c // world.strides[i]) % len(world.values[i])]
                    for i, d in enumerate(world.dims)
                }
                cohort_cache[c] = template
            event_id = f"p-{first + j}"
            features = dict(zip(names, vals, strict=True))
            for old, new, affected in renames:
                if affected[j]:
                    features[new] = features.pop(old)  # type: ignore[index]
            yield {
                "topic": "predictions",
                "value": {
                    "event_id": event_id,
                    "ts": t,
                    "model": model,
                    "model_version": version_l[j],
                    "cohort": template.copy(),
                    "features": features,
                    "score": s,
                },
            }
            if fb:
                fts = fb_ts_l[j]
                feedback = {
                    "event_id": event_id,
                    "ts": fts,
                    "label": label_l[j],
                    "source": UNTRUSTED_SOURCE if untrusted_l[j] else source,
                    "override": override_l[j],
                }
                heapq.heappush(heap, (fts, first + j, {"topic": "feedback", "value": feedback}))
    while heap:
        yield heapq.heappop(heap)[2]
