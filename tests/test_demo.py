"""`driftgate demo`: what a newcomer runs first must show a decision and serve metrics."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest

from streamer.broker import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_demo_prints_a_decision_and_serves_metrics_while_running():
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "demo",
            "--duration",
            "45",
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    scraped = ""
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    scraped = r.read().decode()
            except OSError:
                pass
            if "driftgate_feature_psi{" in scraped:
                break
            time.sleep(1)
        out, err = demo.communicate(timeout=90)
    finally:
        demo.kill()
    assert demo.returncode == 0, err[-2000:]
    assert "driftgate_feature_psi{" in scraped
    assert "driftgate_events_consumed_total" in scraped
    decisions = [line for line in out.splitlines() if "covariate_drift" in line]
    assert any("INVESTIGATE" in line and "feature=amount" in line for line in decisions), out
    assert any("region=" in line and "feature=session_seconds" in line for line in decisions), out
