"""Change detectors on the score stream, one per scope (river's ADWIN and Page-Hinkley)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from operator import length_hint

import numpy as np

# river's compiled ADWIN, without river.drift: that package imports all of river's
# detectors, KSWIN's scipy.stats among them, about a second of every process's start.
# A private module of river, which is pinned to 0.26.x for it (and for the checkpoint's
# window fields, streamer/state/river_adwin.py); test_score_change holds this to river's
# public drift.ADWIN, event by event.
from river._river_rust.drift import AdaptiveWindowing

from detectors.arrays import FloatArray, IndexArray


@dataclass(frozen=True)
class ChangePoint:
    """A change a detector reported: in which scope, at which row of the stream, and the
    detector's mean when it fired (ADWIN: of the window it kept, the old part dropped;
    Page-Hinkley: of every value since its previous detection, as it keeps no window)."""

    scope: int
    row: int
    ts: float
    mean_after: float


# river.drift.ADWIN's defaults for all but delta.
_CLOCK = 32
_MAX_BUCKETS = 5
_MIN_WINDOW_LENGTH = 5
_GRACE_PERIOD = 10


def _mean(window: AdaptiveWindowing) -> float:
    """The mean of the values a window holds (0 when empty), as river's ``estimation``."""
    width = window.get_width()
    return float(window.get_total() / width) if width else 0.0


def _scope_chunks(values: FloatArray, scopes: IndexArray) -> Iterator[tuple[int, IndexArray]]:
    """Each scope's rows in stream order, NaN values left out, one column at a time.

    Scopes are independent and a scope lives in one column (the population in column 0,
    one cohort per dimension after it), so feeding each scope its rows in order, scope by
    scope, makes the same updates as row by row, with no per-row loop over scopes.
    """
    present = np.flatnonzero(~np.isnan(values))  # a missing score says nothing about the mean
    for column in scopes.T:
        order = present[np.argsort(column[present], kind="stable")]
        bounds = np.flatnonzero(np.diff(column[order])) + 1
        for chunk in np.split(order, bounds):
            if chunk.size:
                yield int(column[chunk[0]]), chunk


class ScopedADWIN:
    """River's ADWIN on a value stream, one detector per scope.

    The detections are river's, one for one, whatever the batch boundaries.

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> values = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.5, 0.05, 3000)])
    >>> detector = ScopedADWIN(n_scopes=1)
    >>> changes = detector.update(values, np.zeros((6000, 1), dtype=np.intp), np.arange(6000.0))
    >>> [3000 <= c.row < 3100 for c in changes][:1]
    [True]
    """

    def __init__(self, n_scopes: int, delta: float = 0.002) -> None:
        if n_scopes < 1:
            raise ValueError(f"n_scopes must be >= 1, got {n_scopes}")
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.n_scopes = n_scopes
        self.delta = delta
        self._reset()

    def _reset(self) -> None:
        self._windows = [self._window() for _ in range(self.n_scopes)]
        # Whether each scope's last value fired: river's ADWIN starts a new window on the
        # value after a detection, not at once (its mean is read when it fires).
        self._fired = [False] * self.n_scopes
        self._rows = 0
        self.detections = np.zeros(self.n_scopes, dtype=np.int64)

    def _window(self) -> AdaptiveWindowing:
        return AdaptiveWindowing(
            delta=self.delta,
            clock=_CLOCK,
            max_buckets=_MAX_BUCKETS,
            min_window_length=_MIN_WINDOW_LENGTH,
            grace_period=_GRACE_PERIOD,
        )

    def means(self) -> FloatArray:
        return np.array([_mean(window) for window in self._windows], dtype=np.float64)

    def update(self, values: FloatArray, scopes: IndexArray, ts: FloatArray) -> list[ChangePoint]:
        """Feed rows in order; ``scopes[i]`` lists the scopes row ``i`` belongs to."""
        changes: list[ChangePoint] = []
        for scope, chunk in _scope_chunks(values, scopes):
            # river.drift.ADWIN.update is, in Python around this compiled core: "a new
            # window if the last value fired, then fired = core.update(x)"; that wrapper
            # costs more than the core. So map() calls the core from C and any() stops at
            # the first detection: the same core calls in the same order.
            pending = values[chunk].tolist()
            remaining = iter(pending)
            window = self._windows[scope]
            while True:
                if self._fired[scope]:
                    if not length_hint(remaining):
                        break  # river starts the new window on the next value, not before
                    window = self._windows[scope] = self._window()
                    self._fired[scope] = False
                if not any(map(window.update, remaining)):
                    break
                self._fired[scope] = True
                row = int(chunk[len(pending) - length_hint(remaining) - 1])
                self.detections[scope] += 1
                changes.append(ChangePoint(scope, self._rows + row, float(ts[row]), _mean(window)))
        self._rows += len(values)
        changes.sort(key=lambda change: (change.row, change.scope))
        return changes


