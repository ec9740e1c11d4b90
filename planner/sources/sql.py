"""The ``sql`` source: rows of a table, or of a query, in any database SQLAlchemy speaks.

Each row becomes one record for the shared parser (``formats.parse_record``) through a column
mapping: ``id`` and one of ``prompt`` / ``messages`` / ``text`` (a simple record), or ``body``
(a provider-format request body: an OpenAI batch line's ``body`` with ``endpoint`` as its URL
for an OpenAI-family model, a Gemini line's ``request`` otherwise), plus optional ``model``,
``deadline`` and ``metadata`` columns. JSON columns may hold JSON text or native JSON values.

Table mode (``table``): rows whose ``state_column`` is NULL are read in pages by ``id``; once a
page's good requests are committed to the store, its rows are marked ``queued``, and its bad
rows ``quarantined`` with their reason in ``error_column`` (when configured) — the table is the
quarantine, as the spool's ``quarantine/`` folder is. A crash before the marks re-reads the page
and the store drops what it already has. Query mode (``query``): every pass runs the query and
offers every row; the store's unique ``(source, key)`` drops rows already taken, so write the
query to return what is new (and mind that it is re-run); a bad row is reported once per
process.

Replicas: one pass over a source is one unit (``table`` or ``query``) leased in the store
(``UnitLeases``), renewed per page, so two replicas never read the same rows at once — a row is
claimed by exactly one of them — and a replica that died leaves the unit to the next once its
lease ran out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, MetaData, Table, TextClause, select, text, update

from planner.core.model import ProviderKind, Request
from planner.sources.base import LeaseLost, LineError, ParsedLine, UnitLeases
from planner.sources.formats import Defaults, RecordError, parse_record
from planner.sources.formats.common import Reason

log = logging.getLogger(__name__)

DEFAULT_PAGE = 500
STATE_QUEUED = "queued"
STATE_QUARANTINED = "quarantined"
RAW_PREVIEW = 1024


@dataclass(frozen=True, slots=True)
class Columns:
    """Which column holds which field of a record (``None``: not present)."""

    id: str
    prompt: str | None = None
    messages: str | None = None
    text: str | None = None
    body: str | None = None
    model: str | None = None
    endpoint: str | None = None
    deadline: str | None = None
    metadata: str | None = None


_JSON_FIELDS = ("messages", "body", "metadata")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return value


def row_record(
    row: Mapping[str, Any],
    columns: Columns,
    family_of: Callable[[str], Any],
    default_model: str | None = None,
) -> Any:
    """The record ``parse_record`` judges for one row (a JSON text column that does not parse
    is a ``RecordError``); a body row naming no model gets ``default_model``."""
    fields: dict[str, Any] = {}
    for name in ("id", "prompt", "messages", "text", "body", "model", "endpoint", "deadline"):
        column = getattr(columns, name)
        if column is not None and row.get(column) is not None:
            fields[name] = _plain(row[column])
    if columns.metadata is not None and row.get(columns.metadata) is not None:
        fields["metadata"] = row[columns.metadata]
    for name in _JSON_FIELDS:
        if isinstance(fields.get(name), str):
            try:
                fields[name] = json.loads(fields[name])
            except ValueError as exc:
                return RecordError(Reason.INVALID_JSON.value, f"not valid JSON: {exc}", name)
    key = fields.get("id")
    if isinstance(key, int) and not isinstance(key, bool):
        fields["id"] = str(key)
    if "body" not in fields:
        return {k: v for k, v in fields.items() if k != "endpoint"}
    model = fields.get("model") or default_model
    extra = {"metadata": fields["metadata"]} if "metadata" in fields else {}
    if isinstance(model, str) and family_of(model) is ProviderKind.GEMINI:
        return {"key": fields.get("id"), "model": model, "request": fields["body"], **extra}
    body = fields["body"]
    if isinstance(body, dict) and isinstance(model, str):
        body = {"model": model, **body}
    url = fields.get("endpoint") or "/v1/chat/completions"
    return {"custom_id": fields.get("id"), "method": "POST", "url": url, "body": body, **extra}


class SqlSource:
    """A table or a query (see the module docstring)."""

    kind = "sql"

    def __init__(
        self,
        name: str,
        engine: Engine,
        *,
        columns: Columns,
        defaults: Defaults,
        table: str | None = None,
        query: str | None = None,
        state_column: str = "planner_state",
        error_column: str | None = None,
        page: int = DEFAULT_PAGE,
        leases: UnitLeases | None = None,
    ) -> None:
        if (table is None) == (query is None):
            raise ValueError("give exactly one of table, query")
        self._name = name
        self.engine = engine
        self.columns = columns
        self.defaults = defaults
        self.table_name = table
        self.query = query
        self.state_column = state_column
        self.error_column = error_column
        self.page = page
        self.leases = leases
        self._table: Table | None = None
        self._reported: set[str] = set()  # query mode: bad rows already reported

    @property
    def name(self) -> str:
        return self._name

    @property
    def unit(self) -> str:
        return f"table:{self.table_name}" if self.table_name else "query"

    def __repr__(self) -> str:
        return f"SqlSource(name={self._name!r}, {self.unit!r})"

    def table(self) -> Table:
        if self._table is None:
            assert self.table_name is not None
            schema, _, bare = self.table_name.rpartition(".")
            self._table = Table(bare, MetaData(), schema=schema or None, autoload_with=self.engine)
        return self._table

    # ------------------------------------------------------------------ reading

    def _rows(self, after: Any, limit: int | None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            if self.query is not None:
                statement: TextClause = text(self.query)
                return [dict(r._mapping) for r in conn.execute(statement)]
            table = self.table()
            key = table.c[self.columns.id]
            query = select(table).where(table.c[self.state_column].is_(None)).order_by(key)
            if after is not None:
                query = query.where(key > after)
            if limit is not None:
                query = query.limit(limit)
            return [dict(r._mapping) for r in conn.execute(query)]

    def _parse(self, row: Mapping[str, Any], now: datetime, position: int) -> ParsedLine:
        record = row_record(row, self.columns, self.defaults.family_of, self.defaults.default_model)
        key = row.get(self.columns.id)
        origin = f"{self.table_name or 'query'}#{key}"
        parsed = (
            record
            if isinstance(record, RecordError)
            else parse_record(record, self.defaults, now=now, origin=origin)
        )
        if isinstance(parsed, Request):
            return parsed
        raw = json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False, default=str)
        return LineError(
            file=self.table_name or "query",
            line=position,
            reason=parsed.reason,
            message=f"{origin}: {parsed}",
            raw=raw[:RAW_PREVIEW],
        )

    def scan(self, now: datetime) -> Iterator[ParsedLine]:
        """Every row waiting now, read-only."""
        for position, row in enumerate(self._rows(None, None), 1):
            yield self._parse(row, now, position)

    # ------------------------------------------------------------------ claiming

    def claim(self, now: datetime) -> Iterator[RowPage]:
        """The waiting rows, page by page, while this replica holds the source's lease."""
        if self.leases is not None and not self.leases.acquire(self.unit):
            return  # another replica is reading this source now
        try:
            after: Any = None
            while True:
                rows = self._rows(after, None if self.query is not None else self.page)
                if not rows:
                    return
                page = RowPage(self, rows, now)
                yield page
                if self.query is not None or not page.finished:
                    return
                after = rows[-1][self.columns.id]
                if self.leases is not None and not self.leases.renew(self.unit):
                    return
        finally:
            if self.leases is not None:
                self.leases.release(self.unit)

    def recover(self, now: datetime) -> int:
        """Nothing to put back: an unfinished page's rows are still unmarked, read again."""
        return 0


