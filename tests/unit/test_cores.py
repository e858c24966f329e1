from __future__ import annotations

import os

import pytest

from streamer.cores import cgroup_cpu_quota, usable_cores

AFFINITY = len(os.sched_getaffinity(0))


def _cgroup(root, v2: str | None = None, v1: tuple[str, str] | None = None):
    if v2 is not None:
        (root / "cpu.max").write_text(v2)
    if v1 is not None:
        (root / "cpu").mkdir()
        (root / "cpu" / "cpu.cfs_quota_us").write_text(v1[0])
        (root / "cpu" / "cpu.cfs_period_us").write_text(v1[1])
    return root


@pytest.mark.parametrize(
    ("v2", "v1", "quota"),
    [
        ("max 100000\n", None, None),
        ("150000 100000\n", None, 1.5),
        ("50000 100000\n", None, 0.5),
        (None, ("-1\n", "100000\n"), None),
        (None, ("300000\n", "100000\n"), 3.0),
        (None, None, None),
        ("garbage\n", ("200000\n", "100000\n"), 2.0),
    ],
)
def test_the_cgroup_quota_is_read_from_v2_or_v1(tmp_path, v2, v1, quota):
    assert cgroup_cpu_quota(_cgroup(tmp_path, v2, v1)) == quota


def test_a_quota_bounds_the_cores_rounding_down_and_never_below_one(tmp_path):
    assert usable_cores(tmp_path) == AFFINITY
    half = tmp_path / "half"
    half.mkdir()
    assert usable_cores(_cgroup(half, "50000 100000")) == 1
    many = tmp_path / "many"
    many.mkdir()
    assert usable_cores(_cgroup(many, "6400000 100000")) == AFFINITY
    one_and_a_half = tmp_path / "one_and_a_half"
    one_and_a_half.mkdir()
    assert usable_cores(_cgroup(one_and_a_half, "150000 100000")) == 1
