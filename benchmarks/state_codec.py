"""Checkpoint size and speed: the typed-record state format, one run.

    python benchmarks/state_codec.py [--events 200000] [--scenario concept] [--repeats 3]

Feeds an engine (default settings, the judge's) the scenario's predictions and labels
in batches of 1,000, then times, best of --repeats, the engine's state written and read
as a checkpoint payload (``streamer.state.payload``: records packed with msgpack, the
objects rebuilt and validated), against the baseline of the same process copying the
payload's bytes (what any format must at least do). The absolute times move with the
machine; the ratios less. (The comparison with pickle, the format this one replaced, is
in the history: ``git show 9499583:benchmarks/state_codec.py``; pickle is not imported
outside the tests any more.)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from evaluation.simulate import SCENARIOS, generate  # noqa: E402
from streamer.cli import tune_gc  # noqa: E402
from streamer.config import load_settings  # noqa: E402
from streamer.engine import Engine, InputRecord  # noqa: E402
from streamer.state.payload import dumps, loads  # noqa: E402


def best(repeats: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="predictions")
    parser.add_argument("--scenario", default="concept", choices=sorted(SCENARIOS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tune_gc()
    settings = load_settings()
    engine = Engine(settings.monitor, settings.limits, settings.feedback)
    spec, incidents = SCENARIOS[args.scenario](args.events)
    batch: list[InputRecord] = []
    for offset, record in enumerate(generate(spec, args.events, 1, incidents)):
        topic = record["topic"]
        batch.append(InputRecord(topic, orjson.dumps(record["value"]), topic, 0, offset))
        if len(batch) == 1_000:
            engine.process(batch)
            batch = []
    engine.process(batch)
    (monitor,) = engine.monitors.values()
    print(
        f"{args.scenario}, {args.events:,} predictions: {monitor.events:,} judged, "
        f"join store {engine.join.size:,} predictions, {engine.order.buffered:,} buffered"
    )

    records = dumps(engine)
    copy_ms = best(args.repeats, lambda: bytearray(records)) * 1e3
    rows = [
        ("encode (ms)", best(args.repeats, lambda: dumps(engine)) * 1e3),
        ("decode (ms)", best(args.repeats, lambda: loads(records)) * 1e3),
    ]
    print(f"payload: {len(records):,} bytes; copying them takes {copy_ms:.1f} ms")
    print("| measured | state format (msgpack records) | MB/s |")
    print("|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:,.0f} | {len(records) / 1e3 / ms:,.0f} |")


if __name__ == "__main__":
    main()