class RowPage:
    """One page of rows owned by this replica: read ``lines()``, commit, then ``finish``."""

    def __init__(self, source: SqlSource, rows: list[dict[str, Any]], now: datetime) -> None:
        self._source = source
        self._rows = rows
        self._now = now
        self._good: list[Any] = []
        self._bad: list[tuple[Any, LineError]] = []
        self.finished = False

    @property
    def name(self) -> str:
        s = self._source
        first, last = self._rows[0].get(s.columns.id), self._rows[-1].get(s.columns.id)
        return f"{s.table_name or 'query'}#{first}..{last}"

    def lines(self) -> Iterator[ParsedLine]:
        self._good, self._bad = [], []
        key_column = self._source.columns.id
        for position, row in enumerate(self._rows, 1):
            item = self._source._parse(row, self._now, position)
            if isinstance(item, LineError):
                self._bad.append((row.get(key_column), item))
            else:
                self._good.append(row.get(key_column))
            yield item

    def reject(self, request: Request, reason: str, message: str) -> LineError:
        key = request.key
        matches = [k for k in self._good if str(k) == key]
        error = LineError(
            file=self._source.table_name or "query",
            line=0,
            reason=reason,
            message=f"{request.origin}: {message}",
            raw=json.dumps({"key": key, "model": request.model}, ensure_ascii=False),
        )
        for k in matches:
            self._good.remove(k)
            self._bad.append((k, error))
        return error

    def finish(self, now: datetime) -> None:
        """Mark the page's rows (table mode): good ``queued``, bad ``quarantined`` + reason."""
        source = self._source
        if source.leases is not None and not source.leases.renew(source.unit):
            raise LeaseLost(f"{source.name}: {source.unit} was taken over by another replica")
        self.finished = True
        if source.query is not None:
            fresh = [(k, e) for k, e in self._bad if str(k) not in source._reported]
            source._reported.update(str(k) for k, _ in fresh)
            return
        table = source.table()
        key = table.c[source.columns.id]
        state = table.c[source.state_column]
        with source.engine.begin() as conn:
            if self._good:
                conn.execute(
                    update(table)
                    .where(key.in_(self._good), state.is_(None))
                    .values({source.state_column: STATE_QUEUED})
                )
            for k, error in self._bad:
                values = {source.state_column: STATE_QUARANTINED}
                if source.error_column is not None:
                    values[source.error_column] = f"{error.reason}: {error.message}"
                conn.execute(update(table).where(key == k, state.is_(None)).values(values))
