"""Checkpoints: atomic, verified, never loaded when corrupt or made under other settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.checkpoint import Checkpoints
from streamer.checkpoint_directory import CheckpointDirectory
from streamer.checkpoint_format import FORMAT, MAGIC
from streamer.cli import main
from streamer.config import CheckpointConfig
from streamer.engine import Engine
from streamer.errors import DriftgateError
from streamer.state.migrations import STATE_VERSION
from tests.support import engine_state, fingerprint_of, fraud_records, small_engine


def test_a_checkpoint_restores_the_state_and_its_offsets(tmp_path: Path) -> None:
    records = fraud_records(12_000)
    engine = small_engine()
    engine.process(records[:7_000])
    directory = CheckpointDirectory(tmp_path, wall_clock=lambda: 1_700_000_000.0)
    directory.save("g.p", engine, engine.positions)
    loaded = directory.load("g.p", fingerprint_of(engine))
    assert loaded is not None
    assert loaded.positions == {("p", 0): 7_000}
    assert loaded.written_at == 1_700_000_000.0
    assert engine_state(loaded.engine) == engine_state(engine)
    # ...and it goes on exactly as the original does
    engine.process(records[7_000:])
    loaded.engine.process(records[7_000:])
    assert engine_state(loaded.engine) == engine_state(engine)
    assert directory.saved == 1 and directory.rejected == 0
    assert [p.name for p in tmp_path.iterdir()] == ["g.p.ckpt"]  # no temporary left


def _saved(tmp_path: Path) -> tuple[CheckpointDirectory, Engine, Path]:
    engine = small_engine()
    engine.process(fraud_records(3_000))
    directory = CheckpointDirectory(tmp_path, wall_clock=lambda: 1_700_000_000.0)
    directory.save("g.p", engine, engine.positions)
    return directory, engine, tmp_path / "g.p.ckpt"


def _header(data: bytes) -> dict[str, object]:
    end = data.index(b"\n", len(MAGIC))
    return json.loads(data[len(MAGIC) : end])


def _with_header(data: bytes, **changes: object) -> bytes:
    end = data.index(b"\n", len(MAGIC))
    header = {**_header(data), **changes}
    return MAGIC + json.dumps(header).encode() + data[end:]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: d[:-100], id="truncated"),
        pytest.param(lambda d: d[:-1] + bytes([d[-1] ^ 0xFF]), id="a flipped byte"),
        pytest.param(lambda d: b"not a checkpoint at all", id="not a checkpoint"),
        pytest.param(lambda d: _with_header(d, format=99), id="another format"),
        pytest.param(lambda d: MAGIC + b"{broken\n" + d, id="unreadable header"),
    ],
)
def test_an_unusable_checkpoint_is_set_aside_not_loaded(tmp_path: Path, damage, caplog) -> None:
    directory, engine, path = _saved(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    assert directory.load("g.p", fingerprint_of(engine)) is None
    assert directory.rejected == 1
    assert not path.exists()
    (aside,) = tmp_path.glob("g.p.ckpt.rejected-*")
    assert aside.stat().st_size > 0  # kept for a post-mortem
    assert "not loaded" in caplog.text


def test_a_checkpoint_made_under_other_settings_is_not_loaded(tmp_path: Path, caplog) -> None:
    directory, _, _ = _saved(tmp_path)
    other = small_engine(window_events=1_000)
    assert directory.load("g.p", fingerprint_of(other)) is None
    assert "other detection" in caplog.text


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    directory, engine, path = _saved(tmp_path)
    before = path.read_bytes()
    # what a process killed halfway through a write leaves behind
    (tmp_path / "g.p.ckpt.tmp-4242").write_bytes(before[: len(before) // 2])
    loaded = directory.load("g.p", fingerprint_of(engine))
    assert loaded is not None and engine_state(loaded.engine) == engine_state(engine)


def test_no_checkpoint_is_no_state(tmp_path: Path) -> None:
    assert CheckpointDirectory(tmp_path).load("nothing", "x") is None


def test_checkpoints_are_due_by_records_or_by_time(tmp_path: Path) -> None:
    now = [0.0]
    config = CheckpointConfig(dir=str(tmp_path), interval_events=1_000, interval_s=60.0)
    checkpoints = Checkpoints(config, "g.p", clock=lambda: now[0])
    assert not checkpoints.due(999)
    assert checkpoints.due(1)
    engine = small_engine()
    assert checkpoints.restore(engine) is None
    assert checkpoints.save(engine) == {}
    assert not checkpoints.due(10)
    now[0] = 60.0
    assert checkpoints.due(0)
    restored = checkpoints.restore(engine)
    assert restored is not None and restored.positions == {}
    assert (tmp_path / "g.p.ckpt").exists()  # one checkpoint for the group's one judge


def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DriftgateError, match=r"checkpoint\.dir"):
        CheckpointDirectory(blocker / "state")


def test_state_inspect_prints_what_a_checkpoint_holds(tmp_path: Path, capsys) -> None:
    _, engine, path = _saved(tmp_path)
    assert main(["state", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint format {FORMAT}, state format {STATE_VERSION}" in out
    assert f"config fingerprint {fingerprint_of(engine)}" in out
    assert "p[0] @ 3,000" in out
    monitor = engine.monitors["fraud"]
    assert f"{monitor.events:,} events, {monitor.windows:,} windows" in out
    assert f"join store: {engine.join.size:,} predictions kept" in out
    assert all(f"feature {name}: " in out for name in monitor.features)
    path.write_bytes(b"garbage")
    assert main(["state", "inspect", str(path)]) == 2
    assert "not a driftgate checkpoint" in capsys.readouterr().err
