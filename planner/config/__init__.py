"""The configuration: its shape (``schema``), its units (``units``) and how a file is read
(``load``). Nothing here reads a file, the environment or a secret at import time.

Public API::

    load_config(path, *, catalog=None) -> PlannerConfig     # raises ConfigError(problems)
    validate_file(path, *, catalog=None) -> list[str]       # "FILE:LINE:COL: message" each
    parse_config(text, *, filename, base_dir, catalog) -> PlannerConfig
    resolve_api_key(provider_cfg, environ) -> SecretStr | None
    resolve_secret(env_name, file, environ, what) -> SecretStr | None
    resolve_intake_tokens(intake_cfg, environ) -> list[SecretStr]
    resolve_store_url(cfg, environ) -> str;  default_store_file(cfg) -> Path | None
    default_config_path() -> Path;  reference_rows() -> list[(key, type, default, description)]
"""

from planner.config.load import (
    default_config_path,
    default_store_file,
    load_config,
    parse_config,
    resolve_api_key,
    resolve_intake_tokens,
    resolve_secret,
    resolve_store_url,
    validate_file,
)
from planner.config.schema import (
    FlushConfig,
    GeminiProviderConfig,
    IntakeConfig,
    JsonlDirSinkConfig,
    JsonlDirSourceConfig,
    LimitOverrides,
    MetricsConfig,
    OpenAIProviderConfig,
    PlannerConfig,
    PolicyConfig,
    ProviderBase,
    ProviderConfig,
    ProviderLimitsConfig,
    ScheduleConfig,
    SinkConfig,
    SourceConfig,
    StoreConfig,
    WebhookSinkConfig,
    reference_rows,
)
from planner.config.units import Listen, SubmitSchedule

__all__ = [
    "FlushConfig",
    "GeminiProviderConfig",
    "IntakeConfig",
    "JsonlDirSinkConfig",
    "JsonlDirSourceConfig",
    "LimitOverrides",
    "Listen",
    "MetricsConfig",
    "OpenAIProviderConfig",
    "PlannerConfig",
    "PolicyConfig",
    "ProviderBase",
    "ProviderConfig",
    "ProviderLimitsConfig",
    "ScheduleConfig",
    "SinkConfig",
    "SourceConfig",
    "StoreConfig",
    "SubmitSchedule",
    "WebhookSinkConfig",
    "default_config_path",
    "default_store_file",
    "load_config",
    "parse_config",
    "reference_rows",
    "resolve_api_key",
    "resolve_intake_tokens",
    "resolve_secret",
    "resolve_store_url",
    "validate_file",
]
