"""Persistence: a condition counts only once it held for K consecutive judged windows."""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IntArray
from detectors.cohorts import POPULATION, CohortScopes


class Persistence:
    """Streaks of one condition per scope, and when it opens and clears.

    A scope's condition opens after ``windows`` consecutive judged windows that show it
    and clears after as many that do not; a scope not judged in a window (too few
    events) keeps its streaks. ``announced`` marks the conditions a decision was emitted
    for: their report stands until the condition stayed clear for ``resolve_windows``
    judged windows (:meth:`settle`), so one that comes back sooner (``returned``) is the
    same report going on, not a new one. ``reported`` is the announced conditions still
    open.

    >>> import numpy as np
    >>> condition = Persistence(n_scopes=2, windows=3, resolve_windows=5)
    >>> judged = np.array([True, True])
    >>> start = np.array([0.0, 0.0])
    >>> for hits in ([1, 1], [1, 0], [1, 1]):  # scope 1 blips, scope 0 persists
    ...     opened, cleared = condition.update(judged, np.array(hits, dtype=bool), start)
    >>> opened.tolist(), condition.open.tolist()
    ([True, False], [True, False])
    >>> condition.announced[0] = True  # a decision reported it
    >>> for _ in range(4):  # clear for 4 windows: closed, its report still stands
    ...     _ = condition.update(judged, np.array([False, False]), start)
    >>> condition.open.tolist(), condition.settle()
    ([False, False], [])
    >>> _ = condition.update(judged, np.array([False, False]), start)
    >>> condition.settle()  # the 5th clear window resolves the report
    [0]
    """

    def __init__(self, n_scopes: int, windows: int, resolve_windows: int | None = None) -> None:
        if n_scopes < 1:
            raise ValueError(f"n_scopes must be >= 1, got {n_scopes}")
        if windows < 1:
            raise ValueError(f"windows must be >= 1, got {windows}")
        resolve = windows if resolve_windows is None else resolve_windows
        if resolve < windows:
            raise ValueError(f"resolve_windows must be >= windows ({windows}), got {resolve}")
        self.n_scopes = n_scopes
        self.windows = windows
        self.resolve_windows = resolve
        self._reset()

    def _reset(self) -> None:
        n = self.n_scopes
        self.streak: IntArray = np.zeros(n, dtype=np.int64)
        self.clean_streak: IntArray = np.zeros(n, dtype=np.int64)
        self.open: BoolArray = np.zeros(n, dtype=bool)
        self.announced: BoolArray = np.zeros(n, dtype=bool)
        # Announced conditions that opened again before their report was resolved.
        self.returned: BoolArray = np.zeros(n, dtype=bool)
        # Open conditions another scope's report already covers: never reported.
        self.explained: BoolArray = np.zeros(n, dtype=bool)
        self.first_seen: FloatArray = np.full(n, np.nan)
        self.last: BoolArray = np.zeros(n, dtype=bool)
        # Per scope, the length of a streak that ended in the last window before the
        # condition opened (a shift that reverted: a campaign, a short outage); else 0.
        self.reverted: IntArray = np.zeros(n, dtype=np.int64)
        # When the window each scope was last judged on started (its data's age).
        self.judged_start: FloatArray = np.full(n, np.nan)

    def evidence(self, scope: int, resolved: bool = False) -> dict[str, Any]:
        """What a decision on this condition in ``scope`` says of its persistence: the
        windows it held (of the ``windows`` asked), since when, and once it is resolved,
        after how many clean windows."""
        evidence: dict[str, Any] = {
            "persisted_windows": int(self.streak[scope]),
            "persistence_windows": self.windows,
            "first_seen": float(self.first_seen[scope]),
        }
        if resolved:
            evidence["resolved"] = True
            evidence["clean_windows"] = int(self.clean_streak[scope])
        return evidence

    def update(
        self, judged: BoolArray, hit: BoolArray, window_start: FloatArray
    ) -> tuple[BoolArray, BoolArray]:
        """Record one window's verdicts; returns the scopes that opened and cleared."""
        self.judged_start[judged] = window_start[judged]
        hit = judged & hit
        clean = judged & ~hit
        self.reverted = np.where(clean & ~self.open, self.streak, 0)
        starting = hit & (self.streak == 0)
        self.first_seen[starting] = window_start[starting]
        self.streak = np.where(hit, self.streak + 1, np.where(clean, 0, self.streak))
        self.clean_streak = np.where(
            clean, self.clean_streak + 1, np.where(hit, 0, self.clean_streak)
        )
        self.last = np.where(judged, hit, self.last)
        opened = (self.streak >= self.windows) & ~self.open
        cleared = self.open & (self.clean_streak >= self.windows)
        self.returned = opened & self.announced
        self.open = (self.open | opened) & ~cleared
        self.explained &= self.open
        return opened, cleared

    @property
    def reported(self) -> BoolArray:
        """The conditions reported and open (not cleared)."""
        return self.announced & self.open

    def settle(self) -> list[int]:
        """The announced scopes whose condition stayed clear for ``resolve_windows``
        judged windows in a row: their report is resolved (no longer announced)."""
        done = self.announced & (self.clean_streak >= self.resolve_windows)
        self.announced &= ~done
        return np.flatnonzero(done).tolist()


# A change whose effect in the population is at least this share of its effect in the
# most affected cohort is everybody's change; below it, it belongs to the cohorts.
SHARED_EFFECT_RATIO = 0.5


