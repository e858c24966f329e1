"""Scoreboard: driftgate's decisions on every simulated scenario, next to the retraining reflex.

    python benchmarks/scoreboard.py [--seeds 0 1 2] [--workers 2] [--readme]

For every scenario of ``driftgate simulate --list`` and every seed, it writes the stream
and its truth, replays the stream through ``driftgate replay`` (in process: the same
command-line path), scores the decisions with ``driftgate score``'s code, and counts the
retrains three baselines would have ordered on the same stream (river's ADWIN on every
numeric feature, PSI > 0.25 on any feature per 2,000-event window, every 50,000 events).
It prints the table and the issue's targets, draws one timeline per scenario family and
writes all of it, with the problems behind any missed target, to benchmarks/figures/
(scoreboard.md and the PNGs; matplotlib, the ``bench`` extra) and, with ``--readme``, into
docs/evaluation.md's scoreboard block.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.baselines import (  # noqa: E402
    PSI_THRESHOLD,
    SCHEDULE_EVENTS,
    adwin_retrains,
    psi_retrains,
    scheduled_retrains,
    windowed_psi,
)
from evaluation.scorecard import HEADERS, load_decisions, problems, rows, score_files, table  # noqa: E402
from evaluation.scoring import (  # noqa: E402
    RetrainCount,
    ScenarioScore,
    ScoredDecision,
    Tally,
    count_retrains,
)
from evaluation.simulate import (  # noqa: E402
    OUTCOME_KINDS,
    SCENARIOS,
    UPSTREAM_KINDS,
    Incident,
    generate,
    natural_events,
    write_replay,
    write_truth,
)
from streamer import cli  # noqa: E402
from streamer.config import load_settings  # noqa: E402

EVENTS = 200_000
SEEDS = (0, 1, 2)
BASELINES = {
    "adwin": "ADWIN on any feature",
    "psi": f"PSI > {PSI_THRESHOLD} on any feature",
    "schedule": f"every {SCHEDULE_EVENTS // 1000}k events",
}
FAMILIES = {
    "input_drift": "input drift",
    "upstream": "upstream faults",
    "outcomes": "outcomes (labels and overrides)",
    "deployment": "deployments",
    "stationary": "stationary, daily cycle and campaign",
}
FIGURES = ROOT / "benchmarks" / "figures"
MARKDOWN = FIGURES / "scoreboard.md"
README_START = "<!-- scoreboard:start -->"
README_END = "<!-- scoreboard:end -->"
# Windows of the drifted statistic in the figures, in events of the plotted scope.
FIGURE_WINDOW = 2_000
COHORT_FIGURE_WINDOW = 500


@dataclass
class Series:
    """A drifted statistic over the stream, for a figure."""

    label: str
    x: list[float]
    y: list[float]
    log: bool = False
    thresholds: list[tuple[float, str]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)  # (event, what started)


@dataclass
class Run:
    """One scenario and seed: driftgate's score, the baselines' retrains, a timeline."""

    scenario: str
    seed: int
    family: str
    score: ScenarioScore
    decisions: list[ScoredDecision]
    baselines: dict[str, RetrainCount]
    series: Series | None
    seconds: float


class _Noted:
    """What the baselines and figures need of a stream, noted while it is written: columns,
    not the records, so that a stream of millions of predictions fits beside its replay."""

    def __init__(self) -> None:
        self.ts = array("d")
        self.scores = array("d")
        self._columns: dict[str, list[object]] = {}
        self._cohort_ids: dict[tuple[tuple[str, str], ...], int] = {}
        self._cohort_of = array("i")
        self.first_of_version: dict[str, int] = {}
        # (prediction index, label, source, override) per feedback event
        self.feedback: list[tuple[int, int, str, bool]] = []

    def note(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            value = record["value"]
            if record["topic"] == "predictions":
                n = len(self.ts)
                self.first_of_version.setdefault(value["model_version"], n)
                self.ts.append(value["ts"])
                self.scores.append(value["score"])
                for name, x in value["features"].items():
                    if name not in self._columns:  # first seen here: none before
                        self._columns[name] = [None] * n
                    self._columns[name].append(x)
                for column in self._columns.values():
                    if len(column) == n:  # a feature this event lacks
                        column.append(None)
                cohort = tuple(sorted((value.get("cohort") or {}).items()))
                self._cohort_of.append(self._cohort_ids.setdefault(cohort, len(self._cohort_ids)))
            else:
                index = int(value["event_id"].removeprefix("p-"))
                self.feedback.append(
                    (index, value["label"], value["source"], bool(value["override"]))
                )
            yield record

    def columns(self) -> dict[str, list[object]]:
        return self._columns

    def in_cohort(self, cohort: dict[str, str] | None) -> np.ndarray:
        cohort_of = np.frombuffer(self._cohort_of, dtype=np.int32)
        if not cohort:
            return np.ones(len(cohort_of), dtype=bool)
        items = cohort.items()
        ids = [i for c, i in self._cohort_ids.items() if all(kv in c for kv in items)]
        return np.isin(cohort_of, ids)


def family(incidents: Sequence[Incident], versions: int) -> str:
    """The scenario family a stream belongs to, from what was injected into it."""
    kinds = {i.kind for i in incidents}
    if versions > 1 or any(i.expected_cause == "deployment_regression" for i in incidents):
        return "deployment"
    if kinds & set(UPSTREAM_KINDS):
        return "upstream"
    if kinds & set(OUTCOME_KINDS):
        return "outcomes"
    if any(i.expected_action != "hold" for i in incidents):
        return "input_drift"
    return "stationary"


def _psi_series(
    noted: _Noted, columns: dict[str, list[object]], incident: Incident | None, reference: int
) -> Series:
    """The PSI against the first events: of the incident's feature in its scope, or the
    largest of any feature's (what the PSI baseline looks at) when there is no feature."""
    threshold = [(PSI_THRESHOLD, f"PSI baseline threshold ({PSI_THRESHOLD})")]
    if incident is None or incident.feature is None:
        psis = np.max([windowed_psi(v, reference, FIGURE_WINDOW) for v in columns.values()], 0)
        ends = reference + (np.arange(len(psis)) + 1) * FIGURE_WINDOW - 1
        label = f"largest PSI of any feature per {FIGURE_WINDOW:,} events"
        return Series(label, ends.astype(float).tolist(), psis.tolist(), True, threshold)
    rows = np.flatnonzero(noted.in_cohort(incident.cohort))
    width = COHORT_FIGURE_WINDOW if incident.cohort else FIGURE_WINDOW
    values = [columns[incident.feature][i] for i in rows]
    first = int(np.searchsorted(rows, reference))
    psis = windowed_psi(values, first, width)
    ends = rows[first + (np.arange(len(psis)) + 1) * width - 1]
    where = ",".join(f"{k}={v}" for k, v in (incident.cohort or {}).items()) or "population"
    label = f"PSI of {incident.feature} ({where}) per {width:,} events"
    return Series(label, ends.astype(float).tolist(), psis.tolist(), True, threshold)


