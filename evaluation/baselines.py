"""The retraining reflex as people build it today, for comparison with driftgate.

Each baseline reads a stream's feature columns (arrival order, None where an event lacks
the feature; the whole population, no cohorts, no labels) and returns the event indices
at which it would order a retrain:

- ``adwin_retrains``: river's ADWIN on every numeric feature, retrain when any fires;
- ``psi_retrains``: the PSI of every feature over tumbling windows against the first
  events, retrain when any exceeds a threshold (0.25, the usual "significant shift");
- ``scheduled_retrains``: every N events, whatever happens.

Features are typed and binned as driftgate does it on its reference, so the PSI differs
from driftgate's only in what is done with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from detectors.arrays import FloatArray
from detectors.batch import numeric_column
from detectors.binning import NumericBins
from detectors.divergence import psi
from detectors.monitor import MonitorConfig
from detectors.monitor.reference import infer_bins
from detectors.score_change import ScopedADWIN

PSI_THRESHOLD = 0.25
SCHEDULE_EVENTS = 50_000


def adwin_retrains(
    features: Mapping[str, Sequence[object]],
    delta: float = 0.002,
    config: MonitorConfig | None = None,
) -> list[int]:
    """Events at which river's ADWIN (one per numeric feature, missing values skipped)
    fires on any feature.

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> jump = np.concatenate([rng.normal(0, 1, 5_000), rng.normal(1, 1, 5_000)])
    >>> fired = adwin_retrains({"x": jump.tolist(), "flat": rng.normal(0, 1, 10_000).tolist()})
    >>> 5_000 < fired[0] < 5_200, len(fired) < 5
    (True, True)
    """
    config = config or MonitorConfig()
    fired: set[int] = set()
    for values in features.values():
        if not isinstance(infer_bins(values, config), NumericBins):
            continue
        column = numeric_column(values)[0]
        one_scope = np.zeros((len(column), 1), dtype=np.intp)
        changes = ScopedADWIN(1, delta).update(column, one_scope, np.zeros(len(column)))
        fired.update(change.row for change in changes)
    return sorted(fired)


def windowed_psi(
    values: Sequence[object],
    reference_events: int,
    window_events: int,
    config: MonitorConfig | None = None,
) -> FloatArray:
    """PSI of each full window after the first ``reference_events`` values against them,
    on bins fixed on them (numeric or categorical, as driftgate infers it).

    >>> import numpy as np
    >>> rng = np.random.default_rng(5)
    >>> values = np.concatenate([rng.normal(0, 1, 6_000), rng.normal(1, 1, 2_000)])
    >>> [round(float(v), 1) for v in windowed_psi(values.tolist(), 4_000, 2_000)]
    [0.0, 0.9]
    """
    config = config or MonitorConfig()
    bins = infer_bins(values[:reference_events], config)
    if isinstance(bins, NumericBins):
        codes = bins.assign(numeric_column(values)[0])
    else:
        codes = bins.assign(values)
    k = bins.n_bins
    windows = max(0, (len(codes) - reference_events) // window_events)
    reference = np.bincount(codes[:reference_events], minlength=k)
    current = codes[reference_events : reference_events + windows * window_events]
    offsets = np.repeat(np.arange(windows) * k, window_events)
    counts = np.bincount(offsets + current, minlength=windows * k).reshape(windows, k)
    return psi(np.broadcast_to(reference, counts.shape), counts)


def psi_retrains(
    features: Mapping[str, Sequence[object]],
    reference_events: int = 10_000,
    window_events: int = 2_000,
    threshold: float = PSI_THRESHOLD,
    config: MonitorConfig | None = None,
) -> list[int]:
    """The last event of each window in which any feature's PSI exceeds the threshold.

    >>> import numpy as np
    >>> rng = np.random.default_rng(5)
    >>> x = np.concatenate([rng.normal(0, 1, 16_000), rng.normal(1, 1, 4_000)])
    >>> psi_retrains({"x": x.tolist()})
    [17999, 19999]
    """
    over: set[int] = set()
    for values in features.values():
        scores = windowed_psi(values, reference_events, window_events, config)
        ends = reference_events + (np.flatnonzero(scores > threshold) + 1) * window_events - 1
        over.update(ends.tolist())
    return sorted(over)


def scheduled_retrains(n_events: int, every: int = SCHEDULE_EVENTS) -> list[int]:
    """The last event of every block of ``every`` events.

    >>> scheduled_retrains(120_000)
    [49999, 99999]
    """
    return list(range(every - 1, n_events, every))