# A change that shows in more than this share of a dimension's cohorts at once is
# everybody's, however much stronger it looks in one small (and noisily measured) cohort.
WIDESPREAD_SHARE = 0.5


def _widespread(scopes: CohortScopes, condition: Persistence) -> bool:
    for dimension in range(len(scopes.values)):
        members = list(scopes.scopes_of(dimension))
        named = members[: len(scopes.values[dimension])]  # without __other__
        if named and (condition.streak[named] > 0).mean() > WIDESPREAD_SHARE:
            return True
    return False


def _explains(
    scopes: CohortScopes, condition: Persistence, scope: int, strength: FloatArray
) -> bool | None:
    """True to report the scope, False to never report it, None to decide later.

    Effect sizes decide, not the per-scope verdicts: the population's and the strongest
    cohort's are the two best-measured figures, while a small cohort's verdict is noisy.
    """
    effect = np.nan_to_num(strength)
    population = float(effect[POPULATION])
    if scope == POPULATION:
        # Every cohort's last judged effect, hit or not: the strongest cohort may have
        # missed a window while the population caught it.
        top = float(effect[1:].max()) if effect.size > 1 else 0.0
        return population >= SHARED_EFFECT_RATIO * top or _widespread(scopes, condition)
    if condition.reported[POPULATION]:
        return False
    if population >= SHARED_EFFECT_RATIO * float(effect[scope]):
        return None  # as strong in everybody: the population may be about to say it
    own = scopes.dimension_of(scope)
    others = [scopes.scopes_of(d) for d in range(len(scopes.values)) if d != own]
    # The same cohort seen through a correlated dimension is reported once.
    return not any(condition.reported[list(members)].any() for members in others)


def announce(scopes: CohortScopes, condition: Persistence, strength: FloatArray) -> list[int]:
    """The open scopes to report now: the narrowest ones that explain the change.

    ``strength`` is each scope's effect size in its last window (PSI, the relative
    increase in log loss, ...). A change as strong in the population as in the most
    affected cohort is reported once, for the population; a weaker one in the
    population belongs to the cohorts that show it, and a cohort is not reported again
    through a correlated dimension (the strongest cohort goes first). An open scope that
    cannot be placed yet is looked at again after the next window; one that another
    report covers is never reported. Marks the chosen scopes announced. A condition that
    came back before its report was resolved (``returned``) is reported again when it
    would be if it were new: an update of its report, not a new one.

    >>> import numpy as np
    >>> from detectors.cohorts import CohortScopes
    >>> scopes = CohortScopes.from_reference({"region": ["eu", "us"]}, [("region",)], 5)
    >>> condition = Persistence(scopes.n_scopes, windows=1)
    >>> judged = np.ones(scopes.n_scopes, dtype=bool)
    >>> hits = np.array([True, True, False, False])  # all, eu, us, __other__
    >>> _ = condition.update(judged, hits, np.zeros(4))
    >>> psi = np.array([0.3, 2.0, 0.01, 0.02])  # strong in eu only, diluted in all
    >>> [scopes.labels[s] for s in announce(scopes, condition, psi)]
    [{'region': 'eu'}]
    """
    waiting = condition.open & ~condition.announced & ~condition.explained
    order: list[int] = sorted(
        np.flatnonzero(waiting | condition.returned).tolist(),
        key=lambda s: (s != POPULATION, -strength[s]),
    )
    chosen = []
    for scope in order:
        verdict = _explains(scopes, condition, scope, strength)
        if verdict:
            condition.announced[scope] = True
            chosen.append(scope)
        elif verdict is False:
            condition.explained[scope] = True
    return chosen


def transient(
    scopes: CohortScopes, condition: Persistence, peak: FloatArray, min_windows: int = 1
) -> list[int]:
    """The scopes whose shift of at least ``min_windows`` windows reverted in the last
    window, narrowest first, as for
    :func:`announce`: the population when its peak effect (``peak``, e.g. the highest
    PSI of the streak) is as strong as the strongest cohort's, else the cohorts, each
    once across correlated dimensions.

    >>> import numpy as np
    >>> from detectors.cohorts import CohortScopes
    >>> scopes = CohortScopes.from_reference({"region": ["eu", "us"]}, [("region",)], 5)
    >>> condition = Persistence(scopes.n_scopes, windows=3)
    >>> judged = np.ones(scopes.n_scopes, dtype=bool)
    >>> for hits in ([1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]):  # eu for two windows
    ...     _ = condition.update(judged, np.array(hits, dtype=bool), np.zeros(4))
    >>> peak = np.array([0.25, 1.8, 0.0, 0.0])
    >>> [scopes.labels[s] for s in transient(scopes, condition, peak)]
    [{'region': 'eu'}]
    """
    ended = np.flatnonzero(condition.reverted >= max(1, min_windows)).tolist()
    if not ended:
        return []
    effect = np.nan_to_num(peak)
    top = max((float(effect[s]) for s in ended if s != POPULATION), default=0.0)
    if POPULATION in ended and float(effect[POPULATION]) >= SHARED_EFFECT_RATIO * top:
        return [POPULATION]
    chosen: list[int] = []
    for scope in sorted((s for s in ended if s != POPULATION), key=lambda s: -effect[s]):
        own = scopes.dimension_of(scope)
        if not any(scopes.dimension_of(other) != own for other in chosen):
            chosen.append(scope)
    return chosen
