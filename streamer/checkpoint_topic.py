"""Checkpoints in a compacted Kafka topic, for containers without a volume.

A checkpoint's bytes are those of a checkpoint file (:func:`streamer.checkpoint.encode`).
It is often tens of MB and Kafka's default message size limit is ~1 MB, so it is
written as chunks, then a small manifest that names them, all in one topic with
``cleanup.policy=compact`` (many names may share it):

- key ``<name>/<generation>/<i>``: chunk ``i`` of the checkpoint, at most CHUNK_BYTES;
- key ``<name>``: the manifest, JSON ``{"generation", "chunks", "bytes", "sha256"}``
  (count, total size and SHA-256 of the chunks put together).

Every save has a new random generation, so it never overwrites a record that a durable
manifest points to: the chunks are acknowledged by all in-sync replicas (acks=all)
before the manifest is sent, and the previous manifest and its chunks stay whole until
the new manifest is, so a crash at any point leaves the previous checkpoint or the new
one. Only then do the chunks the new manifest does not name (the previous generation's,
and any a crashed save left) get tombstones, for compaction to free.

Loading reads the topic from its beginning to its end and keeps the latest value of each
key of the name. A checkpoint with a missing or corrupt chunk, or otherwise unusable, is
reported and not loaded, and its records are left alone rather than tombstoned: there is
nothing to move aside, they are what a post-mortem looks at, the next save supersedes the
manifest and tombstones those chunks anyway, and a checkpoint rejected for other settings
loads again if the settings are rolled back before that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from streamer.checkpoint_format import Loaded, decode, encode
from streamer.config import KafkaConfig
from streamer.engine import Engine
from streamer.errors import DriftgateError
from streamer.event_order import Position

log = logging.getLogger(__name__)

# Half of Kafka's default max.message.bytes: room for the record and batch overheads.
CHUNK_BYTES = 512 * 1024


class CheckpointTopic:
    """Checkpoints of named partitions in one compacted Kafka topic.

    Connects on first use (then creates the topic if it is missing), so that a broker
    that is down at start-up is waited for like the input topics are.
    """

    def __init__(
        self, kafka: KafkaConfig, topic: str, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self._wall_clock = wall_clock
        self._producer: Any = None
        # Per name, the chunk keys that may hold a value: tombstoned once a newer
        # manifest is durable. Unknown for a name until it is loaded or saved.
        self._live: dict[str, set[str]] = {}
        self.saved = 0
        self.rejected = 0
        self.last_saved_at: float | None = None

    def save(self, name: str, engine: Engine, positions: dict[Position, int]) -> None:
        now = self._wall_clock()
        data = encode(engine, positions, now)
        stale = self._live.get(name)
        if stale is None:
            stale = set(self._read(name)) - {name}
        generation = uuid.uuid4().hex
        chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
        keys = [f"{name}/{generation}/{i}" for i in range(len(chunks))]
        # Until the manifest is durable, a failed save's chunks are garbage too.
        self._live[name] = stale | set(keys)
        self._deliver([self._send(key, chunk) for key, chunk in zip(keys, chunks)])
        manifest = {
            "generation": generation,
            "chunks": len(chunks),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._deliver([self._send(name, json.dumps(manifest).encode())])
        self.saved += 1
        self.last_saved_at = now
        try:
            self._deliver([self._send(key, None) for key in sorted(stale)])
        except DriftgateError as exc:
            # The checkpoint is saved; the old chunks only take space until the next try.
            log.warning("old chunks of checkpoint %s not tombstoned yet: %s", name, exc)
            return
        self._live[name] = set(keys)

    def load(self, name: str, fingerprint: str) -> Loaded | None:
        """The partition's checkpoint, or None when there is none or it is unusable
        (then logged). ``fingerprint`` is :func:`config_fingerprint` of the current
        settings: a checkpoint made under other settings is not loaded."""
        try:
            data = self.read(name)
            if data is None:
                return None
            header, engine = decode(data, fingerprint)
        except ValueError as exc:
            self.rejected += 1
            log.error(
                "checkpoint %s in topic %s not loaded: %s; the partition starts afresh "
                "(its records stay until the next checkpoint supersedes them)",
                name,
                self.topic,
                exc,
            )
            return None
        positions = {(str(t), int(p)): int(o) for t, p, o in header["positions"]}
        return Loaded(engine, positions, float(header["written_at"]))

    def read(self, name: str) -> bytes | None:
        """The bytes of the checkpoint ``name``, None when there is none; ValueError
        when its chunks do not add up to it."""
        live = self._read(name)
        manifest = live.pop(name, None)
        self._live[name] = set(live)
        if manifest is None:
            return None
        return _assemble(name, manifest, live)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.kafka.request_timeout_ms / 1000)
            self._producer = None

    def _client(self, role: str) -> dict[str, Any]:
        kafka = self.kafka
        return {
            "bootstrap_servers": kafka.bootstrap_servers.split(","),
            "client_id": f"{kafka.client_id}-{role}",
            "request_timeout_ms": kafka.request_timeout_ms,
            "reconnect_backoff_max_ms": kafka.reconnect_backoff_max_ms,
            # An unreachable broker is reported after one request timeout.
            "bootstrap_timeout_ms": kafka.request_timeout_ms,
        }

    def _unreachable(self, exc: Exception) -> DriftgateError:
        return DriftgateError(
            f"cannot reach Kafka at {self.kafka.bootstrap_servers} for the checkpoint "
            f"topic {self.topic}: {exc}",
            retriable=True,
        )

    def _connect(self) -> Any:
        """The producer; on the first call, the topic is created if it is missing."""
        if self._producer is not None:
            return self._producer
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        try:
            admin = KafkaAdminClient(**self._client("checkpoint-admin"))
            try:
                if self.topic not in admin.list_topics():
                    # One partition keeps a name's records in order; -1: the broker's
                    # default replication factor.
                    new = NewTopic(
                        name=self.topic,
                        num_partitions=1,
                        replication_factor=-1,
                        topic_configs={"cleanup.policy": "compact"},
                    )
                    try:
                        admin.create_topics([new])
                        log.info("created the compacted checkpoint topic %s", self.topic)
                    except TopicAlreadyExistsError:
                        pass  # another instance was quicker
            finally:
                admin.close()
            self._producer = KafkaProducer(
                **self._client("checkpoint-writer"),
                acks="all",
                max_block_ms=self.kafka.request_timeout_ms,
            )
        except KafkaError as exc:
            raise self._unreachable(exc) from exc
        return self._producer

    def _send(self, key: str, value: bytes | None) -> Any:
        from kafka.errors import KafkaError

        producer = self._connect()
        try:
            return producer.send(self.topic, key=key.encode(), value=value)
        except KafkaError as exc:
            raise self._unreachable(exc) from exc

    def _deliver(self, futures: list[Any]) -> None:
        """Return once every record sent is acknowledged by all in-sync replicas."""
        from kafka.errors import KafkaError

        try:
            self._producer.flush(timeout=self.kafka.request_timeout_ms / 1000)
            for future in futures:
                future.get(timeout=0)
        except KafkaError as exc:
            raise DriftgateError(
                f"cannot write to the checkpoint topic {self.topic}: {exc}", retriable=True
            ) from exc

    def _read(self, name: str) -> dict[str, bytes]:
        """The latest value of each key of ``name`` (its manifest and chunks), read from
        the beginning of the topic to its end; tombstoned keys are left out."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        self._connect()
        timeout_ms = self.kafka.request_timeout_ms
        mine = re.compile(re.escape(name) + r"(/[0-9a-f]{32}/[0-9]+)?")
        live: dict[str, bytes] = {}
        try:
            consumer = KafkaConsumer(
                **self._client("checkpoint-reader"),
                group_id=None,
                enable_auto_commit=False,
                fetch_max_bytes=self.kafka.fetch_max_bytes,
                max_partition_fetch_bytes=self.kafka.max_partition_fetch_bytes,
            )
            try:
                partitions = [
                    TopicPartition(self.topic, p) for p in consumer.partitions_for_topic(self.topic)
                ]
                consumer.assign(partitions)
                consumer.seek_to_beginning(*partitions)

                def at_end(tp: Any) -> bool:
                    # The high watermark of a fetch response: ListOffsets answers short
                    # of the last batch on some brokers (Tansu), see README Known limits.
                    end = consumer.highwater(tp)
                    position = consumer.position(tp, timeout_ms=timeout_ms)
                    return end is not None and position is not None and position >= end

                quiet_since = time.monotonic()
                while not all(at_end(tp) for tp in partitions):
                    polled = consumer.poll(timeout_ms=200)
                    if polled:
                        quiet_since = time.monotonic()
                    elif time.monotonic() - quiet_since > timeout_ms / 1000:
                        raise DriftgateError(
                            f"cannot read the checkpoint topic {self.topic} to its end: "
                            f"no records from {self.kafka.bootstrap_servers} in "
                            f"{timeout_ms / 1000:.0f}s",
                            retriable=True,
                        )
                    for messages in polled.values():
                        for message in messages:
                            key = (message.key or b"").decode(errors="replace")
                            if not mine.fullmatch(key):
                                continue
                            if message.value is None:
                                live.pop(key, None)
                            else:
                                live[key] = message.value
            finally:
                consumer.close()
        except KafkaError as exc:
            raise self._unreachable(exc) from exc
        return live


def _assemble(name: str, manifest: bytes, live: dict[str, bytes]) -> bytes:
    """The checkpoint the manifest names; ValueError says what is wrong with it."""
    try:
        fields = json.loads(manifest)
        generation, chunks = str(fields["generation"]), int(fields["chunks"])
        size, sha256 = int(fields["bytes"]), str(fields["sha256"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"unreadable manifest ({exc!r})") from exc
    missing = [i for i in range(chunks) if f"{name}/{generation}/{i}" not in live]
    if missing:
        raise ValueError(f"{len(missing)} of its {chunks} chunks missing (first: {missing[0]})")
    data = b"".join(live[f"{name}/{generation}/{i}"] for i in range(chunks))
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("a chunk is corrupt (size or checksum mismatch)")
    return data
