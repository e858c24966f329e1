"""`driftgate demo`: what a newcomer runs first must tell its five stories, each decision
with its reason, within two minutes, serve metrics while it runs, and end by saying what
retraining on every alert would have done."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

import pytest

from evaluation.demo_traffic import STORIES
from streamer.broker import free_port
from tests.support import ROOT

pytestmark = pytest.mark.slow

BUDGET_S = 120.0


def test_demo_tells_five_stories_with_reasons_within_two_minutes_and_serves_metrics():
    port = free_port()
    started = time.monotonic()
    # No --duration: the demo stops by itself once every story is decided.
    demo = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "demo", "--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    scraped = ""
    try:
        while time.monotonic() - started < BUDGET_S and demo.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    scraped = r.read().decode()
            except OSError:
                pass
            if "driftgate_feature_psi{" in scraped:
                break
            time.sleep(1)
        out, err = demo.communicate(timeout=max(1.0, BUDGET_S - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        demo.kill()
        out, err = demo.communicate()
        pytest.fail(f"the demo ran over {BUDGET_S:.0f} s:\n{out}\n{err[-2000:]}")
    finally:
        demo.kill()
    elapsed = time.monotonic() - started
    assert demo.returncode == 0, err[-2000:]
    assert elapsed < BUDGET_S, out
    assert "driftgate_feature_psi{" in scraped
    assert "driftgate_events_consumed_total" in scraped
    lines = out.splitlines()
    for story in STORIES:
        # The decision's line names the model and the action, the next line says why.
        told = [
            i
            for i, line in enumerate(lines)
            if f" {story.action.upper()} " in line and f"model={story.model} " in line
        ]
        assert told, f"no {story.action} for {story.title}:\n{out}"
        why = lines[told[0] + 1]
        assert re.match(r"\s+why: \S", why), out
    reasons = "\n".join(lines)
    assert "the feed is broken, not the world" in reasons
    assert "a campaign, not a new normal" in reasons
    assert "trusted labels: log loss" in reasons
    assert "the release is at fault" in reasons
    assert "no trusted label says the model got worse" in reasons
    # Every decision is an alert but the notices that a condition cleared.
    decided = [i for i, line in enumerate(lines) if re.match(r"\s*\+\d+\.\ds  [A-Z_]+ ", line)]
    alerts = [i for i in decided if not lines[i + 1].endswith("condition cleared")]
    assert len(alerts) >= len(STORIES), out
    assert f"driftgate retrained 1 time in {len(alerts)} alerts." in out, out
    naive = next(line for line in lines if line.startswith("A retrain-on-every-alert policy"))
    assert f"would have retrained {len(alerts)} times" in naive
    for story in STORIES:
        assert f"on {story.alert} (" in naive, naive
    assert "not decided yet" not in out
