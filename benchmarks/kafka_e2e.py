"""Kafka benchmark: `driftgate run` against a bare consumer of the same topics, same broker.

    python benchmarks/kafka_e2e.py [--events 500000] [--paced-events 200000] [--rate 20000]

One run, on the embedded broker (Tansu, in memory) and one stream of one model (20 numeric
and 4 categorical features, cohorts region x 8 and channel x 5, 20% of the predictions
labelled later on the feedback topic, a covariate shift of `amount` at 90% of the
stream), keyed by event id over `--partitions` partitions:

- throughput: the stream is produced as fast as possible, then (a) a bare kafka-python
  consumer that only reads every message of both topics and (b) `driftgate run` (all
  detectors, checkpoints at their default interval, /metrics served) each read all of it
  in their own consumer group; events/s from process start (the group join included) and
  from the first record consumed, the ratio b/a and the peak RSS of driftgate after
  each fifth of the records (`--events 5000000`: from 1M to 5M predictions); (b) runs one
  process (the default, `workers: 1`); then (c) `driftgate run` with `workers: 0`, one
  process per usable core, each a member of the group (the scale-out: ingest splits the
  partitions, one of them judges);
- latency: a second stream on new topics is produced at a fixed offered rate while
  `driftgate run` (default settings) consumes it; for every decision, the time it arrived
  on the decisions topic minus the wall time the last event of its window was produced.

Figures are printed as a table. ``--py-spy OUT`` also samples (b) with py-spy (on PATH)
for 25 s and prints each thread's share of the samples and those of driftgate's stages.
Broker, producer, consumers and driftgate share the machine's cores, as they would on a
small host.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaConsumer, KafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.simulate import Incident, TrafficSpec, generate  # noqa: E402
from streamer.broker import EmbeddedBroker, create_topics, free_port  # noqa: E402
from streamer.cores import usable_cores  # noqa: E402

SPEC = TrafficSpec(n_numeric=20, n_categorical=4, label_fraction=0.2)
# The same consumer settings for both readers, so the ratio compares the work done per
# record and not the fetch sizes (these are driftgate's defaults).
CONSUMER = {
    "max_poll_records": 5_000,
    "fetch_max_bytes": 52_428_800,
    "max_partition_fetch_bytes": 10_485_760,
    "session_timeout_ms": 6_000,  # a fast group join, as in the end-to-end tests
    "heartbeat_interval_ms": 1_000,
}
CONSUMED = re.compile(rb"^driftgate_events_consumed_total\{[^}]*\} ([0-9.e+]+)$", re.M)
DECIDED = re.compile(rb"^driftgate_decisions_total\{[^}]*\} ([0-9.e+]+)$", re.M)


@dataclass
class Stream:
    """The paced stream, serialized up front so that pacing times Kafka, not the generator."""

    records: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    prediction_ts: list[float] = field(default_factory=list)
    # position in ``records`` of every prediction, for pacing and send times
    prediction_at: list[int] = field(default_factory=list)


def serialized(
    events: int, seed: int, shift_at: float
) -> Iterator[tuple[str, bytes | None, bytes]]:
    """(kind, key, value) of each record, with a covariate shift of `amount` at shift_at."""
    incident = Incident(
        name="amount_shift",
        kind="covariate_shift",
        feature="amount",
        cohort=None,
        start_event=int(events * shift_at),
        magnitude=1.0,
    )
    for record in generate(SPEC, events, seed=seed, incidents=[incident]):
        value = record["value"]
        # Keyed by event id, as most producers do: one model spread over every partition,
        # each label in the partition number of its prediction.
        yield record["topic"], value["event_id"].encode(), orjson.dumps(value)


def build_stream(events: int, seed: int, shift_at: float) -> Stream:
    stream = Stream()
    for kind, key, value in serialized(events, seed, shift_at):
        if kind == "predictions":
            stream.prediction_at.append(len(stream.records))
            stream.prediction_ts.append(orjson.loads(value)["ts"])
        stream.records.append((kind, key, value))
    return stream


def producer(bootstrap: str, linger_ms: int = 50) -> KafkaProducer:
    # Large batches and some linger: the producer must not be what the benchmark measures.
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        batch_size=1 << 20,
        max_request_size=1 << 24,
    )


def produce_all(
    bootstrap: str, topics: dict[str, str], records: Iterable[tuple[str, bytes | None, bytes]]
) -> tuple[int, float]:
    """Send every record as it is generated (a 5,000,000-event stream held in memory
    would take tens of GB): (records sent, records/s of generating and sending)."""
    started = time.perf_counter()
    sender = producer(bootstrap)
    sent = 0
    try:
        for kind, key, value in records:
            sender.send(topics[kind], value, key=key)
            sent += 1
        sender.flush()
    finally:
        sender.close()
    return sent, sent / (time.perf_counter() - started)


def produce_paced(
    bootstrap: str, topics: dict[str, str], stream: Stream, rate: float
) -> np.ndarray:
    """Send at ``rate`` predictions/s (feedback in stream order); the wall time of each."""
    sent_at = np.zeros(len(stream.prediction_at))
    # A short linger: the latency counts from send(), so a batch waiting for more records
    # is in it, as it would be for a real producer, but no longer than needed.
    sender = producer(bootstrap, linger_ms=5)
    try:
        started = time.monotonic()
        n = 0
        for kind, key, value in stream.records:
            sender.send(topics[kind], value, key=key)
            if kind == "predictions":
                sent_at[n] = time.time()
                n += 1
                # Sleep in slices of 500 predictions: one wait per record costs more than
                # the record at this rate.
                if n % 500 == 0:
                    ahead = n / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        sender.flush()
    finally:
        sender.close()
    return sent_at


def bare_consume(bootstrap: str, topics: dict[str, str], total: int) -> tuple[float, float]:
    """Read every record of both topics in a new group: (events/s from start, from first)."""
    started = time.perf_counter()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bare-{os.getpid()}-{time.time_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **CONSUMER,
    )
    consumer.subscribe(list(topics.values()))
    seen, first = 0, 0.0
    deadline = time.monotonic() + 600
    try:
        while seen < total and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                if not first:
                    first = time.perf_counter()
                seen += len(batch)
    finally:
        consumer.close()
    if seen < total:
        raise SystemExit(f"the bare consumer read {seen} of {total} records")
    ended = time.perf_counter()
    return total / (ended - started), total / (ended - first)


def driftgate_env(
    bootstrap: str,
    topics: dict[str, str],
    decisions: str,
    state: Path,
    port: int,
    workers: int | None = None,
) -> dict[str, str]:
    """``workers``: None for driftgate's default."""
    return {
        **({"DRIFTGATE_WORKERS": str(workers)} if workers is not None else {}),
        **os.environ,
        "DRIFTGATE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTGATE_KAFKA__GROUP_ID": f"driftgate-{decisions}",
        "DRIFTGATE_KAFKA__SESSION_TIMEOUT_MS": str(CONSUMER["session_timeout_ms"]),
        "DRIFTGATE_KAFKA__HEARTBEAT_INTERVAL_MS": str(CONSUMER["heartbeat_interval_ms"]),
        "DRIFTGATE_KAFKA__TOPICS__PREDICTIONS": topics["predictions"],
        "DRIFTGATE_KAFKA__TOPICS__FEEDBACK": topics["feedback"],
        "DRIFTGATE_KAFKA__TOPICS__DECISIONS": decisions,
        "DRIFTGATE_METRICS__HOST": "127.0.0.1",
        "DRIFTGATE_METRICS__PORT": str(port),
        "DRIFTGATE_CHECKPOINT__DIR": str(state),
        "DRIFTGATE_LOG_LEVEL": "WARNING",
    }


