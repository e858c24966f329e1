"""The one exception type driftgate raises on purpose."""

from __future__ import annotations


class DriftgateError(Exception):
    """Root of driftgate's own errors.

    ``retriable`` says whether trying the same operation again later can succeed
    (a broker that is down) or not (a config that names an unknown key); the
    service loop retries the first kind with backoff and exits on the second.
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable
