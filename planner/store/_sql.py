"""Small helpers shared by the store modules (not part of the public API)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import CursorResult, Result, Table

from planner.errors import StoreError

T = TypeVar("T")

# Bound parameters per statement stay well under SQLite's 32766 and PostgreSQL's 65535.
CHUNK = 1000


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
