"""Migrations against the models, on both backends: ``upgrade head`` on an empty database, then
Alembic's autogenerate comparison must find no difference with ``planner.store.tables``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, inspect, select, text

from planner.store import requests
from planner.store.engine import (
    MIGRATIONS,
    alembic_config,
    make_engine,
    make_session_factory,
    upgrade,
)
from planner.store.tables import METADATA, REQUEST_BODY
from tests.contract.store_backends import BACKENDS, backend_url

TABLES = {"request", "batch", "event", "ledger", "stage_run"}


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with backend_url(request.param, tmp_path) as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def _diff(engine: Engine, metadata: MetaData) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def _current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_upgrade_on_empty_database_matches_the_models(engine: Engine) -> None:
    assert _current(engine) is None
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert _diff(engine, METADATA) == []
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert _current(engine) == head


def test_the_comparison_can_fail(engine: Engine) -> None:
    """The check above is only worth something if a model change shows up as a difference."""
    upgrade(engine)
    changed = MetaData(naming_convention=METADATA.naming_convention)
    for table in METADATA.sorted_tables:
        table.to_metadata(changed)
    changed.tables["batch"].append_column(Column("extra", Integer))
    diff = _diff(engine, changed)
    assert [entry[0] for entry in diff] == ["add_column"]


def test_upgrade_twice_is_a_no_op_and_downgrade_undoes_it(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    assert _diff(engine, METADATA) == []
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert _diff(engine, METADATA) == []


def test_upgrade_from_a_url_in_any_directory_without_alembic_ini(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'planner.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        assert _diff(engine, METADATA) == []
    finally:
        engine.dispose()
    assert MIGRATIONS.parent.name == "store"
    assert (MIGRATIONS / "script.py.mako").is_file()


def test_request_bodies_move_to_their_table_and_back(engine: Engine) -> None:
    """0011 moves each request's body to ``request_body`` (a compacted one, ``{}``, gets no
    row) and the store reads them as before; the downgrade puts them back in the row."""
    upgrade(engine, "0010")
    bodies = {"kept": '{"messages":[{"role":"user","content":"héllo"}]}', "compacted": "{}"}
    at = "2026-12-01 00:00:00"
    with engine.begin() as connection:
        for key, body in bodies.items():
            connection.execute(
                text(
                    "INSERT INTO request (source, key, model, endpoint, body_json, received_at,"
                    " metadata_json, origin, state, attempts, claims, updated_at) VALUES ('s', "
                    ":key, 'gpt-4o-mini', '/v1/chat/completions', :body, :at, '{}', '', "
                    "'queued', 0, 0, :at)"
                ),
                {"key": key, "body": body, "at": at},
            )
    upgrade(engine)
    assert _diff(engine, METADATA) == []
    with make_session_factory(engine)() as session:
        stored = {s.request.key: s for s in requests.queued_for_planning(session)}
        moved = session.execute(select(REQUEST_BODY.c.request_id)).scalars().all()
    assert stored["kept"].request.body == json.loads(bodies["kept"])
    assert stored["compacted"].request.body == {}
    assert moved == [stored["kept"].id]  # the compacted one has no body row

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0010")
        back = dict(connection.execute(text("SELECT key, body_json FROM request")).all())
    assert back == bodies
    assert "request_body" not in inspect(engine).get_table_names()
