"""The store's backends for the contract suites: a fresh SQLite file, or a fresh PostgreSQL
schema (dropped afterwards) on the server named by ``PLANNER_TEST_PG_URL``.

Each test gets an empty database; PostgreSQL isolation is a throw-away schema put first on the
``search_path`` through libpq's ``options``, so migrations, tables and ``alembic_version`` all
land in it. A missing server skips locally and fails in CI (``require_service``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.conftest import require_service

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


def pg_base_url() -> str:
    return os.environ.get("PLANNER_TEST_PG_URL") or DEFAULT_PG_URL


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections use a new, empty schema; the schema is dropped on exit."""
    base = make_url(pg_base_url())
    if base.drivername in ("postgresql", "postgres"):
        base = base.set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    schema = "t_" + uuid.uuid4().hex[:16]
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError:
        admin.dispose()
        require_service("PostgreSQL")
        raise
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def backend_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of ``backend`` for one test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'planner.db'}"
        return
    with pg_schema_url() as url:
        yield url
