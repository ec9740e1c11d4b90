"""The configuration: unit parsers, FILE:LINE:COL errors, examples, secrets and references."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from planner.config import (
    GeminiProviderConfig,
    OpenAIProviderConfig,
    PlannerConfig,
    default_config_path,
    load_config,
    parse_config,
    reference_rows,
    resolve_api_key,
    resolve_store_url,
    validate_file,
)
from planner.config.prices import shipped_catalog
from planner.config.units import (
    format_byte_size,
    format_duration,
    parse_byte_size,
    parse_duration,
    parse_usd,
)
from planner.core.policy import PolicyRules
from planner.errors import ConfigError
from planner.sources.base import LineError
from planner.sources.jsonl_dir import JsonlDirSource
from planner.store.engine import redact_url

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus" / "config"
EXAMPLES = [
    REPO / "config" / "planner.example.yaml",
    *sorted((REPO / "config" / "examples").glob("*.yaml")),
]
PLANTED = "sk-proj-PLANTEDSECRETVALUE0123456789"
_EXPECT = re.compile(r"# expect: (\d+):(\d+): (.+)")


def _problems(tmp_path: Path, text: str) -> list[str]:
    file = tmp_path / "planner.yaml"
    file.write_text(text, encoding="utf-8")
    return validate_file(file)


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(minutes=90)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_duration_valid(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (60, "bare number 60 (give a unit)"),
        (1.5, "bare number 1.5"),
        (True, "bare number True"),
        ("15", "got '15'"),
        ("15x", "got '15x'"),
        ("1.5h", "got '1.5h'"),
        ("30m1h", "got '30m1h'"),  # largest unit first
        ("-5m", "got '-5m'"),
        ("", "got ''"),
        ("500ms", "milliseconds are not supported"),
        ("0s", "must be greater than zero"),
        ("99999999999d", "got '99999999999d' (at most 3650d)"),  # was an OverflowError
        ("3651d", "(at most 3650d)"),
        (None, "got NoneType"),
    ],
)
def test_duration_invalid(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 90s") as info:
        parse_duration(value)
    assert fragment in str(info.value)


def test_duration_zero_allowed_where_asked() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta(0)


@given(st.integers(min_value=1, max_value=10**8))
def test_duration_format_round_trip(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("200MB", 200_000_000),
        ("2GB", 2_000_000_000),
        ("512KiB", 524_288),
        ("1MiB", 1_048_576),
        ("10kB", 10_000),
        ("10KB", 10_000),
        ("1.5GB", 1_500_000_000),
        ("100B", 100),
        ("3 TiB", 3 * 1024**4),
        (4096, 4096),
        (0, 0),
    ],
)
def test_size_valid(value: object, expected: int) -> None:
    assert parse_byte_size(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("200mb", "unknown unit 'mb'"),
        ("2 gigabytes", "unknown unit 'gigabytes'"),
        ("200", "a string needs a unit, e.g. 200B"),
        ("1.5B", "not a whole number of bytes"),
        ("-1MB", "got '-1MB'"),
        (-1, "must not be negative"),
        (1.5, "got float"),
        (True, "got True"),
    ],
)
def test_size_invalid(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match="expected a size such as 512KiB, 200MB or 2GB") as info:
        parse_byte_size(value)
    assert fragment in str(info.value)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["B", "KB", "MB", "GB", "KiB", "MiB", "GiB"]),
)
def test_size_units(count: int, unit: str) -> None:
    factor = {
        "B": 1,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
        "KiB": 2**10,
        "MiB": 2**20,
        "GiB": 2**30,
    }
    assert parse_byte_size(f"{count}{unit}") == count * factor[unit]


@given(st.integers(min_value=0, max_value=10**15))
def test_size_format_round_trip(size: int) -> None:
    assert parse_byte_size(format_byte_size(size)) == size


# ---------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.50", Decimal("0.50")),
        ("0", Decimal(0)),
        (2, Decimal(2)),
        ("0.000001", Decimal("0.000001")),
        (Decimal("12.5"), Decimal("12.5")),
    ],
)
def test_usd_valid(value: object, expected: Decimal) -> None:
    assert parse_usd(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("-1", "must not be negative"),
        ("-0.5", "must not be negative"),
        ("ten", "got 'ten'"),
        ("1e3", "got '1e3'"),
        ("$5", "got '$5'"),
        ("NaN", "got 'NaN'"),
        ("0.0000001", "at most 6 decimal places"),
        (True, "got True"),
        (None, "got NoneType"),
    ],
)
def test_usd_invalid(value: object, fragment: str) -> None:
    with pytest.raises(
        ValueError, match=re.escape('expected a non-negative USD amount such as "0.50"')
    ) as info:
        parse_usd(value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("value", [0.5, 0.1, -0.5, float("inf"), 2.0])
def test_usd_as_a_yaml_float_is_refused_with_a_hint_to_quote_it(value: float) -> None:
    with pytest.raises(ValueError, match="money must be a quoted decimal string") as info:
        parse_usd(value)
    assert f'write "{value!r}" in quotes' in str(info.value)


def test_min_savings_as_a_float_is_refused_where_it_is_written(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "policies:\n  default: {min_savings_usd: 0.5}\n")
    assert len(problems) == 1
    assert ':2:30: money must be a quoted decimal string: write "0.5" in quotes' in problems[0]


@given(st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False))
def test_usd_string_round_trip(amount: Decimal) -> None:
    assert parse_usd(format(amount, "f")) == amount


# ---------------------------------------------------------------- the broken-config corpus


def _corpus() -> list[Path]:
    files = sorted(CORPUS.glob("*.yaml"))
    assert len(files) >= 12
    return files


@pytest.mark.parametrize("file", _corpus(), ids=lambda f: f.stem)
def test_broken_config(file: Path) -> None:
    text = file.read_text(encoding="utf-8")
    expected = [m.groups() for m in _EXPECT.finditer(text)]
    assert expected, f"{file.name} has no '# expect:' line"
    problems = validate_file(file)
    assert len(problems) == len(expected), "\n".join(problems)
    for (line, column, fragment), problem in zip(expected, problems, strict=True):
        assert problem.startswith(f"{file}:{line}:{column}: "), problem
        assert fragment in problem, problem
    assert "PLANTEDSECRETVALUE" not in "\n".join(problems)


def test_load_config_raises_with_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CORPUS / "several_problems.yaml")
    assert len(info.value.problems) == 3
    assert str(info.value) == "\n".join(info.value.problems)


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert validate_file(missing) == [f"{missing}: cannot read: No such file or directory"]
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"state_dir: \xff\n")
    assert validate_file(binary) == [f"{binary}: not UTF-8 text (byte 11)"]


def test_unknown_key_without_close_match_lists_the_keys(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "metrics:\n  zzz: 1\n")
    assert problems == [
        f"{tmp_path / 'planner.yaml'}:2:3: unknown key 'zzz' (expected one of: enabled, listen)"
    ]


def test_kind_tag_does_not_hide_did_you_mean(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "providers:\n  g: {kind: gemini, openai_compt: true}\n")
    assert problems[0].endswith(":2:21: unknown key 'openai_compt' (did you mean 'openai_compat'?)")


def test_list_item_positions(tmp_path: Path) -> None:
    text = "providers:\n  o:\n    kind: openai\n    models:\n      - gpt-*\n      - 7\n"
    problems = _problems(tmp_path, text)
    assert len(problems) == 1
    assert ":5:7: expected a list of model-id patterns" in problems[0]
    assert "item 2 is the number 7" in problems[0]


def test_unserved_default_model(tmp_path: Path) -> None:
    text = (
        "providers:\n  g: {kind: gemini}\n"
        "sources:\n  s: {kind: jsonl_dir, path: s, default_model: gpt-4o-mini}\n"
    )
    problems = _problems(tmp_path, text)
    assert len(problems) == 1
    assert ":4:48: no configured provider serves model 'gpt-4o-mini'" in problems[0]


def test_model_added_in_config_is_known(tmp_path: Path) -> None:
    text = """
