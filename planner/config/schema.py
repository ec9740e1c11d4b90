"""The configuration's shape: frozen pydantic models, one per YAML section.

Every model forbids unknown keys and is strict (YAML gives real ints, bools and strings; nothing
is coerced from a string). Durations, sizes and money use the parsers in ``units``; paths are
made absolute against the config file's folder, which the loader passes as validation context
``{"base_dir": Path}``. Cross-references (a source's policy, a model id, a limit's provider) are
checked by the loader, which knows the price catalog; this module only knows shapes.

Each ``Field(description=...)`` is the operator's documentation: ``reference_rows()`` turns the
schema into the README's configuration reference.
"""

from __future__ import annotations

import fnmatch
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from planner.config.units import (
    SECRET_PATTERN,
    Listen,
    SubmitSchedule,
    describe,
    format_byte_size,
    format_duration,
    parse_byte_size,
    parse_duration,
    parse_listen,
    parse_submit,
    parse_usd,
    show,
)
from planner.core.admission import AccountLimits
from planner.core.budget import AtCap, BudgetRules
from planner.core.escape import ONE_RETRY
from planner.core.policy import PolicyRules

# ---------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class Label:
    """Annotated marker: the type's name in the configuration reference."""

    text: str


def _plain(parse: Callable[[Any], Any], error: str) -> PlainValidator:
    """A validator that turns our parsers' ``ValueError`` into a pydantic error with our text."""

    def validate(value: Any) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise PydanticCustomError(error, str(exc)) from None

    return PlainValidator(validate)


def _positive_duration(value: Any) -> timedelta:
    return parse_duration(value)


def _duration_or_zero(value: Any) -> timedelta:
    return parse_duration(value, allow_zero=True)


def _positive_size(value: Any) -> int:
    size = parse_byte_size(value)
    if size == 0:
        raise ValueError(f"expected a size greater than zero; got {show(value)}")
    return size


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a positive integer; got {describe(value)}")
    if value < 1:
        raise ValueError(f"expected a positive integer; got {value}")
    return value


MAX_DEFAULT_OUTPUT_TOKENS = 1_000_000  # no model writes more (the catalog's largest: 128,000)


def _output_tokens(value: Any) -> int:
    count = _positive_int(value)
    if count > MAX_DEFAULT_OUTPUT_TOKENS:  # a typo: absurd estimates, and no store column holds
        raise ValueError(f"expected at most {MAX_DEFAULT_OUTPUT_TOKENS:,} tokens; got {count:,}")
    return count


def _ratio(value: Any) -> Decimal:
    amount = parse_usd(value) if not isinstance(value, bool) else None
    if amount is None or amount > 1:
        raise ValueError(f'expected a ratio between 0 and 1 such as "0.2"; got {show(value)}')
    return amount


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(value: Any) -> str:
    # Never echo the value: a key pasted here by mistake must not reach an error message.
    looks_like_key = isinstance(value, str) and SECRET_PATTERN.search(value) is not None
    if not isinstance(value, str) or _ENV_NAME.fullmatch(value) is None or looks_like_key:
        raise ValueError(
            "expected the NAME of an environment variable (letters, digits and _), "
            "not the key itself"
        )
    return value


def _http_url(value: Any) -> str:
    # Not echoed: a URL may carry a key in its query string or user part.
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/?#@]+(/[^\s?#]*)?", value):
        raise ValueError(
            "expected an http:// or https:// URL without user, password or query "
            "(e.g. https://api.openai.com/v1)"
        )
    return value.rstrip("/")


