"""The ``driftgate`` command line."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from streamer.backfill import EXIT_TIMEOUT_S
from streamer.config import Settings, load_settings
from streamer.cores import usable_cores
from streamer.errors import DriftgateError


def log_format(where: str = "") -> str:
    return f"%(asctime)s %(levelname)s {where}%(name)s: %(message)s"


def _settings(path: str | None) -> Settings:
    return load_settings(Path(path) if path else None)


def _cmd_run(args: argparse.Namespace) -> int:
    from streamer import app

    settings = _settings(args.config)
    logging.getLogger().setLevel(settings.log_level)
    stop = threading.Event()
    app.stop_on_signals(stop)
    workers = settings.workers or usable_cores()
    if args.worker_link is None and workers > 1:
        from streamer.workers import run_workers

        return run_workers(
            settings,
            Path(args.config) if args.config else None,
            stop,
            workers,
            exit_when_idle_s=args.exit_when_idle,
            exit_timeout_s=args.exit_timeout,
        )
    announce = None
    if args.worker_link is not None:
        from streamer.workers import worker_link

        announce = worker_link(args.worker_link, stop)
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter(log_format(f"worker {args.worker_index} ")))
    app.run(
        settings,
        stop,
        exit_when_idle_s=args.exit_when_idle,
        exit_timeout_s=args.exit_timeout,
        on_metrics_port=announce,
    )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from streamer import app

    settings = _settings(args.config)
    engine = app.replay(
        settings,
        Path(args.file),
        Path(args.decisions) if args.decisions else None,
        Path(args.dead_letters) if args.dead_letters else None,
        Path(args.checkpoint_dir) if args.checkpoint_dir else None,
    )
    counters = engine.counters
    rejected = sum(counters.rejected.values())
    decided = sum(counters.decisions.values())
    consumed = sum(counters.consumed.values())
    print(
        f"replayed {consumed} records: {consumed - rejected} processed, {rejected} rejected, "
        f"{decided} decisions",
        file=sys.stderr,
    )
    for (topic, reason), n in sorted(counters.rejected.items()):
        print(f"  rejected {n} {topic} records: {reason}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from streamer import demo

    return demo.main(duration_s=args.duration, rate=args.rate, metrics_port=args.metrics_port)


def _cmd_produce(args: argparse.Namespace) -> int:
    from streamer import app
    from streamer.produce import produce

    kafka = _settings(args.config).kafka
    if args.bootstrap_servers:
        # The flag wins over the config file and DRIFTGATE_* variables alike.
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap_servers})
    stop = threading.Event()
    app.stop_on_signals(stop)
    produced = produce(Path(args.file), kafka, rate=args.rate, stop=stop)
    sent = ", ".join(f"{n} to {topic}" for topic, n in produced.sent.items()) or "nothing"
    print(f"produced {sent} on {kafka.bootstrap_servers}", file=sys.stderr)
    if produced.skipped:
        print(
            f"  skipped {len(produced.skipped)} lines that are not replay records "
            f"(the first: line {produced.skipped[0]})",
            file=sys.stderr,
        )
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.file))
    print(f"{args.file}: valid")
    print(f"  kafka: {settings.kafka.bootstrap_servers} group {settings.kafka.group_id}")
    print(f"  metrics port: {settings.metrics.port}")
    return 0


def _cmd_schemas(args: argparse.Namespace) -> int:
    from streamer.schemas import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


def _cmd_config_docs(args: argparse.Namespace) -> int:
    from streamer.config_docs import write_config_docs

    print(write_config_docs(Path(args.out)))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from evaluation import simulate

    if args.list or not args.scenario:
        for name in simulate.SCENARIOS:
            print(name)
        return 0
    if args.scenario not in simulate.SCENARIOS:
        known = ", ".join(simulate.SCENARIOS)
        raise DriftgateError(f"unknown scenario {args.scenario!r}; known: {known}")
    if not args.out:
        raise DriftgateError("simulate needs --out STREAM.jsonl")
    events = simulate.natural_events(args.scenario, 200_000) if args.events is None else args.events
    spec, incidents = simulate.SCENARIOS[args.scenario](events)
    # The truth gives incidents their event times as written, read off the records in
    # passing rather than by generating the stream a second time.
    event_ts: list[float] = []

    def noting_times(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            if record["topic"] == "predictions":
                event_ts.append(record["value"]["ts"])
            yield record

    records = simulate.generate(spec, events, args.seed, incidents)
    n = simulate.write_replay(Path(args.out), noting_times(records))
    if args.truth:
        simulate.write_truth(
            Path(args.truth),
            spec,
            incidents,
            events,
            scenario=args.scenario,
            seed=args.seed,
            event_ts=event_ts,
        )
    print(f"wrote {n} records to {args.out}", file=sys.stderr)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from evaluation import scorecard

    if len(args.truth) != len(args.decisions):
        raise DriftgateError("score needs one --decisions file per --truth file, in order")
    pairs = list(zip(map(Path, args.truth), map(Path, args.decisions), strict=True))
    scores = scorecard.score_files(pairs, args.events)
    if args.json:
        sys.stdout.buffer.write(scorecard.report_json(scores))
    else:
        print(scorecard.report(scores))
    return 0


def _cmd_reference_build(args: argparse.Namespace) -> int:
    from streamer.reference import build_reference, write_reference

    settings = _settings(args.config)
    references = build_reference(Path(args.file), settings, args.max_events)
    write_reference(Path(args.out), references)
    limit = args.max_events or settings.monitor.reference_max_events
    for model, batch in references.items():
        start, end = float(batch.ts.min()), float(batch.ts.max())
        print(
            f"{model}: {len(batch)} events, {_utc(start)} to {_utc(end)} "
            f"({_duration(end - start)} of event time)"
            + (f", capped at {limit}" if len(batch) == limit else "")
        )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _cmd_state_inspect(args: argparse.Namespace) -> int:
    from streamer.checkpoint_format import decode
    from streamer.state.summary import summary

    if (args.file is None) == (args.topic is None):
        raise DriftgateError("state inspect needs a FILE or --topic TOPIC --name NAME")
    if args.topic is not None:
        from streamer.checkpoint_topic import CheckpointTopic

        if not args.name:
            raise DriftgateError("--topic needs --name (the checkpoint's, e.g. GROUP.TOPIC)")
        store = CheckpointTopic(_settings(args.config).kafka, args.topic)
        try:
            data = store.read(args.name)
        except ValueError as exc:
            raise DriftgateError(f"checkpoint {args.name} in {args.topic}: {exc}") from exc
        finally:
            store.close()
        if data is None:
            raise DriftgateError(f"no checkpoint named {args.name} in topic {args.topic}")
        where = f"{args.topic}/{args.name}"
    else:
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise DriftgateError(f"cannot read {args.file}: {exc.strerror}") from exc
        where = args.file
    try:
        header, engine = decode(data, None)
    except ValueError as exc:
        raise DriftgateError(f"{where}: {exc}") from exc
    print(f"{where}:")
    print(summary(header, engine, len(data)))
    return 0


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3_600:.1f} h" if seconds < 172_800 else f"{seconds / 86_400:.1f} days"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="driftgate",
        description="Drift monitor for ML models on Kafka: decides retrain, rollback, "
        "fix_upstream, investigate or hold.",
    )
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="consume Kafka, publish decisions, serve /metrics")
    run.add_argument("--config", help="YAML config file (DRIFTGATE_* variables override it)")
    run.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit once no new event arrived for that long and the whole consumer group has "
        "committed every input partition to its end and judged all it forwarded (backfills, "
        "benchmarks)",
    )
    run.add_argument(
        "--exit-timeout",
        type=float,
        metavar="SECONDS",
        default=EXIT_TIMEOUT_S,
        help="with --exit-when-idle: exit with status 2, naming the partitions left, once the "
        f"group made no progress for that long (default {EXIT_TIMEOUT_S:g})",
    )
    # A worker of ``driftgate run``'s parent (``streamer.workers``), not for people.
    run.add_argument("--worker-link", type=int, help=argparse.SUPPRESS)
    run.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    run.set_defaults(handler=_cmd_run)

    replay = commands.add_parser("replay", help="run the engine on a replay file, no broker")
    replay.add_argument("file", help="JSON Lines: {'topic': ..., 'value': {...}} per line")
    replay.add_argument("--config")
    replay.add_argument("--decisions", metavar="OUT.jsonl", help="default: standard output")
    replay.add_argument("--dead-letters", metavar="OUT.jsonl", help="rejected lines, with reasons")
    replay.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="checkpoint here and resume a stopped or killed replay from it (outputs append)",
    )
    replay.set_defaults(handler=_cmd_replay)

    demo = commands.add_parser("demo", help="embedded broker, five model stories, live decisions")
    demo.add_argument(
        "--duration", type=float, metavar="SECONDS", help="at most; default: until all decided"
    )
    demo.add_argument(
        "--rate", type=float, default=5_000.0, help="predictions per second, all models"
    )
    demo.add_argument("--metrics-port", type=int, default=9108)
    demo.set_defaults(handler=_cmd_demo)

    produce = commands.add_parser("produce", help="send a replay file's records to Kafka")
    produce.add_argument("file", help="a replay file (JSON Lines); /dev/stdin reads a pipe")
    produce.add_argument("--config", help="YAML config file: the topics and the broker")
    produce.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT", help="default: kafka.bootstrap_servers"
    )
    produce.add_argument(
        "--rate",
        type=float,
        metavar="EVENTS_PER_S",
        help="predictions per second (feedback goes along in file order); default: no pacing",
    )
    produce.set_defaults(handler=_cmd_produce)

    validate = commands.add_parser("validate-config", help="check a config file")
    validate.add_argument("file")
    validate.set_defaults(handler=_cmd_validate)

    schemas = commands.add_parser("schemas", help="write the events' JSON Schemas")
    schemas.add_argument("--out", default="deploy/schemas")
    schemas.set_defaults(handler=_cmd_schemas)

    config_docs = commands.add_parser("config-docs", help="write the configuration reference")
    config_docs.add_argument("--out", default="docs/configuration.md")
    config_docs.set_defaults(handler=_cmd_config_docs)

    simulate = commands.add_parser("simulate", help="write a synthetic replay stream")
    simulate.add_argument("scenario", nargs="?")
    simulate.add_argument("--list", action="store_true", help="list the scenarios")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument(
        "--events",
        type=int,
        default=None,
        help="predictions (default: the scenario's duration at its rate, else 200,000)",
    )
    simulate.add_argument("--out", metavar="STREAM.jsonl")
    simulate.add_argument("--truth", metavar="TRUTH.json")
    simulate.set_defaults(handler=_cmd_simulate)

    score = commands.add_parser("score", help="score decisions against a simulated truth")
    score.add_argument(
        "--truth", action="append", required=True, metavar="TRUTH.json", help="repeatable"
    )
    score.add_argument(
        "--decisions",
        action="append",
        required=True,
        metavar="DECISIONS.jsonl",
        help="one per --truth, in the same order",
    )
    score.add_argument(
        "--events", type=int, metavar="N", help="the replay covered only the first N events"
    )
    score.add_argument("--json", action="store_true", help="machine-readable, with every run")
    score.set_defaults(handler=_cmd_score)

    reference = commands.add_parser("reference", help="pinned references (README 'Pinning')")
    reference_commands = reference.add_subparsers(dest="reference_command", required=True)
    build = reference_commands.add_parser(
        "build", help="keep each model's first valid predictions of a replay file as its reference"
    )
    build.add_argument("file", help="a replay file (JSON Lines), e.g. training-time traffic")
    build.add_argument("--out", required=True, metavar="REF", help="the reference file to write")
    build.add_argument(
        "--max-events",
        type=int,
        metavar="N",
        help="per model, at most N (default and upper bound: detection.reference_max_events)",
    )
    build.add_argument("--config", help="YAML config file: detection and limits settings")
    build.set_defaults(handler=_cmd_reference_build)

    state = commands.add_parser("state", help="checkpoints (docs/operations.md 'Checkpoints')")
    state_commands = state.add_subparsers(dest="state_command", required=True)
    inspect = state_commands.add_parser(
        "inspect", help="print what a checkpoint holds, without resuming from it"
    )
    inspect.add_argument("file", nargs="?", help="a checkpoint file (checkpoint.dir/NAME.ckpt)")
    inspect.add_argument("--topic", help="a checkpoint topic instead (checkpoint.topic)")
    inspect.add_argument("--name", help="with --topic: the checkpoint's name, GROUP.TOPIC")
    inspect.add_argument("--config", help="YAML config file: the Kafka settings for --topic")
    inspect.set_defaults(handler=_cmd_state_inspect)
    return root


def tune_gc() -> None:
    # Every event allocates a few dicts that reference counting frees; the cyclic
    # collector's default gen-0 threshold (700 allocations) runs it thousands of times
    # a second for nothing and took ~35% of replay time (measured with gc.disable()).
    # Objects alive after start-up are frozen out of its scans.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def main(argv: Sequence[str] | None = None) -> int:
    tune_gc()
    logging.basicConfig(
        level=logging.INFO,
        format=log_format(),
        stream=sys.stderr,
    )
    # kafka-python logs every connection at INFO and warns about its own event loop
    # being slow whenever the engine holds the GIL for a batch; neither helps operators.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    args = parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except DriftgateError as exc:
        print(f"driftgate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
