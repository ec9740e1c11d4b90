"""Small helpers shared by the store modules (not part of the public API)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, CursorResult, Dialect, Result, Table, bindparam
from sqlalchemy.exc import SQLAlchemyError, StatementError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from planner.errors import StoreError

T = TypeVar("T")

# Bound parameters per statement stay well under SQLite's 32766 and PostgreSQL's 65535.
CHUNK = 1000


def among(column: ColumnElement[Any], values: Iterable[object]) -> ColumnElement[bool]:
    """``column IN (values)`` as one expanding bound parameter: ``column.in_(values)`` makes
    and checks a literal per value each time the statement is built (a fifth of a state
    change of 1,000 requests), where the values only need binding."""
    return column.in_(bindparam(None, list(values), type_=column.type, expanding=True))


class _NotIndexed(FunctionElement[Any]):
    """A column as a term no index may serve (see :func:`not_indexed`)."""

    inherit_cache = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        super().__init__(column)
        self.type = column.type


def not_indexed(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``column`` for a condition that must only filter the rows another term finds.

    Without statistics SQLite takes an equality on an indexed column for a selective one: for
    ``id IN (1,000 ids) AND state IN ('queued', 'held')`` it walked the index on
    ``state`` through every request in those states and checked each id, instead of looking up
    the 1,000 ids; a state change of a chunk then cost time in proportion to the whole queue
    (18 ms against 0.5 ms a chunk at 200,000 requests, so a pass grew with the square of the
    queue). On SQLite the column is written ``+column``, which no index serves; PostgreSQL,
    which keeps statistics, gets the column as it is.
    """
    return _NotIndexed(column)


@compiles(_NotIndexed)
def _plain(element: _NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses.clauses[0], **kw)


@compiles(_NotIndexed, "sqlite")
def _unary_plus(element: _NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses.clauses[0], **kw)


Processors = list[tuple[int, Callable[[Any], Any]]]


def bind_processors(table: Table, names: Sequence[str], dialect: Dialect) -> Processors:
    """``(position, processor)`` of the columns ``names`` of ``table`` whose type converts a
    value before the driver takes it (datetimes, money), as a bound parameter is converted."""
    processors: Processors = []
    for i, name in enumerate(names):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((i, process))
    return processors


def bound(row: Iterable[Any], processors: Processors) -> tuple[Any, ...]:
    """``row``'s values as the driver takes them (``bind_processors``): a naive time is
    refused, money checked and formatted, as SQLAlchemy binds them."""
    values = list(row)
    for i, process in processors:
        values[i] = process(values[i])
    return tuple(values)


def placeholder(dialect: Dialect) -> str:
    """The driver's positional parameter: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def update_many(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    already_bound: bool = False,
) -> int:
    """``UPDATE table SET columns WHERE id = …`` once per row (its values in ``columns`` order,
    then its id), as one driver ``executemany`` of plain rows; returns the rows updated.

    Each value is bound through its column type's processor first (``bound``; not again with
    ``already_bound``); what is skipped is SQLAlchemy's per-row parameter handling (a dict, a
    lookup and a check per value), which was most of planning's update of 20,000 assessed
    requests and of recording 20,000 results."""
    dialect = session.get_bind().dialect
    processors = [] if already_bound else bind_processors(table, columns, dialect)
    params = [bound(row, processors) for row in rows]
    if not params:
        return 0
    mark = placeholder(dialect)
    assignments = ", ".join(f"{name} = {mark}" for name in columns)
    statement = f"UPDATE {table.name} SET {assignments} WHERE id = {mark}"
    return rowcount(session.connection().exec_driver_sql(statement, params))


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def checked_fields(
    table: Table, fields: Mapping[str, Any], reserved: frozenset[str]
) -> dict[str, Any]:
    """``fields`` as column values, refusing unknown names and columns the caller may not set."""
    unknown = sorted(name for name in fields if name not in table.c)
    if unknown:
        raise StoreError(f"{table.name} has no column(s) {', '.join(unknown)}")
    forbidden = sorted(name for name in fields if name in reserved)
    if forbidden:
        raise StoreError(f"{table.name}: {', '.join(forbidden)} cannot be set here")
    return dict(fields)


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (``-1`` from a driver that cannot tell becomes 0)."""
    if not isinstance(result, CursorResult):
        raise StoreError("expected a cursor result from a DML statement")
    return max(int(result.rowcount), 0)


P = ParamSpec("P")
R = TypeVar("R")


def translated(function: Callable[P, R]) -> Callable[P, R]:
    """Raise ``StoreError`` for database failures, and unwrap the ``StoreError`` a column type
    raised while binding (SQLAlchemy wraps it in ``StatementError``). The message carries the
    error class and its first line only: never parameters, which may hold request bodies."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except StatementError as exc:
            if isinstance(exc.orig, StoreError):
                raise exc.orig from None
            raise StoreError(_describe(exc)) from exc
        except SQLAlchemyError as exc:
            raise StoreError(_describe(exc)) from exc

    return wrapper


def translated_iter(function: Callable[P, Iterator[T]]) -> Callable[P, Iterator[T]]:
    """:func:`translated` for generator functions (errors surface while iterating)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        try:
            yield from function(*args, **kwargs)
        except StatementError as exc:
            if isinstance(exc.orig, StoreError):
                raise exc.orig from None
            raise StoreError(_describe(exc)) from exc
        except SQLAlchemyError as exc:
            raise StoreError(_describe(exc)) from exc

    return wrapper


def _describe(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"database error ({type(orig or exc).__name__}): {first}"