def _store_url(value: Any, info: ValidationInfo) -> str:
    """A SQLAlchemy URL without a password; a relative SQLite path is made absolute."""
    # Never echoed: a URL may carry a password.
    from sqlalchemy.engine import make_url  # lazily: importing sqlalchemy is not free
    from sqlalchemy.exc import ArgumentError

    if not isinstance(value, str):
        raise PydanticCustomError(
            "store_url", f"expected a SQLAlchemy URL string; got {describe(value)}"
        )
    try:
        url = make_url(value)
    except ArgumentError:
        raise PydanticCustomError(
            "store_url",
            "expected a SQLAlchemy URL such as sqlite:///state/planner.db or "
            "postgresql+psycopg://planner@db/planner",
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise PydanticCustomError(
            "store_url", "expected a sqlite:// or postgresql:// (e.g. postgresql+psycopg://) URL"
        )
    if url.password is not None:
        raise PydanticCustomError(
            "store_url",
            "store.url must not contain a password; use store.url_env (an environment "
            "variable holding the URL) or a .pgpass file",
        )
    database = url.database
    base = (info.context or {}).get("base_dir")
    special = database in (None, "", ":memory:") or str(database).startswith("file:")
    relative = not special and not Path(str(database)).is_absolute()
    if url.get_backend_name() == "sqlite" and relative and base is not None:
        return url.set(database=str(Path(base) / str(database))).render_as_string(False)
    return value


def _resolve(value: Any, info: ValidationInfo) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise PydanticCustomError("path", f"expected a path; got {describe(value)}")
    path = Path(value)
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def _secret_path(value: Any, info: ValidationInfo) -> str:
    """A credentials file; ``${VAR}`` (``${CREDENTIALS_DIRECTORY}``) expands when it is read."""
    if isinstance(value, str) and value.startswith("$"):
        if not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}(/.*)?", value):
            raise PydanticCustomError(
                "path", "expected ${NAME}/rest (e.g. ${CREDENTIALS_DIRECTORY}/openai_api_key)"
            )
        return value
    return str(_resolve(value, info))


Duration = Annotated[timedelta, _plain(_positive_duration, "duration"), Label("duration")]
DurationOrZero = Annotated[timedelta, _plain(_duration_or_zero, "duration"), Label("duration")]
ByteSize = Annotated[int, _plain(_positive_size, "byte_size"), Label("size")]
USD = Annotated[Decimal, _plain(parse_usd, "usd"), Label("USD")]
Ratio = Annotated[Decimal, _plain(_ratio, "ratio"), Label("ratio 0..1")]
PositiveInt = Annotated[int, _plain(_positive_int, "positive_int"), Label("integer > 0")]
OutputTokens = Annotated[
    int, _plain(_output_tokens, "positive_int"), Label(f"1..{MAX_DEFAULT_OUTPUT_TOKENS:,}")
]
EnvName = Annotated[str, _plain(_env_name, "env_name"), Label("env var name")]
HttpUrl = Annotated[str, _plain(_http_url, "url"), Label("URL")]
StoreUrl = Annotated[str, PlainValidator(_store_url), Label("URL")]
ConfigPath = Annotated[Path, PlainValidator(_resolve), Label("path")]
SecretFilePath = Annotated[str, PlainValidator(_secret_path), Label("path")]
ModelId = Annotated[str, Label("model id")]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _name(value: Any) -> str:
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise ValueError(
            "expected a name of lowercase letters, digits, _ and - (at most 63 characters); "
            f"got {describe(value)}"
        )
    return value


Name = Annotated[str, _plain(_name, "name"), Label("name")]


def _timezone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # reads the zone database: config only

    hint = "expected an IANA time zone name such as UTC or Europe/Berlin"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{hint}; got {describe(value)}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{hint}; got {show(value)} (unknown zone)") from None
    return value


TimeZoneName = Annotated[str, _plain(_timezone, "timezone"), Label("time zone")]


def _patterns(value: Any) -> tuple[str, ...]:
    hint = 'expected a list of model-id patterns such as ["gpt-*", "text-embedding-*"]'
    if not isinstance(value, list | tuple):
        raise ValueError(f"{hint}; got {describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{hint}; item {index + 1} is {describe(item)}")
    return tuple(value)


Patterns = Annotated[tuple[str, ...], _plain(_patterns, "patterns"), Label("list of patterns")]


ListenAddress = Annotated[Listen, _plain(parse_listen, "listen"), Label("host:port")]


Submit = Annotated[SubmitSchedule, _plain(parse_submit, "schedule"), Label("schedule")]


