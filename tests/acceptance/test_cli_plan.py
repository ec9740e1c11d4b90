"""`planner plan --json`, `planner validate` and `planner prices` as a user runs them: subprocesses.

Expected figures are computed here independently of planner's code: tokens with tiktoken and
the OpenAI cookbook rule, prices read straight from the shipped YAML file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import yaml

from planner.config import load_config
from planner.runtime.store_commands import report
from tests.conftest import REPO

PRICES = yaml.safe_load((REPO / "planner" / "data" / "prices.yaml").read_text())["models"]
MILLION = Decimal(1_000_000)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planner", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=os.environ.copy(),
        timeout=120,
    )


def chat_tokens(messages: list[dict[str, str]], encoding: str) -> int:
    """OpenAI cookbook: 3 per message + encoded values + 1 per name, + 3 priming the reply."""
    enc = tiktoken.get_encoding(encoding)
    total = 3
    for message in messages:
        total += 3
        for field, value in message.items():
            total += len(enc.encode(value))
            total += 1 if field == "name" else 0
    return total


def price(model: str, field: str) -> Decimal:
    return Decimal(str(PRICES[model]["prices"][0][field]))


def write_spool(folder: Path) -> None:
    folder.mkdir()
    openai_lines = [
        {
            "custom_id": f"oa-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You summarise invoices."},
                    {"role": "user", "content": f"Invoice number {i}: 3 chairs, 2 tables."},
                ],
                "max_tokens": 100,
            },
        }
        for i in range(3)
    ]
    gemini_lines = [
        {
            "key": f"gm-{i}",
            "model": "gemini-2.5-flash",
            "request": {"contents": [{"parts": [{"text": "Hello Gemini " * i}]}]},
        }
        for i in range(1, 3)
    ]
    simple_lines: list[Any] = [
        {"id": "s-1", "text": "embed this sentence", "model": "text-embedding-3-small"},
        {"id": "s-2", "prompt": "Write a haiku about batching.", "max_output_tokens": 50},
    ]
    with (folder / "a.jsonl").open("w") as f:
        for row in openai_lines + gemini_lines:
            f.write(json.dumps(row) + "\n")
        f.write("{not json\n")
    with (folder / "b.jsonl").open("w") as f:
        for row in simple_lines:
            f.write(json.dumps(row) + "\n")
        f.write(json.dumps({"id": "s-3", "prompt": ""}) + "\n")
    old = 1_000_000_000  # files older than the settle time are ready
    for name in ("a.jsonl", "b.jsonl"):
        os.utime(folder / name, (old, old))


CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini, models: ["gemini-*"]}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini}
policies:
  default: {batch_window: 24h, default_deadline: 48h, default_output_tokens: 200}
limits:
  openai: {max_requests: 2}
"""


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    write_spool(tmp_path / "spool")
    (tmp_path / "planner.yaml").write_text(CONFIG)
    return tmp_path