class ScopedPageHinkley:
    """River's Page-Hinkley test (``drift.PageHinkley``) on a value stream, one per scope.

    Page-Hinkley accumulates each value's deviation from the running mean and fires when
    the sum rises (``mode="up"``), falls (``"down"``) or either (``"both"``) more than
    ``threshold`` from its extreme; ``alpha`` fades old deviations, ``delta`` is the
    tolerated drift per value. After a detection it starts again from nothing.

    Not river's object, for speed: its per-event update is several Python calls and
    attribute lookups (about 3x this class per value) for a state of six floats. So the
    state is kept as plain floats per scope, and one loop per scope chunk replays river's
    arithmetic, the same floating-point operations in the same order, quirks included;
    tests/unit/test_score_change.py holds its detections, means and sums to river's, bit for bit.

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> values = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.5, 0.05, 3000)])
    >>> detector = ScopedPageHinkley(n_scopes=1)
    >>> changes = detector.update(values, np.zeros((6000, 1), dtype=np.intp), np.arange(6000.0))
    >>> [3000 <= c.row < 3300 for c in changes]
    [True]
    >>> detector.detections.tolist()
    [1]
    """

    MODES = ("up", "down", "both")

    def __init__(
        self,
        n_scopes: int,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
    ) -> None:
        if isinstance(n_scopes, bool) or not isinstance(n_scopes, int) or n_scopes < 1:
            raise ValueError(f"n_scopes must be an int >= 1, got {n_scopes!r}")
        if (
            isinstance(min_instances, bool)
            or not isinstance(min_instances, int)
            or min_instances < 1
        ):
            raise ValueError(f"min_instances must be an int >= 1, got {min_instances!r}")
        if not (math.isfinite(delta) and delta >= 0.0):
            raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
        if not (math.isfinite(threshold) and threshold > 0.0):
            raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.n_scopes = n_scopes
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self._reset()

    def _reset(self) -> None:
        # Per scope, river's state after its _reset(): stats.Mean's weight sum and mean,
        # the two cumulative sums and their extremes, and whether the last value fired.
        # river starts _max_decrease at the int -1; -1.0 compares and subtracts alike.
        n = self.n_scopes
        self._count = [0.0] * n
        self._mean = [0.0] * n
        self._sum_increase = [0.0] * n
        self._sum_decrease = [0.0] * n
        self._min_increase = [math.inf] * n
        self._max_decrease = [-1.0] * n
        self._drifted = [False] * n
        self._rows = 0
        self.detections = np.zeros(n, dtype=np.int64)

    def means(self) -> FloatArray:
        """Each scope's running mean since its last detection (0 before any value)."""
        return np.array(self._mean, dtype=np.float64)

    def update(self, values: FloatArray, scopes: IndexArray, ts: FloatArray) -> list[ChangePoint]:
        """Feed rows in order; ``scopes[i]`` lists the scopes row ``i`` belongs to."""
        changes: list[ChangePoint] = []
        for scope, chunk in _scope_chunks(values, scopes):
            for index, mean in self._run(scope, values[chunk].tolist()):
                row = int(chunk[index])
                self.detections[scope] += 1
                changes.append(ChangePoint(scope, self._rows + row, float(ts[row]), mean))
        self._rows += len(values)
        changes.sort(key=lambda change: (change.row, change.scope))
        return changes

    def _run(self, scope: int, values: list[float]) -> list[tuple[int, float]]:
        """river's PageHinkley.update on each value in turn, on local floats; returns the
        indices that fired, with the mean then."""
        alpha, delta, threshold = self.alpha, self.delta, self.threshold
        min_instances, inf = self.min_instances, math.inf
        up, down = self.mode != "down", self.mode != "up"
        count, mean = self._count[scope], self._mean[scope]
        sum_increase, sum_decrease = self._sum_increase[scope], self._sum_decrease[scope]
        min_increase, max_decrease = self._min_increase[scope], self._max_decrease[scope]
        drifted = self._drifted[scope]
        fired: list[tuple[int, float]] = []
        for index, x in enumerate(values):
            if drifted:  # river resets on the value after a detection
                count = mean = sum_increase = sum_decrease = 0.0
                min_increase, max_decrease, drifted = inf, -1.0, False
            # stats.Mean.update with w=1, then PageHinkley.update, operation for operation.
            count += 1.0
            mean += (1.0 / count) * (x - mean)
            dev = x - mean
            sum_increase = alpha * sum_increase + dev - delta
            sum_decrease = alpha * sum_decrease + dev + delta
            if sum_increase < min_increase:
                min_increase = sum_increase
            if sum_decrease > max_decrease:
                max_decrease = sum_decrease
            if count >= min_instances and (
                (up and sum_increase - min_increase > threshold)
                or (down and max_decrease - sum_decrease > threshold)
            ):
                drifted = True
                fired.append((index, mean))
        self._count[scope], self._mean[scope] = count, mean
        self._sum_increase[scope], self._sum_decrease[scope] = sum_increase, sum_decrease
        self._min_increase[scope], self._max_decrease[scope] = min_increase, max_decrease
        self._drifted[scope] = drifted
        return fired