def _outcome_series(noted: _Noted, incident: Incident | None, untrusted: Sequence[str]) -> Series:
    """The outcome the incident moves, per window of predictions (by the labelled one)."""
    fb = np.array([(i, label, source in untrusted, o) for i, label, source, o in noted.feedback])
    index, label, is_untrusted, override = (fb[:, k] for k in range(4))
    index = index.astype(np.int64)
    kind = incident.kind if incident else "concept"
    keep = noted.in_cohort(incident.cohort if incident else None)[index]
    if kind == "label_inflation":
        keep &= is_untrusted == 1
        name, value = "positive rate of untrusted (click) labels", label
    elif kind == "override_rise":
        name, value = "override rate", override
    else:
        keep &= is_untrusted == 0
        # The calibration gap: the trusted positive rate over the mean predicted risk.
        name, value = "trusted positive rate - mean score", label - np.array(noted.scores)[index]
    bucket = index[keep] // FIGURE_WINDOW
    sums = np.bincount(bucket, weights=value[keep].astype(float))
    counts = np.bincount(bucket)
    enough = np.flatnonzero(counts >= 50)
    x = (enough + 1) * FIGURE_WINDOW - 1
    means = sums[enough] / counts[enough]
    label = f"{name} per {FIGURE_WINDOW:,} predictions"
    return Series(label, x.astype(float).tolist(), means.tolist())


