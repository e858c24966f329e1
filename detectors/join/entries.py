"""The join store's predictions: an insertion-ordered ring of numpy columns by event id,
with the event-time clock that expires them.

Entries get consecutive sequence numbers; ``[first, end)`` are live, and entry ``seq``
sits at position ``seq % capacity`` of the columns (grown geometrically up to
``max_entries``, so a growth step briefly holds both copies), while ``ids`` holds their
event ids in the same order and ``slot`` maps an event id to its sequence number. Per
entry: 22 bytes of columns (ts and score float64; model and version index int16;
labelled-sources bitmask uint16) plus 2 bytes per scope column (int16; int32 once a
scope id exceeds 32,767).

A batch goes in two steps: :meth:`Entries.admit` gives each new event id its sequence
number, moves the clock and evicts or expires entries from the head, row by row; then
:meth:`Entries.write` puts the batch's surviving entries into the columns (so entries
evicted within the batch are never written).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.arrays import BoolArray, FloatArray, IndexArray
from detectors.join.names import Names, SourceBits
from detectors.join.tombstones import EVICTED, EXPIRED

_MIN_CAPACITY = 1_024
_INT16_MAX = 32_767


@dataclass(frozen=True)
class Admission:
    """What :meth:`Entries.admit` did with one batch of predictions."""

    first: int  # sequence number of the batch's first admitted entry
    rows: list[int]  # batch row of each admitted entry, in sequence order
    clocks: list[float]  # the clock just after each admitted entry
    removed: list[str]  # event ids evicted or expired, in order
    reasons: list[int]  # EVICTED or EXPIRED, one per removed id
    repeated: int  # rows ignored because their event id was stored already


@dataclass(frozen=True)
class Matches:
    """What :meth:`Entries.match` found for a batch of labels."""

    rows: list[int]  # label rows that found their prediction and were first from their source
    positions: IndexArray  # those predictions' positions in the columns
    misses: list[int]  # label rows whose prediction is not stored
    expired: int  # labels whose prediction is behind the horizon
    duplicate: int  # labels whose source labelled their prediction already


class Entries:
    """Stored predictions: event time, score, model, version, labelled sources, scopes."""

    def __init__(self, max_entries: int, horizon_s: float) -> None:
        self.max_entries = max_entries
        self.horizon_s = horizon_s
        self._reset()

    def _reset(self) -> None:
        self._slot: dict[str, int] = {}
        self._ids: deque[str] = deque()
        self._first = 0
        self._end = 0
        self._capacity = 0
        self.width = 1
        self._ts = np.zeros(0, dtype=np.float64)
        self._score = np.zeros(0, dtype=np.float64)
        self._model = np.zeros(0, dtype=np.int16)
        self._version = np.zeros(0, dtype=np.int16)
        self._labelled = np.zeros(0, dtype=np.uint16)
        self._scopes: NDArray[np.int16 | np.int32] = np.zeros((0, 1), dtype=np.int16)
        self._models = Names()
        self._versions = Names()
        # The newest prediction ts seen, and a leap of it seen once, waiting for a second
        # prediction to confirm it (NaN: none waits).
        self.clock = -math.inf
        self._leap = math.nan

    @property
    def nbytes(self) -> int:
        """Bytes of the numpy columns (not the Python-side id index)."""
        columns = (self._ts, self._score, self._model, self._version, self._labelled)
        return int(sum(c.nbytes for c in columns) + self._scopes.nbytes)

    def __len__(self) -> int:
        return self._end - self._first

    def holds(self, event_ids: Sequence[str]) -> BoolArray:
        """Whether each event id is stored."""
        slot = self._slot
        return np.fromiter((event_id in slot for event_id in event_ids), bool, len(event_ids))

    def admit(self, event_ids: Sequence[str], ts: list[float]) -> Admission:
        """Give each new event id the next sequence number, in order, evicting the
        oldest entry when full; move the clock (a leap beyond ``horizon_s`` only once a
        second prediction confirms it) and expire the head entries it leaves behind."""
        batch_first = self._end
        rows: list[int] = []
        clocks: list[float] = []
        removed: list[str] = []
        reasons: list[int] = []
        repeated = 0
        # The hot loop works on locals; the state is written back after it.
        slot, ids, first, following = self._slot, self._ids, self._first, self._end
        clock, leap, horizon, max_entries = self.clock, self._leap, self.horizon_s, self.max_entries
        # ts of the stored entries the batch can reach first, read once.
        ahead = min(following - first, len(event_ids))
        seqs = np.arange(first, first + ahead)
        head: list[float] = self._ts[(seqs % max(self._capacity, 1)).astype(np.intp)].tolist()
        for row, event_id in enumerate(event_ids):
            if event_id in slot:
                repeated += 1
                continue
            if following - first >= max_entries:
                gone = ids.popleft()
                del slot[gone]
                removed.append(gone)
                reasons.append(EVICTED)
                first += 1
            slot[event_id] = following
            ids.append(event_id)
            rows.append(row)
            following += 1
            t = ts[row]
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
                        oldest = ts[rows[first - batch_first]]
                    elif first - self._first < ahead:
                        oldest = head[first - self._first]
                    else:
                        oldest = float(self._ts[first % self._capacity])
                    if oldest >= cutoff:
                        break
                    gone = ids.popleft()
                    del slot[gone]
                    removed.append(gone)
                    reasons.append(EXPIRED)
                    first += 1
            clocks.append(clock)
        self._first, self._end, self.clock, self._leap = first, following, clock, leap
        return Admission(batch_first, rows, clocks, removed, reasons, repeated)

    def match(self, event_ids: Sequence[str], sources: Sequence[str], bits: SourceBits) -> Matches:
        """Find each label's prediction and mark the label's source on it; a label whose
        prediction is behind the horizon, or already labelled by its source, does not join."""
        rows: list[int] = []
        positions: list[int] = []
        misses: list[int] = []
        expired = duplicate = 0
        cutoff = self.clock - self.horizon_s
        for i, event_id in enumerate(event_ids):
            seq = self._slot.get(event_id)
            if seq is None:
                misses.append(i)
                continue
            position = seq % self._capacity
            if self._ts[position] < cutoff:
                expired += 1
                continue
            bit = bits.bit(sources[i])
            mask = int(self._labelled[position])
            if mask & bit:
                duplicate += 1
                continue
            self._labelled[position] = mask | bit
            rows.append(i)
            positions.append(position)
        where = np.array(positions, dtype=np.intp)
        return Matches(rows, where, misses, expired, duplicate)

    def fit_scopes(self, rows: NDArray[Any]) -> None:
        """Make room for scope rows as wide and with ids as large as ``rows``."""
        if rows.shape[1] > self.width:
            wider = np.full((self._capacity, rows.shape[1]), -1, dtype=self._scopes.dtype)
            wider[:, : self.width] = self._scopes
            self._scopes = wider
            self.width = rows.shape[1]
        if rows.size and int(rows.max()) > _INT16_MAX and self._scopes.dtype == np.int16:
            self._scopes = self._scopes.astype(np.int32)

    def write(
        self,
        admission: Admission,
        masks: dict[int, int],
        ts: FloatArray,
        scores: FloatArray,
        models: Sequence[str],
        versions: Sequence[str],
        rows: NDArray[Any],
    ) -> None:
        """Write the surviving entries of an admitted batch into the columns, with the
        labelled sources of some of them (``masks``, by sequence number)."""
        batch_first, batch_rows = admission.first, admission.rows
        model_codes = self._models.codes(models)
        version_codes = self._versions.codes(versions)
        start = max(batch_first, self._first)
        if self._end - self._first > self._capacity:
            self._grow(self._end - self._first, range(self._first, start))
        seqs = np.arange(start, self._end, dtype=np.int64)
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

    def _grow(self, needed: int, live_before: range) -> None:
        capacity = min(self.max_entries, max(needed, 2 * self._capacity, _MIN_CAPACITY))
        old = np.array(live_before, dtype=np.int64)
        src, dst = old % max(self._capacity, 1), old % capacity

        def moved(values: NDArray[Any], fill: object) -> NDArray[Any]:
            out = np.full((capacity, *values.shape[1:]), fill, dtype=values.dtype)
            out[dst] = values[src]
            return out

        self._ts = moved(self._ts, np.nan)
        self._score = moved(self._score, np.nan)
        self._model = moved(self._model, 0)
        self._version = moved(self._version, 0)
        self._labelled = moved(self._labelled, 0)
        self._scopes = moved(self._scopes, -1)
        self._capacity = capacity

    def predictions(
        self, where: IndexArray
    ) -> tuple[tuple[str, ...], tuple[str, ...], FloatArray, FloatArray, IndexArray]:
        """Model, version, ts, score and scope row of the entries at positions ``where``."""
        models = tuple(self._models.names[c] for c in self._model[where].tolist())
        versions = tuple(self._versions.names[c] for c in self._version[where].tolist())
        scopes = self._scopes[where].astype(np.intp)
        return models, versions, self._ts[where], self._score[where], scopes