models:
  my-chat:
    provider: openai
    kind: chat
    prices: [{input: "1", output: "2", batch_input: "0.5", batch_output: "1"}]
sources:
  s: {kind: jsonl_dir, path: s, default_model: my-chat}
limits:
  openai: {per_model: {my-chat: {max_requests: 10}}}
providers:
  openai: {kind: openai, models: ["my-*"]}
"""
    assert _problems(tmp_path, text) == []


def test_unknown_model_in_limits_per_model_points_at_key(tmp_path: Path) -> None:
    text = (
        "providers:\n  openai: {kind: openai}\n"
        "limits:\n  openai:\n    per_model:\n      gpt-4o-mni: {max_requests: 5}\n"
    )
    problems = _problems(tmp_path, text)
    assert len(problems) == 1
    assert ":6:7: unknown model 'gpt-4o-mni' (did you mean 'gpt-4o-mini'?)" in problems[0]


def test_same_folder_for_two_sources(tmp_path: Path) -> None:
    text = "sources:\n  a: {kind: jsonl_dir, path: spool}\n  b: {kind: jsonl_dir, path: ./spool}\n"
    problems = _problems(tmp_path, text)
    assert problems == [f"{tmp_path / 'planner.yaml'}:3:30: same folder as source 'a'"]


def test_intake_rules(tmp_path: Path) -> None:
    text = "intake: {enabled: true, listen: '0.0.0.0:9464'}\nmetrics: {listen: '0.0.0.0:9464'}\n"
    problems = _problems(tmp_path, text)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "the intake needs bearer tokens: set tokens_env or tokens_file",
        "intake and metrics must not share a listener",
    ]
    text = (
        "sources: {intake: {kind: jsonl_dir, path: s}}\n"
        "intake: {enabled: true, tokens_env: T, tokens_file: f, source: intake, sink: nope}\n"
    )
    assert [p.split(": ", 1)[1] for p in _problems(tmp_path, text)] == [
        "give either intake.tokens_env or intake.tokens_file, not both",
        "source 'intake' is configured under sources:; the intake needs a name of its own",
        "unknown sink 'nope' (defined: none)",
    ]


def test_problems_are_sorted_by_position(tmp_path: Path) -> None:
    text = "schedule: {poll: 1}\nstate_dir: 5\nsourcse: {}\n"
    problems = _problems(tmp_path, text)
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines) and len(problems) == 3


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "text",
    [
        f"providers:\n  openai: {{kind: openai, api_key: {PLANTED}}}\n",
        f"providers:\n  openai: {{kind: openai, apiKey: {PLANTED}}}\n",
        f"providers:\n  openai: {{kind: openai, api_key_env: {PLANTED}}}\n",
        f"providers:\n  openai: {{kind: openai, tier: {PLANTED}}}\n",
        f"providers:\n  openai: {{kind: openai, base_url: 'https://x.example/v1?key={PLANTED}'}}\n",
        f"providers:\n  openai: {{kind: openai, base_url: 'https://u:{PLANTED}@x.example'}}\n",
        f"store: {{url: 'postgresql://u:{PLANTED}@db/p'}}\n",
        f"store: {{url: '{PLANTED}'}}\n",
        f"policies:\n  default: {{min_savings_usd: {PLANTED}}}\n",
        f"metrics: {{listen: {PLANTED}}}\n",
        f"{PLANTED}: 1\n",
    ],
)
def test_secrets_never_in_errors(tmp_path: Path, text: str) -> None:
    problems = _problems(tmp_path, text)
    assert problems, "the planted key must be refused"
    joined = "\n".join(problems)
    assert "PLANTEDSECRETVALUE" not in joined
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "planner.yaml")
    assert "PLANTEDSECRETVALUE" not in str(info.value) + repr(info.value)


def test_inline_key_message(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path, f"providers:\n  openai:\n    kind: openai\n    api_key: {PLANTED}\n"
    )
    assert problems == [
        f"{tmp_path / 'planner.yaml'}:4:5: API keys must not be written in the config; "
        "use api_key_env or api_key_file"
    ]


def test_resolve_api_key_from_env() -> None:
    provider = OpenAIProviderConfig(kind="openai")
    key = resolve_api_key(provider, {"OPENAI_API_KEY": PLANTED})
    assert key is not None and key.get_secret_value() == PLANTED
    assert PLANTED not in repr(key) + str(key) + repr(provider)
    assert resolve_api_key(provider, {}) is None
    assert resolve_api_key(provider, {"OPENAI_API_KEY": "  "}) is None
    custom = GeminiProviderConfig(kind="gemini", api_key_env="MY_KEY")
    assert custom.key_env_name() == "MY_KEY"
    assert resolve_api_key(custom, {"GEMINI_API_KEY": PLANTED}) is None


def test_resolve_api_key_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "creds" / "gemini_api_key"
    secret.parent.mkdir()
    secret.write_text(PLANTED + "\n", encoding="utf-8")
    cfg = parse_config(
        "providers:\n"
        "  g: {kind: gemini, api_key_file: creds/gemini_api_key}\n"
        "  h: {kind: gemini, api_key_file: '${CREDENTIALS_DIRECTORY}/gemini_api_key'}\n",
        base_dir=tmp_path,
    )
    plain, expanded = cfg.providers["g"], cfg.providers["h"]
    assert plain.key_env_name() is None
    assert plain.api_key_file == str(secret)
    for provider in (plain, expanded):
        key = resolve_api_key(
            provider, {"CREDENTIALS_DIRECTORY": str(secret.parent), "GEMINI_API_KEY": "x"}
        )
        assert key is not None and key.get_secret_value() == PLANTED
    with pytest.raises(ConfigError, match=r"\$\{CREDENTIALS_DIRECTORY\} is not set"):
        resolve_api_key(expanded, {})


def test_resolve_api_key_file_errors_name_the_file_only(tmp_path: Path) -> None:
    missing = OpenAIProviderConfig(kind="openai", api_key_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read: No such file"):
        resolve_api_key(missing, {})
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="the file is empty"):
        resolve_api_key(OpenAIProviderConfig(kind="openai", api_key_file=str(empty)), {})


def test_store_url(tmp_path: Path) -> None:
    default = parse_config("state_dir: st\n", base_dir=tmp_path)
    assert resolve_store_url(default, {}) == f"sqlite:///{tmp_path / 'st' / 'planner.db'}"
    relative = parse_config("store: {url: 'sqlite:///db/p.db'}\n", base_dir=tmp_path)
    assert resolve_store_url(relative, {}) == f"sqlite:///{tmp_path / 'db' / 'p.db'}"
    absolute = parse_config("store: {url: 'sqlite:////var/p.db'}\n", base_dir=tmp_path)
    assert resolve_store_url(absolute, {}) == "sqlite:////var/p.db"
    memory = parse_config("store: {url: 'sqlite://'}\n", base_dir=tmp_path)
    assert resolve_store_url(memory, {}) == "sqlite://"
    from_env = parse_config("store: {url_env: DB_URL}\n", base_dir=tmp_path)
    url = f"postgresql+psycopg://u:{PLANTED}@db/p"
    assert resolve_store_url(from_env, {"DB_URL": url}) == url
    assert PLANTED not in redact_url(url)
    with pytest.raises(ConfigError, match="DB_URL is not set"):
        resolve_store_url(from_env, {})


# ---------------------------------------------------------------- examples and the sample spool


@pytest.mark.parametrize("file", EXAMPLES, ids=lambda f: f.name)
def test_examples_load_cleanly(file: Path) -> None:
    assert validate_file(file) == []


def test_example_layout() -> None:
    cfg = load_config(REPO / "config" / "planner.example.yaml")
    assert cfg.state_dir.resolve() == REPO / "state"
    spool = cfg.sources["spool"]
    assert spool.path.resolve() == REPO / "state" / "spool"  # `make demo` seeds it
    assert cfg.sinks["results"].path.resolve() == REPO / "state" / "results"
    assert {p.kind for p in cfg.providers.values()} == {"openai", "gemini"}
    assert cfg.provider_for("gemini-2.5-flash") == "gemini"
    assert cfg.provider_for("text-embedding-3-small") == "openai"
    assert cfg.provider_for("claude-x") is None
    assert not cfg.intake.enabled
    assert str(cfg.metrics.listen) == "127.0.0.1:9464"


def test_sample_spool_has_one_bad_line() -> None:
    cfg = load_config(REPO / "config" / "planner.example.yaml")
    spool = cfg.sources["spool"]
    source = JsonlDirSource(
        "spool",
        REPO / "config" / "spool",  # the sample that `make demo` copies into state/spool
        family_of=shipped_catalog().family_of,
        default_model=spool.default_model,
        default_embedding_model=spool.default_embedding_model,
        default_models={k: v for k, v in spool.default_models.model_dump().items() if v},
        facts_of=shipped_catalog().get,
        settle=timedelta(0),
    )
    items = list(source.scan(datetime(2030, 1, 1, tzinfo=UTC)))
    bad = [i for i in items if isinstance(i, LineError)]
    good = [i for i in items if not isinstance(i, LineError)]
    assert len(good) == 12 and len(bad) == 1
    assert "simple.jsonl:5" in str(bad[0]) or bad[0].line == 5
    models = {getattr(i, "model", None) for i in good}
    assert models == {
        "gpt-4o-mini",
        "gemini-3.5-flash-lite",
        "text-embedding-3-small",
        "gemini-embedding-001",
    }


def test_nightly_example_values() -> None:
    cfg = load_config(REPO / "config" / "examples" / "nightly-and-embeddings.yaml")
    nightly = cfg.policies["nightly"]
    assert nightly.min_savings_usd == Decimal("0.0001")
    assert nightly.budget is not None
    budget = nightly.budget.rules()
    assert (budget.daily_usd, budget.monthly_usd) == (Decimal("25.00"), Decimal("500.00"))
    assert str(budget.tz) == "Europe/Berlin" and budget.at_cap.value == "hold"
    assert nightly.default_deadline == timedelta(hours=6)
    assert cfg.policies["corpus"].min_savings_ratio == Decimal("0.3")
    assert cfg.schedule.submit.cron == "*/30 * * * *" and cfg.schedule.submit.interval is None
    assert cfg.limits["openai"].max_bytes == 200_000_000
    assert cfg.limits["openai"].overrides() == {"max_bytes": 200_000_000, "max_requests": 50000}
    assert cfg.limits["openai"].per_model["gpt-4o-mini"].overrides() == {
        "max_enqueued_tokens": 2_000_000
    }
    assert cfg.sources["corpus"].max_line_bytes == 2_000_000
    assert cfg.providers["openai"].api_key_file == "${CREDENTIALS_DIRECTORY}/openai_api_key"


# ---------------------------------------------------------------- the schema itself


def test_defaults(tmp_path: Path) -> None:
    cfg = parse_config("{}\n", base_dir=tmp_path)
    assert cfg.state_dir == tmp_path / "state"
    # a batch needs its window plus one way out: cancel 10m + re-plan 15m + answer 2m
    assert cfg.policies["default"].rules() == PolicyRules(
        default_deadline=timedelta(hours=48), retry_time=timedelta(minutes=27)
    )
    assert cfg.schedule.submit.interval == timedelta(minutes=15)
    assert cfg.schedule.flush.max_requests == 10_000
    assert str(cfg.intake.listen) == "127.0.0.1:8470" and not cfg.intake.enabled


def test_null_limit_lifts_it(tmp_path: Path) -> None:
    cfg = parse_config(
        "providers: {openai: {kind: openai}}\nlimits: {openai: {max_enqueued_tokens: null}}\n",
        base_dir=tmp_path,
    )
    assert cfg.limits["openai"].overrides() == {"max_enqueued_tokens": None}


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = parse_config("{}\n", base_dir=tmp_path)
    with pytest.raises(ValidationError):
        cfg.state_dir = Path("/elsewhere")  # type: ignore[misc]


def test_provider_order_decides(tmp_path: Path) -> None:
    cfg = parse_config(
        "providers:\n  compat: {kind: gemini, openai_compat: true, models: ['gemini-2.5-*']}\n"
        "  native: {kind: gemini}\n",
        base_dir=tmp_path,
    )
    assert cfg.provider_for("gemini-2.5-flash") == "compat"
    assert cfg.provider_for("gemini-3-pro-preview") == "native"


def test_reference_rows_cover_every_key() -> None:
    rows = reference_rows()
    keys = [row[0] for row in rows]
    assert len(keys) == len(set(keys))
    for key, type_name, default, description in rows:
        assert type_name and default and description, key
    for expected in (
        "state_dir",
        "store.url",
        "providers.<name:openai>.api_key_env",
        "providers.<name:gemini>.openai_compat",
        "sources.<name:jsonl_dir>.default_deadline",
        "sinks.<name:jsonl_dir>.path",
        "policies.<name>.min_savings_usd",
        "limits.<name>.per_model.<model>.max_enqueued_tokens",
        "schedule.flush.max_wait",
        "metrics.listen",
        "intake.tokens_file",
    ):
        assert expected in keys
    by_key = {row[0]: row for row in rows}
    assert by_key["sources.<name:jsonl_dir>.max_line_bytes"][1:3] == ("size", "10MB")
    assert by_key["policies.<name>.batch_window"][1:3] == ("duration", "1d")
    assert by_key["sources.<name:jsonl_dir>.path"][2] == "required"


def test_every_field_is_documented() -> None:
    def walk(model: type[PlannerConfig]) -> None:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}"

    from planner.config import schema

    for value in vars(schema).values():
        if (
            isinstance(value, type)
            and issubclass(value, schema.Section)
            and value is not schema.Section
        ):
            walk(value)  # type: ignore[arg-type]


def test_default_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_config_path() == Path("/etc/planner/planner.yaml")
    (tmp_path / "planner.yaml").write_text("{}\n", encoding="utf-8")
    assert default_config_path() == Path("planner.yaml")


def test_catalog_parameter_is_used(tmp_path: Path) -> None:
    from planner.core.catalog import Catalog

    tiny = Catalog.from_mapping(
        {"m1": {"provider": "openai", "kind": "chat", "prices": [{"input": "1", "output": "1"}]}}
    )
    text = "sources:\n  s: {kind: jsonl_dir, path: s, default_model: gpt-4o-mini}\n"
    file = tmp_path / "c.yaml"
    file.write_text(text, encoding="utf-8")
    assert validate_file(file) == []
    problems = validate_file(file, catalog=tiny)
    assert len(problems) == 1 and "unknown model 'gpt-4o-mini'" in problems[0]


def test_store_backends(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "store: {url: 'mysql://u@db/p'}\n")
    assert problems == [
        f"{tmp_path / 'planner.yaml'}:1:14: expected a sqlite:// or postgresql:// "
        "(e.g. postgresql+psycopg://) URL"
    ]
    cfg = parse_config(
        "store: {url: 'postgresql+psycopg://planner@db/planner'}\n", base_dir=tmp_path
    )
    assert resolve_store_url(cfg, {}) == "postgresql+psycopg://planner@db/planner"


def test_odd_keys_are_located(tmp_path: Path) -> None:
    file = tmp_path / "planner.yaml"
    assert _problems(tmp_path, "1: x\n") == [f"{file}:1:1: expected a string key; got the number 1"]
    assert _problems(tmp_path, "models: {2024-01-01: {}}\n")[0].startswith(f"{file}:1:10: ")
    assert _problems(tmp_path, "a: &x [*x]\n")[-1] == f"{file}:1:4: nesting too deep"


_FRAGMENTS = st.sampled_from(
    [
        "sources:",
        "providers:",
        "policies:",
        "limits:",
        "models:",
        "schedule:",
        "store:",
        "  spool:",
        "  openai:",
        "    kind: jsonl_dir",
        "    kind: openai",
        "    kind: gemini",
        "    path: x",
        "    tier: 2",
        "    interval: 5m",
        "    default_model: gpt-4o-mini",
        "    max_bytes: 2GB",
        "  default: {}",
        "  x: {kind: jsonl_dir, path: p, policy: q}",
        "- a",
        "{",
        "]",
        "&a x",
        "*a",
        "key: value",
        "\t",
        "  ",
        ": :",
        "'",
        '"',
        "<<: *a",
        "    prices: [{input: '1'}]",
        "  m: {provider: openai, kind: chat}",
        "api_key: k",
    ]
)


@given(st.lists(_FRAGMENTS, max_size=12))
def test_any_text_gives_located_problems_or_a_config(fragments: list[str]) -> None:
    from planner.config.load import analyse

    cfg, problems = analyse("\n".join(fragments) + "\n", base_dir=Path("/tmp/base"))
    assert (cfg is None) == bool(problems)
    for problem in problems:
        assert problem.position.line >= 1 and problem.position.column >= 1
        assert problem.message


def test_implicit_default_policy_must_exist(tmp_path: Path) -> None:
    file = tmp_path / "planner.yaml"
    text = (
        "policies: {nightly: {}}\n"
        "sources:\n  s: {kind: jsonl_dir, path: s}\n"
        "intake: {enabled: true, tokens_env: PLANNER_INTAKE_TOKENS}\n"
    )
    message = "no policy: given and no policy named 'default' defined"
    assert _problems(tmp_path, text) == [f"{file}:3:3: {message}", f"{file}:4:1: {message}"]


def test_webhook_sink_needs_one_signing_secret(tmp_path: Path) -> None:
    text = (
        "sinks:\n"
        "  none: {kind: webhook, url: 'https://example.com/hook'}\n"
        "  both: {kind: webhook, url: 'https://example.com/hook', secret_env: S,"
        " secret_file: /run/s}\n"
        "  good: {kind: webhook, url: 'https://example.com/hook', secret_env: S}\n"
    )
    problems = _problems(tmp_path, text)
    where = [p.split(": ", 1)[0].rsplit(":", 2)[-2] for p in problems]
    assert [p.split(": ", 1)[1] for p in problems] == [
        "a webhook sink needs one of secret_env, secret_file"
    ] * 2
    assert where == ["2", "3"]


def test_webhook_url_with_credentials_is_refused_unechoed(tmp_path: Path) -> None:
    text = "sinks:\n  h: {kind: webhook, url: 'https://u:pw@example.com/h?k=1', secret_env: S}\n"
    (problem,) = _problems(tmp_path, text)
    assert "expected an http:// or https:// URL" in problem and "u:pw" not in problem


def test_sql_source_needs_table_or_query_and_an_input_column(tmp_path: Path) -> None:
    text = (
        "sources:\n"
        "  both: {kind: sql, url_env: DB, table: t, query: 'SELECT 1',"
        " columns: {id: id, prompt: p}}\n"
        "  none: {kind: sql, url_env: DB, columns: {id: id}}\n"
        "  good: {kind: sql, url_env: DB, table: t, columns: {id: id, body: b}}\n"
    )
    assert [p.split(": ", 1)[1] for p in _problems(tmp_path, text)] == [
        "an sql source needs one of table, query",
        "an sql source needs one of table, query",
        "the column mapping needs one of prompt, messages, text, body",
    ]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("100000000000000000000000", "expected at most 1,000,000 tokens; got 100,000,000,"),
        ("1000001", "expected at most 1,000,000 tokens; got 1,000,001"),
        ("0", "expected a positive integer; got 0"),
    ],
)
def test_default_output_tokens_is_bounded(tmp_path: Path, value: str, fragment: str) -> None:
    # 1e23 used to pass validate, print absurd plan figures and crash run --once in SQLite.
    problems = _problems(tmp_path, f"policies:\n  default: {{default_output_tokens: {value}}}\n")
    assert len(problems) == 1 and fragment in problems[0], problems
    assert _problems(tmp_path, "policies:\n  default: {default_output_tokens: 1000000}\n") == []
