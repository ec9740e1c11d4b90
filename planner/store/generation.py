"""The store's generation: a number that moves whenever requests, batches or the ledger change.

Why: the metrics read the store at every scrape (``metrics/collectors.py``): requests and
batches counted by state, the oldest batches, the ledger summed. On a store of millions of rows
that is a quarter of a second of CPU every 15 s while nothing happens. With the generation the
reader (``runtime/store_reading.py``) reads one row per scrape and redoes the rest only after
a change, whoever made it: this process, a ``planner`` command, another replica.

How: every engine planner makes (``engine.make_engine``) watches the statements it runs. A
transaction that inserted, updated or deleted rows of ``request``, ``batch`` or ``ledger`` adds
one to the single row of ``store_generation`` just before it commits, in the same transaction,
so the number is committed with the change or not at all. A transaction that changed nothing
there (a stage's bookkeeping, a lease, a read) leaves it alone, so an idle daemon's passes do
not move it. A statement is told by its text (the table it writes to) and by the rows the
driver says it changed: an update or delete of no row (the idle daemon's release of expired
claims) leaves the number alone, while an insert and a statement with ``RETURNING`` (whose
rows SQLite counts only as they are fetched) move it whatever they did: a reread too many,
never a stale figure.

Reading it first, then the data, keeps the reader exact on PostgreSQL too, where each statement
sees what was committed when it began: a change committed in between is in the data and moves
the number past what was read, so the next scrape reads again. A store that lost the row has
no generation: the reader then reads everything, every time. A transaction on a store not yet
migrated this far (a migration's own) changes nothing here.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, event, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from planner.store._sql import translated
from planner.store.tables import STORE_GENERATION

# a write (a claim's UPDATE comes after a WITH) and the tables it writes to: INSERT [OR ...]
# INTO t, REPLACE INTO t, UPDATE t, DELETE FROM t (a SELECT ... FOR UPDATE is not a write)
_WRITE = re.compile(r"\s*(?:INSERT|UPDATE|DELETE|REPLACE|WITH)\b", re.IGNORECASE)
_TARGETS = re.compile(
    r'\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)',
    re.IGNORECASE,
)
_WATCHED = frozenset({"request", "batch", "ledger"})
# rows an INSERT or a RETURNING made are not counted yet when the statement returns (SQLite
# counts them as they are fetched): such a statement moves the generation even if it made none
_UNCOUNTED = re.compile(r"^\s*(?:INSERT|REPLACE)\b|\bRETURNING\b", re.IGNORECASE)
_CHANGED = "planner_store_changed"  # in Connection.info: this transaction changed a table
_BUMP = "UPDATE store_generation SET generation = generation + 1 WHERE id = 1"
_EXISTS = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'store_generation'",
    "postgresql": "SELECT 1 WHERE to_regclass('store_generation') IS NOT NULL",
}


def watch(engine: Engine) -> None:
    """Make every transaction of ``engine`` that changes a watched table move the generation."""
    event.listen(engine, "after_cursor_execute", _noticed)
    event.listen(engine, "commit", _before_commit)
    event.listen(engine, "rollback", _forget)


@translated
def current(session: Session) -> int | None:
    """The generation now; ``None`` when its row is gone (read everything then). The store is
    migrated before it is read, so the table is there."""
    return session.execute(
        select(STORE_GENERATION.c.generation).where(STORE_GENERATION.c.id == 1)
    ).scalar_one_or_none()


def _noticed(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: Any,
    executemany: bool,
) -> None:
    if conn.info.get(_CHANGED):
        return
    if not _WRITE.match(statement):
        return
    if not any(t.group(1).lower() in _WATCHED for t in _TARGETS.finditer(statement)):
        return
    if cursor.rowcount != 0 or _UNCOUNTED.search(statement):  # -1: not known, so changed
        conn.info[_CHANGED] = True


def _before_commit(conn: Connection) -> None:
    """Runs just before the commit, inside the transaction: the bump commits with the change.
    It goes straight to the driver's cursor, so it is not itself a statement these hooks see."""
    if not conn.info.pop(_CHANGED, False):
        return
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_EXISTS[conn.dialect.name])
        if cursor.fetchone() is not None:  # not before migration 0013, nor below it again
            cursor.execute(_BUMP)
    finally:
        cursor.close()


def _forget(conn: Connection) -> None:
    conn.info.pop(_CHANGED, None)