def start_driftgate(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def scrape(port: int) -> tuple[int, int] | None:
    """(records consumed, decisions made) from /metrics; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            body = answer.read()
    except OSError:
        return None
    consumed = sum(int(float(v)) for v in CONSUMED.findall(body))
    decided = sum(int(float(v)) for v in DECIDED.findall(body))
    return consumed, decided


def peak_rss_mib(pid: int) -> float:
    """The largest peak RSS of the process and its children (the workers): the judge's.
    VmHWM is a process's own high-water mark: read it while the process is alive."""
    peaks = []
    for each in [pid, *children(pid)]:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        peaks += [int(line.split()[1]) / 1024 for line in status.splitlines() if "VmHWM:" in line]
    return max(peaks, default=float("nan"))


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # a clean stop: final checkpoint and commit
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@dataclass
class RunFigures:
    from_start: float
    from_first: float
    join_s: float
    peak_mib: float
    decisions: int
    # The peak after each fifth of the records (the last is peak_mib): memory that grows
    # with the stream keeps rising; bounded state levels off (the label join store fills
    # up to feedback.join_max_entries predictions, then stays).
    fifths_peak_mib: list[float]


def _rate(a: tuple[float, int], b: tuple[float, int]) -> float:
    return max(b[1] - a[1], 1) / (b[0] - a[0])


def _ends(samples: list[tuple[float, int]], total: int) -> tuple[float, float]:
    """When the first record and the last were consumed, from (time, consumed) scrapes a
    second apart: extrapolated from the rate between the two scrapes nearest each end,
    since records are read at a steady rate and the count stops at the end."""
    working = [s for s in samples if 0 < s[1] < total]
    if len(working) < 2:
        done = next(t for t, c in samples if c >= total)
        return samples[0][0], done
    first = working[0][0] - working[0][1] / _rate(working[0], working[1])
    last = working[-1][0] + (total - working[-1][1]) / _rate(working[-2], working[-1])
    return first, last


def driftgate_consume(
    bootstrap: str,
    topics: dict[str, str],
    total: int,
    tmp: Path,
    workers: int | None = None,
    profile: Path | None = None,
) -> RunFigures:
    """One `driftgate run` of ``workers`` processes (None: its default, 0: one per core)
    reads the stream;
    memory is the judge's (the process with the most). With ``profile``, py-spy samples
    it from 3 s after its start, for 25 s, into that file (raw, by thread)."""
    port = free_port()
    name = f"bulk{'default' if workers is None else workers}"
    started = time.perf_counter()
    env = driftgate_env(
        bootstrap, topics, f"{name}-decisions", tmp / f"{name}-state", port, workers
    )
    process = start_driftgate(env, tmp / f"{name}.log")
    if profile is not None:
        spy = ["py-spy", "record", "--pid", str(process.pid), "--rate", "50"]
        spy += ["--duration", "25", "--format", "raw", "--threads", "--nonblocking"]
        threading.Timer(
            3.0, subprocess.run, [[*spy, "-o", str(profile)]], {"capture_output": True}
        ).start()
    samples: list[tuple[float, int]] = []
    fifths: list[float] = []
    try:
        deadline = time.monotonic() + 1_800
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"driftgate exited with {process.returncode}: see {tmp}")
            seen = scrape(port)
            if seen:
                consumed, decided = seen
                samples.append((time.perf_counter(), consumed))
                peak = peak_rss_mib(process.pid)
                while len(fifths) < 4 and consumed >= total * (len(fifths) + 1) // 5:
                    fifths.append(peak)
                if consumed >= total:
                    first, ended = _ends(samples, total)
                    first = max(first, started)
                    return RunFigures(
                        total / (ended - started),
                        total / (ended - first),
                        first - started,
                        peak,
                        decided,
                        fifths,
                    )
            # Once a second: a scrape of this state takes driftgate ~20 ms of work (every
            # series of every feature and scope), so ten a second would cost it ~20% of
            # its throughput where Prometheus, every 15 s, costs ~0.1%.
            time.sleep(1.0)
        raise SystemExit("driftgate did not consume the whole stream in 30 minutes")
    finally:
        stop(process)