def _score_series(noted: _Noted) -> Series:
    scores = np.array(noted.scores)
    n = len(scores) // FIGURE_WINDOW
    means = scores[: n * FIGURE_WINDOW].reshape(n, FIGURE_WINDOW).mean(axis=1)
    x = (np.arange(n) + 1) * FIGURE_WINDOW - 1
    label = f"mean score per {FIGURE_WINDOW:,} events"
    starts = [(float(i), f"{v} from here") for v, i in noted.first_of_version.items() if i]
    return Series(label, x.astype(float).tolist(), means.tolist(), marks=starts)


def _series(
    kind: str, noted: _Noted, columns: dict[str, list[object]], incidents: Sequence[Incident]
) -> Series:
    monitor = load_settings().monitor
    incident = incidents[0] if incidents else None
    if kind == "deployment":
        return _score_series(noted)
    if kind == "outcomes":
        return _outcome_series(noted, incident, monitor.untrusted_sources)
    return _psi_series(noted, columns, incident, monitor.reference_events)


def run(
    scenario: str,
    seed: int,
    events: int,
    workdir: Path,
    *,
    baselines: bool = True,
    series: bool = False,
) -> Run:
    """Simulate, replay with ``driftgate replay``, score; the baselines and a timeline."""
    started = time.perf_counter()
    spec, incidents = SCENARIOS[scenario](events)
    stem = workdir / f"{scenario}-{seed}"
    stream, truth, out = (Path(f"{stem}{s}") for s in (".jsonl", ".truth.json", ".out.jsonl"))
    noted = _Noted()
    write_replay(stream, noted.note(generate(spec, events, seed, incidents)))
    write_truth(truth, spec, incidents, events, scenario=scenario, seed=seed, event_ts=noted.ts)
    if cli.main(["replay", str(stream), "--decisions", str(out)]) != 0:
        raise RuntimeError(f"driftgate replay failed on {scenario} seed {seed}")
    stream.unlink()  # tens of MB each
    (scored,) = score_files([(truth, out)])
    counts: dict[str, RetrainCount] = {}
    columns = noted.columns() if baselines or series else {}
    if baselines:
        monitor = load_settings().monitor
        orders = {
            "adwin": adwin_retrains(columns, monitor.adwin_delta),
            "psi": psi_retrains(columns, monitor.reference_events, monitor.window_events),
            "schedule": scheduled_retrains(events),
        }
        counts = {name: count_retrains(scored.truth, at) for name, at in orders.items()}
    kind = family(incidents, len(noted.first_of_version))
    return Run(
        scenario,
        seed,
        kind,
        scored,
        load_decisions(out),
        counts,
        _series(kind, noted, columns, incidents) if series else None,
        time.perf_counter() - started,
    )


def run_all(
    jobs: Sequence[tuple[str, int, int]],
    workdir: Path,
    workers: int,
    *,
    baselines: bool = True,
    series_seed: int | None = None,
    progress: bool = False,
) -> list[Run]:
    """Run (scenario, seed, events) jobs on worker processes, results in the jobs' order."""
    # Longest streams first, so that no long one is left to run alone at the end.
    order = sorted(range(len(jobs)), key=lambda k: -jobs[k][2])
    # spawn, not fork: the caller may have threads (a test session, a broker).
    context = multiprocessing.get_context("spawn")
    results: dict[int, Run] = {}
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {
            pool.submit(
                run, *jobs[k], workdir, baselines=baselines, series=jobs[k][1] == series_seed
            ): k
            for k in order
        }
        for future in as_completed(futures):
            done = future.result()
            results[futures[future]] = done
            if progress:
                print(f"  {done.scenario} seed {done.seed}: {done.seconds:.0f} s", file=sys.stderr)
    return [results[k] for k in range(len(jobs))]


def scoreboard_table(runs: Sequence[Run], markdown: bool = False) -> str:
    """driftgate's figures per scenario and overall, then the retrains of each baseline
    (when the runs counted them)."""
    shown = [b for b in BASELINES if all(b in r.baselines for r in runs)]
    headers = [*HEADERS, *(f"{BASELINES[b]}: retrains (wrong)" for b in shown)]
    body = rows([r.score for r in runs])
    for cells in body:
        group = [r for r in runs if cells[0] in (r.scenario, "overall")]
        for b in shown:
            orders, wrong = (
                sum(getattr(r.baselines[b], k) for r in group) for k in ("orders", "wrong")
            )
            cells.append(f"{orders} ({wrong})")
    return table(headers, body, markdown)


