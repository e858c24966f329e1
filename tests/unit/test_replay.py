"""`driftgate replay`: the engine on a file, deterministic, tolerant of bad lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from evaluation.simulate import SCENARIOS, generate, write_replay
from streamer.sources import ReplaySource
from tests.support import ROOT

EVENTS = 60_000
MALFORMED = [
    b"{not json at all\n",
    b'{"topic": "predictions", "value": "{\\"event_id\\": \\"z\\"}"}\n',
    b'{"topic": "predictions", "value": {"event_id": "q", "ts": 1763712000.0, "model": "fraud",'
    b' "model_version": "v1", "features": {"amount": 3}, "score": "high"}}\n',
    b'{"topic": "sideways", "value": {}}\n',
]


@pytest.fixture(scope="module")
def drifted_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stream whose ``amount`` shifts by one standard deviation half-way, plus bad lines."""
    spec, incidents = SCENARIOS["covariate_shift"](EVENTS)
    path = tmp_path_factory.mktemp("replay") / "stream.jsonl"
    write_replay(path, generate(spec, EVENTS, seed=5, incidents=incidents))
    lines = path.read_bytes().splitlines(keepends=True)
    for i, bad in enumerate(MALFORMED):
        lines.insert(5_000 * (i + 1), bad)
    path.write_bytes(b"".join(lines))
    return path


def _replay(stream: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "replay", str(stream), "--decisions", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_replay_names_the_drifted_feature_and_reports_bad_lines(drifted_stream, tmp_path):
    done = _replay(drifted_stream, tmp_path / "decisions.jsonl")
    assert done.returncode == 0, done.stderr[-2000:]
    decisions = [
        json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()
    ]
    schema = json.loads((ROOT / "deploy/schemas/decision.json").read_text())
    for decision in decisions:
        jsonschema.validate(decision, schema)
    scopes = {(d["action"], d["cause"], d["scope"]["feature"]) for d in decisions}
    assert scopes == {("investigate", "covariate_drift", "amount")}
    assert decisions[0]["scope"]["cohort"] is None
    assert decisions[0]["evidence"]["psi"] >= decisions[0]["evidence"]["psi_threshold"]
    rejected_lines = [line for line in done.stderr.splitlines() if line.startswith("rejected line")]
    assert len(rejected_lines) == len(MALFORMED)
    assert {line.split(": ")[1] for line in rejected_lines} == {
        "invalid_record",
        "missing_field",
        "wrong_type",
    }
    assert f"{len(MALFORMED)} rejected" in done.stderr


def test_replay_is_byte_for_byte_repeatable(drifted_stream, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert _replay(drifted_stream, first).returncode == 0
    assert _replay(drifted_stream, second).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()  # a repeatable empty file would prove nothing


def test_a_line_holding_two_objects_is_one_bad_record_and_shifts_nothing(tmp_path):
    """Every line is one record with its own line number, however it is malformed."""
    good = '{"topic": "feedback", "value": {"event_id": "p-%d", "ts": 5, "label": 1}}'
    lines = [good % 1, f"{good % 2}, {good % 3}", good % 4]
    path = tmp_path / "stream.jsonl"
    path.write_text("\n".join(lines) + "\n")
    records = ReplaySource(path).poll()
    assert [r.offset for r in records] == [1, 2, 3]
    assert [r.kind for r in records] == ["feedback", "replay", "feedback"]
    assert b'"p-4"' in records[2].value or records[2].parsed["event_id"] == "p-4"
