"""The incident page (/incidents on the metrics port): its HTML, served, and as a real
browser draws it (Debian's chromium, headless: .ci/run installs it)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detectors.decision import Decision
from detectors.monitor.snapshot import DistributionSnapshot
from evaluation.simulate import SCENARIOS, generate, write_replay
from streamer.http import MetricsServer
from streamer.incident_page import (
    CURRENT_COLOR,
    HISTORY_COLOR,
    REFERENCE_COLOR,
    THRESHOLD_COLOR,
    incident_page,
    list_page,
)
from streamer.incidents import Incident, IncidentStore
from tests.support import ROOT, replay_service

EVIDENCE = {
    "psi": 2.5,
    "psi_threshold": 0.2,
    "psi_history": [0.4, 1.9, 2.5],
    "g_test_pvalue": 0.0,
    "persisted_windows": 3,
}


def _decision(
    action: str = "investigate", ts: float = 1_763_712_600.0, **evidence: object
) -> Decision:
    return Decision(
        "fraud",
        "v1",
        action,  # type: ignore[arg-type]
        "covariate_drift",
        "<b>amount</b>",
        {"region": "eu"},
        ts,
        ts - 60,
        ts,
        2000,
        ts,
        {**EVIDENCE, **evidence},
    )


DISTRIBUTION = DistributionSnapshot(
    feature="<b>amount</b>",
    cohort=(("region", "eu"),),
    bins=("< 1", "[1, 2)", ">= 2", "null"),
    reference=(50, 30, 20, 0),
    window=(5, 15, 80, 0),
)


def test_the_page_shows_both_distributions_the_history_against_its_threshold_and_the_timeline():
    opened = Incident(_decision(), DISTRIBUTION)
    resolved = Incident(_decision("hold", ts=1_763_713_000.0, resolved=True), DISTRIBUTION)
    page = incident_page(opened, [opened, resolved])

    assert "<script" not in page and "src=" not in page and "http" not in page
    assert "&lt;b&gt;amount&lt;/b&gt;" in page and "<b>amount</b>" not in page
    assert page.count('<svg class="reference"') == page.count('<svg class="current"') == 1
    reference, current = page.split('<svg class="current"')
    assert reference.count(f'fill="{REFERENCE_COLOR}"') == 4  # one bar per bin
    assert current.split("</svg>")[0].count(f'fill="{CURRENT_COLOR}"') == 4
    assert ">80%<" in current and ">50%<" in reference  # shares of the window, the reference
    history = page.split('<svg class="history"')[1].split("</svg>")[0]
    assert history.count('<circle cx="') == 3 and "threshold 0.2" in history
    assert 'class="threshold"' in history and f'stroke="{THRESHOLD_COLOR}"' in history
    assert f'stroke="{HISTORY_COLOR}"' in history
    timeline = page.split('<table class="timeline">')[1].split("</table>")[0]
    assert timeline.index("opened") < timeline.index("resolved")
    assert "(this page)" in timeline.split("resolved")[0]


def test_a_decision_without_a_feature_compares_its_reference_and_current_figures():
    decision = Decision(
        "fraud",
        "v1",
        "retrain",
        "concept_drift",
        None,
        None,
        10.0,
        0.0,
        10.0,
        500,
        10.0,
        {
            "reference_log_loss": 0.19,
            "current_log_loss": 0.81,
            "reference_auc": 0.85,
            "current_auc": 0.73,
            "z": 7.5,
        },
    )
    page = incident_page(Incident(decision, None), [])
    assert '<svg class="reference"' in page and '<svg class="current"' in page
    assert ">0.81<" in page and ">0.19<" in page and ">log_loss<" in page
    assert "no history per window" in page and '<svg class="history"' not in page


def test_the_store_keeps_the_last_n_and_the_server_serves_them():
    store = IncidentStore(capacity=2)
    decisions = [_decision(ts=1_763_712_600.0 + 60 * i) for i in range(3)]
    store.record(decisions, {})
    assert [i.decision for i in store.recent()] == decisions[:0:-1]
    server = MetricsServer(CollectorRegistry(), dict, "127.0.0.1", 0, store).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/incidents") as response:
            listing = response.read().decode()
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert listing == list_page(store.recent())
        assert decisions[0].decision_id not in listing
        for kept in decisions[1:]:
            assert f'href="/incidents/{kept.decision_id}"' in listing
            short = kept.decision_id[:12]  # as the demo prints it
            with urllib.request.urlopen(f"{base}/incidents/{short}") as response:
                assert "<h2>timeline</h2>" in response.read().decode()
        # The dashboard's decision annotations link to the list of their action and cause.
        store.record([_decision("hold", ts=1_763_713_000.0, resolved=True)], {})
        link = (
            _annotation_link().replace("{{action}}", "hold").replace("{{cause}}", "covariate_drift")
        )
        path = link.removeprefix("http://localhost:9108")
        with urllib.request.urlopen(f"{base}{path}") as response:
            holds = response.read().decode()
        assert "(action hold, cause covariate_drift)" in holds
        assert holds.count('href="/incidents/') == 1 and ">hold</a>" in holds
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(f"{base}/incidents/{decisions[0].decision_id}")
        assert gone.value.code == 404
    finally:
        server.stop()


def _annotation_link() -> str:
    dashboard = json.loads((ROOT / "deploy/grafana/driftgate.json").read_text())
    (decisions,) = [a for a in dashboard["annotations"]["list"] if a["name"] == "Decisions"]
    return decisions["textFormat"].split('href="')[1].split('"')[0]


def read_png(path: Path) -> np.ndarray:
    """An 8-bit RGB or RGBA PNG as a (height, width, channels) array, with the standard
    library's zlib (no imaging library needed)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, list[bytes]] = {}
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        chunks.setdefault(kind, []).append(data[at + 8 : at + 8 + length])
        at += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8 and color in (2, 6) and interlace == 0
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * channels
    rows = np.zeros((height, stride), dtype=np.uint8)
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(kind, line, previous, channels)
        rows[y] = np.frombuffer(bytes(line), dtype=np.uint8)
        previous = line
    return rows.reshape(height, width, channels)[:, :, :3]


