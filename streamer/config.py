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

# The detection fields' descriptions live here, not in detectors/ (which knows nothing of
# configuration files); tests/unit/test_config_docs.py keeps them in step with MonitorConfig.
DETECTION_DESCRIPTIONS = {
    "reference_events": "Predictions per model kept as its reference (its first ones), "
    "unless reference_span_s of event time fits in reference_max_events.",
    "reference_span_s": "Seconds of event time the reference grows to cover when that fits "
    "in reference_max_events (a day compares daily cycles like with like); 0 counts events only.",
    "reference_max_events": "Most predictions a reference may hold, and the default and upper "
    "bound of `driftgate reference build --max-events`.",
    "window_events": "Predictions per tumbling window, counted in the model's predictions "
    "(when window_s is 0).",
    "window_s": "Seconds of event time per tumbling window, aligned to multiples of it since "
    "the epoch; 0 counts windows in window_events instead.",
    "window_max_events": "Predictions after which an event-time window closes anyway, so one "
    "event dated far ahead cannot stall the monitor.",
    "min_window_events": "Events a scope needs in a window to be judged; fewer carry over to "
    "the next window.",
    "min_reference_events": "Reference events a scope needs to be judged at all (and a model "
    "needs in a pinned reference file).",
    "numeric_bins": "Quantile bins of a numeric feature's reference (at least 2), besides one "
    "above the reference's maximum and one for nulls.",
    "max_categories": "Most frequent categories of a categorical feature that get a bin of "
    "their own; the others share `other`.",
    "psi_threshold": "Population stability index (an effect size) at which a window counts "
    "as drifted, together with the G-test.",
    "alpha": "Significance level, in (0, 1), of the G-test a drifted window must also pass.",
    "persistence_windows": "Consecutive drifted windows before any decision but hold, and "
    "clean windows before a condition clears.",
    "resolve_windows": "Clean judged windows a reported condition needs before its incident "
    "resolves (at least persistence_windows); one that comes back sooner is an update of the "
    "same incident, never a second order.",
    "adwin_delta": "Confidence parameter, in (0, 1), of ADWIN on the score stream; smaller "
    "fires less often.",
    "cohort_dimensions": "Cohort attributes and combinations judged as scopes, e.g. "
    "`[[region], [region, channel]]`; empty: every cohort attribute on its own.",
    "max_cohort_values": "Reference values kept per cohort dimension; other values, new ones "
    "included, fold into `__other__`.",
    "max_cohort_dimensions": "Cohort attributes judged, in name order, when "
    "cohort_dimensions is empty.",
    "max_features": "Reference features per model, most present first; also how many new "
    "names are counted by name and watched per window.",
    "reference_labels": "Labels, of predictions made after the reference, that form the "
    "outcome reference.",
    "label_window_labels": "Labels per outcome window, judged against the outcome reference.",
    "min_labels": "Labels a scope needs per window on both sides of every outcome test; "
    "fewer carry over.",
    "untrusted_sources": "Feedback sources whose labels never justify a retrain; they are "
    "watched for label quality instead.",
    "max_versions": "New model versions watched per model for deployment regressions; later "
    "ones are only counted.",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TopicsConfig(_Section):
    predictions: str = Field(
        "predictions", description="The topic the model's predictions are read from."
    )
    feedback: str = Field(
        "feedback", description="The topic the labels and overrides of predictions are read from."
    )
    decisions: str = Field(
        "decisions", description="The topic decision events are published to, keyed by model."
    )
    dead_letter_suffix: str = Field(
        ".dlq", description="Rejected records of topic T are copied to T + this suffix."
    )

    def dead_letter(self, topic: str) -> str:
        return topic + self.dead_letter_suffix


class KafkaConfig(_Section):
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="The Kafka brokers to connect to, comma-separated host:port."
    )
    group_id: str = Field(
        "driftgate", description="The consumer group; instances in one group split the partitions."
    )
    client_id: str = Field("driftgate", description="The client id driftgate gives the brokers.")
    topics: TopicsConfig = Field(TopicsConfig(), description="The names of the topics.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a consumer group without committed offsets starts reading.",
    )
    session_timeout_ms: int = Field(
        10_000,
        ge=1_000,
        description="Milliseconds without heartbeats before the group drops a consumer.",
    )
    heartbeat_interval_ms: int = Field(
        3_000, ge=100, description="Milliseconds between heartbeats to the group coordinator."
    )
    max_poll_records: int = Field(
        5_000, ge=1, description="Records per poll, which is the engine's batch (also in replay)."
    )
    poll_timeout_ms: int = Field(
        200, ge=0, description="Milliseconds a poll waits for records when none are buffered."
    )
    fetch_max_bytes: int = Field(
        52_428_800,
        ge=1_024,
        description="Bytes a fetch request may return, all partitions together.",
    )
    max_partition_fetch_bytes: int = Field(
        10_485_760, ge=1_024, description="Bytes a fetch request may return per partition."
    )
    request_timeout_ms: int = Field(
        30_000, ge=1_000, description="Milliseconds to wait for a broker's answer to a request."
    )
    internal_topic: str | None = Field(
        None,
        description=(
            "The topic that carries decoded events from every member to the one that judges "
            "(one partition, created when missing); default: <group_id>.events."
        ),
    )
    progress_topic: str | None = Field(
        None,
        description=(
            "The topic on which members say how far they have read, to read in step in a "
            "backfill (one partition, created when missing); default: <group_id>.progress."
        ),
    )
    idle_ms: int = Field(
        1_000,
        ge=0,
        description=(
            "Milliseconds a caught-up input partition stays quiet before the event-time merge "
            "stops waiting for it."
        ),
    )
    reconnect_backoff_max_ms: int = Field(
        10_000, ge=50, description="Longest wait, in milliseconds, between reconnects to a broker."
    )


