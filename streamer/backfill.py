"""When a backfill is finished: ``driftgate run --exit-when-idle`` exits only once the whole
group is done, not just this member.

A member whose own partitions are idle may still have work left elsewhere: a member killed
during the backfill keeps its partitions until its session times out, and the member that
judges may still hold forwarded events. So besides its own input being idle, a member
exits only when the group's committed offsets have reached the end of every partition of
the input topics, and the judge group's of the internal topic (``Finish``). A group that
makes no progress for ``exit_timeout_s`` ends the wait with the partitions left named.

The end of a partition is the high watermark of a fetch response, as in ``KafkaSource``:
Tansu answers ListOffsets with the last batch's base offset, so a short-lived consumer
outside the group fetches from the committed offsets to learn it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streamer.config import KafkaConfig
from streamer.errors import DriftgateError
from streamer.event_order import Position

log = logging.getLogger(__name__)

# Seconds the group may make no progress while an idle member waits for it (--exit-timeout).
EXIT_TIMEOUT_S = 300.0
# Seconds between two checks of the group's offsets (each opens a consumer).
CHECK_EVERY_S = 2.0
# Seconds a check waits for the fetch responses that carry the high watermarks.
FETCH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Left:
    """A partition whose records are not all committed: next offset to commit, and end
    (None when no fetch answered for it)."""

    committed: int
    end: int | None
    held: int = 0  # events the judge's event-time merge still holds

    def __str__(self) -> str:
        end = "unknown" if self.end is None else str(self.end)
        held = f", {self.held} events held in the merge" if self.held else ""
        return f"at {self.committed} of {end}{held}"


def committed_behind(
    config: KafkaConfig, group_id: str, topics: Sequence[str]
) -> dict[Position, Left]:
    """The partitions of ``topics`` whose committed offset in ``group_id`` is behind their
    end. The consumer asked never joins the group (its partitions are assigned to it) and
    commits nothing."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=config.bootstrap_servers.split(","),
            group_id=group_id,
            client_id=f"{config.client_id}-backfill-check",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=config.request_timeout_ms,
            max_partition_fetch_bytes=config.max_partition_fetch_bytes,
        )
    except KafkaError as exc:
        raise DriftgateError(
            f"cannot read the offsets of {group_id}: {exc}", retriable=True
        ) from exc
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        consumer.assign(partitions)
        committed = {tp: consumer.committed(tp) or 0 for tp in partitions}
        for tp, offset in committed.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + FETCH_TIMEOUT_S
        # A fetch from the committed offset answers with the partition's high watermark,
        # with or without records (parsed as the records are drained, hence the loop).
        while time.monotonic() < deadline and any(
            consumer.highwater(tp) is None for tp in partitions
        ):
            consumer.poll(timeout_ms=200, max_records=10_000)
        left = {}
        for tp in partitions:
            end = consumer.highwater(tp)
            if end is None or committed[tp] < end:
                left[(tp.topic, tp.partition)] = Left(committed[tp], end)
        return left
    except KafkaError as exc:
        raise DriftgateError(
            f"cannot read the offsets of {group_id}: {exc}", retriable=True
        ) from exc
    finally:
        consumer.close(autocommit=False)


class Finish:
    """Decides, while this member is idle, whether it may exit: ``left`` names the
    partitions the group has not finished (see ``app.run``). After ``timeout_s`` without
    the group making progress, ``check`` raises, naming them."""

    def __init__(
        self,
        left: Callable[[], dict[Position, Left]],
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.left = left
        self.timeout_s = timeout_s
        self.clock = clock
        self.check_every_s = check_every_s
        self._reset()

    def _reset(self) -> None:
        self._checked_at: float | None = None
        self._progress_at: float | None = None
        self._last: dict[Position, Left] | None = None

    def busy(self) -> None:
        """This member has work again: the wait starts afresh when it is idle again."""
        self._reset()

    def check(self) -> bool:
        """Whether the group is done (at most one look every ``check_every_s``)."""
        now = self.clock()
        if self._checked_at is not None and now - self._checked_at < self.check_every_s:
            return False
        self._checked_at = now
        if self._progress_at is None:
            self._progress_at = now
        try:
            left = self.left()
        except DriftgateError as exc:
            if not exc.retriable:
                raise
            log.warning("backfill check: %s", exc)
            left = self._last or {}
        else:
            if not left:
                return True
            if left != self._last:
                if self._last is not None:
                    self._progress_at = now
                self._last = left
                log.info("idle, waiting for the group: %s", describe(left))
        if now - self._progress_at >= self.timeout_s:
            raise DriftgateError(
                f"the group made no progress for {self.timeout_s:g} s (--exit-timeout); "
                f"partitions left: {describe(left) if left else 'unknown (offsets unreadable)'}"
            )
        return False


def describe(left: dict[Position, Left]) -> str:
    return ", ".join(
        f"{topic}[{partition}] {where}" for (topic, partition), where in sorted(left.items())
    )
