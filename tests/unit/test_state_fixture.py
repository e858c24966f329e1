"""The committed checkpoint of state format 1 restores with today's code: the same
references, join store and, fed the rest of its stream, the same decisions as a run
that never stopped. A change to a checkpointed class that breaks this needs a migration
(streamer/state/migrations.py); see tests/fixtures/make_checkpoint_fixture.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from streamer.checkpoint_directory import CheckpointDirectory
from streamer.checkpoint_format import FORMAT, read_header
from tests.fixtures.make_checkpoint_fixture import CUT, FIXTURE, WRITTEN_AT, fixture_records
from tests.support import fingerprint_of, run_batches, small_engine, state_summary


def test_the_first_state_format_restores_and_goes_on_as_a_straight_run(tmp_path: Path) -> None:
    header, _ = read_header(FIXTURE.read_bytes())
    assert (header["format"], header["state"]) == (FORMAT, 1)
    assert FIXTURE.stat().st_size < 1_500_000  # small enough to keep in the repository

    records = fixture_records()
    straight = small_engine()
    run_batches(straight, records[:CUT])

    shutil.copy(FIXTURE, tmp_path / "g.ckpt")
    loaded = CheckpointDirectory(tmp_path).load("g", fingerprint_of(straight))
    assert loaded is not None, "the committed checkpoint was set aside"
    restored = loaded.engine
    assert loaded.written_at == WRITTEN_AT
    assert loaded.positions == straight.positions
    assert max(loaded.positions.values()) == CUT

    # the references, windows and per-feature statistics
    assert state_summary(restored) == state_summary(straight)
    (model,) = straight.monitors
    assert restored.monitors[model].reference_end == straight.monitors[model].reference_end
    # the predictions waiting for their labels
    assert restored.join.size == straight.join.size > 1_000
    assert restored.join.pending == straight.join.pending

    rest = records[CUT:]
    expected = [*run_batches(straight, rest), *straight.flush()]
    assert expected, "the rest of the stream decides nothing: the comparison is empty"
    got = [*run_batches(restored, rest), *restored.flush()]
    assert [d.to_dict() for d in got] == [d.to_dict() for d in expected]
    assert state_summary(restored) == state_summary(straight)
    assert restored.join.joined == straight.join.joined > 0