COLORS = {
    "retrain": "tab:red",
    "rollback": "tab:purple",
    "fix_upstream": "tab:blue",
    "investigate": "tab:green",
    "hold": "tab:gray",
}


def draw(kind: str, runs: Sequence[Run], path: Path) -> None:
    """One panel per scenario: the drifted statistic, the incidents, driftgate's decisions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import NullFormatter

    height = 2.0 * len(runs) + 1.0
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, height), squeeze=False, sharex=False)
    for ax, r in zip(axes[:, 0], runs, strict=True):
        s = r.series
        assert s is not None
        truth = r.score.truth
        ax.plot(s.x, s.y, color="0.25", lw=1)
        if s.log:
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        for value, _ in s.thresholds:
            ax.axhline(value, color="0.5", ls=":", lw=1)
        for x, what in s.marks:
            ax.axvline(x, color="black", ls=":", lw=1)
            where = ("data", "axes fraction")
            ax.annotate(
                what,
                (x, 0.0),
                xycoords=where,
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=6,
            )
        for incident in truth.incidents:
            end = incident.end_event if incident.end_event is not None else truth.events
            ax.axvspan(incident.start_event, end, color="tab:orange", alpha=0.12, lw=0)
            ax.axvline(incident.start_event, color="tab:orange", ls="--", lw=1.2)
        at = truth.events_at([d.ts for d in r.decisions])
        for d, x in zip(r.decisions, at.tolist(), strict=True):
            ax.axvline(x, color=COLORS.get(d.action, "black"), lw=1.6)
            ax.annotate(
                f"{d.action} {d.cause}",
                (x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -3),
                textcoords="offset points",
                rotation=90,
                va="top",
                fontsize=6,
                color=COLORS.get(d.action, "black"),
            )
        ax.set_xlim(0, truth.events)
        ax.set_title(f"{r.scenario} (seed {r.seed}): {s.label}", loc="left", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("event", fontsize=8)
    thresholds = dict.fromkeys(label for r in runs if r.series for _, label in r.series.thresholds)
    handles = [
        Patch(color="tab:orange", alpha=0.3, label="incident (dashed: onset)"),
        *(Line2D([], [], color="0.5", ls=":", label=label) for label in thresholds),
        *(Line2D([], [], color=c, lw=1.6, label=f"driftgate: {a}") for a, c in COLORS.items()),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(FAMILIES[kind], fontsize=10)
    fig.tight_layout(rect=(0, 0.55 / height, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def targets(runs: Sequence[Run]) -> list[tuple[str, str, bool]]:
    """The issue's targets: (what, the figure, whether it is met)."""
    scores = [r.score for r in runs]
    overall = Tally.of(scores)
    quiet = sum(len(s.false_decisions) for s in scores if not s.truth.incidents)
    results = [res for s in scores for res in s.results]
    retrains = sum(
        d.action == "retrain" for res in results if res.incident.transient for d in res.decisions
    )
    # An abrupt input change decided within persistence_windows (3) windows of its onset
    # is on time. Decisions carry event times, placed on the event axis by interpolating
    # the truth's marks: the third window's last event may read as one more.
    window = load_settings().monitor.window_events
    limit = 3 * window
    delays = [
        res.delay_events
        for res in results
        if res.incident.feature is not None
        and not res.incident.transient
        and res.delay_events is not None
    ]
    median = statistics.median(delays) if delays else None
    # A shift on top of a daily cycle is judged against the same hours of the reference,
    # whose hours hold fewer events than a window: it may take up to 5 windows.
    on_cycle = [
        res.delay_events
        for s in scores
        if s.truth.scenario in ("shift_on_daily_cycle", "shift_on_weekly_cycle")
        for res in s.results
    ]
    slowest = None if None in on_cycle or not on_cycle else max(on_cycle)

    def share(x: float | None, floor: float) -> tuple[str, bool]:
        return ("-" if x is None else f"{x:.2f}"), x is not None and x >= floor

    return [
        ("recall >= 0.98", *share(overall.recall, 0.98)),
        ("action accuracy >= 0.95", *share(overall.action_accuracy, 0.95)),
        ("cause accuracy >= 0.95", *share(overall.cause_accuracy, 0.95)),
        ("no false decision on streams without incidents", f"{quiet}", quiet == 0),
        ("no retrain during transient incidents", f"{retrains}", retrains == 0),
        (
            "one order per incident (repeated orders)",
            f"{overall.repeated_orders}",
            overall.repeated_orders == 0,
        ),
        (
            f"median delay of input changes within 3 windows ({limit:,} events)",
            "-" if median is None else f"{median:,.0f} events",
            median is not None and median <= limit + 1,
        ),
        (
            f"a shift on a daily cycle found within 5 windows ({5 * window:,} events)",
            "-" if slowest is None else f"{slowest:,.0f} events at most",
            slowest is not None and slowest <= 5 * window + 1,
        ),
    ]


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def markdown(
    runs: Sequence[Run],
    command: str,
    seconds: float,
    workers: int,
    figures: dict[str, Path],
    base: Path,
) -> str:
    """The scoreboard as markdown: how it was made, the table, the problems, the figures."""
    scenarios = len({r.scenario for r in runs})
    seeds = sorted({r.seed for r in runs})
    lengths = sorted({r.score.truth.events for r in runs})
    minutes, rest = divmod(round(seconds), 60)
    lines = [
        f"`{command}` on {datetime.date.today().isoformat()}, {_machine()}: "
        f"{len(runs)} replays ({scenarios} scenarios x seeds {', '.join(map(str, seeds))}; "
        f"{' / '.join(f'{n:,}' for n in lengths)} predictions each, default config, {workers} "
        f"worker processes) in {minutes} min {rest:02d} s, figures included.",
        "",
        scoreboard_table(runs, markdown=True),
        "",
    ]
    lines += ["Targets (default config, all scenarios and seeds):", ""]
    lines += [
        f"- {what}: {got}, {'met' if ok else '**not met**'}" for what, got, ok in targets(runs)
    ]
    found = problems([r.score for r in runs])
    if found:
        lines += ["", "Missed, misdiagnosed and false:", "", *(f"- {p}" for p in found)]
    lines.append("")
    lines += [
        " ".join(f"[{FAMILIES[k]}]({os.path.relpath(p, base)})" for k, p in figures.items()),
        "",
    ]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"docs/evaluation.md has no {README_START} ... {README_END} block")
    return pattern.sub(lambda _: f"{README_START}\n{block}{README_END}", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--events",
        type=int,
        default=EVENTS,
        help="predictions per stream (a scenario with a duration keeps its own)",
    )
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=MARKDOWN)
    parser.add_argument("--figures", type=Path, default=FIGURES)
    parser.add_argument(
        "--readme", action="store_true", help="also update docs/evaluation.md's block"
    )
    args = parser.parse_args()
    command = " ".join(["python benchmarks/scoreboard.py", *sys.argv[1:]])
    started = time.perf_counter()
    jobs = [
        (name, seed, natural_events(name, args.events))
        for name in args.scenarios
        for seed in args.seeds
    ]
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_all(jobs, Path(tmp), args.workers, series_seed=args.seeds[0], progress=True)
    print(scoreboard_table(runs), end="\n\n")
    for what, got, ok in targets(runs):
        print(f"{what}: {got}, {'met' if ok else 'NOT MET'}")
    print("\n".join(["", *problems([r.score for r in runs])]))
    args.figures.mkdir(parents=True, exist_ok=True)
    figures = {}
    for kind in FAMILIES:
        shown = [r for r in runs if r.family == kind and r.series is not None]
        if shown:
            figures[kind] = args.figures / f"{kind}.png"
            draw(kind, shown, figures[kind])
    seconds = time.perf_counter() - started

    def text(base: Path) -> str:
        return markdown(runs, command, seconds, args.workers, figures, base)

    args.out.write_text("# Scoreboard\n\n" + text(args.out.parent))
    print(f"{len(runs)} replays and figures in {seconds:.0f} s; wrote {args.out}")
    if args.readme:
        readme = ROOT / "docs" / "evaluation.md"
        readme.write_text(replace_block(readme.read_text(), text(readme.parent)))


if __name__ == "__main__":
    main()
