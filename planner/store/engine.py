"""Engines, sessions and migrations for the store: SQLite (default, one host) or PostgreSQL.

SQLite is set up for durability and for writers that never deadlock on an upgrade:

- ``journal_mode=WAL`` and ``synchronous=FULL``: a committed intent survives power loss, not
  only a killed process (under NORMAL a WAL commit may roll back after a power cut, after the
  provider was already called — the double-billing case).
- every transaction starts with ``BEGIN IMMEDIATE``: a deferred transaction that reads and then
  writes fails with SQLITE_BUSY at once, ignoring ``busy_timeout``; an immediate one waits.
  Read-only work that must not queue behind writers can use :func:`deferred` on the engine.
- ``foreign_keys=ON`` and a ``busy_timeout``.

On both, a transaction that changes requests, batches or the ledger moves the store's
generation as it commits (``store/generation.py``).

PostgreSQL goes through psycopg 3 (``postgresql://`` URLs are read as ``postgresql+psycopg://``).
Migrations run programmatically (no alembic.ini), from the scripts shipped inside the package.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from planner.errors import StoreError
from planner.store import generation

if TYPE_CHECKING:  # Alembic (and Mako, Pygments) load only when migrating: `plan` never does
    from alembic.config import Config

_log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Pages the write-ahead log may hold before SQLite copies them into the database (its default
# is 1,000: 4 MB, a checkpoint and two fsyncs every few commits, the same hot pages copied each
# time). 10,000 pages, 40 MB of log at most between checkpoints: a run of 20,000 requests made
# 93 fdatasyncs and 218,000 page writes instead of 156 and 232,000. The page cache stays at
# SQLite's 2 MB a connection: 8 MB cut that run's page reads by a third (168,000 -> 109,000) but
# cost 19 MB of peak memory at 200,000 requests (261 MiB against 242), past the daemon's 250 MB.
SQLITE_CHECKPOINT_PAGES = 10_000
_BEGIN_OPTION = "planner_sqlite_begin"
_SHAPE = "dialect+driver://user:password@host:port/database"


def redact_url(url: str | URL) -> str:
    """``url`` with any password shown as ``***``: the only form a URL takes in a message."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<invalid database URL>"
    return parsed.render_as_string(hide_password=True)


def default_sqlite_url(state_dir: Path) -> str:
    """The default store: ``planner.db`` in the state directory."""
    return f"sqlite:///{(state_dir / 'planner.db').resolve()}"


def check_url(url: str | URL) -> None:
    """Raise ``StoreError`` (password hidden) unless ``url`` is a store URL we can open."""
    _parse(url)


def _parse(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
        port = parsed.port
    except ValueError as exc:  # a port that is not a number; the URL cannot be shown redacted
        raise StoreError(f"invalid database URL: the port is not a number ({_SHAPE})") from exc
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL: expected {_SHAPE}") from exc
    backend = parsed.drivername.partition("+")[0]
    if backend == "postgresql" and (not parsed.host or not 0 < (port or 5432) < 65536):
        raise StoreError(
            f"invalid database URL {redact_url(url)}: a PostgreSQL URL needs a host and a port "
            "from 1 to 65535"
        )
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database {redact_url(url)}: use sqlite:/// or postgresql+psycopg://"
        )
    return parsed


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Stop pysqlite from issuing its own BEGIN (and COMMIT before DDL); we emit BEGIN below.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str | URL, **engine_kwargs: Any) -> Engine:
    """An engine for ``url``; for SQLite, also the parent directory of the database file."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise StoreError("the store needs an SQLite file, not an in-memory database")
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **engine_kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine_kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(parsed, **engine_kwargs)
    generation.watch(engine)  # every writer moves the generation the metrics look at
    return engine


def deferred(engine: Engine) -> Engine:
    """The same engine (same pool) but SQLite transactions start DEFERRED: for read-only use,
    such as metrics and status, so that readers do not queue behind a writer. No-op on PG."""
    return engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit; use ``with factory() as s, s.begin():``."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code, pointing at the migrations inside the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


# Held (transaction-scoped) while migrating on PostgreSQL: replicas started together would
# otherwise create the same tables at once and all but one fail.
MIGRATE_LOCK = 0x706C616E6E6572  # "planner"


def upgrade(target: Engine | str | URL, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (``alembic upgrade head``, programmatically); on
    PostgreSQL under an advisory lock, so replicas starting at once migrate one after another."""
    from alembic import command
    from alembic.util import CommandError

    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # replicas starting at once take turns
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK}
                )
            command.upgrade(alembic_config(connection), revision)
    except (SQLAlchemyError, CommandError) as exc:
        raise StoreError(
            f"cannot migrate the store at {redact_url(engine.url)}: {type(exc).__name__}: "
            f"{_first_line(exc)}"
        ) from exc
    finally:
        if engine is not target:
            engine.dispose()
    _log.info(
        "store at %s migrated to %s",
        redact_url(engine.url),
        revision,
        extra={"event": "store_migrated"},
    )


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else ""