def profile_shares(path: Path) -> list[tuple[str, float]]:
    """From py-spy's raw output: each thread's share of the samples, then the share of
    the samples in which each of driftgate's main stages is on the stack."""
    stages = {
        "decoding (Engine.ingest)": "ingest (streamer/engine.py",
        "the monitors (ModelMonitor.update)": "update (detectors/monitor/monitor.py",
        "forwarded chunks read back (chunk_codec.decode)": "decode (streamer/chunk_codec.py",
        "kafka-python's poll": "poll (kafka/consumer/group.py",
    }
    threads: dict[str, int] = {}
    found = dict.fromkeys(stages, 0)
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        thread = stack.split(";", 1)[0].split(": ", 1)[-1].strip('"')
        threads[thread] = threads.get(thread, 0) + samples
        for stage, frame in stages.items():
            if frame in stack:
                found[stage] += samples
    shares = [(f"thread {t}", n) for t, n in sorted(threads.items(), key=lambda x: -x[1])]
    return [(name, 100 * n / max(total, 1)) for name, n in [*shares, *found.items()]]


def read_decisions(
    bootstrap: str, topic: str, arrived: list[tuple[float, dict[str, Any]]], done: threading.Event
) -> None:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    consumer.subscribe([topic])
    try:
        while not done.is_set():
            for batch in consumer.poll(timeout_ms=50).values():
                now = time.time()
                arrived.extend((now, orjson.loads(m.value)) for m in batch)
    finally:
        consumer.close()


