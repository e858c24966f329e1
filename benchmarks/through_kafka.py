"""A replay file through Kafka: does `driftgate run` decide what `driftgate replay` does?

    python benchmarks/through_kafka.py FILE [--partitions 6] [--members 2] [--unkeyed]
    python benchmarks/through_kafka.py --real elec2 --partitions 6 --members 2 --unkeyed

Replays FILE (a replay file, or with ``--real`` one of the real streams of data/real/ as
tests/scenario/test_real_streams.py turns it into predictions) with ``driftgate replay``,
then produces it to an embedded broker over ``--partitions`` partitions per topic, keyed
by event id or (``--unkeyed``) not at all, has ``--members`` ``driftgate run`` processes
read it as one consumer group, default config, until they are idle, and prints whether
their decisions are the replay's: the same verdicts (action, cause, scope) and the same
decision ids, each counted once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.engine import timed_replay  # noqa: E402
from tests.support import REAL_STREAMS, write_real_stream  # noqa: E402


def replay(stream: Path, decisions: Path) -> list[bytes]:
    """The decisions of ``driftgate replay``, one JSON line each."""
    timed_replay(stream, decisions)
    return decisions.read_bytes().splitlines()


def through_kafka(
    records: Iterable[dict],
    replayed: list[bytes],
    partitions: int,
    members: int,
    work: Path,
    keyed: bool = True,
) -> list[dict] | None:
    """Produce the records, read them with ``members`` ``driftgate run`` processes and
    compare what they decide with the replay's decisions: prints the outcome and returns
    None when they agree, else the decisions made through Kafka."""
    from streamer.broker import EmbeddedBroker
    from tests.support import final_state, produce_log, read_decisions, run_env, start_run, verdicts

    started = time.perf_counter()
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        topics = {name: f"through-{name}" for name in ("predictions", "feedback")}
        produce_log(broker.bootstrap_servers, topics, records, partitions, keyed=keyed)
        env = run_env(broker.bootstrap_servers, topics, "through", work / "state")
        logs = [work / f"member-{k}.log" for k in range(members)]
        runs = [start_run(env, log, "--exit-when-idle", "10") for log in logs]
        codes = [run.wait() for run in runs]
        decided = read_decisions(broker.bootstrap_servers, "through-decisions", "through-group")
    engine = final_state(work / "state", "through-group", topics["predictions"])
    unique = list({d["decision_id"]: d for d in decided}.values())
    expected = [orjson.loads(line) for line in replayed]
    same = verdicts(unique) == verdicts(expected)
    same_ids = sorted(d["decision_id"] for d in unique) == sorted(
        d["decision_id"] for d in expected
    )
    dead = sum(engine.counters.rejected.values())
    print(
        f"through Kafka ({partitions} partitions {'keyed by event id' if keyed else 'unkeyed'}, "
        f"{members} members, exit codes {codes}, {time.perf_counter() - started:.0f} s, "
        f"{engine.order.late:,} events late, {dead:,} dead-lettered): {len(unique)} decisions "
        f"({len(expected)} replayed); verdicts {'the same' if same else 'NOT the same'}, "
        f"decision ids {'the same' if same_ids else 'NOT the same'}"
    )
    return None if same and same_ids else unique


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, help="a replay file")
    parser.add_argument("--real", choices=sorted(REAL_STREAMS), help="a stream of data/real/")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--unkeyed", action="store_true")
    args = parser.parse_args()
    if (args.file is None) == (args.real is None):
        parser.error("give a replay file or --real NAME, not both")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stream = args.file
        if args.real:
            stream = work / f"{args.real}.jsonl"
            write_real_stream(args.real, stream)
        replayed = replay(stream, work / "decisions.jsonl")
        for line in replayed:
            d = orjson.loads(line)
            print(f"  replay: {d['action']:<12} {d['cause']:<18} {d['scope']}")
        with stream.open("rb") as lines:
            differing = through_kafka(
                map(orjson.loads, lines),
                replayed,
                args.partitions,
                args.members,
                work,
                keyed=not args.unkeyed,
            )
    for d in differing or []:
        print(f"  through Kafka: {d['action']:<12} {d['cause']:<18} {d['scope']}")


if __name__ == "__main__":
    main()
