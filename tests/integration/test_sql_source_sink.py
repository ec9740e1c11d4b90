"""The ``sql`` source and sink (issue 14, item 1) on SQLite and on the real PostgreSQL.

Rows become requests through the column mapping and the one record parser every source uses;
bad rows are marked quarantined with their reason; results come back into the table's own
columns and into a results table; two replicas reading one table never take the same row.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from planner.config import load_config
from planner.core.model import Endpoint, ProviderKind
from planner.pipeline.intake import IntakeResult, ingest_all
from planner.pipeline.leases import StoreUnitLeases
from planner.runtime import clock
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context
from planner.sinks.sql import SqlSink
from planner.sources.formats import Defaults
from planner.sources.sql import Columns, SqlSource
from planner.store.engine import make_engine, make_session_factory, upgrade
from tests.contract.store_backends import BACKENDS, backend_url

FAMILIES = {"gpt-4o-mini": ProviderKind.OPENAI, "gemini-2.5-flash": ProviderKind.GEMINI}
TABLE = """
CREATE TABLE prompts (
  id INTEGER PRIMARY KEY, prompt TEXT, messages TEXT, body TEXT, model TEXT, deadline TEXT,
  meta TEXT, planner_state TEXT, planner_error TEXT, response TEXT, status TEXT, cost TEXT
)
"""


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        if url.startswith("sqlite"):
            (tmp_path / "state").mkdir(exist_ok=True)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(TABLE))
        engine.dispose()
        yield url


def insert(url: str, rows: list[dict[str, Any]]) -> None:
    engine = create_engine(url)
    columns = ["id", "prompt", "messages", "body", "model", "deadline", "meta"]
    with engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO prompts ({', '.join(columns)}) VALUES (:{', :'.join(columns)})"),
            [{c: r.get(c) for c in columns} for r in rows],
        )
    engine.dispose()


def select_all(url: str, query: str) -> list[dict[str, Any]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(query))]
    engine.dispose()
    return rows


CONFIG = """
state_dir: state
store: {{url: "{store}"}}
providers:
  openai: {{kind: openai}}
sources:
  db:
    kind: sql
    url_env: APP_DB_URL
    table: prompts
    columns: {{id: id, prompt: prompt, messages: messages, body: body, model: model,
               deadline: deadline, metadata: meta}}
    error_column: planner_error
    default_model: gpt-4o-mini
    page: 3
sinks:
  back:
    kind: sql
    url_env: APP_DB_URL
    table: prompts
    key_column: id
    columns: {{response: response, status: status, cost_usd: cost}}
  results: {{kind: sql, url_env: APP_DB_URL, table: planner_results}}