def test_plan_json_tokens_costs_and_batches(workspace: Path) -> None:
    done = run("plan", "-c", str(workspace / "planner.yaml"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {(m["model"], m["endpoint"]): m for m in report["models"]}

    chat = rows[("gpt-4o-mini", "/v1/chat/completions")]
    # oa-0..2 and s-2 (simple prompt on the default model)
    expected_in = sum(
        chat_tokens(
            [
                {"role": "system", "content": "You summarise invoices."},
                {"role": "user", "content": f"Invoice number {i}: 3 chairs, 2 tables."},
            ],
            "o200k_base",
        )
        for i in range(3)
    ) + chat_tokens([{"role": "user", "content": "Write a haiku about batching."}], "o200k_base")
    assert chat["requests"] == 4
    assert chat["input_tokens"] == expected_in
    assert chat["output_tokens"] == 3 * 100 + 50
    interactive = (
        expected_in * price("gpt-4o-mini", "input") + 350 * price("gpt-4o-mini", "output")
    ) / MILLION
    batch = (
        expected_in * price("gpt-4o-mini", "batch_input")
        + 350 * price("gpt-4o-mini", "batch_output")
    ) / MILLION
    assert Decimal(chat["interactive_usd"]) == interactive
    assert Decimal(chat["batch_usd"]) == batch
    assert Decimal(chat["savings_usd"]) == interactive - batch
    assert chat["lanes"] == {"batch": 4}
    # max_requests: 2 from the config cuts four requests into two batches
    assert [b["requests"] for b in chat["batches"]] == [2, 2]
    assert all(b["requests"] <= 2 for m in report["models"] for b in m["batches"])

    embed = rows[("text-embedding-3-small", "/v1/embeddings")]
    enc = tiktoken.get_encoding("cl100k_base")
    assert embed["input_tokens"] == len(enc.encode("embed this sentence"))
    assert embed["output_tokens"] == 0

    gemini = rows[("gemini-2.5-flash", "generateContent")]
    # documented Gemini rule: ceil(UTF-8 bytes / 4) of the text parts
    texts = ["Hello Gemini " * i for i in range(1, 3)]
    assert gemini["input_tokens"] == sum(math.ceil(len(t.encode()) / 4) for t in texts)
    assert gemini["output_tokens"] == 2 * 200  # the policy's default_output_tokens

    assert report["quarantined"] == 2
    reasons = sorted(e["origin"] for e in report["errors"])
    assert reasons == ["a.jsonl:6", "b.jsonl:3"]
    assert report["unpriced"] == []
    totals = report["totals"]
    assert totals["requests"] == sum(m["requests"] for m in report["models"])
    assert Decimal(totals["savings_usd"]) == sum(
        Decimal(m["savings_usd"]) for m in report["models"]
    )
    # a dry run claims and moves nothing
    assert sorted(p.name for p in (workspace / "spool").iterdir()) == ["a.jsonl", "b.jsonl"]


def test_plan_reports_unpriced_models_never_as_zero(workspace: Path) -> None:
    config = CONFIG.replace(
        "sources:",
        "models:\n  my-model:\n    provider: openai\n    kind: chat\n    prices:\n"
        "      - {input: '1'}\nsources:",
    )
    (workspace / "planner.yaml").write_text(config)
    with (workspace / "spool" / "c.jsonl").open("w") as f:
        f.write(json.dumps({"id": "x", "prompt": "hi", "model": "my-model"}) + "\n")
    os.utime(workspace / "spool" / "c.jsonl", (1_000_000_000, 1_000_000_000))
    done = run("plan", "-c", str(workspace / "planner.yaml"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    row = next(m for m in report["models"] if m["model"] == "my-model")
    # input price known, output price unknown: unpriced, not $0
    assert row["interactive_usd"] is None
    assert row["lanes"] == {"rejected": 1}
    assert report["unpriced"] == ["my-model"]


def test_the_readme_demo_on_the_shipped_example(tmp_path: Path) -> None:
    """`make demo`'s steps on a copy of config/: plan, run --once --sandbox, status."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    spool = tmp_path / "state" / "spool"
    spool.mkdir(parents=True)
    for sample in (REPO / "config" / "spool").glob("*.jsonl"):
        shutil.copy(sample, spool)
        os.utime(spool / sample.name, (1_000_000_000, 1_000_000_000))
    config = str(tmp_path / "config" / "planner.example.yaml")
    planned = run("plan", "-c", config)
    assert planned.returncode == 0, planned.stderr
    assert "savings" in planned.stdout and "gpt-4o-mini" in planned.stdout
    assert "would be quarantined" in planned.stdout
    ran = run("run", "--once", "--sandbox", "-c", config)
    assert ran.returncode == 0, ran.stderr
    assert "results:" in ran.stdout
    status = run("status", "-c", config, "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["requests"]["succeeded"] == 12
    assert data["batches"]["collected"] >= 5
    assert sum(Decimal(s["savings_usd"]) for s in data["spend"]) > 0
    results = list((tmp_path / "state" / "results").glob("*.jsonl"))
    assert sum(len(p.read_text().splitlines()) for p in results) == 12
    assert len(list((spool / "quarantine").glob("*.errors.jsonl"))) == 1

    # planner report: the same money as the result files, by source, model and lane
    reported = run("report", "-c", config, "--json", "--since", "1d")
    assert reported.returncode == 0, reported.stderr
    data = json.loads(reported.stdout)
    lines = [json.loads(x) for p in results for x in p.read_text().splitlines()]
    assert data["totals"]["requests"] == 12 == sum(r["requests"] for r in data["rows"])
    for money, field in (("cost_usd", "cost_usd"), ("savings_usd", "savings_usd")):
        assert Decimal(data["totals"][money]) == sum(Decimal(x[field]) for x in lines)
    assert Decimal(data["totals"]["savings_usd"]) > 0
    assert {r["lane"] for r in data["rows"]} >= {"batch"}
    table = run("report", "-c", config)
    assert table.returncode == 0 and "total" in table.stdout and "all time" in table.stdout
    later = report(
        load_config(Path(config)), timedelta(hours=1), datetime.now(UTC) + timedelta(hours=2)
    )
    assert later["rows"] == [] and later["totals"]["requests"] == 0, "outside the window"
    bad = run("report", "-c", config, "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_run_without_keys_or_sandbox_says_what_to_do(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config", tmp_path / "config")
    done = run("run", "--once", "-c", str(tmp_path / "config" / "planner.example.yaml"))
    assert done.returncode == 2
    assert "OPENAI_API_KEY is not set" in done.stderr and "--sandbox" in done.stderr


CORPUS = sorted((REPO / "tests" / "corpus" / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_validate_broken_configs_exit_2_with_positions(path: Path) -> None:
    expected = [
        line.split("# expect:", 1)[1].strip()
        for line in path.read_text().splitlines()
        if "# expect:" in line
    ]
    done = run("validate", "-c", str(path))
    assert done.returncode == 2
    for fragment in expected:
        location, _, message = fragment.partition(" ")
        assert f"{path}:{location.rstrip(':')}:" in done.stderr or f"{path}:{location}" in (
            done.stderr
        ), done.stderr
        assert message.strip() in done.stderr, done.stderr


def test_validate_accepts_the_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    # validate checks what run would: the store URL the environment names must be there
    monkeypatch.setenv("PLANNER_DB_URL", "postgresql+psycopg://planner@db.internal:5432/planner")
    for path in [
        "config/planner.example.yaml",
        *map(str, (REPO / "config" / "examples").glob("*.yaml")),
    ]:
        done = run("validate", "-c", path)
        assert done.returncode == 0, done.stderr


def test_prices_lists_the_catalog_with_sources() -> None:
    done = run("prices", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    models = {m["model"]: m for m in data["models"]}
    assert models["gpt-4o-mini"]["source"].startswith("https://")
    assert models["gpt-4o-mini"]["prices"][0]["standard"]["batch_input"] == str(
        price("gpt-4o-mini", "batch_input")
    )
    one = run("prices", "gemini-2.5-flash")
    assert one.returncode == 0 and "gemini-2.5-flash" in one.stdout
    unknown = run("prices", "no-such-model")
    assert unknown.returncode == 2 and "unknown model" in unknown.stderr


def test_plan_without_bpe_files_counts_with_toktok(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No BPE file anywhere: toktok, which needs none, still counts every text as tiktoken
    would (the same report as with the files), with no warning."""
    config = str(workspace / "planner.yaml")
    with_files = run("plan", "-c", config, "--json")
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    done = run("plan", "-c", config, "--json")
    assert done.returncode == 0, done.stderr
    assert "tokenizer" not in done.stderr
    assert json.loads(done.stdout) == json.loads(with_files.stdout)
    assert list(empty.iterdir()) == []


def test_plan_without_bpe_files_and_toktok_off_warns_and_falls_back(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = workspace / "planner.yaml"
    config.write_text(config.read_text() + "tokenizer: {fast: false, download: false}\n")
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    done = run("plan", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert "tokenizer" in done.stderr and "o200k_base" in done.stderr
    report = json.loads(done.stdout)
    chat = next(m for m in report["models"] if m["model"] == "gpt-4o-mini")
    assert all(method.startswith("chars4-fallback") for method in chat["estimate_methods"])
    assert chat["input_tokens"] > 0


def test_run_once_exits_1_when_every_provider_call_failed(workspace: Path) -> None:
    """A cron script must tell "nothing could be sent" (a bad key) from a quiet success."""
    from planner.sandbox import serve

    config = str(workspace / "planner.yaml")
    with serve(speed=0.0, faults="auth_error=1") as sandbox:
        refused = run("run", "--once", "--sandbox-url", sandbox.url, "-c", config)
    assert refused.returncode == 1, refused.stderr
    assert "every provider call failed" in refused.stderr
    with serve(speed=0.0) as sandbox:
        done = run("run", "--once", "--sandbox-url", sandbox.url, "-c", config)
    assert done.returncode == 0, done.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_plan_on_a_store_that_was_never_migrated_uses_the_priors(
    workspace: Path, backend: str
) -> None:
    """A new database before the first run (an empty SQLite file, an empty PostgreSQL schema):
    plan has nothing learned to read, so it plans with the priors, and still creates nothing."""
    from sqlalchemy import create_engine, inspect

    from tests.contract.store_backends import pg_schema_url

    config = workspace / "planner.yaml"
    if backend == "sqlite":
        (workspace / "state").mkdir()
        (workspace / "state" / "planner.db").touch()
        baseline = run("plan", "-c", str(config), "--json")
        assert baseline.returncode == 0, baseline.stderr
        assert json.loads(baseline.stdout)["totals"]["requests"] > 0
        engine = create_engine(f"sqlite:///{workspace / 'state' / 'planner.db'}")
        try:
            assert inspect(engine).get_table_names() == []  # plan migrated nothing
        finally:
            engine.dispose()
        return
    with pg_schema_url() as url:
        config.write_text(CONFIG + "store: {url_env: PLAN_STORE_URL}\n")
        os.environ["PLAN_STORE_URL"] = url
        try:
            done = run("plan", "-c", str(config), "--json")
        finally:
            del os.environ["PLAN_STORE_URL"]
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["totals"]["requests"] > 0
        engine = create_engine(url)
        try:
            assert inspect(engine).get_table_names() == []  # plan migrated nothing
        finally:
            engine.dispose()


def _drop_lines(path: Path, rows: list[dict[str, Any]], age: int) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.utime(path, (age, age))


PLAN_AND_IMPORTS = """
import json, sys
from planner.cli import app  # not main: it would end the process once the plan is printed
sys.argv = ["planner", "plan", "--json", "-c", sys.argv[1]]
try:
    app()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
heavy = {"sqlalchemy", "sqlmodel", "prometheus_client"}
loaded = sorted({m.partition(".")[0] for m in sys.modules} & heavy)
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def test_plan_loads_sqlalchemy_only_when_there_is_a_store(workspace: Path) -> None:
    """SQLAlchemy and the store's models are a third of ``plan``'s start-up: a dry run before
    any store exists (a first look at what batching would save) does without them, and once
    the store exists it reads it as before, to the same figures. It never loads the
    daemon's metrics (prometheus_client)."""
    config = str(workspace / "planner.yaml")

    def plan() -> tuple[dict[str, Any], list[str]]:
        got = subprocess.run(
            [sys.executable, "-c", PLAN_AND_IMPORTS, config],
            capture_output=True,
            text=True,
            cwd=workspace,
            env=os.environ.copy(),
            timeout=120,
        )
        facts = json.loads(got.stderr.strip().splitlines()[-1])
        assert facts["code"] == 0, got.stderr
        return json.loads(got.stdout), facts["loaded"]

    before, loaded = plan()
    assert loaded == []
    assert before["totals"]["requests"] == 7
    assert not (workspace / "state" / "planner.db").exists()  # a dry run creates nothing

    upgraded = run("db", "upgrade", "-c", config)
    assert upgraded.returncode == 0, upgraded.stderr
    after, loaded = plan()
    assert loaded == ["sqlalchemy", "sqlmodel"]
    assert after["totals"] == before["totals"]
    assert after["models"] == before["models"]


def test_plan_judges_keys_stored_or_repeated_across_files_as_run_does(workspace: Path) -> None:
    """A key already in the store, or in two files of the spool: the same request is a no-op
    (a duplicate), another request under it is quarantined as duplicate_id, in plan as in run."""
    config = str(workspace / "planner.yaml")
    spool = workspace / "spool"
    _drop_lines(
        spool / "c.jsonl", [{"id": "k1", "prompt": "one"}, {"id": "k2", "prompt": "two"}], 1
    )
    first = run("run", "--once", "--sandbox", "-c", config, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["intake"]["inserted"] == 9  # a, b and c's good lines

    _drop_lines(
        spool / "d.jsonl",
        [
            {"id": "k1", "prompt": "one"},  # stored, same request: a no-op
            {"id": "k2", "prompt": "changed"},  # stored with another body
            {"id": "k3", "prompt": "three"},  # new
        ],
        1_000_000_000,
    )
    _drop_lines(
        spool / "e.jsonl",
        [
            {"id": "k3", "prompt": "not three"},  # d.jsonl has it with another body
            {"id": "k4", "prompt": "four"},  # new
            {"id": "k3", "prompt": "three", "model": "gpt-4o"},  # in this file already
        ],
        1_000_000_001,
    )
    planned = run("plan", "-c", config, "--json")
    assert planned.returncode == 0, planned.stderr
    report = json.loads(planned.stdout)
    assert report["totals"]["requests"] == 2
    assert report["duplicates"] == 1
    assert report["quarantined"] == 3
    errors = {e["origin"]: (e["reason"], e["message"]) for e in report["errors"]}
    assert sorted(errors) == ["d.jsonl:2", "e.jsonl:1", "e.jsonl:3"]
    assert {reason for reason, _ in errors.values()} == {"duplicate_id"}
    assert "key 'k3' is already stored with a different request" in errors["e.jsonl:1"][1]

    ran = run("run", "--once", "--sandbox", "-c", config, "--json")
    assert ran.returncode == 0, ran.stderr
    intake = json.loads(ran.stdout)["intake"]
    assert (intake["inserted"], intake["duplicates"], intake["quarantined"]) == (2, 1, 3)
    assert report["totals"]["requests"] == intake["inserted"]
    assert report["duplicates"] == intake["duplicates"]
    assert report["quarantined"] == intake["quarantined"]


def test_run_once_exits_0_when_the_provider_only_asked_to_wait(workspace: Path) -> None:
    """Every call answered 429: the key works and the provider is there, planner retries at the
    time it named. That is a busy provider, not a broken set-up: exit 0, the wait in the log."""
    from planner.sandbox import serve

    config = str(workspace / "planner.yaml")
    with serve(speed=0.0, faults="rate_limit=1,retry_after=1") as sandbox:
        throttled = run("run", "--once", "--sandbox-url", sandbox.url, "-c", config)
    assert throttled.returncode == 0, throttled.stderr
    assert "every provider call failed" not in throttled.stderr
    assert "RateLimited" in throttled.stderr
