"""Joins late labels (feedback) to the predictions they are about, in bounded memory.

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
* **Tombstones.** The last ``max_entries`` (or a little more) removed event ids are
  remembered as 64-bit hashes (FNV-1a) with the reason, so a label arriving after
  its prediction left the store counts as ``expired`` or ``evicted`` instead of
  ``unknown``. A hash collision can only move a label between those counters.
* **Feedback before its prediction** waits in a pending buffer (at most ``max_pending``
  rows, oldest dropped first) until the clock passes its feedback ``ts`` by ``grace_s``:
  a prediction is never later than its own label, so once the prediction stream has
  moved ``grace_s`` past the label, the prediction is not coming. When the prediction
  arrives in time, :meth:`JoinStore.add_predictions` returns the pair in its
  :class:`Joined` (that is the only place those pairs are reported). Rows given up or
  dropped count as ``unknown``.
* **Duplicates.** A second label for the same prediction and the same ``source`` is a
  ``duplicate`` (the first one wins). Up to 15 distinct sources are told apart; every
  further source shares one slot for this check.
* **Repeated predictions** (an event id already stored, e.g. a redelivery) are ignored
  and counted in ``repeated``.

Every feedback row ends up in exactly one of ``joined``, ``unknown``, ``expired``,
``evicted_labels``, ``duplicate``, or is still ``pending``.

Memory bound, per entry: 22 bytes of numpy columns (ts and score float64; model and
version index int16; labelled-sources bitmask uint16) plus 2 bytes per scope column
(int16; int32 if a scope id ever exceeds 32,767), about 9 bytes of tombstone, and the
Python side: the event id ``str`` (49 bytes + its length for ASCII ids), its dict slot
(about 40 to 80 bytes depending on the dict's fill), its sequence number (32 bytes) and
8 bytes in the id deque. Measured with 9 scope columns (tracemalloc): about 180 bytes an
entry for short ids (``p-123456``) and 205 bytes for 36-character UUIDs at 1,000,000 entries,
i.e. 180-210 MB, linear in ``max_entries`` (tests/test_join.py checks it); the columns
grow geometrically up to ``max_entries`` and a growth step briefly holds both copies.
The pending buffer adds a few hundred bytes a row (bounded by ``max_pending``).

Deterministic: no clock, no randomness; the same calls give the same state and
results whatever the batch boundaries.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.arrays import BoolArray, FloatArray, IndexArray, IntArray
from detectors.cohorts import OTHER
from detectors.validation import check_int

DAY = 86_400.0
# Upper bounds (seconds, inclusive as Prometheus' ``le``) of the label-delay buckets:
# roughly log-spaced from a second to a quarter; one more bucket is +Inf.
DELAY_BUCKETS_S: tuple[float, ...] = (
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3_600.0,
    4 * 3_600.0,
    12 * 3_600.0,
    DAY,
    3 * DAY,
    7 * DAY,
    14 * DAY,
    30 * DAY,
    90 * DAY,
)
_BOUNDS = np.array(DELAY_BUCKETS_S, dtype=np.float64)

# Distinct model / version names kept; any further one is stored as ``__other__``.
MAX_NAMES = 10_000
# Sources told apart for duplicate detection (bits of a uint16); the rest share bit 15.
MAX_SOURCES = 15

_EXPIRED = 1
_EVICTED = 2
_MIN_CAPACITY = 1_024
_INT16_MAX = 32_767


def _id_hashes(event_ids: Sequence[str]) -> IntArray:
    """64-bit FNV-1a of each id's UTF-8 bytes with a splitmix64 finaliser, vectorised
    over the batch (one numpy pass per byte position); independent of the batch."""
    n = len(event_ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    encoded = [event_id.encode() for event_id in event_ids]
    raw = np.array(encoded, dtype=bytes)
    width = raw.dtype.itemsize
    codes = raw.view(np.uint8).reshape(n, width).astype(np.uint64)
    lengths = np.fromiter(map(len, encoded), np.intp, n)
    h = np.full(n, 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    for j in range(width):
        mixed = (h ^ codes[:, j]) * prime
        h = np.where(j < lengths, mixed, h)
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h.view(np.int64)


def delay_bucket_counts(delay_s: FloatArray) -> IntArray:
    """Delays counted per bucket of :data:`DELAY_BUCKETS_S` (last one is +Inf), not
    cumulative. A delay equal to a bound falls in that bound's bucket; a negative delay
    (clock skew between producers) in the first.

    >>> import numpy as np
    >>> delay_bucket_counts(np.array([0.5, 1.0, 30.0, 1e9])).tolist()
    [2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    """
    buckets = np.searchsorted(_BOUNDS, np.asarray(delay_s, dtype=np.float64), side="left")
    return np.bincount(buckets, minlength=len(_BOUNDS) + 1).astype(np.int64)


@dataclass(frozen=True)
class Joined:
    """Columns of the labels that matched a stored prediction, in the order they were
    resolved, plus counts of the feedback rows that did not join in the same call.

    ``scopes`` rows are the prediction's scope row as stored (column 0 the population),
    padded with -1 to the store's widest row so far.
    """

    event_id: tuple[str, ...]
    model: tuple[str, ...]
    version: tuple[str, ...]
    prediction_ts: FloatArray
    feedback_ts: FloatArray
    delay_s: FloatArray
    score: FloatArray
    label: FloatArray
    source: tuple[str, ...]
    override: BoolArray
    scopes: IndexArray
    unknown: int = 0
    expired: int = 0
    evicted: int = 0
    duplicate: int = 0

    def __len__(self) -> int:
        return len(self.event_id)

    @classmethod
    def empty(cls, width: int = 1, **counts: int) -> Joined:
        nothing = np.zeros(0, dtype=np.float64)
        return cls(
            event_id=(),
            model=(),
            version=(),
            prediction_ts=nothing,
            feedback_ts=nothing.copy(),
            delay_s=nothing.copy(),
            score=nothing.copy(),
            label=nothing.copy(),
            source=(),
            override=np.zeros(0, dtype=bool),
            scopes=np.zeros((0, max(width, 1)), dtype=np.intp),
            **counts,
        )

    def take(self, rows: ArrayLike) -> Joined:
        """The given rows (indices or a boolean mask), e.g. one model's or one source's.
        The counts are not per row and are left at zero."""
        index = np.arange(len(self))[np.asarray(rows)]
        listed = index.tolist()
        return Joined(
            event_id=tuple(self.event_id[i] for i in listed),
            model=tuple(self.model[i] for i in listed),
            version=tuple(self.version[i] for i in listed),
            prediction_ts=self.prediction_ts[index],
            feedback_ts=self.feedback_ts[index],
            delay_s=self.delay_s[index],
            score=self.score[index],
            label=self.label[index],
            source=tuple(self.source[i] for i in listed),
            override=self.override[index],
            scopes=self.scopes[index],
        )

    @staticmethod
    def concat(parts: Sequence[Joined]) -> Joined:
        """Rows of several results in order, counts added; scope rows padded with -1."""
        if not parts:
            return Joined.empty()
        width = max(p.scopes.shape[1] for p in parts)
        scopes = [
            np.pad(p.scopes, ((0, 0), (0, width - p.scopes.shape[1])), constant_values=-1)
            for p in parts
        ]
        return Joined(
            event_id=tuple(x for p in parts for x in p.event_id),
            model=tuple(x for p in parts for x in p.model),
            version=tuple(x for p in parts for x in p.version),
            prediction_ts=np.concatenate([p.prediction_ts for p in parts]),
            feedback_ts=np.concatenate([p.feedback_ts for p in parts]),
            delay_s=np.concatenate([p.delay_s for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            label=np.concatenate([p.label for p in parts]),
            source=tuple(x for p in parts for x in p.source),
            override=np.concatenate([p.override for p in parts]),
            scopes=np.concatenate(scopes).astype(np.intp),
            unknown=sum(p.unknown for p in parts),
            expired=sum(p.expired for p in parts),
            evicted=sum(p.evicted for p in parts),
            duplicate=sum(p.duplicate for p in parts),
        )


def _check_seconds(name: str, value: object, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not np.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return seconds


def _column(name: str, values: ArrayLike, n: int, dtype: type[Any]) -> NDArray[Any]:
    array = np.asarray(values, dtype=dtype)
    if array.shape != (n,):
        raise ValueError(f"{name} must be a 1-D array of {n} rows, got shape {array.shape}")
    return array


def _strings(name: str, values: Sequence[str], n: int) -> Sequence[str]:
    if isinstance(values, str) or len(values) != n:
        raise ValueError(f"{name} must be a list of {n} strings")
    return values


def _field(data: Mapping[str, Any], name: str) -> Any:
    try:
        return data[name]
    except KeyError:
        raise ValueError(f"malformed JoinStore dict: missing field {name!r}") from None


class _Names:
    """Interned names (models or versions): index <-> string, at most MAX_NAMES + 1."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names: list[str] = list(names)
        self.index = {name: i for i, name in enumerate(self.names)}

    def codes(self, values: Sequence[str]) -> NDArray[np.int16]:
        for name in dict.fromkeys(values):
            if name in self.index:
                continue
            kept = name if len(self.names) < MAX_NAMES else OTHER
            if kept not in self.index:
                self.index[kept] = len(self.names)
                self.names.append(kept)
        # Names past MAX_NAMES are looked up as __other__, not remembered: a stream of
        # ever-new names must not grow the index.
        other = self.index.get(OTHER, -1)
        lookup = self.index.get
        return np.fromiter((lookup(v, other) for v in values), np.int16, len(values))

    def aliases(self) -> dict[str, int]:
        """Names folded into ``__other__`` and kept in the index (older checkpoints)."""
        return {k: v for k, v in self.index.items() if self.names[v] != k}


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
        self.horizon_s = _check_seconds("horizon_s", horizon_s, positive=True)
        self.grace_s = _check_seconds("grace_s", grace_s, positive=False)
        self.max_pending = check_int("max_pending", max_pending, 1)
        self._reset()

    def _reset(self) -> None:
        # Entries: sequence numbers [_first, _next) are live; entry ``seq`` sits at
        # position ``seq % _capacity`` of the columns (grown geometrically up to
        # max_entries), and _ids holds their event ids in the same order.
        self._slot: dict[str, int] = {}
        self._ids: deque[str] = deque()
        self._first = 0
        self._next = 0
        self._capacity = 0
        self._width = 1
        self._ts = np.zeros(0, dtype=np.float64)
        self._score = np.zeros(0, dtype=np.float64)
        self._model = np.zeros(0, dtype=np.int16)
        self._version = np.zeros(0, dtype=np.int16)
        self._labelled = np.zeros(0, dtype=np.uint16)
        self._scopes: NDArray[np.int16 | np.int32] = np.zeros((0, 1), dtype=np.int16)
        self._models = _Names()
        self._versions = _Names()
        self._sources: dict[str, int] = {}
        self._clock = -np.inf
        # A leap of the clock seen once, waiting for a second prediction to confirm it.
        self._leap = math.nan
        # Pending feedback: arrival number -> (event_id, ts, label, source, override).
        self._pending: OrderedDict[int, tuple[str, float, float, str, bool]] = OrderedDict()
        self._pending_ids: dict[str, list[int]] = {}
        self._pending_seq = 0
        # Tombstones of removed entries: hash -> reason, in sorted frozen chunks and one
        # open dict; chunks beyond max_entries removals are dropped, oldest first.
        self._tomb_chunk = max(_MIN_CAPACITY, -(-self.max_entries // 64))
        self._tomb_chunks: deque[tuple[IntArray, NDArray[np.int8]]] = deque()
        self._tomb_open: dict[int, int] = {}
        self._joined = 0
        self._unknown = 0
        self._expired = 0
        self._evicted_labels = 0
        self._duplicate = 0
        self._evicted = 0
        self._expired_entries = 0
        self._repeated = 0
        self._delay_counts = np.zeros(len(DELAY_BUCKETS_S) + 1, dtype=np.int64)
        self._delay_sum = 0.0

    # -- counters ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Predictions stored (an out-of-order one past the horizon may linger until it
        reaches the head; it never joins)."""
        return self._next - self._first

    @property
    def pending(self) -> int:
        """Feedback rows waiting for their prediction."""
        return len(self._pending)

    @property
    def joined(self) -> int:
        return self._joined

    @property
    def unknown(self) -> int:
        """Labels for predictions never seen (or that never came within ``grace_s``)."""
        return self._unknown

    @property
    def expired(self) -> int:
        """Labels whose prediction was older than ``horizon_s`` before the clock."""
        return self._expired

    @property
    def evicted_labels(self) -> int:
        """Labels whose prediction had been evicted at ``max_entries``."""
        return self._evicted_labels

    @property
    def duplicate(self) -> int:
        return self._duplicate

    @property
    def evicted(self) -> int:
        """Predictions evicted (never expired) because the store was full."""
        return self._evicted

    @property
    def expired_entries(self) -> int:
        """Predictions removed because they fell behind the horizon."""
        return self._expired_entries

    @property
    def repeated(self) -> int:
        """Predictions ignored because their event id was already stored."""
        return self._repeated

    @property
    def clock(self) -> float:
        """Newest prediction ``ts`` seen (-inf before the first)."""
        return float(self._clock)

    @property
    def nbytes(self) -> int:
        """Bytes of the numpy columns and tombstones (not the Python-side id index)."""
        columns = (self._ts, self._score, self._model, self._version, self._labelled)
        tombs = sum(h.nbytes + r.nbytes for h, r in self._tomb_chunks)
        return int(sum(c.nbytes for c in columns) + self._scopes.nbytes + tombs)

    def delay_histogram(self) -> tuple[FloatArray, IntArray, float]:
        """Label delays of every joined label as a Prometheus histogram:
        (upper bounds with +Inf last, cumulative counts, sum of delays in seconds)."""
        bounds = np.append(_BOUNDS, np.inf)
        return bounds, np.cumsum(self._delay_counts), float(self._delay_sum)

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
        ts = _column("ts", ts, n, np.float64)
        if n and not np.isfinite(ts).all():
            raise ValueError("ts must be finite epoch seconds")
        scores = _column("scores", scores, n, np.float64)
        versions = _strings("versions", versions, n)
        models = _strings("models", models if models is not None else [""] * n, n)
        rows = np.asarray(scopes)
        if rows.ndim != 2 or rows.shape[0] != n or rows.shape[1] < 1 or rows.dtype.kind not in "iu":
            raise ValueError(f"scopes must be an integer array of shape ({n}, d >= 1)")
        rows = np.where(rows < 0, -1, rows)
        if rows.shape[1] > self._width:
            self._widen(rows.shape[1])
        if rows.size and int(rows.max()) > _INT16_MAX and self._scopes.dtype == np.int16:
            self._scopes = self._scopes.astype(np.int32)
        if n == 0:
            return Joined.empty(self._width)
        model_codes = self._models.codes(models)
        version_codes = self._versions.codes(versions)
        ts_list: list[float] = ts.tolist()
        batch_first = self._next
        batch_rows: list[int] = []  # batch row of each sequence number from batch_first
        masks: dict[int, int] = {}  # labelled sources of this batch's entries
        matched: list[tuple[int, tuple[str, float, float, str, bool]]] = []
        removed: list[str] = []
        reasons: list[int] = []
        expired = duplicate = unknown = repeated = 0
        # The hot loop works on locals; the state is written back after it.
        slot, ids, pending, pending_ids = self._slot, self._ids, self._pending, self._pending_ids
        first, following, clock = self._first, self._next, float(self._clock)
        leap = self._leap
        horizon, max_entries = self.horizon_s, self.max_entries
        # ts of the stored entries the batch can reach first, read once.
        ahead = min(following - first, n)
        stored = (np.arange(first, first + ahead) % max(self._capacity, 1)).astype(np.intp)
        head: list[float] = self._ts[stored].tolist()
        for row, event_id in enumerate(event_ids):
            if event_id in slot:
                repeated += 1
                continue
            if following - first >= max_entries:
                gone = ids.popleft()
                del slot[gone]
                removed.append(gone)
                reasons.append(_EVICTED)
                first += 1
            slot[event_id] = following
            ids.append(event_id)
            batch_rows.append(row)
            following += 1
            t = ts_list[row]
            if t > clock and t - clock > horizon and clock != -math.inf:
                # A leap: taken when it confirms the one waiting (NaN: none waits).
                moves = abs(t - leap) <= horizon
                leap = math.nan if moves else t
            else:
                moves = t > clock
                leap = math.nan if moves else leap
            if moves:
                clock = t
                cutoff = t - horizon
                while following > first:
                    if first >= batch_first:
                        oldest = ts_list[batch_rows[first - batch_first]]
                    elif first - self._first < ahead:
                        oldest = head[first - self._first]
                    else:
                        oldest = float(self._ts[first % self._capacity])
                    if oldest >= cutoff:
                        break
                    gone = ids.popleft()
                    del slot[gone]
                    removed.append(gone)
                    reasons.append(_EXPIRED)
                    first += 1
            if pending_ids and event_id in pending_ids:
                late = t < clock - horizon
                mask = 0
                for arrival in pending_ids.pop(event_id):
                    feedback = pending.pop(arrival)
                    bit = self._source_bit(feedback[3])
                    if late:
                        expired += 1
                    elif mask & bit:
                        duplicate += 1
                    else:
                        mask |= bit
                        matched.append((row, feedback))
                masks[following - 1] = mask
            if pending:
                unknown += self._drop_stale_pending(clock)
        self._first, self._next, self._clock, self._leap = first, following, clock, leap
        self._repeated += repeated
        self._bury(removed, reasons)
        self._store(batch_first, batch_rows, masks, ts, scores, model_codes, version_codes, rows)
        self._expired += expired
        self._duplicate += duplicate
        self._unknown += unknown
        if not matched:
            return Joined.empty(self._width, unknown=unknown, expired=expired, duplicate=duplicate)
        index = np.array([row for row, _ in matched], dtype=np.intp)
        feedback_ts = np.array([f[1] for _, f in matched], dtype=np.float64)
        scope_rows = np.full((len(index), self._width), -1, dtype=np.intp)
        scope_rows[:, : rows.shape[1]] = rows[index]
        return self._joined_rows(
            event_ids=tuple(f[0] for _, f in matched),
            model=tuple(models[i] for i in index.tolist()),
            version=tuple(versions[i] for i in index.tolist()),
            prediction_ts=ts[index],
            feedback_ts=feedback_ts,
            score=scores[index],
            label=np.array([f[2] for _, f in matched], dtype=np.float64),
            source=tuple(f[3] for _, f in matched),
            override=np.array([f[4] for _, f in matched], dtype=bool),
            scopes=scope_rows,
            counts={"unknown": unknown, "expired": expired, "duplicate": duplicate},
        )

    def _bury(self, removed: list[str], reasons: list[int]) -> None:
        """Count removed entries and remember them as tombstones."""
        if not removed:
            return
        evicted = reasons.count(_EVICTED)
        self._evicted += evicted
        self._expired_entries += len(reasons) - evicted
        self._tomb_open.update(zip(_id_hashes(removed).tolist(), reasons))
        if len(self._tomb_open) < self._tomb_chunk:
            return
        hashes = np.fromiter(self._tomb_open.keys(), np.int64, len(self._tomb_open))
        kinds = np.fromiter(self._tomb_open.values(), np.int8, len(self._tomb_open))
        order = np.argsort(hashes, kind="stable")
        self._tomb_chunks.append((hashes[order], kinds[order]))
        self._tomb_open = {}
        # Keep the newest chunks that hold the last max_entries removals.
        kept = sum(len(h) for h, _ in self._tomb_chunks)
        while kept - len(self._tomb_chunks[0][0]) >= self.max_entries:
            kept -= len(self._tomb_chunks.popleft()[0])

    def _tombstones(self, event_ids: Sequence[str]) -> NDArray[np.int8]:
        """Removal reason of each id (0 when not remembered); newest removal wins."""
        out = np.zeros(len(event_ids), dtype=np.int8)
        if not event_ids or not (self._tomb_open or self._tomb_chunks):
            return out
        hashes = _id_hashes(event_ids)
        for i, h in enumerate(hashes.tolist()):
            out[i] = self._tomb_open.get(h, 0)
        for chunk, reasons in reversed(self._tomb_chunks):
            where = np.minimum(np.searchsorted(chunk, hashes), len(chunk) - 1)
            found = (out == 0) & (chunk[where] == hashes)
            out[found] = reasons[where[found]]
        return out

    def _drop_stale_pending(self, clock: float) -> int:
        """Give up pending feedback the clock has passed by more than grace_s."""
        dropped = 0
        limit = clock - self.grace_s
        while self._pending:
            arrival, feedback = next(iter(self._pending.items()))
            if feedback[1] >= limit:
                break
            self._pop_pending(arrival)
            dropped += 1
        return dropped

    def _pop_pending(self, arrival: int) -> None:
        event_id = self._pending.pop(arrival)[0]
        waiting = self._pending_ids[event_id]
        waiting.remove(arrival)
        if not waiting:
            del self._pending_ids[event_id]

    def _widen(self, width: int) -> None:
        wider = np.full((self._capacity, width), -1, dtype=self._scopes.dtype)
        wider[:, : self._width] = self._scopes
        self._scopes = wider
        self._width = width

    def _grow(self, needed: int, live_before: range) -> None:
        capacity = min(self.max_entries, max(needed, 2 * self._capacity, _MIN_CAPACITY))
        old = np.array(live_before, dtype=np.int64)
        src, dst = old % max(self._capacity, 1), old % capacity

        def moved(column: NDArray[Any], fill: object) -> NDArray[Any]:
            out = np.full((capacity, *column.shape[1:]), fill, dtype=column.dtype)
            out[dst] = column[src]
            return out

        self._ts = moved(self._ts, np.nan)
        self._score = moved(self._score, np.nan)
        self._model = moved(self._model, 0)
        self._version = moved(self._version, 0)
        self._labelled = moved(self._labelled, 0)
        self._scopes = moved(self._scopes, -1)
        self._capacity = capacity

    def _store(
        self,
        batch_first: int,
        batch_rows: list[int],
        masks: dict[int, int],
        ts: FloatArray,
        scores: FloatArray,
        model_codes: NDArray[np.int16],
        version_codes: NDArray[np.int16],
        rows: NDArray[Any],
    ) -> None:
        """Write this batch's surviving entries into the columns (after the row loop, so
        entries evicted within the batch are never written)."""
        start = max(batch_first, self._first)
        if self._next - self._first > self._capacity:
            self._grow(self._next - self._first, range(self._first, start))
        seqs = np.arange(start, self._next, dtype=np.int64)
        batch = np.array(batch_rows[start - batch_first :], dtype=np.intp)
        where = seqs % self._capacity
        self._ts[where] = ts[batch]
        self._score[where] = scores[batch]
        self._model[where] = model_codes[batch]
        self._version[where] = version_codes[batch]
        self._labelled[where] = 0
        for seq, mask in masks.items():
            if seq >= start:
                self._labelled[seq % self._capacity] = mask
        self._scopes[where] = -1
        self._scopes[where, : rows.shape[1]] = rows[batch]

    def _source_bit(self, source: str) -> int:
        bit = self._sources.get(source)
        if bit is None:
            bit = len(self._sources) if len(self._sources) < MAX_SOURCES else MAX_SOURCES
            if bit < MAX_SOURCES:
                self._sources[source] = bit
        return 1 << bit

    # -- feedback ---------------------------------------------------------------------------

    def holds(self, event_ids: Sequence[str]) -> BoolArray:
        """Whether each event id's prediction is stored (a label for it would join)."""
        slot = self._slot
        return np.fromiter((event_id in slot for event_id in event_ids), bool, len(event_ids))

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
        ts = _column("ts", ts, n, np.float64)
        labels = _column("labels", labels, n, np.float64)
        sources = _strings("sources", sources, n)
        overrides = _column("overrides", overrides, n, np.bool_)
        matched: list[int] = []
        positions: list[int] = []
        misses: list[int] = []
        expired = duplicate = 0
        cutoff = self._clock - self.horizon_s
        for i, event_id in enumerate(event_ids):
            seq = self._slot.get(event_id)
            if seq is None:
                misses.append(i)
                continue
            position = seq % self._capacity
            if self._ts[position] < cutoff:
                expired += 1
                continue
            bit = self._source_bit(sources[i])
            mask = int(self._labelled[position])
            if mask & bit:
                duplicate += 1
                continue
            self._labelled[position] = mask | bit
            matched.append(i)
            positions.append(position)
        reasons = self._tombstones([event_ids[i] for i in misses])
        evicted = int((reasons == _EVICTED).sum())
        expired += int((reasons == _EXPIRED).sum())
        unknown = 0
        ts_list: list[float] = ts.tolist()
        labels_list: list[float] = labels.tolist()
        overrides_list: list[bool] = overrides.tolist()
        for i, reason in zip(misses, reasons.tolist()):
            if reason:
                continue
            if ts_list[i] < self._clock - self.grace_s:
                unknown += 1
                continue
            if len(self._pending) >= self.max_pending:
                self._pop_pending(next(iter(self._pending)))
                unknown += 1
            arrival = self._pending_seq
            self._pending_seq += 1
            event_id = event_ids[i]
            self._pending[arrival] = (
                event_id,
                ts_list[i],
                labels_list[i],
                sources[i],
                overrides_list[i],
            )
            self._pending_ids.setdefault(event_id, []).append(arrival)
        self._unknown += unknown
        self._expired += expired
        self._evicted_labels += evicted
        self._duplicate += duplicate
        counts = {"unknown": unknown, "expired": expired, "evicted": evicted}
        counts["duplicate"] = duplicate
        if not matched:
            return Joined.empty(self._width, **counts)
        index = np.array(matched, dtype=np.intp)
        where = np.array(positions, dtype=np.intp)
        return self._joined_rows(
            event_ids=tuple(event_ids[i] for i in matched),
            model=tuple(self._models.names[c] for c in self._model[where].tolist()),
            version=tuple(self._versions.names[c] for c in self._version[where].tolist()),
            prediction_ts=self._ts[where],
            feedback_ts=ts[index],
            score=self._score[where],
            label=labels[index],
            source=tuple(sources[i] for i in matched),
            override=overrides[index],
            scopes=self._scopes[where].astype(np.intp),
            counts=counts,
        )

    def _joined_rows(
        self,
        *,
        event_ids: tuple[str, ...],
        model: tuple[str, ...],
        version: tuple[str, ...],
        prediction_ts: FloatArray,
        feedback_ts: FloatArray,
        score: FloatArray,
        label: FloatArray,
        source: tuple[str, ...],
        override: BoolArray,
        scopes: IndexArray,
        counts: dict[str, int],
    ) -> Joined:
        delay = feedback_ts - prediction_ts
        self._joined += len(delay)
        self._delay_counts += delay_bucket_counts(delay)
        self._delay_sum += float(delay.sum())
        return Joined(
            event_id=event_ids,
            model=model,
            version=version,
            prediction_ts=prediction_ts,
            feedback_ts=feedback_ts,
            delay_s=delay,
            score=score,
            label=label,
            source=source,
            override=override,
            scopes=scopes,
            **counts,
        )

    # -- checkpoints ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (plain lists, ints, floats, strings; None for NaN)."""
        where = np.arange(self._first, self._next, dtype=np.int64) % max(self._capacity, 1)
        scores = self._score[where]
        return {
            "kind": "JoinStore",
            "version": 1,
            "max_entries": self.max_entries,
            "horizon_s": self.horizon_s,
            "grace_s": self.grace_s,
            "max_pending": self.max_pending,
            "clock": None if self._clock == -np.inf else float(self._clock),
            "leap": None if math.isnan(self._leap) else self._leap,
            "width": self._width,
            "models": list(self._models.names),
            "model_aliases": self._models.aliases(),
            "versions": list(self._versions.names),
            "version_aliases": self._versions.aliases(),
            "sources": list(self._sources),
            "entries": {
                "event_id": list(self._ids),
                "ts": self._ts[where].tolist(),
                "score": [None if s != s else s for s in scores.tolist()],
                "model": self._model[where].tolist(),
                "version": self._version[where].tolist(),
                "labelled": [int(m) for m in self._labelled[where].tolist()],
                "scopes": self._scopes[where].tolist(),
            },
            "pending": [list(f) for f in self._pending.values()],
            "tombstones": {
                "chunks": [[h.tolist(), r.tolist()] for h, r in self._tomb_chunks],
                "open": [[h, r] for h, r in self._tomb_open.items()],
            },
            "counters": {
                "joined": self._joined,
                "unknown": self._unknown,
                "expired": self._expired,
                "evicted_labels": self._evicted_labels,
                "duplicate": self._duplicate,
                "evicted": self._evicted,
                "expired_entries": self._expired_entries,
                "repeated": self._repeated,
            },
            "delay_counts": self._delay_counts.tolist(),
            "delay_sum": self._delay_sum,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JoinStore:
        """Inverse of :meth:`to_dict`; raises ValueError on a wrong kind/version or bad data."""
        if not isinstance(data, Mapping) or data.get("kind") != "JoinStore":
            raise ValueError("expected a JoinStore dict (kind 'JoinStore')")
        if data.get("version") != 1:
            raise ValueError(
                f"unsupported JoinStore version {data.get('version')!r} (supported: 1)"
            )
        store = cls(
            _field(data, "max_entries"),
            _field(data, "horizon_s"),
            _field(data, "grace_s"),
            _field(data, "max_pending"),
        )
        try:
            store._load(data)
        except (TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"malformed JoinStore dict: {exc}") from None
        return store

    def _load(self, data: Mapping[str, Any]) -> None:
        clock = _field(data, "clock")
        self._clock = -np.inf if clock is None else float(clock)
        leap = data.get("leap")  # absent from dicts written before the guard
        self._leap = math.nan if leap is None else float(leap)
        self._width = check_int("width", _field(data, "width"), 1)
        self._models = _Names(_field(data, "models"))
        self._models.index.update(_field(data, "model_aliases"))
        self._versions = _Names(_field(data, "versions"))
        self._versions.index.update(_field(data, "version_aliases"))
        self._sources = {name: bit for bit, name in enumerate(_field(data, "sources"))}
        entries = _field(data, "entries")
        ids = list(entries["event_id"])
        n = len(ids)
        if n > self.max_entries or len(set(ids)) != n:
            raise ValueError("malformed JoinStore dict: too many or repeated entries")
        self._capacity = min(self.max_entries, max(n, _MIN_CAPACITY))
        self._ts = np.full(self._capacity, np.nan)
        self._score = np.full(self._capacity, np.nan)
        scopes = np.asarray(entries["scopes"], dtype=np.int64).reshape(n, self._width)
        wide = bool(n) and int(scopes.max()) > _INT16_MAX
        self._model = np.zeros(self._capacity, dtype=np.int16)
        self._version = np.zeros(self._capacity, dtype=np.int16)
        self._labelled = np.zeros(self._capacity, dtype=np.uint16)
        self._scopes = np.full(
            (self._capacity, self._width), -1, dtype=np.int32 if wide else np.int16
        )
        self._ts[:n] = _column("ts", entries["ts"], n, np.float64)
        self._score[:n] = [np.nan if s is None else s for s in entries["score"]]
        self._model[:n] = _column("model", entries["model"], n, np.int16)
        self._version[:n] = _column("version", entries["version"], n, np.int16)
        self._labelled[:n] = _column("labelled", entries["labelled"], n, np.uint16)
        if n:
            self._scopes[:n] = scopes
        if n and (
            self._model[:n].max() >= len(self._models.names)
            or self._version[:n].max() >= len(self._versions.names)
        ):
            raise ValueError("malformed JoinStore dict: model or version index out of range")
        self._ids = deque(ids)
        self._slot = {event_id: seq for seq, event_id in enumerate(ids)}
        self._first, self._next = 0, n
        for event_id, ts, label, source, override in _field(data, "pending"):
            arrival = self._pending_seq
            self._pending_seq += 1
            self._pending[arrival] = (str(event_id), float(ts), float(label), source, override)
            self._pending_ids.setdefault(str(event_id), []).append(arrival)
        tombstones = _field(data, "tombstones")
        for hashes, reasons in tombstones["chunks"]:
            self._tomb_chunks.append(
                (np.asarray(hashes, dtype=np.int64), np.asarray(reasons, dtype=np.int8))
            )
        self._tomb_open = {int(h): int(r) for h, r in tombstones["open"]}
        counters = _field(data, "counters")
        self._joined = int(counters["joined"])
        self._unknown = int(counters["unknown"])
        self._expired = int(counters["expired"])
        self._evicted_labels = int(counters["evicted_labels"])
        self._duplicate = int(counters["duplicate"])
        self._evicted = int(counters["evicted"])
        self._expired_entries = int(counters["expired_entries"])
        self._repeated = int(counters["repeated"])
        self._delay_counts = _column(
            "delay_counts", _field(data, "delay_counts"), len(DELAY_BUCKETS_S) + 1, np.int64
        )
        self._delay_sum = float(_field(data, "delay_sum"))
