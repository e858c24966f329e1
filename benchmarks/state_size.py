"""How large one model's state grows: the checkpoint's bytes as a stream goes on.

    python benchmarks/state_size.py --rate 5 --days 7
    python benchmarks/state_size.py --rate 50 --days 1 --every-h 4

Feeds an engine with default settings (the judge's, in process) a daily-cycle stream
(``TrafficSpec.daily_cycle``, 20% of predictions labelled) at ``--rate`` predictions/s
of event time, and every ``--every-h`` hours of event time prints the bytes of the
model's monitor (reference, first-day sample, windows, detectors, conditions, incidents)
and of the label join store, as the checkpoint writes them (``streamer.state.payload``).
The monitor is bounded by the settings, not by the stream's length; the join store by
``feedback.join_max_entries``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from evaluation.simulate import TrafficSpec, generate  # noqa: E402
from streamer.cli import tune_gc  # noqa: E402
from streamer.config import load_settings  # noqa: E402
from streamer.engine import Engine, InputRecord  # noqa: E402
from streamer.state.payload import dumps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, required=True, help="predictions per second")
    parser.add_argument("--days", type=float, required=True)
    parser.add_argument("--every-h", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tune_gc()
    settings = load_settings()
    engine = Engine(settings.monitor, settings.limits, settings.feedback)
    spec = TrafficSpec(events_per_second=args.rate, daily_cycle=0.5)
    n = int(args.rate * args.days * 86_400)
    every = max(1, int(args.rate * args.every_h * 3_600))
    print(f"{n:,} predictions at {args.rate:g}/s over {args.days:g} days, default settings")
    print("| hours | predictions | monitor (bytes) | join store (bytes) | join entries |")
    print("|---|---|---|---|---|")
    batch: list[InputRecord] = []
    predictions = 0
    for offset, record in enumerate(generate(spec, n, seed=args.seed)):
        topic = record["topic"]
        batch.append(InputRecord(topic, orjson.dumps(record["value"]), topic, 0, offset))
        predictions += topic == "predictions"
        if len(batch) == 1_000:
            engine.process(batch)
            batch = []
        if topic == "predictions" and predictions % every == 0:
            engine.process(batch)
            batch = []
            (monitor,) = engine.monitors.values()
            print(
                f"| {predictions / args.rate / 3_600:,.0f} | {predictions:,} | "
                f"{len(dumps(monitor)):,} | {len(dumps(engine.join)):,} | {engine.join.size:,} |"
            )


if __name__ == "__main__":
    main()
