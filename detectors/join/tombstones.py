"""Tombstones: why recently removed predictions left the join store, by event id hash.

A label that arrives after its prediction left the store counts as ``expired`` or
``evicted`` rather than ``unknown``. The store remembers the last ``keep`` removals (or a
little more) as 64-bit hashes (FNV-1a) with the reason, about 9 bytes each; a hash
collision can only move a label between those two counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from detectors.arrays import IntArray

# Reasons of a removal (0: not remembered).
EXPIRED = 1
EVICTED = 2

_MIN_CHUNK = 1_024


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


class Tombstones:
    """Removal reasons of the last ``keep`` removed event ids (or a little more).

    Hashes go to one open dict, frozen into a sorted chunk (binary-searched) once it
    holds ``max(1024, keep / 64)``; the oldest chunks are dropped once the newer ones
    hold ``keep`` removals.

    >>> tombs = Tombstones(keep=10)
    >>> tombs.bury(["a", "b"], [EVICTED, EXPIRED])
    >>> tombs.reasons(["b", "c", "a"]).tolist()
    [1, 0, 2]
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._reset()

    def _reset(self) -> None:
        self._chunk = max(_MIN_CHUNK, -(-self.keep // 64))
        self._chunks: deque[tuple[IntArray, NDArray[np.int8]]] = deque()
        self._open: dict[int, int] = {}

    @property
    def nbytes(self) -> int:
        """Bytes of the frozen chunks (the open dict is at most one chunk's worth)."""
        return sum(h.nbytes + r.nbytes for h, r in self._chunks)

    def bury(self, removed: list[str], reasons: list[int]) -> None:
        """Remember removed event ids with their reasons (:data:`EXPIRED`, :data:`EVICTED`)."""
        self._open.update(zip(_id_hashes(removed).tolist(), reasons))
        if len(self._open) < self._chunk:
            return
        hashes = np.fromiter(self._open.keys(), np.int64, len(self._open))
        kinds = np.fromiter(self._open.values(), np.int8, len(self._open))
        order = np.argsort(hashes, kind="stable")
        self._chunks.append((hashes[order], kinds[order]))
        self._open = {}
        # Keep the newest chunks that hold the last `keep` removals.
        kept = sum(len(h) for h, _ in self._chunks)
        while kept - len(self._chunks[0][0]) >= self.keep:
            kept -= len(self._chunks.popleft()[0])

    def reasons(self, event_ids: Sequence[str]) -> NDArray[np.int8]:
        """Removal reason of each id (0 when not remembered); newest removal wins."""
        out = np.zeros(len(event_ids), dtype=np.int8)
        if not event_ids or not (self._open or self._chunks):
            return out
        hashes = _id_hashes(event_ids)
        for i, h in enumerate(hashes.tolist()):
            out[i] = self._open.get(h, 0)
        for chunk, reasons in reversed(self._chunks):
            where = np.minimum(np.searchsorted(chunk, hashes), len(chunk) - 1)
            found = (out == 0) & (chunk[where] == hashes)
            out[found] = reasons[where[found]]
        return out
