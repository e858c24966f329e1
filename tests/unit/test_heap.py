"""A dropped state's memory goes back to the system (the judge's restores, see
streamer/heap.py)."""

from __future__ import annotations

import gc
import platform

import numpy as np
import pytest

from streamer.checkpoint import Checkpoints
from streamer.config import CheckpointConfig
from streamer.heap import return_freed_memory
from tests.support import fraud_records, run_batches, small_engine


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_freed_heap_of_a_dropped_state_is_returned():
    # 200 MiB of 2 KiB arrays (glibc's heap, below its mmap threshold), then one more so
    # that the freed ones are not at the heap's top, where free() alone would return them
    state = [np.ones(256) for _ in range(100_000)]
    pinned = np.ones(256)
    held = _rss_mib()
    del state
    before = _rss_mib()
    return_freed_memory()
    after = _rss_mib()
    assert before - after > 100, (held, before, after)
    assert pinned.sum() == 256


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_a_checkpoint_gives_back_what_encoding_it_took(tmp_path):
    # 120,000 predictions waiting for labels: a join store whose encoding takes ~35 MiB
    # for a moment (streamer/checkpoint.py); RSS after the save is what it was before
    engine = small_engine()
    run_batches(engine, fraud_records(120_000), size=5_000)
    assert engine.join.size > 100_000
    checkpoints = Checkpoints(CheckpointConfig(dir=str(tmp_path)), "model")
    gc.collect()
    return_freed_memory()
    before = _rss_mib()
    checkpoints.save(engine)
    after = _rss_mib()
    assert after - before < 8, (before, after)
