"""Native JSON decoders against driftgate's, on a wide model's replay lines.

    python -m venv /tmp/decoders && /tmp/decoders/bin/pip install -e . pyarrow polars msgspec
    /tmp/decoders/bin/python benchmarks/decoders.py [--lines 20000]

Issue #21 asks whether a native decoder handing over typed columns would close the gap
to its targets. This writes the wide model's stream (``replay_ab.py --stream wide``: 200
float features a prediction, ~3 KB a line) and times, on one core, per line and in
batches of 5,000, how long each decoder takes from the lines' bytes to one float64 array
per feature: orjson (driftgate's parser) and the columns built as driftgate builds them
(a transpose, then ``np.fromiter``); msgspec into typed ``Struct``s, then the same
columns; pyarrow's and polars' newline-delimited JSON readers straight to columns. Best of
two runs each. The optional libraries are not driftgate dependencies: a decoder whose
library is missing is skipped.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.replay_ab import write_wide_stream  # noqa: E402

Decoder = Callable[[list[bytes]], list[Any]]


def _columns(rows: list[dict[str, float]]) -> list[Any]:
    names = sorted(rows[0])
    return [np.fromiter(c, np.float64, len(c)) for c in zip(*map(itemgetter(*names), rows))]


def orjson_columns(batch: list[bytes]) -> list[Any]:
    return _columns([orjson.loads(line)["value"]["features"] for line in batch])


def orjson_parse_only(batch: list[bytes]) -> list[Any]:
    return [orjson.loads(line) for line in batch]


def _msgspec_decoder() -> Decoder | None:
    try:
        import msgspec
    except ImportError:
        return None
    # Built with msgspec.defstruct: classes defined here would have string annotations
    # (this module's `from __future__ import annotations`) naming locals msgspec cannot
    # resolve.
    value = msgspec.defstruct(
        "Value",
        [
            ("event_id", str),
            ("ts", float),
            ("model", str),
            ("model_version", str),
            ("score", float),
            ("features", dict[str, float]),
            ("cohort", dict[str, str], {}),
        ],
    )
    decoder = msgspec.json.Decoder(msgspec.defstruct("Line", [("topic", str), ("value", value)]))
    return lambda batch: _columns([decoder.decode(line).value.features for line in batch])


def native_decoders() -> dict[str, Decoder]:
    found: dict[str, Decoder] = {}
    structs = _msgspec_decoder()
    if structs is not None:
        found["msgspec Structs, then the same columns"] = structs
    try:
        import pyarrow.json as pj

        def arrow(batch: list[bytes]) -> list[Any]:
            options = pj.ReadOptions(block_size=1 << 26, use_threads=False)
            table = pj.read_json(io.BytesIO(b"".join(batch)), read_options=options)
            features = table.column("value").combine_chunks().field("features")
            return [
                features.field(i).to_numpy(zero_copy_only=False)
                for i in range(features.type.num_fields)
            ]

        found["pyarrow.json.read_json, one thread"] = arrow
    except ImportError:
        pass
    try:
        import polars as pl

        def polars(batch: list[bytes]) -> list[Any]:
            frame = pl.read_ndjson(io.BytesIO(b"".join(batch)))
            features = frame["value"].struct.field("features").struct.unnest()
            return [features[name].to_numpy() for name in features.columns]

        found["polars.read_ndjson (its own threads)"] = polars
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.jsonl"
        write_wide_stream(path, args.lines)
        lines = path.read_bytes().splitlines(keepends=True)
    batches = [lines[i : i + 5_000] for i in range(0, len(lines), 5_000)]
    decoders: dict[str, Decoder] = {
        "orjson.loads alone": orjson_parse_only,
        "orjson, then columns as driftgate builds them": orjson_columns,
        **native_decoders(),
    }
    for name, decode in decoders.items():
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            for batch in batches:
                decode(batch)
            best = min(best, time.perf_counter() - started)
        print(f"{name:48s} {best / len(lines) * 1e6:6.1f} us a line", flush=True)


if __name__ == "__main__":
    main()
