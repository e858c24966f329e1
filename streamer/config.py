"""driftgate's configuration: one YAML file, every key overridable from the environment.

``DRIFTGATE_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` overrides ``kafka.bootstrap_servers``
(a double underscore separates nesting levels). Unknown keys are errors that name the
key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from detectors.monitor import MonitorConfig
from streamer.errors import DriftgateError

# The detection settings are the detectors' own dataclass, validated by its
# __post_init__; pydantic wraps it here to reject unknown keys and parse the
# environment, so each bound is written once.
DetectionConfig = pydantic_dataclass(MonitorConfig, config=ConfigDict(extra="forbid"), frozen=True)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TopicsConfig(_Section):
    predictions: str = "predictions"
    feedback: str = "feedback"
    decisions: str = "decisions"
    dead_letter_suffix: str = Field(".dlq", description="Dead letters of T go to T + suffix.")

    def dead_letter(self, topic: str) -> str:
        return topic + self.dead_letter_suffix


class KafkaConfig(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "driftgate"
    client_id: str = "driftgate"
    topics: TopicsConfig = TopicsConfig()
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_records: int = Field(5_000, ge=1)
    poll_timeout_ms: int = Field(200, ge=0)
    fetch_max_bytes: int = Field(52_428_800, ge=1_024)
    max_partition_fetch_bytes: int = Field(10_485_760, ge=1_024)
    request_timeout_ms: int = Field(30_000, ge=1_000)
    reconnect_backoff_max_ms: int = Field(10_000, ge=50)


class MetricsConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65_535, description="0 picks a free port.")


class LimitsConfig(_Section):
    max_message_bytes: int = Field(1_048_576, ge=256)
    max_features_per_event: int = Field(1_000, ge=1)
    max_string_bytes: int = Field(1_024, ge=1)
    max_models: int = Field(100, ge=1, description="Predictions of further models are rejected.")


class FeedbackConfig(_Section):
    """The join of labels to their predictions (see README 'Feedback')."""

    join_max_entries: int = Field(1_000_000, ge=1, description="Predictions kept for labels.")
    join_horizon_s: float = Field(30 * 86_400.0, gt=0, description="Event time a label may lag.")
    join_grace_s: float = Field(300.0, ge=0, description="A label may precede its prediction.")
    join_max_pending: int = Field(100_000, ge=1)


class CheckpointConfig(_Section):
    """Where and how often the state is checkpointed (``driftgate run`` only)."""

    dir: str | None = Field(
        "driftgate-state",
        description="A directory only driftgate writes to; null (and no topic) turns "
        "checkpoints off.",
    )
    topic: str | None = Field(
        None,
        description="A compacted Kafka topic for checkpoints instead of dir (dir is then unused).",
    )
    interval_events: int = Field(200_000, ge=1, description="Records between checkpoints.")
    interval_s: float = Field(60.0, gt=0, description="Seconds between checkpoints.")


class ReferenceConfig(_Section):
    """A pinned reference (see README 'Pinning a reference')."""

    file: str | None = Field(
        None,
        description="A file of `driftgate reference build`: its models are judged against "
        "it from their first event instead of against their first events; null: none.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTGATE_", env_nested_delimiter="__", extra="forbid"
    )

    kafka: KafkaConfig = KafkaConfig()
    metrics: MetricsConfig = MetricsConfig()
    detection: DetectionConfig = Field(default_factory=DetectionConfig)  # type: ignore[valid-type]
    limits: LimitsConfig = LimitsConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    reference: ReferenceConfig = ReferenceConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values come in as init arguments; the environment wins over them,
        # which is how containers override a mounted config.
        return (env_settings, init_settings)

    @property
    def monitor(self) -> MonitorConfig:
        # A plain detectors dataclass: pydantic's validating copy of the class has the
        # same name but is another object, which pickle (checkpoints) refuses.
        return MonitorConfig(
            **{f.name: getattr(self.detection, f.name) for f in dataclasses.fields(MonitorConfig)}
        )


def explain(error: ValidationError) -> str:
    """A pydantic error in plain words, one line per problem, naming the key."""
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        if problem["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            lines.append(f"{key}: unknown key (check the spelling; see README 'Configuration')")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {message} (got {problem.get('input')!r})")
    return "\n".join(lines)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (if any), apply the environment, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise DriftgateError(f"cannot read config {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise DriftgateError(f"config {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise DriftgateError(
                f"config {path} must be a mapping of sections, not a list or value"
            )
        data = loaded or {}
    _merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        where = f"config {path}" if path else "configuration"
        raise DriftgateError(f"{where} is invalid:\n{explain(exc)}") from exc


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