def _unfilter(kind: int, line: bytearray, up: bytearray, bpp: int) -> None:
    if kind == 0:
        return
    if kind == 2:
        line[:] = ((np.frombuffer(line, np.uint8) + np.frombuffer(up, np.uint8)) & 255).tobytes()
        return
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 1:
            line[i] = (line[i] + a) & 255
        elif kind == 3:
            line[i] = (line[i] + (a + b) // 2) & 255
        else:  # Paeth
            c = up[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            line[i] = (line[i] + pred) & 255


def _pixels_of(image: np.ndarray, color: str) -> np.ndarray:
    """(y, x) of the pixels within a few levels of ``color`` (anti-aliasing aside)."""
    rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    close = (np.abs(image.astype(int) - rgb) <= 6).all(axis=2)
    return np.argwhere(close)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_a_replayed_decision_renders_with_its_charts_in_headless_chromium(tmp_path):
    spec, incidents = SCENARIOS["covariate_shift"](40_000)
    stream = tmp_path / "stream.jsonl"
    write_replay(stream, generate(spec, 40_000, seed=5, incidents=incidents))
    service, decisions = replay_service(stream, tmp_path / "decisions.jsonl")
    assert [(d.action, d.feature) for d in decisions] == [("investigate", "amount")]
    store = IncidentStore(capacity=10)
    store.record(decisions, service.engine.monitors)
    server = MetricsServer(CollectorRegistry(), dict, "127.0.0.1", 0, store).start()
    shot = tmp_path / "incident.png"
    try:
        url = f"http://127.0.0.1:{server.port}/incidents/{decisions[0].decision_id}"
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--screenshot={shot}",
                "--window-size=1200,1600",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        server.stop()
    if os.environ.get("INCIDENT_SCREENSHOT"):  # the README's picture
        shutil.copyfile(shot, os.environ["INCIDENT_SCREENSHOT"])
    image = read_png(shot)
    assert image.shape[:2] == (1600, 1200)
    reference = _pixels_of(image, REFERENCE_COLOR)
    current = _pixels_of(image, CURRENT_COLOR)
    history = _pixels_of(image, HISTORY_COLOR)
    threshold = _pixels_of(image, THRESHOLD_COLOR)
    # Bars, not a stray pixel: each chart fills thousands of pixels.
    assert min(len(reference), len(current), len(history), len(threshold)) > 1_000
    # Side by side: the reference on the left half, the current window on the right.
    assert reference[:, 1].max() < 600 <= current[:, 1].min()
    assert abs(int(np.median(reference[:, 0])) - int(np.median(current[:, 0]))) < 150
    # The history and its threshold below both distributions.
    below = max(reference[:, 0].max(), current[:, 0].max())
    assert history[:, 0].min() > below and threshold[:, 0].min() > below
    # The current window's bars are where the shift took the values: the top bins.
    assert np.median(current[:, 1]) > np.median(reference[:, 1]) + 600