# ---------------------------------------------------------------- sections


class Section(BaseModel):
    """Base of every section: frozen, strict, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StoreConfig(Section):
    """Where the queue, batches and ledger live."""

    url: StoreUrl | None = Field(
        None,
        description="SQLAlchemy URL (sqlite:///... or postgresql+psycopg://...); null = "
        "sqlite:///<state_dir>/planner.db. Must not contain a password: use url_env or .pgpass.",
    )
    url_env: EnvName | None = Field(
        None,
        description="Name of an environment variable holding the URL (when it has a password).",
    )
    retention: Duration | None = Field(
        timedelta(days=30),
        description="How long finished requests and batches keep their details: older "
        "succeeded/dead/rejected requests lose their body and history (their key and ledger "
        "rows stay, so re-dropped input is still a duplicate and money totals stay exact) and "
        "older collected batches are deleted; null = keep everything.",
    )


class ProviderBase(Section):
    """Fields shared by every provider kind."""

    api_key_env: EnvName | None = Field(
        None,
        description="Name of the environment variable holding the API key; null = the kind's "
        "default (OPENAI_API_KEY / GEMINI_API_KEY) unless api_key_file is given.",
    )
    api_key_file: SecretFilePath | None = Field(
        None,
        description="File holding the API key (e.g. ${CREDENTIALS_DIRECTORY}/openai_api_key "
        "under systemd LoadCredential=); ${NAME} expands from the environment when read.",
    )
    base_url: HttpUrl | None = Field(
        None, description="API base URL; null = the provider's public endpoint."
    )
    timeout: Duration = Field(timedelta(seconds=60), description="Timeout of one API call.")
    requests_per_minute: PositiveInt | None = Field(
        None, description="Client-side cap on interactive calls started per minute; null = none."
    )
    tokens_per_minute: PositiveInt | None = Field(
        None,
        description="Client-side cap on estimated input tokens sent interactively per minute.",
    )

    default_key_env: ClassVar[str] = ""  # the kind's conventional variable

    def key_env_name(self) -> str | None:
        """The environment variable to read the key from, or ``None`` if a file is configured."""
        if self.api_key_env is not None:
            return self.api_key_env
        return None if self.api_key_file is not None else self.default_key_env

    def serves(self, model: str) -> bool:
        """Whether one of ``models`` (shell-style patterns) matches ``model``."""
        patterns: tuple[str, ...] = getattr(self, "models", ())
        return any(fnmatch.fnmatchcase(model, p) for p in patterns)


class OpenAIProviderConfig(ProviderBase):
    """An OpenAI-compatible Batch API (OpenAI itself or a compatible server)."""

    default_key_env: ClassVar[str] = "OPENAI_API_KEY"

    kind: Literal["openai"] = Field(description="openai: files + batches through the openai SDK.")
    tier: int = Field(1, ge=1, le=5, description="Usage tier 1..5 (sets enqueued-token limits).")
    models: Patterns = Field(
        ("gpt-*", "o[0-9]*", "text-embedding-*"),
        description="Shell-style patterns of the model ids this provider serves; the first "
        "provider (in file order) whose pattern matches a model gets its requests.",
    )


class GeminiProviderConfig(ProviderBase):
    """Google's native Gemini Batch API (or its OpenAI compatibility layer)."""

    default_key_env: ClassVar[str] = "GEMINI_API_KEY"

    kind: Literal["gemini"] = Field(description="gemini: the Gemini API through google-genai.")
    tier: int = Field(1, ge=1, le=3, description="Usage tier 1..3 (sets enqueued-token limits).")
    models: Patterns = Field(
        ("gemini-*",), description="Shell-style patterns of the model ids this provider serves."
    )
    openai_compat: bool = Field(
        False,
        description="Use Gemini's OpenAI compatibility layer instead of the native API (without "
        "base_url: https://generativelanguage.googleapis.com/v1beta/openai/, Google's host).",
    )


ProviderConfig = Annotated[OpenAIProviderConfig | GeminiProviderConfig, Field(discriminator="kind")]


