"""Engine benchmark: driftgate's columnar engine against the per-event way, same data.

    python benchmarks/engine.py [--events 1000000] [--baseline-events 50000] [--repeats 2]

One run measures, on one stream (20 numeric and 4 categorical features, cohorts
`region` with 8 values and `channel` with 5, all detectors on):

- the engine on parsed columns (ModelMonitor.update; parsing is not timed);
- `driftgate replay` end to end from the JSON Lines file (a child process);
- a straightforward per-event implementation with river, as a user would write it:
  one ADWIN per numeric feature per scope, per-event histogram counting, PSI per
  window, on the first --baseline-events predictions of the same stream;
- peak memory of an engine-only process after 1M and after 5M events.

Figures are printed as a table; rates are predictions per second on one core.
"""

from __future__ import annotations

import argparse
import bisect
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from river import drift

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.monitor import ModelMonitor, MonitorConfig  # noqa: E402
from evaluation.simulate import TrafficSpec, generate, write_replay  # noqa: E402
from streamer.cli import tune_gc  # noqa: E402
from streamer.config import LimitsConfig  # noqa: E402
from streamer.decode import decode_prediction_envelope  # noqa: E402
from streamer.engine import PREDICTIONS, prediction_batch  # noqa: E402
from streamer.sources import ReplaySource  # noqa: E402

SPEC = TrafficSpec(n_numeric=20, n_categorical=4)


def write_stream(path: Path, events: int) -> None:
    write_replay(path, generate(SPEC, events, seed=1))


def parsed_batches(path: Path, batch_events: int = 5_000):
    limits = LimitsConfig()
    source = ReplaySource(path, batch_events=batch_events)
    while (records := source.poll()) is not None:
        events = [
            decode_prediction_envelope(r.value, limits, r.parsed)
            for r in records
            if r.kind == PREDICTIONS
        ]
        if events:
            yield events


def engine_rate(path: Path) -> tuple[float, int, int]:
    monitor = ModelMonitor("fraud", MonitorConfig())
    spent, decisions = 0.0, 0
    for events in parsed_batches(path):
        batch = prediction_batch(events)
        started = time.perf_counter()
        decisions += len(monitor.update(batch))
        spent += time.perf_counter() - started
    return monitor.events / spent, monitor.events, decisions


def timed_replay(path: Path, decisions: Path = Path("/dev/null"), checkout: Path = ROOT) -> float:
    """Seconds ``driftgate replay`` of the file takes as a child process, run by the code
    of ``checkout``, its decisions written to ``decisions``."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "streamer.cli", "replay", str(path), "--decisions", str(decisions)],
        check=True,
        cwd=checkout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def replay_rate(path: Path, predictions: int, checkout: Path = ROOT) -> tuple[float, float]:
    """``driftgate replay`` of the file by the code of ``checkout``: predictions/s, and
    the peak RSS of the largest child process so far."""
    elapsed = timed_replay(path, checkout=checkout)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return predictions / elapsed, peak_mib


class PerEventRiver:
    """The obvious implementation: dictionaries, bisect and river, one event at a time."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.reference: list[dict] = []
        self.edges: dict[str, list[float]] = {}
        self.ref_hist: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.cur_hist: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.adwin: dict[tuple[str, str], drift.ADWIN] = {}
        self.seen = 0
        self.changes = 0

    @staticmethod
    def scopes(event: dict) -> list[str]:
        return ["all", *(f"{k}={v}" for k, v in (event.get("cohort") or {}).items())]

    def _bin(self, name: str, value: object) -> object:
        if value is None:
            return "null"
        if name in self.edges:
            return bisect.bisect_right(self.edges[name], value)
        return value

    def update(self, event: dict) -> None:
        self.seen += 1
        if len(self.reference) < self.config.reference_events:
            self.reference.append(event)
            if len(self.reference) == self.config.reference_events:
                self._fit()
            return
        for scope in self.scopes(event):
            for name, value in event["features"].items():
                self.cur_hist[(name, scope)][self._bin(name, value)] += 1
                if name in self.edges and value is not None:
                    detector = self.adwin.setdefault((name, scope), drift.ADWIN())
                    detector.update(value)
                    self.changes += detector.drift_detected
        if self.seen % self.config.window_events == 0:
            for key, current in self.cur_hist.items():
                self._psi(self.ref_hist[key], current)
            self.cur_hist.clear()

    def _fit(self) -> None:
        names = self.reference[0]["features"]
        for name in names:
            values = [e["features"].get(name) for e in self.reference]
            numbers = sorted(v for v in values if isinstance(v, int | float))
            if len(numbers) >= len(values) / 2:
                qs = [numbers[int(len(numbers) * q / 10)] for q in range(1, 10)]
                self.edges[name] = sorted(set(qs))
        for event in self.reference:
            for scope in self.scopes(event):
                for name, value in event["features"].items():
                    self.ref_hist[(name, scope)][self._bin(name, value)] += 1

    @staticmethod
    def _psi(reference: Counter, current: Counter) -> float:
        n, m = sum(reference.values()), sum(current.values())
        total = 0.0
        for key in reference.keys() | current.keys():
            p = (reference[key] + 0.5) / (n + 0.5)
            q = (current[key] + 0.5) / (m + 0.5)
            total += (q - p) * math.log(q / p)
        return total


