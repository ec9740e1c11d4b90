"""Small helpers shared by the store modules (not part of the public API)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, CursorResult, Dialect, Result, Table, bindparam
from sqlalchemy.exc import SQLAlchemyError, StatementError
from sqlalchemy.orm import Session

from planner.errors import StoreError

T = TypeVar("T")

# Bound parameters per statement stay well under SQLite's 32766 and PostgreSQL's 65535.
CHUNK = 1000


def among(column: ColumnElement[Any], values: Iterable[object]) -> ColumnElement[bool]:
    """``column IN (values)`` as one expanding bound parameter: ``column.in_(values)`` makes
    and checks a literal per value each time the statement is built (a fifth of a state
    change of 1,000 requests), where the values only need binding."""
    return column.in_(bindparam(None, list(values), type_=column.type, expanding=True))


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