metrics: {{enabled: false}}
"""


def test_rows_in_results_back_bad_rows_quarantined(
    tmp_path: Path,
    db_url: str,
    sandbox_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = [{"id": i, "prompt": f"Say {i}.", "meta": json.dumps({"n": str(i)})} for i in range(6)]
    good += [
        {"id": 6, "messages": json.dumps([{"role": "user", "content": "Hi."}]), "deadline": "30d"},
        {"id": 7, "body": json.dumps({"messages": [{"role": "user", "content": "Body."}]})},
    ]
    bad = [
        {"id": 8, "messages": "[not json"},
        {"id": 9, "prompt": "x", "model": "no-such-model"},
        {"id": 10, "prompt": "x", "deadline": "2026-01-01T00:00:00"},  # no timezone
    ]
    insert(db_url, good + bad)
    monkeypatch.setenv("APP_DB_URL", db_url)
    (tmp_path / "planner.yaml").write_text(CONFIG.format(store=f"sqlite:///{tmp_path}/p.db"))
    ctx = build_context(load_config(tmp_path / "planner.yaml"), sandbox_url=sandbox_factory().url)
    summary = run_once(ctx)
    assert summary.stages["intake"]["inserted"] == 8
    assert summary.stages["intake"]["quarantined"] == 3
    rows = {r["id"]: r for r in select_all(db_url, "SELECT * FROM prompts")}
    for i in range(8):
        assert rows[i]["planner_state"] == "queued" and rows[i]["status"] == "succeeded"
        assert json.loads(rows[i]["response"]) and rows[i]["cost"] is not None
    reasons = {i: rows[i]["planner_error"].split(":")[0] for i in (8, 9, 10)}
    assert reasons == {8: "invalid_json", 9: "unknown_model", 10: "deadline"}
    assert all(rows[i]["planner_state"] == "quarantined" for i in (8, 9, 10))
    assert "prompts#8" in rows[8]["planner_error"] and "messages" in rows[8]["planner_error"]
    results = {r["id"]: r for r in select_all(db_url, "SELECT * FROM planner_results")}
    assert sorted(results, key=int) == [str(i) for i in range(8)]
    record = json.loads(results["0"]["record"])
    assert record["source"] == "db" and record["metadata"] == {"n": "0"}
    assert {r["status"] for r in results.values()} == {"succeeded"}
    again = run_once(ctx)  # nothing is read twice
    assert again.stages["intake"]["inserted"] == 0 and again.stages["intake"]["duplicates"] == 0


def source(url: str, factory: Callable[[], Any], owner: str, **kw: Any) -> SqlSource:
    return SqlSource(
        "db",
        create_engine(url),
        columns=Columns(id="id", prompt="prompt"),
        defaults=Defaults(source="db", family_of=FAMILIES.get, default_model="gpt-4o-mini"),
        page=kw.pop("page", 7),
        table=None if "query" in kw else "prompts",
        leases=StoreUnitLeases(factory, "db", owner, timedelta(minutes=2)),
        **kw,
    )


def test_two_replicas_never_take_the_same_row(tmp_path: Path, db_url: str) -> None:
    insert(db_url, [{"id": i, "prompt": f"Row {i}."} for i in range(120)])
    store = make_engine(f"sqlite:///{tmp_path}/store.db")
    upgrade(store)
    factory = make_session_factory(store)
    results: list[IntakeResult] = []
    start = threading.Barrier(2)

    def replica(owner: str) -> None:
        src = source(db_url, factory, owner)
        start.wait()
        results.extend(ingest_all([src], factory, clock.utc_now()) for _ in range(8))

    threads = [threading.Thread(target=replica, args=(o,)) for o in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(r.inserted.get("db", 0) for r in results) == 120
    assert sum(r.duplicates.get("db", 0) for r in results) == 0, "a row was read twice"
    states = select_all(db_url, "SELECT planner_state, COUNT(*) AS n FROM prompts GROUP BY 1")
    assert [(s["planner_state"], s["n"]) for s in states] == [("queued", 120)]
    store.dispose()


def test_query_mode_offers_rows_again_and_the_store_drops_them(tmp_path: Path, db_url: str) -> None:
    insert(db_url, [{"id": i, "prompt": f"Row {i}."} for i in range(10)])
    store = make_engine(f"sqlite:///{tmp_path}/store.db")
    upgrade(store)
    factory = make_session_factory(store)
    src = source(db_url, factory, "a", query="SELECT id, prompt FROM prompts WHERE id >= 4")
    first = ingest_all([src], factory, clock.utc_now())
    second = ingest_all([src], factory, clock.utc_now())
    assert first.inserted == {"db": 6} and second.duplicates == {"db": 6}
    scanned = list(src.scan(clock.utc_now()))
    assert [r.key for r in scanned if hasattr(r, "key")] == [str(i) for i in range(4, 10)]
    assert all(getattr(r, "endpoint", None) is Endpoint.CHAT_COMPLETIONS for r in scanned)
    store.dispose()


def test_sql_sink_rewrites_the_same_delivery_in_place(tmp_path: Path, db_url: str) -> None:
    sink = SqlSink("results", create_engine(db_url), "planner_results")
    record = {"source": "db", "id": "1", "response": {"x": 1}, "completed_at": "t"}
    sink.deliver("d1", [record], [])
    sink.deliver("d1", [record], [])
    sink.deliver("d2", [], [{"source": "db", "id": "2", "error": {"code": "c", "message": "m"}}])
    rows = select_all(db_url, "SELECT source, id, status FROM planner_results ORDER BY id")
    assert rows == [
        {"source": "db", "id": "1", "status": "succeeded"},
        {"source": "db", "id": "2", "status": "dead"},
    ]
    back = SqlSink(
        "back",
        create_engine(db_url),
        "prompts",
        key_column="id",
        columns={"status": "status", "error": "planner_error"},
    )
    insert(db_url, [{"id": 2, "prompt": "p"}])
    back.deliver("d2", [], [{"source": "db", "id": "2", "error": {"code": "c", "message": "m"}}])
    (row,) = select_all(db_url, "SELECT status, planner_error FROM prompts WHERE id = 2")
    assert row == {"status": "dead", "planner_error": "c: m"}
    with pytest.raises(ValueError, match="unknown result fields"):
        SqlSink("x", create_engine(db_url), "prompts", key_column="id", columns={"nope": "c"})