def baseline_rate(path: Path, limit: int) -> float:
    """Predictions per second after the reference (collecting it costs nothing here)."""
    config = MonitorConfig()
    baseline = PerEventRiver(config)
    spent, timed = 0.0, 0
    for events in parsed_batches(path):
        for event in events:
            if baseline.seen < config.reference_events:
                baseline.update(event)
                continue
            started = time.perf_counter()
            baseline.update(event)
            spent += time.perf_counter() - started
            timed += 1
            if timed >= limit:
                return timed / spent
    return timed / spent


MEMORY_PROBE = """
import resource, sys
import numpy as np
from detectors.batch import PredictionBatch
from detectors.monitor import ModelMonitor
events = int(sys.argv[1])
rng = np.random.default_rng(0)
monitor = ModelMonitor("fraud")
regions = np.array([f"r{i}" for i in range(8)], dtype=object)
channels = np.array([f"c{i}" for i in range(5)], dtype=object)
cats = np.array([f"k{i}" for i in range(12)], dtype=object)
for start in range(0, events, 10_000):
    n = 10_000
    features = {f"num_{j:02d}": rng.lognormal(0, 1, n).tolist() for j in range(20)}
    features.update({f"cat_{j}": list(rng.choice(cats, n)) for j in range(4)})
    monitor.update(PredictionBatch(
        ts=np.arange(start, start + n, dtype=float), score=rng.random(n),
        model_version=["v1"] * n,
        cohorts={"region": list(rng.choice(regions, n)), "channel": list(rng.choice(channels, n))},
        features=features,
    ))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_memory_mib(events: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(events)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline-events", type=int, default=50_000)
    parser.add_argument("--memory-events", type=int, nargs=2, default=(1_000_000, 5_000_000))
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    # The collector's settings of every driftgate process, for engine and baseline alike.
    tune_gc()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.jsonl"
        started = time.perf_counter()
        write_stream(path, args.events)
        print(f"stream: {args.events} predictions written in {time.perf_counter() - started:.1f}s")
        # Each rate is the best of --repeats runs, engine and baseline alternating: this
        # machine's speed drifts by ~30% within minutes, and one slow spell on either
        # side would move their ratio.
        engines, baselines = [], []
        for _ in range(args.repeats):
            engines.append(engine_rate(path))
            baselines.append(baseline_rate(path, args.baseline_events))
        engine, events, decisions = max(engines)
        baseline = max(baselines)
        replay, replay_peak = replay_rate(path, args.events)
    small, large = (peak_memory_mib(n) for n in args.memory_events)
    rows = [
        (
            "engine on parsed columns",
            f"{engine:,.0f} predictions/s",
            f"{events} events, {decisions} decisions",
        ),
        (
            "driftgate replay, end to end",
            f"{replay:,.0f} predictions/s",
            f"peak RSS {replay_peak:.0f} MiB",
        ),
        (
            "per-event river baseline",
            f"{baseline:,.0f} predictions/s",
            f"{args.baseline_events} events after the reference",
        ),
        ("engine / per-event", f"{engine / baseline:.1f}x", ""),
        (f"engine peak RSS at {args.memory_events[0]:,}", f"{small:.0f} MiB", ""),
        (
            f"engine peak RSS at {args.memory_events[1]:,}",
            f"{large:.0f} MiB",
            f"ratio {large / small:.2f}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, figure, note in rows:
        print(f"{name:<{width}}  {figure:>22}  {note}")


if __name__ == "__main__":
    main()
