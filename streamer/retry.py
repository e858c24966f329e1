"""Exponential backoff for retriable I/O errors: the one loop every retry shares."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Backoff:
    """Waits that double from ``first_s`` up to ``max_s``; ``reset`` after a success."""

    def __init__(self, first_s: float = 0.5, max_s: float = 30.0) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"need 0 < first_s <= max_s, got {first_s} and {max_s}")
        self.first_s = first_s
        self.max_s = max_s
        self.reset()

    def reset(self) -> None:
        self._next_s = self.first_s

    def wait(self, stop: threading.Event, why: str) -> bool:
        """Log why, wait (or less, if ``stop`` is set); True when stopped meanwhile."""
        log.warning("%s; retrying in %.1fs", why, self._next_s)
        stopped = stop.wait(self._next_s)
        self._next_s = min(self._next_s * 2, self.max_s)
        return stopped
