"""``driftgate score``: the decisions of replays against their ground truth.

Reads truth files (``driftgate simulate --truth``) and decision files (``driftgate replay
--decisions``) in pairs, scores them with ``evaluation.scoring`` and renders the result:
a table per scenario and overall (plain text or markdown), the problems behind it, or JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from evaluation.scoring import ScenarioScore, ScoredDecision, Tally, Truth, by_scenario, score
from streamer.errors import DriftgateError

HEADERS = (
    "scenario",
    "runs",
    "rate (/s)",
    "incidents",
    "recall",
    "action acc.",
    "cause acc.",
    "median delay (events)",
    "median delay (s)",
    "false / M events",
    "duplicates / incident",
    "orders / incident",
    "repeated orders",
    "retrains (wrong)",
)


def load_truth(path: Path, events: int | None = None) -> Truth:
    try:
        return Truth.from_dict(orjson.loads(path.read_bytes()), events)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DriftgateError(f"{path}: not a usable truth file: {exc}") from exc


def load_decisions(path: Path) -> list[ScoredDecision]:
    decisions = []
    try:
        with path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        decisions.append(ScoredDecision.from_dict(orjson.loads(line)))
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                        raise DriftgateError(f"{path}:{number}: not a decision: {exc}") from exc
    except OSError as exc:
        raise DriftgateError(f"{path}: {exc}") from exc
    return decisions


def score_files(
    pairs: Sequence[tuple[Path, Path]], events: int | None = None
) -> list[ScenarioScore]:
    """Score each (truth, decisions) pair; ``events`` limits each to the stream's first N."""
    return [score(load_truth(t, events), load_decisions(d)) for t, d in pairs]


def _fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}"


def row(name: str, tally: Tally) -> list[str]:
    """The figures of ``HEADERS`` for one tally."""
    return [
        name,
        str(tally.runs),
        _rate(tally.rate),
        str(tally.incidents),
        _fraction(tally.recall),
        _fraction(tally.action_accuracy),
        _fraction(tally.cause_accuracy),
        _count(tally.median_delay_events),
        _count(tally.median_delay_seconds),
        f"{tally.false_per_million:.1f}",
        _fraction(tally.duplicates_per_incident),
        _fraction(tally.orders_per_incident),
        str(tally.repeated_orders),
        f"{tally.retrains.orders} ({tally.retrains.wrong})",
    ]


def rows(scores: Sequence[ScenarioScore]) -> list[list[str]]:
    """One row per scenario, then the overall one."""
    out = [row(name, tally) for name, tally in by_scenario(scores).items()]
    return [*out, row("overall", Tally.of(scores))]


def table(headers: Sequence[str], body: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """Columns aligned for a terminal, or a markdown table; numbers right-aligned."""
    widths = [max(len(r[i]) for r in (headers, *body)) for i in range(len(headers))]

    def numeric(i: int) -> bool:
        return i > 0 and all(r[i][:1].isdigit() or r[i] == "-" for r in body)

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if numeric(i) else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |" if markdown else "  ".join(padded).rstrip()

    lines = [line(headers)]
    if markdown:
        rules = ("-" * (w + 1) + ":" if numeric(i) else "-" * (w + 2) for i, w in enumerate(widths))
        lines.append("|" + "|".join(rules) + "|")
    return "\n".join([*lines, *(line(r) for r in body)])


def _scope(decision: ScoredDecision) -> str:
    what = decision.feature or ",".join(decision.features) or "the model"
    where = ",".join(f"{k}={v}" for k, v in (decision.cohort or {}).items()) or "all traffic"
    return f"{what} in {where}"


def problems(scores: Sequence[ScenarioScore]) -> list[str]:
    """One line per missed incident, wrong diagnosis and false decision."""
    out = []
    for s in scores:
        run = f"{s.truth.scenario} (seed {s.truth.seed})"
        for r in s.results:
            i = r.incident
            expected = f"{i.expected_action}/{i.expected_cause}"
            if not r.detected:
                out.append(f"{run}: missed {i.name} (expected {expected})")
            elif not (r.action_correct and r.cause_correct):
                got = ", ".join(f"{d.action}/{d.cause}" for d in r.decisions)
                out.append(f"{run}: {i.name}: decided {got}, expected {expected}")
            if r.repeated_orders:
                out.append(f"{run}: {i.name}: {r.orders} orders for one incident")
        at = s.truth.events_at([d.ts for d in s.false_decisions])
        for d, event in zip(s.false_decisions, at.tolist(), strict=True):
            out.append(
                f"{run}: false {d.action}/{d.cause} for {_scope(d)} at event {event:,.0f} "
                f"(ts {d.ts})"
            )
    return out


def report(scores: Sequence[ScenarioScore]) -> str:
    text = table(HEADERS, rows(scores))
    found = problems(scores)
    return text + ("\n\n" + "\n".join(found) if found else "")


def report_json(scores: Sequence[ScenarioScore]) -> bytes:
    return orjson.dumps(
        {
            "scenarios": {name: t.to_dict() for name, t in by_scenario(scores).items()},
            "overall": Tally.of(scores).to_dict(),
            "runs": [s.to_dict() for s in scores],
        },
        option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE,
    )