class BudgetConfig(Section):
    """A spending cap per day and/or per month (``core/budget.py``)."""

    daily_usd: USD | None = Field(
        None, description="USD that may be spent (billed plus in flight) per day; null = no cap."
    )
    monthly_usd: USD | None = Field(
        None, description="USD that may be spent per calendar month; null = no cap."
    )
    timezone: TimeZoneName = Field("UTC", description="Where a budget day and month begin.")
    at_cap: Literal["hold", "reject", "batch_only"] = Field(
        "hold",
        description="A request the budget has no room for: hold (state held until there is "
        "room), reject, or batch_only (by batch if that fits, else held).",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetConfig:
        if self.daily_usd is None and self.monthly_usd is None:
            raise ValueError("a budget needs daily_usd, monthly_usd or both")
        return self

    def rules(self) -> BudgetRules:
        """The pure core's view of this budget (the zone resolved here, once)."""
        from zoneinfo import ZoneInfo

        return BudgetRules(
            self.daily_usd, self.monthly_usd, ZoneInfo(self.timezone), AtCap(self.at_cap)
        )


class DefaultModels(Section):
    """The model for lines that name none, per wire format (a Gemini batch file never does)."""

    openai_chat: ModelId | None = Field(
        None, description="OpenAI chat lines (/v1/chat/completions, /v1/responses) and prompts."
    )
    openai_embeddings: ModelId | None = Field(
        None, description="OpenAI /v1/embeddings lines and simple text lines."
    )
    gemini_generate: ModelId | None = Field(
        None, description="Gemini batch lines with request.contents (generateContent)."
    )
    gemini_embed: ModelId | None = Field(
        None, description="Gemini batch lines with request.content (embedContent)."
    )


class JsonlDirSourceConfig(Section):
    """A spool folder of .jsonl files (OpenAI batch, Gemini batch or simple lines)."""

    kind: Literal["jsonl_dir"] = Field(description="jsonl_dir: read *.jsonl files from a folder.")
    path: ConfigPath = Field(description="The spool folder (relative to the config file).")
    policy: Name = Field("default", description="Name of the policy (under policies:) to apply.")
    sink: Name | None = Field(
        None, description="Name of the sink for the results; null = every configured sink."
    )
    default_model: ModelId | None = Field(
        None, description="Model for lines that name none (chat/generate lines)."
    )
    default_embedding_model: ModelId | None = Field(
        None, description="Model for embedding lines that name none."
    )
    default_models: DefaultModels = Field(
        DefaultModels(),
        description="Per-format models for lines that name none; each wins over "
        "default_model / default_embedding_model for its format.",
    )
    default_deadline: Duration | None = Field(
        None, description="Deadline for lines without one; null = the policy's default."
    )
    interval: Duration = Field(
        timedelta(seconds=30), description="How often the folder is scanned."
    )
    settle: DurationOrZero = Field(
        timedelta(seconds=2), description="Files modified more recently than this are left alone."
    )
    max_line_bytes: ByteSize = Field(
        10_000_000, description="Longer lines are quarantined as too_large."
    )
    budget: BudgetConfig | None = Field(
        None, description="Spending cap of this source alone (on top of its policy's)."
    )
    lease: Duration = Field(
        timedelta(minutes=2),
        description="A replica's claim on a file, kept in the store and renewed while the file "
        "is read; a file whose claimer died is read again by another replica after this.",
    )


class SqlColumnsConfig(Section):
    """Which column of a row holds which field of a request."""

    id: str = Field(description="The row's unique id (becomes the request's key).")
    prompt: str | None = Field(None, description="A prompt text (a chat request).")
    messages: str | None = Field(None, description="Chat messages, JSON (text or a JSON column).")
    text: str | None = Field(None, description="A text to embed (an embedding request).")
    body: str | None = Field(
        None, description="A provider-format request body, JSON (OpenAI body or Gemini request)."
    )
    model: str | None = Field(None, description="The model id; null = the source's default.")
    endpoint: str | None = Field(
        None, description="With body: the OpenAI endpoint URL (default /v1/chat/completions)."
    )
    deadline: str | None = Field(
        None, description="A timestamp with a timezone, or a duration such as 12h."
    )
    metadata: str | None = Field(None, description="A JSON object of string pairs.")


class SqlSourceConfig(Section):
    """Rows of a table, or of a query, in any database SQLAlchemy speaks."""

    kind: Literal["sql"] = Field(description="sql: read requests from database rows.")
    url_env: EnvName = Field(
        description="Name of the environment variable holding the SQLAlchemy URL (it may hold "
        "a password, so never the file)."
    )
    table: str | None = Field(
        None, description="Table to read (schema.table allowed); rows whose state_column is null."
    )
    query: str | None = Field(
        None,
        description="A SELECT instead of table: re-run every pass, rows already taken are "
        "dropped by their id.",
    )
    columns: SqlColumnsConfig = Field(description="The column mapping (id and one input).")
    state_column: str = Field(
        "planner_state",
        description="Table mode: null = waiting; set to queued or quarantined once taken.",
    )
    error_column: str | None = Field(
        None, description="Table mode: where a quarantined row's reason is written; null = none."
    )
    page: PositiveInt = Field(500, description="Rows read and committed at a time.")
    policy: Name = Field("default", description="Name of the policy (under policies:) to apply.")
    sink: Name | None = Field(
        None, description="Name of the sink for the results; null = every configured sink."
    )
    default_model: ModelId | None = Field(None, description="Model for chat rows that name none.")
    default_embedding_model: ModelId | None = Field(
        None, description="Model for embedding rows that name none."
    )
    default_models: DefaultModels = Field(
        DefaultModels(), description="Per-format models for rows that name none."
    )
    default_deadline: Duration | None = Field(
        None, description="Deadline for rows without one; null = the policy's default."
    )
    interval: Duration = Field(timedelta(seconds=30), description="How often rows are read.")
    budget: BudgetConfig | None = Field(
        None, description="Spending cap of this source alone (on top of its policy's)."
    )
    lease: Duration = Field(
        timedelta(minutes=2),
        description="A replica's hold on the source while it reads it, renewed per page.",
    )


SourceConfig = Annotated[
    Union[JsonlDirSourceConfig, SqlSourceConfig],  # noqa: UP007
    Field(discriminator="kind"),
]


class JsonlDirSinkConfig(Section):
    """Results written as .jsonl files into a folder."""

    kind: Literal["jsonl_dir"] = Field(description="jsonl_dir: write results as .jsonl files.")
    path: ConfigPath = Field(description="The results folder (relative to the config file).")


class WebhookSinkConfig(Section):
    """Each result POSTed to a URL, signed, and retried until the receiver accepts it."""

    kind: Literal["webhook"] = Field(
        description="webhook: POST each result (and dead letter) as JSON to a URL."
    )
    url: HttpUrl = Field(description="Where to POST (http:// or https://, no user or query).")
    secret_env: EnvName | None = Field(
        None,
        description="Name of the environment variable holding the signing secret "
        "(X-Planner-Signature: sha256=HMAC-SHA256 of the body); this or secret_file is required.",
    )
    secret_file: SecretFilePath | None = Field(
        None, description="File holding the signing secret (e.g. ${CREDENTIALS_DIRECTORY}/hook)."
    )
    timeout: Duration = Field(timedelta(seconds=10), description="Timeout of one POST.")
    retry_base: Duration = Field(
        timedelta(seconds=5),
        description="First back-off after a failed POST; doubles per failure (full jitter).",
    )
    retry_cap: Duration = Field(
        timedelta(minutes=15),
        description="Longest back-off; a result is retried at least this often until "
        "delivered, never dropped.",
    )


class SqlSinkConfig(Section):
    """Results written into a database: a results table, or columns of the source table."""

    kind: Literal["sql"] = Field(description="sql: write results into database rows.")
    url_env: EnvName = Field(
        description="Name of the environment variable holding the SQLAlchemy URL."
    )
    table: str = Field(
        description="Without key_column: a results table (created if missing; one row per "
        "(source, id)). With key_column: the table to update (usually the source table)."
    )
    key_column: str | None = Field(
        None, description="Update mode: the column matched against the request's id."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Update mode: result field -> column, fields response, status, error, "
        "cost_usd, completed_at, record (the whole result line as JSON).",
    )


SinkConfig = Annotated[
    Union[JsonlDirSinkConfig, WebhookSinkConfig, SqlSinkConfig],  # noqa: UP007
    Field(discriminator="kind"),
]


class PolicyConfig(Section):
    """When a request may wait for the Batch API and when it goes interactive."""

    batch_window: Duration = Field(
        timedelta(hours=24),
        description="How long a batch may take (providers promise 24h): the prior of the "
        "turnaround p95 until 20 batches of a model have finished; a request goes by batch "
        "when its deadline leaves this p95 plus 27 min for one way out (cancel, re-plan, answer "
        "interactively).",
    )
    min_savings_usd: USD = Field(
        Decimal(0), description="Batch only when it saves at least this much per request."
    )
    min_savings_ratio: Ratio | None = Field(
        None, description="Batch only when it saves at least this fraction of the interactive cost."
    )
    default_deadline: Duration | None = Field(
        timedelta(hours=48), description="Deadline of requests that carry none; null = no deadline."
    )
    default_output_tokens: OutputTokens = Field(
        256, description="Output tokens assumed when a request gives no maximum."
    )
    allow_flex: bool = Field(False, description="Allow the flex lane where the model has one.")
    flex_latency: Duration = Field(
        timedelta(minutes=15), description="How long a flex request is expected to take."
    )
    budget: BudgetConfig | None = Field(
        None, description="Spending cap shared by every source under this policy; null = none."
    )

    def rules(self) -> PolicyRules:
        """The pure core's view of this policy."""
        return PolicyRules(
            batch_window=self.batch_window,
            min_savings_usd=self.min_savings_usd,
            min_savings_ratio=self.min_savings_ratio,
            default_deadline=self.default_deadline,
            allow_flex=self.allow_flex,
            flex_latency=self.flex_latency,
            retry_time=ONE_RETRY,
        )


class LimitOverrides(Section):
    """Batch limits replacing the shipped ones; a key given as null lifts that limit."""

    max_requests: PositiveInt | None = Field(None, description="Requests per batch.")
    max_bytes: ByteSize | None = Field(None, description="Size of one batch input file.")
    max_enqueued_tokens: PositiveInt | None = Field(
        None, description="Input tokens enqueued at once for one model."
    )
    max_embedding_inputs: PositiveInt | None = Field(
        None, description="Embedding inputs per batch."
    )

    def overrides(self) -> dict[str, int | None]:
        """Only the keys written in the file, for ``core.limits.merge_limits``."""
        names = set(LimitOverrides.model_fields)
        return {n: getattr(self, n) for n in sorted(self.model_fields_set & names)}


class ProviderLimitsConfig(LimitOverrides):
    """Limit overrides for one configured provider, optionally per model."""

    per_model: dict[ModelId, LimitOverrides] = Field(
        default_factory=dict, description="Overrides for single models (applied after the above)."
    )
    max_concurrent_batches: PositiveInt | None = Field(
        None,
        description="Batch jobs open at once at this provider (planned to finished); not "
        "given = the documented figure (Gemini 100, OpenAI none); null = no limit.",
    )
    max_file_storage: ByteSize | None = Field(
        None,
        description="Bytes of batch input files stored at once; not given = the documented "
        "figure (Gemini 20GB, OpenAI none); null = no limit.",
    )

    def account(self, base: AccountLimits) -> AccountLimits:
        """``base`` (the documented figures) with the keys written in the file."""
        given = self.model_fields_set
        return AccountLimits(
            self.max_concurrent_batches
            if "max_concurrent_batches" in given
            else base.max_concurrent_batches,
            self.max_file_storage if "max_file_storage" in given else base.max_file_storage_bytes,
        )


class FlushConfig(Section):
    """When queued batch requests of one model are packed and submitted."""

    max_requests: PositiveInt | None = Field(
        10_000, description="Flush once this many requests wait; null = no count trigger."
    )
    max_tokens: PositiveInt | None = Field(
        None, description="Flush once this many input tokens wait; null = no token trigger."
    )
    max_wait: Duration = Field(
        timedelta(hours=1), description="Flush anything that has waited this long."
    )


class ScheduleConfig(Section):
    """How often the daemon's stages run."""

    submit: Submit = Field(
        SubmitSchedule(interval=timedelta(minutes=15)),
        description='"interval 15m" or a five-field cron expression (UTC) for planning+submitting.',
    )
    poll: Duration = Field(
        timedelta(seconds=60), description="How often running batches are polled."
    )
    flush: FlushConfig = Field(default_factory=FlushConfig, description="Flush triggers.")
    list_lag: Duration = Field(
        timedelta(seconds=60),
        description=(
            "How long a new batch may take to show up in the provider's batch list. A batch whose"
            " create was not confirmed is re-sent only after two listings this far apart both"
            " missed it (never created twice)."
        ),
    )


class MetricsConfig(Section):
    """The Prometheus /metrics endpoint."""

    enabled: bool = Field(True, description="Serve /metrics.")
    listen: ListenAddress = Field(
        Listen("127.0.0.1", 9464), description="host:port to bind; keep it on loopback."
    )


class IntakeConfig(Section):
    """The HTTP intake: native endpoints and an OpenAI-compatible Batch API; off by default."""

    enabled: bool = Field(False, description="Serve the HTTP intake (needs bearer tokens).")
    listen: ListenAddress = Field(
        Listen("127.0.0.1", 8470), description="host:port to bind; keep it on loopback."
    )
    tokens_env: EnvName | None = Field(
        None,
        description="Environment variable holding the accepted bearer tokens, comma-separated.",
    )
    tokens_file: SecretFilePath | None = Field(
        None, description="File of accepted bearer tokens (comma- or newline-separated)."
    )
    source: Name = Field(
        "intake", description="Source name the intake's requests are filed under (ledger, report)."
    )
    policy: Name = Field("default", description="Policy applied to requests received over HTTP.")
    sink: Name | None = Field(
        None,
        description="Sink that also gets the results; null = none (the intake serves them itself).",
    )
    default_model: ModelId | None = Field(None, description="Model for records that name none.")
    max_body: ByteSize = Field(200_000_000, description="Largest accepted request body (413).")


class TokenizerConfig(Section):
    """How OpenAI token estimates are counted: toktok or tiktoken, and where tiktoken's BPE
    files come from."""

    cache_dir: ConfigPath | None = Field(
        None,
        description="Folder holding the BPE files; null = $TIKTOKEN_CACHE_DIR, else tiktoken's "
        "default. Files are named by the SHA-1 of their download URL, as tiktoken names them.",
    )
    download: bool = Field(
        True, description="Fetch a missing BPE file once (checked by SHA-256) into cache_dir."
    )
    download_timeout: Duration = Field(
        timedelta(seconds=10), description="Give up a BPE download after this long."
    )
    fast: bool = Field(
        True,
        description="Count cl100k_base and o200k_base texts with toktok: tiktoken's counts, "
        "~9x faster, no BPE file needed (a text with a character new in Unicode 17.0 is counted "
        "by tiktoken). false = tiktoken counts every text.",
    )


class PlannerConfig(Section):
    """The whole configuration file."""

    state_dir: ConfigPath = Field(
        Path("state"),
        validate_default=True,
        description="Folder for the SQLite store and local state (relative to the config file).",
    )
    store: StoreConfig = Field(default_factory=StoreConfig, description="The store.")
    providers: dict[Name, ProviderConfig] = Field(
        default_factory=dict, description="Batch API providers by name."
    )
    models: dict[ModelId, dict[str, Any]] = Field(
        default_factory=dict,
        description="Overrides of and additions to the shipped price catalog (same entry shape).",
    )
    sources: dict[Name, SourceConfig] = Field(
        default_factory=dict, description="Where requests come from, by name."
    )
    sinks: dict[Name, SinkConfig] = Field(
        default_factory=dict, description="Where results go, by name."
    )
    policies: dict[Name, PolicyConfig] = Field(
        default_factory=lambda: {"default": PolicyConfig()},
        description="Cost policies by name; sources refer to them.",
    )
    limits: dict[Name, ProviderLimitsConfig] = Field(
        default_factory=dict, description="Batch limit overrides by provider name."
    )
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="Timing.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Metrics.")
    intake: IntakeConfig = Field(default_factory=IntakeConfig, description="HTTP intake.")
    tokenizer: TokenizerConfig = Field(
        default_factory=TokenizerConfig,
        description="Token counting: toktok, else tiktoken; with neither (fast off and no BPE "
        "files) estimates fall back to bytes/4.",
    )

    def provider_for(self, model: str) -> str | None:
        """The name of the first provider (in file order) that serves ``model``."""
        for name, provider in self.providers.items():
            if provider.serves(model):
                return name
        return None

    def store_path_default(self) -> Path:
        """Where the SQLite database lives when ``store.url`` is not set."""
        return self.state_dir / "planner.db"


