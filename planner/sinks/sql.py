"""``kind: sql``: results written back into a database SQLAlchemy speaks.

Two shapes:

- a results table (``table`` without ``key_column``): one row per finished request, keyed by
  ``(source, id)``, created if missing (``source``, ``id``, ``status`` = ``succeeded`` or
  ``dead``, ``record`` = the whole result line as JSON text, ``completed_at``);
- columns of the source table (``table`` with ``key_column``): ``UPDATE table SET ... WHERE
  key_column = id`` with the fields named in ``columns`` (``response``, ``status``, ``error``,
  ``cost_usd``, ``completed_at``, ``record``).

Each delivery is one transaction, and writing the same delivery again leaves the same rows (an
upsert, or the same UPDATE), so a crash between the write and the store's commit never makes a
second copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Engine, MetaData, String, Table, Text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from planner.core import json_text
from planner.sinks.base import Record

FIELDS = ("response", "status", "error", "cost_usd", "completed_at", "record")


def _field(record: Record, status: str, name: str) -> Any:
    if name == "status":
        return status
    if name == "record":
        return json_text.dumps(record)
    if name == "response":
        value = record.get("response")
        return None if value is None else json_text.dumps(value)
    if name == "error":
        error = record.get("error")
        return None if error is None else f"{error.get('code')}: {error.get('message') or ''}"
    value = record.get(name)
    return None if value is None else str(value)


class SqlSink:
    """A results table or columns of the source table (see the module docstring)."""

    kind = "sql"

    def __init__(
        self,
        name: str,
        engine: Engine,
        table: str,
        *,
        key_column: str | None = None,
        columns: Mapping[str, str] | None = None,
    ) -> None:
        unknown = sorted(set(columns or {}) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown result fields {unknown}; known: {', '.join(FIELDS)}")
        self._name = name
        self.engine = engine
        self.key_column = key_column
        self.columns = dict(columns or {})
        schema, _, bare = table.rpartition(".")
        if key_column is None:
            self.table = Table(
                bare,
                MetaData(),
                Column("source", String(200), primary_key=True),
                Column("id", String(512), primary_key=True),
                Column("status", String(16), nullable=False),
                Column("record", Text, nullable=False),
                Column("completed_at", String(40)),
                schema=schema or None,
            )
            self.table.create(engine, checkfirst=True)
        else:
            self.table = Table(bare, MetaData(), schema=schema or None, autoload_with=engine)

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"SqlSink(name={self._name!r}, table={self.table.fullname!r})"

    def deliver(self, delivery_id: str, results: Sequence[Record], dead: Sequence[Record]) -> None:
        rows = [("succeeded", r) for r in results] + [("dead", r) for r in dead]
        if not rows:
            return
        with self.engine.begin() as conn:
            if self.key_column is None:
                insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
                values = [
                    {
                        "source": r["source"],
                        "id": r["id"],
                        "status": status,
                        "record": _field(r, status, "record"),
                        "completed_at": r.get("completed_at"),
                    }
                    for status, r in rows
                ]
                unique = list({(v["source"], v["id"]): v for v in values}.values())
                statement = insert(self.table).values(unique)
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=["source", "id"],
                        set_={
                            "status": statement.excluded.status,
                            "record": statement.excluded.record,
                            "completed_at": statement.excluded.completed_at,
                        },
                    )
                )
                return
            key = self.table.c[self.key_column]
            for status, r in rows:
                changes = {col: _field(r, status, f) for f, col in self.columns.items()}
                conn.execute(
                    update(self.table).where(key == _key(key.type, r["id"])).values(changes)
                )


def _key(column_type: Any, value: str) -> Any:
    """The record's id as the key column's Python type (ids travel as strings)."""
    try:
        python_type = column_type.python_type
    except NotImplementedError:
        return value
    return int(value) if python_type is int else value
