from __future__ import annotations

import dataclasses

import yaml

from detectors.monitor import MonitorConfig
from streamer.config import DETECTION_DESCRIPTIONS, Settings, load_settings
from streamer.config_docs import render
from tests.support import ROOT


def test_checked_in_configuration_reference_matches_the_models():
    """`driftgate config-docs` regenerates it; a config change must come with it."""
    on_disk = (ROOT / "docs" / "configuration.md").read_text()
    assert on_disk == render(), "run: driftgate config-docs --out docs/configuration.md"


def test_every_detection_setting_has_a_description_and_no_other_does():
    assert set(DETECTION_DESCRIPTIONS) == {f.name for f in dataclasses.fields(MonitorConfig)}


def test_the_defaults_block_is_a_valid_config_of_the_defaults(tmp_path):
    block = render().split("```yaml\n")[-1].split("```")[0]
    path = tmp_path / "defaults.yaml"
    path.write_text(block)
    assert yaml.safe_load(block) == Settings().model_dump(mode="json")
    assert load_settings(path) == Settings()