def wait_joined(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Until driftgate has an assignment: /metrics answers and the consumer lag is known."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"driftgate exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                if b"driftgate_consumer_lag_records{" in r.read():
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("driftgate did not join its group in time")


def paced_latency(
    bootstrap: str, stream: Stream, rate: float, tmp: Path
) -> tuple[list[float], int, float, int]:
    """Latencies (s) of every decision, predictions sent, the rate achieved, and the
    records driftgate had still to read when the producer finished."""
    topics = {"predictions": "paced-predictions", "feedback": "paced-feedback"}
    decisions_topic = "paced-decisions"
    create_topics(bootstrap, list(topics.values()), partitions=2)
    create_topics(bootstrap, [decisions_topic])
    port = free_port()
    env = driftgate_env(bootstrap, topics, decisions_topic, tmp / "paced-state", port)
    arrived: list[tuple[float, dict[str, Any]]] = []
    done = threading.Event()
    reader = threading.Thread(
        target=read_decisions, args=(bootstrap, decisions_topic, arrived, done), daemon=True
    )
    process = start_driftgate(env, tmp / "paced.log")
    try:
        reader.start()
        wait_joined(port, process)
        started = time.monotonic()
        sent_at = produce_paced(bootstrap, topics, stream, rate)
        achieved = len(sent_at) / (time.monotonic() - started)
        total = len(stream.records)
        # How far driftgate is behind when the last event is sent: whether it kept up.
        seen = scrape(port)
        behind = total - seen[0] if seen else total
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            seen = scrape(port)
            if seen and seen[0] >= total:
                break
            time.sleep(0.2)
        time.sleep(2.0)  # the last decisions on their way to the reader
    finally:
        stop(process)
        done.set()
        reader.join(10)
    ts = np.asarray(stream.prediction_ts)
    latencies = []
    for when, decision in arrived:
        # the last prediction of the decision's window: the one that closed it
        last = int(np.searchsorted(ts, decision["window"]["end"], side="right")) - 1
        latencies.append(when - sent_at[max(last, 0)])
    return latencies, len(ts), achieved, behind


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000, help="predictions, throughput")
    parser.add_argument("--paced-events", type=int, default=200_000, help="predictions, latency")
    parser.add_argument("--rate", type=float, default=20_000, help="offered predictions/s")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="OUT",
        help="sample the single `driftgate run` with py-spy (on PATH) into OUT",
    )
    args = parser.parse_args()
    cores = usable_cores()

    broker = EmbeddedBroker()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker.log_path = tmp / "tansu.log"
        broker.start()
        try:
            topics = {"predictions": "bench-predictions", "feedback": "bench-feedback"}
            create_topics(broker.bootstrap_servers, list(topics.values()), args.partitions)
            create_topics(broker.bootstrap_servers, ["bulkdefault-decisions", "bulk0-decisions"])
            records = serialized(args.events, seed=1, shift_at=0.9)
            total, produced = produce_all(broker.bootstrap_servers, topics, records)
            print(f"{total:,} records generated and produced at {produced:,.0f}/s", flush=True)
            bare, bare_first = bare_consume(broker.bootstrap_servers, topics, total)
            print(f"bare consumer: {bare:,.0f} records/s", flush=True)
            run = driftgate_consume(
                broker.bootstrap_servers, topics, total, tmp, profile=args.py_spy
            )
            print(f"driftgate run: {run.from_start:,.0f} records/s", flush=True)
            pair = driftgate_consume(broker.bootstrap_servers, topics, total, tmp, workers=0)
            print(f"driftgate run, {cores} workers: {pair.from_start:,.0f} records/s", flush=True)
            paced = build_stream(args.paced_events, seed=2, shift_at=0.9)
            latencies, paced_n, achieved, behind = paced_latency(
                broker.bootstrap_servers, paced, args.rate, tmp
            )
        finally:
            broker.stop()

    rows = [
        ("records (predictions + labels)", f"{total:,}", f"{args.events:,} predictions"),
        ("(a) bare kafka-python consumer", f"{bare:,.0f} records/s", "from start, join incl."),
        ("(a) from its first record", f"{bare_first:,.0f} records/s", ""),
        ("(b) driftgate run, 1 worker", f"{run.from_start:,.0f} records/s", "from process start"),
        (
            "(b) from its first record",
            f"{run.from_first:,.0f} records/s",
            f"start + group join {run.join_s:.1f}s",
        ),
        (
            f"(c) driftgate run, {cores} workers (workers: 0)",
            f"{pair.from_first:,.0f} records/s",
            f"from the first record; {pair.from_start:,.0f}/s from start",
        ),
        ("ratio c/b, first record on", f"{pair.from_first / run.from_first:.2f}", "scale-out"),
        ("ratio b/a", f"{run.from_start / bare:.2f}", "from start"),
        ("ratio b/a, first record on", f"{run.from_first / bare_first:.2f}", ""),
        ("driftgate peak RSS", f"{run.peak_mib:.0f} MiB", f"{run.decisions} decisions"),
        (
            "driftgate peak RSS after each fifth",
            " / ".join(f"{mib:.0f}" for mib in [*run.fifths_peak_mib, run.peak_mib]) + " MiB",
            f"every {total // 5:,} records",
        ),
        (
            "paced load offered / achieved",
            f"{args.rate:,.0f} / {achieved:,.0f}",
            f"predictions/s, {paced_n:,} predictions",
        ),
        ("records unread when the last was sent", f"{behind:,}", "driftgate's backlog"),
    ]
    if latencies:
        p50, p99 = np.percentile(latencies, [50, 99])
        rows.append(
            (
                "event produced -> decision on topic",
                f"p50 {p50:.2f}s p99 {p99:.2f}s",
                f"{len(latencies)} decisions, max {max(latencies):.2f}s",
            )
        )
    else:
        rows.append(("event produced -> decision on topic", "no decision", ""))
    width = max(len(r[0]) for r in rows)
    for name, figure, note in rows:
        print(f"{name:<{width}}  {figure:>24}  {note}")
    if args.py_spy is not None and args.py_spy.exists():
        print(f"\nshares of the py-spy samples of (b), {args.py_spy}:")
        for name, share in profile_shares(args.py_spy):
            print(f"  {share:5.1f}%  {name}")


if __name__ == "__main__":
    main()
