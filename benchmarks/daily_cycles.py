"""Daily cycles at a given rate, replayed with the default config: what is decided.

    python benchmarks/daily_cycles.py --rate 5 --days 7
    python benchmarks/daily_cycles.py --rate 50 --days 1
    python benchmarks/daily_cycles.py --rate 2 --days 2 --shift-at-h 36
    python benchmarks/daily_cycles.py --rate 5 --days 28 --weekend-shift 0.3 --weekend-volume 0.7

Simulates ``--days`` of traffic at ``--rate`` predictions/s whose behavioural inputs
follow the hour of day (``TrafficSpec.daily_cycle``) and, with ``--weekend-shift``, move
by that many standard deviations on Saturdays and Sundays, when the traffic runs at
``--weekend-volume`` times the weekday rate; optionally with a shift of the amount
(``--shift`` standard deviations) from ``--shift-at-h`` hours on. Replays it with
``driftgate replay`` in a child process, and prints every decision with its hour, its
day (UTC) and the replay's peak RSS. The stream starts on a Friday at 08:00 UTC unless
``--start-ts`` says otherwise.

With ``--kafka PARTITIONS`` it also produces the stream to an embedded broker, keyed by
event id over that many partitions, has ``--members`` ``driftgate run`` processes read it
as one consumer group until they are idle, and prints whether their decisions are the
replay's (each counted once by its id).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.simulate import Incident, TrafficSpec, generate, write_replay  # noqa: E402
from evaluation.simulate.calendar import expected_events  # noqa: E402


def amount_shift(start_event: int, magnitude: float) -> Incident:
    """The amount shifted by ``magnitude`` standard deviations from ``start_event`` on."""
    return Incident(
        name="amount_shift",
        kind="covariate_shift",
        feature="amount",
        cohort=None,
        start_event=start_event,
        magnitude=magnitude,
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


def through_kafka(
    records: Iterable[dict],
    replayed: list[bytes],
    partitions: int,
    members: int,
    work: Path,
    start_ts: float,
) -> None:
    """Produce the records keyed by event id, read them with ``members`` ``driftgate run``
    processes and compare what they decide with the replay's decisions."""
    from streamer.broker import EmbeddedBroker
    from tests.support import (
        final_state,
        produce_log,
        read_decisions,
        run_env,
        start_run,
        verdicts,
    )

    started = time.perf_counter()
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        topics = {name: f"cycles-{name}" for name in ("predictions", "feedback")}
        produce_log(broker.bootstrap_servers, topics, records, partitions, keyed=True)
        env = run_env(broker.bootstrap_servers, topics, "cycles", work / "state")
        logs = [work / f"member-{k}.log" for k in range(members)]
        runs = [start_run(env, log, "--exit-when-idle", "10") for log in logs]
        codes = [run.wait() for run in runs]
        decided = read_decisions(broker.bootstrap_servers, "cycles-decisions", "cycles-group")
    late = final_state(work / "state", "cycles-group", topics["predictions"]).order.late
    unique = list({d["decision_id"]: d for d in decided}.values())
    expected = [orjson.loads(line) for line in replayed]
    same = verdicts(unique) == verdicts(expected) and len(unique) == len(expected)
    print(
        f"through Kafka ({partitions} partitions keyed by event id, {members} members, exit "
        f"codes {codes}, {time.perf_counter() - started:.0f} s, {late:,} events late): "
        f"{len(unique)} decisions, "
        + ("the same as the replay's" if same else "NOT the same as the replay's")
    )
    for decision in [] if same else unique:
        print("  through Kafka:", show(decision, start_ts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, required=True, help="predictions per second")
    parser.add_argument("--days", type=float, required=True)
    parser.add_argument("--cycle", type=float, default=0.5, help="TrafficSpec.daily_cycle")
    parser.add_argument("--shift-at-h", type=float, default=None)
    parser.add_argument("--shift", type=float, default=0.5)
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
        incidents.append(amount_shift(events_in(args.shift_at_h), args.shift))
    with tempfile.TemporaryDirectory() as tmp:
        stream, decisions = Path(tmp) / "stream.jsonl", Path(tmp) / "decisions.jsonl"
        write_replay(stream, generate(spec, n, seed=args.seed, incidents=incidents))
        command = [sys.executable, "-m", "streamer.cli", "replay", str(stream)]
        subprocess.run(
            [*command, "--decisions", str(decisions)],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lines = decisions.read_bytes().splitlines()
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if args.kafka:
            with stream.open("rb") as replay:
                records = map(orjson.loads, replay)
                through_kafka(records, lines, args.kafka, args.members, Path(tmp), spec.start_ts)
    print(
        f"{n:,} predictions, {args.days:g} days at {args.rate:g}/s, cycle {args.cycle:g}, "
        f"weekends {args.weekend_shift:+g} sd at {args.weekend_volume:g}x, "
        f"seed {args.seed}: {len(lines)} decisions; replay peak RSS {peak_mb:,.0f} MB"
    )
    for line in lines:
        print(" ", show(orjson.loads(line), spec.start_ts))


if __name__ == "__main__":
    main()
