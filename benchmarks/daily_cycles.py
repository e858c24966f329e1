"""Daily cycles at a given rate, replayed with the default config: what is decided.

    python benchmarks/daily_cycles.py --rate 5 --days 7
    python benchmarks/daily_cycles.py --rate 50 --days 1
    python benchmarks/daily_cycles.py --rate 2 --days 2 --shift-at-h 36
    python benchmarks/daily_cycles.py --rate 5 --days 28 --weekend-shift 0.3 --weekend-volume 0.7

Simulates ``--days`` of traffic at ``--rate`` predictions/s whose behavioural inputs
follow the hour of day (``TrafficSpec.daily_cycle``) and, with ``--weekend-shift``, move
by that many standard deviations on Saturdays and Sundays, when the traffic runs at
``--weekend-volume`` times the weekday rate; optionally with a shift of the amount
(``--shift`` standard deviations) from ``--shift-at-h`` hours on (until
``--shift-end-h``). Replays it with ``driftgate replay`` in a child process, and prints
every decision with its hour, its day (UTC) and the replay's peak RSS. The stream starts
on a Friday at 08:00 UTC unless ``--start-ts`` says otherwise.

With ``--kafka PARTITIONS`` it also produces the stream to an embedded broker, keyed by
event id over that many partitions, has ``--members`` ``driftgate run`` processes read it
as one consumer group until they are idle, and prints whether their decisions are the
replay's (each counted once by its id).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.through_kafka import replay, through_kafka  # noqa: E402
from evaluation.simulate import Incident, TrafficSpec, generate, write_replay  # noqa: E402
from evaluation.simulate.calendar import expected_events  # noqa: E402


def amount_shift(start_event: int, magnitude: float, end_event: int | None = None) -> Incident:
    """The amount shifted by ``magnitude`` standard deviations from ``start_event`` on
    (until ``end_event``)."""
    return Incident(
        name="amount_shift",
        kind="covariate_shift",
        feature="amount",
        cohort=None,
        start_event=start_event,
        magnitude=magnitude,
        end_event=end_event,
    )


def show(decision: dict, start_ts: float) -> str:
    """A decision's hours since ``start_ts``, day (UTC), action, cause, scope and phase."""
    hours = (decision["ts"] - start_ts) / 3_600
    scope = decision["scope"]
    day = time.strftime("%a", time.gmtime(decision["ts"]))
    return (
        f"{hours:6.1f} h {day}  {decision['action']:<12} {decision['cause']:<18} "
        f"{scope['feature']} {scope['cohort'] or ''} {decision.get('phase', '')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, required=True, help="predictions per second")
    parser.add_argument("--days", type=float, required=True)
    parser.add_argument("--cycle", type=float, default=0.5, help="TrafficSpec.daily_cycle")
    parser.add_argument("--shift-at-h", type=float, default=None)
    parser.add_argument("--shift", type=float, default=0.5)
    parser.add_argument("--shift-end-h", type=float, default=None)
    parser.add_argument("--weekend-shift", type=float, default=0.0)
    parser.add_argument("--weekend-volume", type=float, default=1.0)
    parser.add_argument(
        "--start-ts", type=float, default=TrafficSpec.start_ts, help="epoch seconds (UTC)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kafka", type=int, default=0, metavar="PARTITIONS")
    parser.add_argument("--members", type=int, default=2)
    args = parser.parse_args()
    spec = TrafficSpec(
        start_ts=args.start_ts,
        events_per_second=args.rate,
        daily_cycle=args.cycle,
        weekend_shift=args.weekend_shift,
        weekend_volume=args.weekend_volume,
    )

    def events_in(hours: float) -> int:
        return expected_events(spec.start_ts, hours * 3_600, args.rate, args.weekend_volume)

    n = events_in(args.days * 24)
    incidents = []
    if args.shift_at_h is not None:
        end = None if args.shift_end_h is None else events_in(args.shift_end_h)
        incidents.append(amount_shift(events_in(args.shift_at_h), args.shift, end))
    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp) / "stream.jsonl"
        write_replay(stream, generate(spec, n, seed=args.seed, incidents=incidents))
        lines = replay(stream, Path(tmp) / "decisions.jsonl")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if args.kafka:
            with stream.open("rb") as records:
                differing = through_kafka(
                    map(orjson.loads, records), lines, args.kafka, args.members, Path(tmp)
                )
            for decision in differing or []:
                print("  through Kafka:", show(decision, spec.start_ts))
    print(
        f"{n:,} predictions, {args.days:g} days at {args.rate:g}/s, cycle {args.cycle:g}, "
        f"weekends {args.weekend_shift:+g} sd at {args.weekend_volume:g}x, "
        f"seed {args.seed}: {len(lines)} decisions; replay peak RSS {peak_mb:,.0f} MB"
    )
    for line in lines:
        print(" ", show(orjson.loads(line), spec.start_ts))


if __name__ == "__main__":
    main()
