"""Giving the memory of a dropped state back to the system."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only
    return trim if callable(trim) else None


def return_freed_memory() -> None:
    """Release the free pages of the C heap (glibc's ``malloc_trim``; nothing elsewhere).

    A judge that hands its state over and restores one from a checkpoint frees a whole
    engine at once, but glibc keeps the freed pages of its heap: the soak saw RSS step
    up by 50-100 MiB at every restore and never come down. Measured on the engine of
    200,000 predictions of ``concept`` restored six times: 181 -> 230 MiB without, flat
    at 180 MiB with it.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
