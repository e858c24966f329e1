"""`driftgate replay` of this checkout against another commit, alternating, same file.

    python benchmarks/replay_ab.py --base 95a99ca [--stream default|wide] [--events N] [--pairs 3]

This machine's speed drifts by 30% and more within minutes, so two benchmark runs made
minutes apart compare the machine as much as the code. This one checks ``--base`` out in a
temporary git worktree, writes one stream, and replays it with the base and with this
checkout in turn, ``--pairs`` times, each replay a fresh process (start-up included); it
prints every rate, the medians and their ratio, and how many pairs this checkout won.

Streams: ``default`` is benchmarks/engine.py's (20 numeric and 4 categorical features,
cohorts region x 8 and channel x 5, 20% labelled); ``wide`` is a model with 200 numeric
features and cohorts of 20 x 5 values, no labels (the wide model of issue #21).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.engine import replay_rate, write_stream  # noqa: E402


def write_wide_stream(path: Path, events: int, seed: int = 1) -> None:
    """200 numeric features (normal, mean 50, sd 10), cohorts segment x 20 and tier x 5,
    50 predictions a second."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(50.0, 10.0, size=(events, 200)), 3).tolist()
    segments, tiers = rng.integers(0, 20, events).tolist(), rng.integers(0, 5, events).tolist()
    names = [f"f{i:03d}" for i in range(200)]
    with path.open("wb") as out:
        for i in range(events):
            event = {
                "event_id": f"e{i}",
                "ts": 1_763_712_000.0 + i * 0.02,
                "model": "wide",
                "model_version": "v1",
                "cohort": {"segment": f"s{segments[i]:02d}", "tier": f"t{tiers[i]}"},
                "features": dict(zip(names, values[i])),
                "score": float(rng.random()),
            }
            out.write(orjson.dumps({"topic": "predictions", "value": event}) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--stream", choices=("default", "wide"), default="default")
    parser.add_argument("--events", type=int, default=None, help="200,000 (default), 60,000 (wide)")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    events = args.events or (200_000 if args.stream == "default" else 60_000)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        git = ["git", "-C", str(ROOT)]
        worktree = [*git, "worktree", "add", "-q", "--detach", str(base), args.base]
        subprocess.run(worktree, check=True)
        try:
            stream = Path(tmp) / "stream.jsonl"
            (write_stream if args.stream == "default" else write_wide_stream)(stream, events)
            rates: dict[str, list[float]] = {"base": [], "this": []}
            for _ in range(args.pairs):
                rates["base"].append(replay_rate(stream, events, base)[0])
                rates["this"].append(replay_rate(stream, events)[0])
                print(f"{args.base}: {rates['base'][-1]:,.0f}/s   this: {rates['this'][-1]:,.0f}/s")
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(base)], check=True)
    before, after = statistics.median(rates["base"]), statistics.median(rates["this"])
    won = sum(a > b for a, b in zip(rates["this"], rates["base"]))
    print(
        f"{args.stream} stream, {events:,} predictions: median {before:,.0f} -> {after:,.0f} "
        f"predictions/s ({after / before:.2f}x), this checkout faster in {won} of {args.pairs}"
    )


if __name__ == "__main__":
    main()
