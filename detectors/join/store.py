"""The join store: late labels (feedback) joined to the predictions they are about.

Predictions and feedback arrive on two topics; a label may come seconds (a click) or
weeks (a chargeback) after its prediction, and now and then before it (the topics are
consumed independently). :class:`JoinStore` keeps, per prediction, only what a late
label needs: event time, score, model, model version and the row's scopes.

Time is event time only: the store's clock is the newest prediction ``ts`` it has seen.
A leap of more than ``horizon_s`` ahead of the clock would expire every stored entry at
once, so the clock takes it only when a second prediction confirms it (one within
``horizon_s`` of the first): one event stamped far in the future, by a broken producer
clock or on purpose, is stored but moves nothing, while a stream that really resumes
after a long gap moves the clock at its second event.

* **Horizon.** An entry whose ``ts`` is more than ``horizon_s`` before the clock is
  expired: removed from the head of the store (insertion order) as the clock moves, and
  a label that still finds one (an out-of-order entry not yet at the head) counts as
  ``expired`` rather than joining.
* **Capacity.** At most ``max_entries`` entries; adding one more evicts the oldest
  (insertion order).
* **Tombstones** (:mod:`detectors.join.tombstones`). The last ``max_entries`` (or a
  little more) removed event ids are remembered with the reason, so a label arriving
  after its prediction left the store counts as ``expired`` or ``evicted`` instead of
  ``unknown``.
* **Feedback before its prediction** waits in a pending buffer
  (:mod:`detectors.join.pending`, at most ``max_pending`` rows, oldest dropped first)
  until the clock passes its feedback ``ts`` by ``grace_s``: a prediction is never later
  than its own label, so once the prediction stream has moved ``grace_s`` past the label,
  the prediction is not coming. When the prediction arrives in time,
  :meth:`JoinStore.add_predictions` returns the pair in its :class:`Joined` (that is the
  only place those pairs are reported). Rows given up or dropped count as ``unknown``.
* **Duplicates.** A second label for the same prediction and the same ``source`` is a
  ``duplicate`` (the first one wins). Up to 15 distinct sources are told apart; every
  further source shares one slot for this check.
* **Repeated predictions** (an event id already stored, e.g. a redelivery) are ignored
  and counted in ``repeated``.

Every feedback row ends up in exactly one of ``joined``, ``unknown``, ``expired``,
``evicted_labels``, ``duplicate``, or is still ``pending``.

Memory bound, per entry: 22 bytes of numpy columns plus 2 bytes per scope column
(:mod:`detectors.join.entries`), about 9 bytes of tombstone, and the Python side: the
event id ``str`` (49 bytes + its length for ASCII ids), its dict slot (about 40 to 80
bytes depending on the dict's fill), its sequence number (32 bytes) and 8 bytes in the
id deque. Measured with 9 scope columns (tracemalloc): about 180 bytes an entry for
short ids (``p-123456``) and 205 bytes for 36-character UUIDs at 1,000,000 entries, i.e.
180-210 MB, linear in ``max_entries`` (tests/unit/test_join.py checks it). The pending buffer
adds a few hundred bytes a row (bounded by ``max_pending``).

Deterministic: no clock, no randomness; the same calls give the same state and
results whatever the batch boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.join.checks import check_seconds, column, strings
from detectors.join.delays import DAY, DelayHistogram
from detectors.join.entries import Entries
from detectors.join.joined import Joined
from detectors.join.names import SourceBits
from detectors.join.pending import PendingLabels
from detectors.join.tombstones import EVICTED, EXPIRED, Tombstones
from detectors.validation import check_int


@dataclass
class JoinCounts:
    """What became of the feedback rows and the predictions, since the store began."""

    joined: int = 0
    unknown: int = 0
    expired: int = 0
    evicted_labels: int = 0
    duplicate: int = 0
    evicted: int = 0
    expired_entries: int = 0
    repeated: int = 0


class JoinStore:
    """Late labels joined to their predictions by event id, in bounded memory.

    >>> import numpy as np
    >>> store = JoinStore(max_entries=1_000, horizon_s=86_400.0)
    >>> ids = [f"p{i}" for i in range(4)]
    >>> _ = store.add_predictions(
    ...     ids, np.arange(4.0), np.array([0.1, 0.9, 0.8, 0.2]), ["v1"] * 4,
    ...     np.array([[0, 1], [0, 2], [0, 1], [0, 2]]),
    ... )
    >>> joined = store.join(
    ...     ["p1", "p1", "nope", "p3"], np.array([60.0, 61.0, 62.0, 3_603.0]),
    ...     np.array([1.0, 1.0, 0.0, 1.0]), ["chargeback"] * 4, np.zeros(4, dtype=bool),
    ... )
    >>> joined.event_id, joined.delay_s.tolist(), joined.duplicate, store.pending
    (('p1', 'p3'), [59.0, 3600.0], 1, 1)
    >>> early = store.join(["p9"], np.array([4.0]), np.array([1.0]), ["click"], np.array([True]))
    >>> late = store.add_predictions(["p9"], np.array([4.5]), np.array([0.3]), ["v1"],
    ...                              np.array([[0, 1]]))
    >>> late.event_id, late.source, store.joined, store.pending
    (('p9',), ('click',), 3, 1)
    """

    def __init__(
        self,
        max_entries: int = 1_000_000,
        horizon_s: float = 30 * DAY,
        grace_s: float = 300.0,
        max_pending: int = 100_000,
    ) -> None:
        self.max_entries = check_int("max_entries", max_entries, 1)
        self.horizon_s = check_seconds("horizon_s", horizon_s, positive=True)
        self.grace_s = check_seconds("grace_s", grace_s, positive=False)
        self.max_pending = check_int("max_pending", max_pending, 1)
        self._reset()

    def _reset(self) -> None:
        self._entries = Entries(self.max_entries, self.horizon_s)
        self._pending = PendingLabels(self.max_pending, self.grace_s)
        self._tombstones = Tombstones(keep=self.max_entries)
        self._delays = DelayHistogram()
        self._sources = SourceBits()
        self._counts = JoinCounts()

    # -- counters ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Predictions stored (an out-of-order one past the horizon may linger until it
        reaches the head; it never joins)."""
        return len(self._entries)

    @property
    def pending(self) -> int:
        """Feedback rows waiting for their prediction."""
        return len(self._pending)

    @property
    def joined(self) -> int:
        return self._counts.joined

    @property
    def unknown(self) -> int:
        """Labels for predictions never seen (or that never came within ``grace_s``)."""
        return self._counts.unknown

    @property
    def expired(self) -> int:
        """Labels whose prediction was older than ``horizon_s`` before the clock."""
        return self._counts.expired

    @property
    def evicted_labels(self) -> int:
        """Labels whose prediction had been evicted at ``max_entries``."""
        return self._counts.evicted_labels

    @property
    def duplicate(self) -> int:
        return self._counts.duplicate

    @property
    def evicted(self) -> int:
        """Predictions evicted (never expired) because the store was full."""
        return self._counts.evicted

    @property
    def expired_entries(self) -> int:
        """Predictions removed because they fell behind the horizon."""
        return self._counts.expired_entries

    @property
    def repeated(self) -> int:
        """Predictions ignored because their event id was already stored."""
        return self._counts.repeated

    @property
    def clock(self) -> float:
        """Newest prediction ``ts`` seen (-inf before the first)."""
        return float(self._entries.clock)

    @property
    def nbytes(self) -> int:
        """Bytes of the numpy columns and tombstones (not the Python-side id index)."""
        return self._entries.nbytes + self._tombstones.nbytes

    def delay_histogram(self) -> tuple[FloatArray, IntArray, float]:
        """Label delays of every joined label as a Prometheus histogram:
        (upper bounds with +Inf last, cumulative counts, sum of delays in seconds)."""
        return self._delays.cumulative()

    # -- predictions ------------------------------------------------------------------------

    def add_predictions(
        self,
        event_ids: Sequence[str],
        ts: FloatArray,
        scores: FloatArray,
        versions: Sequence[str],
        scopes: IndexArray,
        models: Sequence[str] | None = None,
    ) -> Joined:
        """Store predictions, in order; returns the pending labels they resolved.

        ``scopes`` is ``(n, d)`` (column 0 the population scope; -1 for "no scope");
        ``models`` defaults to "" for every row (one store per model, or a shared store
        across models when given).
        """
        n = len(event_ids)
        ts = column("ts", ts, n, np.float64)
        if n and not np.isfinite(ts).all():
            raise ValueError("ts must be finite epoch seconds")
        scores = column("scores", scores, n, np.float64)
        versions = strings("versions", versions, n)
        models = strings("models", models if models is not None else [""] * n, n)
        rows = np.asarray(scopes)
        if rows.ndim != 2 or rows.shape[0] != n or rows.shape[1] < 1 or rows.dtype.kind not in "iu":
            raise ValueError(f"scopes must be an integer array of shape ({n}, d >= 1)")
        rows = np.where(rows < 0, -1, rows)
        entries = self._entries
        entries.fit_scopes(rows)
        if n == 0:
            return Joined.empty(entries.width)
        ts_list: list[float] = ts.tolist()
        admission = entries.admit(event_ids, ts_list)
        self._counts.repeated += admission.repeated
        self._bury(admission.removed, admission.reasons)
        resolved = self._pending.resolve(
            event_ids, ts_list, admission, self.horizon_s, self._sources
        )
        entries.write(admission, resolved.masks, ts, scores, models, versions, rows)
        self._counts.expired += resolved.expired
        self._counts.duplicate += resolved.duplicate
        self._counts.unknown += resolved.unknown
        return self._record(resolved.joined(ts, scores, versions, models, rows, entries.width))

    def _bury(self, removed: list[str], reasons: list[int]) -> None:
        """Count removed entries and remember them as tombstones."""
        if not removed:
            return
        evicted = reasons.count(EVICTED)
        self._counts.evicted += evicted
        self._counts.expired_entries += len(reasons) - evicted
        self._tombstones.bury(removed, reasons)

    def _record(self, joined: Joined) -> Joined:
        """Count a result's pairs and their delays."""
        self._counts.joined += len(joined)
        self._delays.record(joined.delay_s)
        return joined

    # -- feedback ---------------------------------------------------------------------------

    def holds(self, event_ids: Sequence[str]) -> BoolArray:
        """Whether each event id's prediction is stored (a label for it would join)."""
        return self._entries.holds(event_ids)

    def join(
        self,
        event_ids: Sequence[str],
        ts: FloatArray,
        labels: FloatArray,
        sources: Sequence[str],
        overrides: BoolArray,
    ) -> Joined:
        """Match feedback rows (``ts`` is the feedback's event time) to stored predictions.

        Rows whose prediction is not stored (yet) wait in the pending buffer; they are
        reported by a later :meth:`add_predictions` or counted ``unknown``.
        """
        n = len(event_ids)
        ts = column("ts", ts, n, np.float64)
        labels = column("labels", labels, n, np.float64)
        sources = strings("sources", sources, n)
        overrides = column("overrides", overrides, n, np.bool_)
        entries = self._entries
        found = entries.match(event_ids, sources, self._sources)
        reasons = self._tombstones.reasons([event_ids[i] for i in found.misses])
        evicted = int((reasons == EVICTED).sum())
        expired = found.expired + int((reasons == EXPIRED).sum())
        unknown = 0
        ts_list: list[float] = ts.tolist()
        labels_list: list[float] = labels.tolist()
        overrides_list: list[bool] = overrides.tolist()
        for i, reason in zip(found.misses, reasons.tolist()):
            if not reason:
                unknown += self._pending.add(
                    event_ids[i],
                    ts_list[i],
                    labels_list[i],
                    sources[i],
                    overrides_list[i],
                    clock=entries.clock,
                )
        counts = self._counts
        counts.unknown += unknown
        counts.expired += expired
        counts.evicted_labels += evicted
        counts.duplicate += found.duplicate
        outcome = {"unknown": unknown, "expired": expired, "evicted": evicted}
        outcome["duplicate"] = found.duplicate
        matched = found.rows
        if not matched:
            return Joined.empty(entries.width, **outcome)
        index = np.array(matched, dtype=np.intp)
        model, version, prediction_ts, score, scopes = entries.predictions(found.positions)
        feedback_ts = ts[index]
        joined = Joined(
            event_id=tuple(event_ids[i] for i in matched),
            model=model,
            version=version,
            prediction_ts=prediction_ts,
            feedback_ts=feedback_ts,
            delay_s=feedback_ts - prediction_ts,
            score=score,
            label=labels[index],
            source=tuple(sources[i] for i in matched),
            override=overrides[index],
            scopes=scopes,
            **outcome,
        )
        return self._record(joined)
