"""``driftgate run`` on every core: worker processes behind one metrics port.

One Python process decodes and judges on one core at a time (the interpreter lock), so
``workers: N`` processes (``0``: the cores this process may use, ``streamer.cores``; the
default is 1, see docs/operations.md "Scaling out") each run the whole service as a member
of the consumer group: they split the input partitions between them, and one of them
judges, exactly as instances in separate containers do. The parent runs no engine; it
starts the workers (``driftgate run`` again, with ``--worker-link``, which makes it run the
service itself, and its metrics on a free port of 127.0.0.1), serves the metrics port for
all of them (``streamer.worker_http``) and ties their lives to its own:

- SIGTERM or SIGINT to the parent: every worker gets SIGTERM and finishes its batch,
  commits and checkpoints; the parent exits 0 once they all did.
- A worker that exits on its own (it crashed, or its broker is gone): the others are
  stopped the same way and the parent exits with that worker's status, so that the
  orchestrator restarts the container; the group rebalances to the new members.
- The parent killed (SIGKILL): each worker reads the end of a socket it shares with the
  parent and stops as on SIGTERM, instead of living on unsupervised.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from streamer.backfill import EXIT_TIMEOUT_S
from streamer.config import Settings
from streamer.http import MetricsServer
from streamer.worker_http import WorkersCollector, judging_worker_pages, workers_readiness

log = logging.getLogger(__name__)

POLL_S = 0.2


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes]
    link: socket.socket
    # Set once the worker announced its metrics port.
    port: int | None = None


class Workers:
    """``count`` processes of ``driftgate run <args>`` with ``env``, each announcing its
    metrics port on its end of a socket (``--worker-link FD``)."""

    def __init__(self, count: int, args: Sequence[str], env: Mapping[str, str]) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.count = count
        self.args = list(args)
        self.env = dict(env)
        self._workers: list[Worker] = []

    def start(self) -> Workers:
        for index in range(self.count):
            ours, theirs = socket.socketpair()
            with theirs:
                process = subprocess.Popen(
                    [
                        *(sys.executable, "-m", "streamer.cli", "run", *self.args),
                        *("--worker-link", str(theirs.fileno()), "--worker-index", str(index)),
                    ],
                    env=self.env,
                    pass_fds=(theirs.fileno(),),
                )
            worker = Worker(index, process, ours)
            threading.Thread(
                target=_read_port, args=(worker,), name=f"worker-{index}-link", daemon=True
            ).start()
            self._workers.append(worker)
        return self

    def ports(self) -> list[tuple[int, int]]:
        return [(w.index, w.port) for w in self._workers if w.port is not None]

    def alive(self) -> bool:
        return all(w.process.poll() is None for w in self._workers)

    def exited(self) -> list[tuple[int, int]]:
        """(index, status) of the workers that have exited."""
        return [
            (w.index, status) for w in self._workers if (status := w.process.poll()) is not None
        ]

    def stop(self) -> list[int]:
        """SIGTERM to those still running, then wait for all; their exit statuses."""
        for worker in self._workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        statuses = [worker.process.wait() for worker in self._workers]
        for worker in self._workers:
            worker.link.close()
        return statuses


def _read_port(worker: Worker) -> None:
    line = b""
    while not line.endswith(b"\n"):
        try:
            chunk = worker.link.recv(64)
        except OSError:
            return
        if not chunk:
            return
        line += chunk
    worker.port = int(line)


def worker_link(fd: int, stop: threading.Event) -> Callable[[int], None]:
    """In a worker: stop when the parent is gone; returns how to announce the port."""
    link = socket.socket(fileno=fd)

    def watch() -> None:
        try:
            while link.recv(64):
                pass
        except OSError:
            pass
        if not stop.is_set():
            log.warning("the workers' parent is gone: stopping")
            stop.set()

    threading.Thread(target=watch, name="parent-link", daemon=True).start()
    return lambda port: link.sendall(f"{port}\n".encode())


def run_workers(
    settings: Settings,
    config: Path | None,
    stop: threading.Event,
    count: int,
    *,
    exit_when_idle_s: float | None = None,
    exit_timeout_s: float = EXIT_TIMEOUT_S,
) -> int:
    """Run ``count`` workers until ``stop`` or until one exits; the exit status.

    With ``exit_when_idle_s`` (``driftgate run --exit-when-idle``), each worker returns
    once the group is done, and the parent once they all returned.
    """
    env = {**os.environ, "DRIFTGATE_METRICS__HOST": "127.0.0.1", "DRIFTGATE_METRICS__PORT": "0"}
    args = [*(["--config", str(config)] if config else []), "--exit-timeout", str(exit_timeout_s)]
    if exit_when_idle_s is not None:
        args += ["--exit-when-idle", str(exit_when_idle_s)]
    workers = Workers(count, args, env)
    until_done = exit_when_idle_s is not None
    registry = CollectorRegistry()
    registry.register(WorkersCollector(workers.ports))
    server = MetricsServer(
        registry,
        lambda: workers_readiness(workers.ports, count),
        settings.metrics.host,
        settings.metrics.port,
        pages=judging_worker_pages(workers.ports),
        alive=workers.alive,
    ).start()
    log.info(
        "%d workers; metrics on http://%s:%d/metrics", count, settings.metrics.host, server.port
    )
    failed: list[tuple[int, int]] = []
    try:
        # Started once the port is ours: a port in use fails before any worker runs.
        workers.start()
        while not stop.wait(POLL_S):
            ended = workers.exited()
            failed = [(index, status) for index, status in ended if status != 0 or not until_done]
            if failed or len(ended) == count:
                break
    finally:
        statuses = workers.stop()
        server.stop()
    if stop.is_set():
        # SIGINT from a terminal reaches the workers too: those that stopped first exited 0.
        failed = [(index, status) for index, status in failed if status != 0]
    for index, status in failed:
        log.error("worker %d exited with status %d: stopped the others", index, status)
    if failed:
        return _exit_status(failed[0][1]) or 1
    return next((_exit_status(status) for status in statuses if status != 0), 0)


def _exit_status(returncode: int) -> int:
    """A worker's return code as a shell reports it: 128 + N for a kill by signal N."""
    return 128 - returncode if returncode < 0 else returncode
