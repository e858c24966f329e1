"""The join store's interned strings: model and version names, and label sources."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from detectors.cohorts import OTHER

# Distinct model / version names kept; any further one is stored as ``__other__``.
MAX_NAMES = 10_000
# Sources told apart for duplicate detection (bits of a uint16); the rest share bit 15.
MAX_SOURCES = 15


class Names:
    """Interned names (models or versions): index <-> string, at most MAX_NAMES + 1.

    >>> names = Names()
    >>> names.codes(["v2", "v1", "v2"]).tolist(), names.names
    ([0, 1, 0], ['v2', 'v1'])
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}

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


class SourceBits:
    """One bit of a uint16 mask per label source, for telling duplicates apart: the
    first MAX_SOURCES sources get their own, every further one shares the last.

    >>> bits = SourceBits()
    >>> bits.bit("click"), bits.bit("chargeback"), bits.bit("click")
    (1, 2, 1)
    """

    def __init__(self) -> None:
        self._bits: dict[str, int] = {}

    def bit(self, source: str) -> int:
        bit = self._bits.get(source)
        if bit is None:
            bit = len(self._bits) if len(self._bits) < MAX_SOURCES else MAX_SOURCES
            if bit < MAX_SOURCES:
                self._bits[source] = bit
        return 1 << bit
