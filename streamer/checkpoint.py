"""When to checkpoint, and where: the engine's state under one name, in a store.

The stores import only the format (``checkpoint_format``); this module picks one:
``checkpoint.topic`` (a compacted Kafka topic, for containers without a volume) when set,
else ``checkpoint.dir``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from streamer.checkpoint_directory import CheckpointDirectory
from streamer.checkpoint_format import config_fingerprint
from streamer.checkpoint_topic import CheckpointTopic
from streamer.config import CheckpointConfig, KafkaConfig
from streamer.engine import Engine
from streamer.event_order import Position
from streamer.heap import return_freed_memory

log = logging.getLogger(__name__)


class Checkpoints:
    """When to checkpoint, and the engine's checkpoint under its name (the consumer
    group and the topic are in it, so that deployments can share a directory)."""

    def __init__(
        self,
        config: CheckpointConfig,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        kafka: KafkaConfig | None = None,
    ) -> None:
        """In ``config.topic`` when it is set (then ``config.dir`` is not used, so the
        image's default directory needs no unsetting), else in ``config.dir``."""
        self.config = config
        self.directory: CheckpointDirectory | CheckpointTopic
        if config.topic is not None:
            if kafka is None:
                raise ValueError("a checkpoint topic needs the Kafka settings")
            self.directory = CheckpointTopic(kafka, config.topic)
        elif config.dir is not None:
            self.directory = CheckpointDirectory(Path(config.dir))
        else:
            raise ValueError("Checkpoints need checkpoint.dir or checkpoint.topic")
        self.name = name
        self._clock = clock
        self._events = 0
        self._at = clock()

    def due(self, events: int) -> bool:
        """Count a batch's records; True once enough records or time have passed."""
        self._events += events
        return (
            self._events >= self.config.interval_events
            or self._clock() - self._at >= self.config.interval_s
        )

    def save(self, engine: Engine) -> dict[Position, int]:
        """Checkpoint the engine; returns the offsets its state reflects, which is what
        may be committed now."""
        positions = dict(engine.positions)
        self.directory.save(self.name, engine, positions)
        # Encoding a state allocates several times its size for a moment (142 MiB for
        # a join store of 500,000 entries, whose encoding is 31 MB), and glibc keeps
        # those pages: without this, RSS moved up and down by tens of MiB between
        # checkpoints of the soak, and stayed up.
        return_freed_memory()
        self._events = 0
        self._at = self._clock()
        return positions

    def restore(self, current: Engine) -> Engine | None:
        """The engine from its checkpoint, if there is a usable one (its ``positions``
        say where to resume). ``current`` holds the settings it must match."""
        fingerprint = config_fingerprint(
            current.monitor_config, current.limits, current.feedback, current.reference_digest
        )
        loaded = self.directory.load(self.name, fingerprint)
        if loaded is None:
            return None
        log.info(
            "state of %s restored from its checkpoint of %s, resuming at %s",
            self.name,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(loaded.written_at)),
            ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(loaded.positions.items())),
        )
        return loaded.engine
