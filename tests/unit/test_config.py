from __future__ import annotations

import subprocess
import sys

import pytest

from streamer.config import load_settings
from streamer.errors import DriftgateError
from tests.support import ROOT


def test_defaults_are_valid_and_name_the_contract_keys():
    settings = load_settings()
    assert settings.kafka.topics.predictions == "predictions"
    assert settings.kafka.topics.feedback == "feedback"
    assert settings.kafka.topics.decisions == "decisions"
    assert settings.kafka.topics.dead_letter("predictions") == "predictions.dlq"
    assert settings.metrics.port == 9108


def test_yaml_is_read_and_the_environment_wins(tmp_path, monkeypatch):
    path = tmp_path / "driftgate.yaml"
    path.write_text(
        "kafka:\n  bootstrap_servers: file:9092\n  group_id: from-file\n"
        "detection:\n  window_events: 500\n  cohort_dimensions: [[region], [region, channel]]\n"
    )
    monkeypatch.setenv("DRIFTGATE_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("DRIFTGATE_DETECTION__PSI_THRESHOLD", "0.3")
    settings = load_settings(path)
    assert settings.kafka.bootstrap_servers == "env:9092"
    assert settings.kafka.group_id == "from-file"
    assert settings.monitor.window_events == 500
    assert settings.monitor.psi_threshold == 0.3
    assert settings.monitor.cohort_dimensions == (("region",), ("region", "channel"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kafka:\n  bootstrap_server: x\n", "kafka.bootstrap_server: unknown key"),
        ("detection:\n  window_evnts: 3\n", "detection.window_evnts: unknown key"),
        ("detection:\n  alpha: 5\n", "alpha must be in (0, 1)"),
        ("metrics:\n  port: 70000\n", "metrics.port"),
        ("- a list\n", "must be a mapping"),
        ("kafka: [unclosed\n", "not valid YAML"),
    ],
)
def test_errors_name_the_key_in_plain_words(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DriftgateError) as caught:
        load_settings(path)
    assert expected in str(caught.value)


def test_validate_config_command_exits_non_zero_with_the_reason(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kafka:\n  topics:\n    predictons: p\n")
    done = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "validate-config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "kafka.topics.predictons: unknown key" in done.stderr