# ---------------------------------------------------------------- reference


def unwrap_annotation(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` (returning its metadata) and ``| None``."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        args = get_args(annotation)
        annotation, metadata = args[0], [*metadata, *args[1:]]
    return annotation, metadata


def is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _label(annotation: Any) -> str:
    annotation, metadata = unwrap_annotation(annotation)
    labels = [m.text for m in metadata if isinstance(m, Label)]
    if labels:
        return labels[0]
    if is_union(annotation):
        members = [a for a in get_args(annotation) if a is not type(None)]
        text = " | ".join(_label(a) for a in members)
        return f"{text} | null" if len(members) < len(get_args(annotation)) else text
    if get_origin(annotation) is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if get_origin(annotation) is tuple:
        return f"list of {_label(get_args(annotation)[0])}s"
    if get_origin(annotation) is dict:
        return "mapping"
    simple = {str: "string", int: "integer", bool: "boolean", Decimal: "decimal"}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return simple.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default_text(value: Any) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, BaseModel):
        return "(see below)"
    if isinstance(value, Path):
        return f"./{value}"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, Decimal):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {{}}" for k in value) + "}"
    return str(value)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    annotation, _ = unwrap_annotation(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    elif is_union(annotation) or get_origin(annotation) is dict:
        for arg in get_args(annotation):
            yield from _models_in(arg)


_SIZE_FIELDS = frozenset({"max_line_bytes", "max_body_bytes", "max_bytes", "max_file_storage"})


def _rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    fields = sorted(model.model_fields.items(), key=lambda item: item[0] != "kind")
    for name, info in fields:
        path = f"{prefix}{name}"
        if info.is_required():
            default = "required"
        elif info.default_factory is not None:
            default = _default_text(info.default_factory())  # type: ignore[call-arg]
        elif name in _SIZE_FIELDS and isinstance(info.default, int):
            default = format_byte_size(info.default)
        else:
            default = _default_text(info.default)
        annotation = info.rebuild_annotation()
        bare, _ = unwrap_annotation(annotation)
        if get_origin(bare) is dict and name != "models":
            key = "model" if name == "per_model" else "name"
            yield (path, f"mapping of {key} -> section", default, info.description or "")
            for member in _models_in(get_args(bare)[1]):
                kind = member.model_fields.get("kind")
                tag = get_args(kind.annotation)[0] if kind is not None else None
                sub = f"{path}.<{key}>." if tag is None else f"{path}.<{key}:{tag}>."
                yield from _rows(member, sub)
            continue
        yield (path, _label(annotation), default, info.description or "")
        for member in _models_in(annotation):
            yield from _rows(member, f"{path}.")


def reference_rows() -> list[tuple[str, str, str, str]]:
    """Every configuration key as ``(key path, type, default, description)``, in file order.

    Map sections appear as ``sources.<name>.path``; kind unions as ``providers.<name:openai>.tier``.
    """
    return list(_rows(PlannerConfig, ""))
