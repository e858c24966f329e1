"""Mergeable, bounded-memory per-scope summaries of micro-batch columns.

Both sketches are *columnar*: ``update`` takes one column of a micro-batch plus a scope index per
row (``scopes[i]`` in ``[0, n_scopes)``; a scope is e.g. a reference window, a live window or a
model version).  The per-event path is the very same code called with a batch of one
(``update_one`` is a thin wrapper), so there is a single implementation.

* :class:`NumericSketch` (:mod:`~detectors.sketches.numeric`) -- count, missing count, exact
  mean/variance (Chan et al. merge), min, max and a DDSketch-style relative-error quantile
  sketch (its buckets: :mod:`~detectors.sketches.buckets`).
* :class:`CategoricalSketch` (:mod:`~detectors.sketches.categorical`) -- deterministic
  Misra-Gries top-k counts plus ``other`` and ``missing`` counts.

Both merge into a new sketch (``merge``: the sketch of the concatenated columns); checkpoints
write them as their fields, like all detector state.  This package is pure: numpy only, no I/O,
no clock.
"""

from __future__ import annotations

from detectors.sketches.categorical import CategoricalSketch
from detectors.sketches.numeric import NumericSketch

__all__ = ["CategoricalSketch", "NumericSketch"]
