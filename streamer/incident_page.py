"""The incident page's HTML: static, with inline SVG charts, no script and no asset.

``/incidents`` lists the kept decisions (:func:`list_page`); ``/incidents/<id>`` shows
one (:func:`incident_page`): the verdict and why, the scope's reference and current
distributions side by side, the statistic's history against its threshold, and the
incident's timeline. Everything from the stream (feature names, cohort values) is
escaped: it is input, not markup.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Any

from streamer.incidents import Incident

REFERENCE_COLOR = "#4c78a8"
CURRENT_COLOR = "#f58518"
HISTORY_COLOR = "#54a24b"
THRESHOLD_COLOR = "#e45756"

WHY = {
    "covariate_drift": "an input's distribution moved from the reference while trusted "
    "labels did not say the model got worse",
    "concept_drift": "trusted labels say the model got worse",
    "frozen_signal": "an input froze: constant, stuck repeating, or null",
    "rescaled_signal": "an input changed its unit or sign",
    "schema_change": "an input went missing, changed type, was renamed, or a new one appeared",
    "deployment_regression": "a new model version scores the same traffic differently, or "
    "its trusted labels say it is worse (than the incumbent's of the same period)",
    "label_quality": "untrusted labels (clicks, proxies) moved while trusted ones did not",
    "trust_decay": "overrides of the model rose",
    "transient_shift": "a shift came back before it persisted",
}

# The evidence's figures worth a line of their own, in this order, where present.
KEY_FIGURES = (
    "psi",
    "psi_threshold",
    "g_test_pvalue",
    "js_distance",
    "kind",
    "frozen_value",
    "renamed_to",
    "factor",
    "nearest_unit",
    "log_loss_increase",
    "z",
    "pvalue",
    "auc_drop",
    "version_auc",
    "incumbent_auc",
    "auc_z",
    "version_log_loss",
    "incumbent_log_loss",
    "log_loss_z",
    "gate",
    "broken_inputs",
    "reverted",
    "resolved",
    "persisted_windows",
    "persistence_windows",
    "window_events",
    "reference_events",
)

_STYLE = """
body { font: 14px/1.4 sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
table { border-collapse: collapse; }
td, th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
.charts { display: flex; gap: 16px; }
.muted { color: #666; }
code { font-size: 12px; }
"""


@dataclass(frozen=True)
class _Series:
    """Two sides of one comparison: bar heights (0..1), their labels and value texts."""

    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    reference_text: tuple[str, ...]
    current_text: tuple[str, ...]
    what: str


def list_page(incidents: Sequence[Incident], where: Mapping[str, str] | None = None) -> str:
    """The kept decisions, newest first, each linking to its page; ``where`` names the
    filter they were chosen by (e.g. ``{"action": "retrain"}``)."""
    only = ", ".join(f"{k} {v}" for k, v in sorted((where or {}).items()))
    rows = "".join(
        "<tr>"
        f"<td>{_time(i.decision.ts)}</td>"
        f'<td><a href="/incidents/{escape(i.decision.decision_id)}">'
        f"{escape(i.decision.action)}</a></td>"
        f"<td>{escape(i.decision.cause)}</td>"
        f"<td>{escape(i.decision.model)} {escape(i.decision.model_version or '')}</td>"
        f"<td>{_scope(i)}</td>"
        "</tr>"
        for i in incidents
    )
    body = (
        "<h1>driftgate incidents</h1>"
        f'<p class="muted">The last {len(incidents)} decisions kept'
        f"{escape(f' ({only})' if only else '')}, newest first.</p>"
        "<table><tr><th>time (UTC)</th><th>action</th><th>cause</th><th>model</th>"
        f"<th>scope</th></tr>{rows}</table>"
    )
    return _document("driftgate incidents", body)


def incident_page(incident: Incident, timeline: Sequence[Incident]) -> str:
    """One decision: its verdict and why, the distributions, the history, the timeline."""
    decision = incident.decision
    evidence = dict(decision.evidence)
    title = f"{decision.action} ({decision.cause})"
    figures = "".join(
        f"<tr><td>{escape(name)}</td><td>{_value(evidence[name])}</td></tr>"
        for name in KEY_FIGURES
        if name in evidence
    )
    body = (
        f"<h1>{escape(title)}</h1>"
        f"<p><b>{escape(decision.action)}</b> because "
        f"{escape(WHY.get(decision.cause, decision.cause))}.</p>"
        "<table>"
        f"<tr><td>model</td><td>{escape(decision.model)} version "
        f"{escape(decision.model_version or 'unknown')}</td></tr>"
        f"<tr><td>scope</td><td>{_scope(incident)}</td></tr>"
        f"<tr><td>window</td><td>{_time(decision.window_start)} to "
        f"{_time(decision.window_end)} UTC, {decision.window_events} events</td></tr>"
        f"<tr><td>decision id</td><td><code>{escape(decision.decision_id)}</code></td></tr>"
        f"{figures}</table>"
        f"{_distributions(incident)}{_history(evidence)}{_timeline(incident, timeline)}"
        "<h2>evidence</h2>"
        f"<pre>{escape(json.dumps(evidence, indent=1, sort_keys=True))}</pre>"
    )
    return _document(f"driftgate: {title}", body)


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><p><a href="/incidents">all incidents</a></p>{body}</body></html>\n'
    )


def _distributions(incident: Incident) -> str:
    series = _histograms(incident) or _paired_figures(incident.decision.evidence)
    if series is None:
        return (
            "<h2>distributions</h2>"
            '<p class="muted">Nothing to compare: the decision concerns no feature kept in '
            "the reference, and its evidence has no reference and current figures.</p>"
        )
    charts = "".join(
        _bars_svg(f"{side}: {series.what}", series.labels, heights, texts, color, css)
        for side, heights, texts, color, css in (
            ("reference", series.reference, series.reference_text, REFERENCE_COLOR, "reference"),
            ("current", series.current, series.current_text, CURRENT_COLOR, "current"),
        )
    )
    return f'<h2>distributions</h2><div class="charts">{charts}</div>'


def _histograms(incident: Incident) -> _Series | None:
    """The scope's histograms as shares, on one scale for both sides."""
    snapshot = incident.distribution
    if snapshot is None or not snapshot.window or not sum(snapshot.reference):
        return None
    reference = _shares(snapshot.reference)
    current = _shares(snapshot.window)
    top = max(*reference, *current) or 1.0
    return _Series(
        labels=snapshot.bins,
        reference=tuple(share / top for share in reference),
        current=tuple(share / top for share in current),
        reference_text=tuple(f"{share:.0%}" for share in reference),
        current_text=tuple(f"{share:.0%}" for share in current),
        what=f"{snapshot.feature}, share of events per bin",
    )


def _paired_figures(evidence: Mapping[str, Any]) -> _Series | None:
    """Figures the evidence has for both sides (``reference_x`` and ``current_x``, or
    ``ref_x`` and ``cur_x``), each pair on its own scale."""
    pairs: list[tuple[str, float, float]] = []
    for name, value in sorted(evidence.items()):
        for before, after in (("reference_", "current_"), ("ref_", "cur_")):
            figure = name[len(before) :]
            other = evidence.get(after + figure, None)
            if name.startswith(before) and _number(value) and _number(other):
                pairs.append((figure, float(value), float(other)))
    if not pairs:
        return None
    scale = [max(abs(r), abs(c)) or 1.0 for _, r, c in pairs]
    return _Series(
        labels=tuple(name for name, _, _ in pairs),
        reference=tuple(abs(r) / s for (_, r, _), s in zip(pairs, scale)),
        current=tuple(abs(c) / s for (_, _, c), s in zip(pairs, scale)),
        reference_text=tuple(f"{r:.3g}" for _, r, _ in pairs),
        current_text=tuple(f"{c:.3g}" for _, _, c in pairs),
        what="figures, each pair on its own scale",
    )


def _history(evidence: Mapping[str, Any]) -> str:
    """The statistic per window against the line it is judged by, where the evidence
    has a history: PSI against its threshold, or a rescale's factor against its unit."""
    found = None
    if "psi_history" in evidence and _number(evidence.get("psi_threshold")):
        found = ("PSI per window", evidence["psi_history"], evidence["psi_threshold"], "threshold")
    elif "window_factors" in evidence and _number(evidence.get("nearest_unit")):
        found = ("scale factor", evidence["window_factors"], evidence["nearest_unit"], "unit")
    if found is None or not all(_number(v) for v in found[1]) or not found[1]:
        return (
            "<h2>history</h2>"
            '<p class="muted">This decision\'s evidence holds no history per window.</p>'
        )
    what, values, line, line_name = found
    return "<h2>history</h2>" + _history_svg(
        what, [float(v) for v in values], float(line), line_name
    )


def _timeline(incident: Incident, timeline: Sequence[Incident]) -> str:
    rows = []
    for position, kept in enumerate(timeline):
        decision = kept.decision
        if position == 0:
            event = "opened"
        elif decision.evidence.get("resolved"):
            event = "resolved"
        else:
            event = "updated"
        here = " (this page)" if kept.decision.decision_id == incident.decision.decision_id else ""
        rows.append(
            f"<tr><td>{_time(decision.ts)}</td><td>{event}</td>"
            f'<td><a href="/incidents/{escape(decision.decision_id)}">'
            f"{escape(decision.action)}</a>{here}</td></tr>"
        )
    return (
        "<h2>timeline</h2>"
        '<p class="muted">The kept decisions of this model, cause and scope.</p>'
        f'<table class="timeline"><tr><th>time (UTC)</th><th>event</th><th>decision</th>'
        f"</tr>{''.join(rows)}</table>"
    )


def _bars_svg(
    title: str,
    labels: Sequence[str],
    heights: Sequence[float],
    texts: Sequence[str],
    color: str,
    css_class: str,
) -> str:
    width, height, top, bottom, left = 560, 300, 28, 90, 10
    plot = height - top - bottom
    step = (width - 2 * left) / max(len(labels), 1)
    bars = []
    for i, (label, share, text) in enumerate(zip(labels, heights, texts)):
        x = left + i * step
        bar = max(share * plot, 0.0)
        y = top + plot - bar
        middle = x + step / 2
        bars.append(
            f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{max(step - 4, 1):.1f}" '
            f'height="{bar:.1f}" fill="{color}"/>'
            f'<text x="{middle:.1f}" y="{y - 3:.1f}" font-size="10" '
            f'text-anchor="middle">{escape(text)}</text>'
            f'<text transform="translate({middle:.1f},{top + plot + 12}) rotate(-40)" '
            f'font-size="10" text-anchor="end">{escape(label)}</text>'
        )
    return (
        f'<svg class="{css_class}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}">'
        f'<text x="{left}" y="16" font-size="13">{escape(title)}</text>'
        f'<line x1="{left}" y1="{top + plot}" x2="{width - left}" y2="{top + plot}" '
        f'stroke="#999"/>{"".join(bars)}</svg>'
    )


def _history_svg(what: str, values: Sequence[float], line: float, line_name: str) -> str:
    width, height, top, bottom, left, right = 1136, 220, 24, 30, 56, 120
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max(*values, line) * 1.1 or 1.0

    def y_of(value: float) -> float:
        return top + plot_h * (1 - value / top_value)

    step = plot_w / max(len(values) - 1, 1)
    points = [(left + i * step, y_of(value)) for i, value in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    marks = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{HISTORY_COLOR}"/>'
        f'<text x="{x:.1f}" y="{y - 9:.1f}" font-size="11" text-anchor="middle">{v:.4g}</text>'
        f'<text x="{x:.1f}" y="{height - 8}" font-size="11" text-anchor="middle">'
        f"window {i + 1 - len(values)}</text>"
        for i, ((x, y), v) in enumerate(zip(points, values))
    )
    line_y = y_of(line)
    return (
        f'<svg class="history" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(what)}">'
        f'<text x="{left}" y="14" font-size="13">{escape(what)}, the last windows '
        "(0 is the decision's)</text>"
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#999"/>'
        f'<line class="threshold" x1="{left}" y1="{line_y:.1f}" x2="{left + plot_w}" '
        f'y2="{line_y:.1f}" stroke="{THRESHOLD_COLOR}" stroke-width="3" '
        'stroke-dasharray="8 5"/>'
        f'<text x="{left + plot_w + 6}" y="{line_y + 4:.1f}" font-size="11" '
        f'fill="{THRESHOLD_COLOR}">{escape(line_name)} {line:.4g}</text>'
        f'<polyline points="{path}" fill="none" stroke="{HISTORY_COLOR}" stroke-width="3"/>'
        f"{marks}</svg>"
    )


def _scope(incident: Incident) -> str:
    decision = incident.decision
    cohort = decision.cohort
    where = ", ".join(f"{k}={v}" for k, v in sorted(cohort.items())) if cohort else "all traffic"
    feature = f"feature {decision.feature}, " if decision.feature else ""
    return escape(f"{feature}{where}")


def _shares(counts: Sequence[int]) -> tuple[float, ...]:
    total = sum(counts) or 1
    return tuple(count / total for count in counts)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _value(value: object) -> str:
    if isinstance(value, float):
        return escape(f"{value:.4g}")
    if isinstance(value, list | dict):
        return escape(json.dumps(value))
    return escape(str(value))


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
