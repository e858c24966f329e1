"""What a checkpoint holds, for people: ``driftgate state inspect``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from detectors.binning import CategoricalBins
from streamer.engine import Engine


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _scope(label: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(label.items())) or "all"


def summary(header: dict[str, Any], engine: Engine, size: int) -> str:
    """Header, positions, and per model its events, windows, reference, features and
    scopes; the join store and the events the merge holds back."""
    lines = [
        f"checkpoint format {header['format']}, state format {header['state']}, "
        f"{size:,} bytes, written {_utc(header.get('written_at'))}",
        f"config fingerprint {header.get('config')}",
        "positions (next offset to read):",
    ]
    lines += [f"  {t}[{p}] @ {offset:,}" for t, p, offset in header.get("positions", [])]
    join = engine.join
    order = engine.order
    lines += [
        f"join store: {join.size:,} predictions kept, {join.pending:,} labels waiting, "
        f"{join.joined:,} joined so far; clock {_utc(join.clock) if join.size else '-'}",
        f"buffered by the event-time merge: {order.buffered:,} events "
        f"({order.buffered_predictions:,} predictions, {order.buffered_labels:,} labels)",
        f"models: {len(engine.monitors)}",
    ]
    for name, monitor in sorted(engine.monitors.items()):
        lines.append(f"  {name} (version {monitor.model_version or '-'}):")
        lines.append(
            f"    {monitor.events:,} events, {monitor.windows:,} windows, "
            f"last event {_utc(monitor.last_ts)}"
        )
        if monitor.warm:
            lines.append(
                f"    reference: fitted on {_utc(monitor.reference_start)} to "
                f"{_utc(monitor.reference_end)}" + (" (seasonal)" if monitor.seasonal else "")
            )
        else:
            lines.append(f"    reference: {monitor.reference_progress:.0%} collected")
        if monitor.scopes is not None:
            labels = [_scope(label) for label in monitor.scopes.labels]
            lines.append(f"    scopes ({len(labels)}): {', '.join(labels)}")
        events = monitor.scope_events
        if len(events):
            lines.append(f"    current window: {int(events[0]):,} events")
        for feature in monitor.features.values():
            kind = "categorical" if isinstance(feature.bins, CategoricalBins) else "numeric"
            reference = int(feature.reference[0].sum())
            open_scopes = int(np.count_nonzero(feature.drift.open))
            lines.append(
                f"    feature {feature.name}: {kind}, {feature.bins.n_bins} bins, "
                f"{reference:,} reference values"
                + (f", drift open in {open_scopes} scopes" if open_scopes else "")
            )
    return "\n".join(lines)