class MetricsConfig(_Section):
    host: str = Field(
        "0.0.0.0", description="The address /metrics, /healthz and /readyz are served on."
    )
    port: int = Field(
        9108,
        ge=0,
        le=65_535,
        description="The TCP port of /metrics, /healthz and /readyz; 0 picks a free port.",
    )
    incidents_kept: int = Field(
        200,
        ge=1,
        le=100_000,
        description="Decisions kept for the incident page, /incidents on the same port (each "
        "with its scope's histograms, a few KB): the oldest are dropped first.",
    )


class LimitsConfig(_Section):
    max_message_bytes: int = Field(
        1_048_576,
        ge=256,
        description="Bytes of a message, checked before parsing; larger ones are rejected "
        "as too_large.",
    )
    max_features_per_event: int = Field(
        1_000,
        ge=1,
        description="Features of one prediction; more are rejected as too_many_features.",
    )
    max_string_bytes: int = Field(
        1_024,
        ge=1,
        description="Characters of a feature or cohort name or value; longer ones are "
        "rejected as string_too_long.",
    )
    max_models: int = Field(
        100,
        ge=1,
        description="Models watched; predictions of further models are rejected as "
        "too_many_models.",
    )
    max_buffered_events: int = Field(
        500_000,
        ge=1,
        description=(
            "Events the event-time merge may hold while it waits for a lagging partition; "
            "past it, all are judged (and the lagging partition's events count as late)."
        ),
    )
    max_future_s: float = Field(
        86_400.0,
        gt=0,
        description="Seconds an event time may be ahead of the newest one its topic has shown "
        "(in any of the partitions this member reads, or the replay file); later ones are "
        "rejected as invalid_value rather than move the clock of the join store, the windows "
        "and the event-time merge, until ten in a row agree (a topic back after a longer "
        "pause).",
    )


class FeedbackConfig(_Section):
    """The join of labels to their predictions (see docs/detection.md, Outcomes)."""

    join_max_entries: int = Field(
        1_000_000,
        ge=1,
        description="Predictions kept for late labels (~200 bytes each), oldest evicted first.",
    )
    join_horizon_s: float = Field(
        30 * 86_400.0,
        gt=0,
        description="Seconds of event time a label may lag its prediction; older entries expire.",
    )
    join_grace_s: float = Field(
        300.0,
        ge=0,
        description="Seconds of event time a label may arrive before its prediction and "
        "still join.",
    )
    join_max_pending: int = Field(
        100_000,
        ge=1,
        description="Labels kept waiting for a prediction that has not arrived yet, oldest "
        "dropped first.",
    )


class CheckpointConfig(_Section):
    """Where and how often the state is checkpointed (``driftgate run`` only)."""

    dir: str | None = Field(
        "driftgate-state",
        description="A directory only driftgate writes to, relative to the working directory; "
        "null (and no topic) turns checkpoints off.",
    )
    topic: str | None = Field(
        None,
        description="A compacted Kafka topic for checkpoints instead of dir (dir is then unused).",
    )
    interval_events: int = Field(
        200_000,
        ge=1,
        description="Records between checkpoints (or interval_s, whichever comes first).",
    )
    interval_s: float = Field(
        60.0,
        gt=0,
        description="Seconds between checkpoints (or interval_events, whichever comes first).",
    )


class ReferenceConfig(_Section):
    """A pinned reference (see docs/operations.md, Pinning a reference)."""

    file: str | None = Field(
        None,
        description="A file of `driftgate reference build`: its models are judged against "
        "it from their first event instead of against their first events; null: none.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTGATE_", env_nested_delimiter="__", extra="forbid"
    )

    kafka: KafkaConfig = Field(
        KafkaConfig(), description="The brokers, the consumer group and the topics."
    )
    metrics: MetricsConfig = Field(
        MetricsConfig(), description="Where /metrics, /healthz and /readyz are served."
    )
    detection: DetectionConfig = Field(  # type: ignore[valid-type]
        default_factory=DetectionConfig,
        description="The reference, the windows, and the tests' thresholds.",
    )
    limits: LimitsConfig = Field(
        LimitsConfig(), description="Bounds on the input; records past them are dead-lettered."
    )
    feedback: FeedbackConfig = Field(
        FeedbackConfig(), description="The join of labels to their predictions."
    )
    checkpoint: CheckpointConfig = Field(
        CheckpointConfig(),
        description="Where and how often the state is checkpointed (`driftgate run` only).",
    )
    reference: ReferenceConfig = Field(
        ReferenceConfig(), description="A pinned reference instead of each model's first events."
    )
    workers: int = Field(
        1,
        ge=0,
        le=256,
        description="Processes `driftgate run` starts, each a member of the consumer group, "
        "behind one metrics port; 0: one per core this process may use (its CPU affinity, "
        "at most its cgroup's CPU quota).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="The least severe level driftgate logs to standard error."
    )

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
        # same name but is another object, which the checkpoints' allow-list refuses.
        return MonitorConfig(
            **{f.name: getattr(self.detection, f.name) for f in dataclasses.fields(MonitorConfig)}
        )


def explain(error: ValidationError) -> str:
    """A pydantic error in plain words, one line per problem, naming the key."""
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        if problem["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            lines.append(f"{key}: unknown key (check the spelling; see docs/configuration.md)")
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
