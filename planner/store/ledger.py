"""The money ledger: what each attempt of each request was billed, exactly once in our books.

One ``ledger`` row per ``(request_id, attempt)`` under a unique constraint, inserted with
``ON CONFLICT DO NOTHING``: collecting the same result file twice after a crash records nothing
the second time. The request row gets the same usage and cost (its latest result) in the same
transaction. Sums are made in Python with ``Decimal`` (SQLite keeps money as text), so reports
are exact on both backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from planner.core.model import Lane, Usage
from planner.errors import StoreError
from planner.store._sql import (
    CHUNK,
    among,
    bind_processors,
    bound,
    chunks,
    placeholder,
    translated,
    update_many,
)
from planner.store.tables import LEDGER, REQUEST


@dataclass(frozen=True, slots=True)
class Billed:
    """The outcome of one request's current attempt: usage and exact costs (``None`` when the
    price is unknown). ``lane`` defaults to the lane recorded on the request."""

    request_id: int
    usage: Usage
    actual_cost: Decimal | None
    interactive_equiv: Decimal | None
    lane: Lane | None = None


@dataclass(slots=True)
class Spend:
    """Sums for one (source, provider, model, lane) group. ``savings`` counts only requests
    whose both costs are known, net; ``overspend`` sums what single rows cost above their
    interactive equivalent (already taken off ``savings``; should stay 0)."""

    source: str
    provider: str | None
    model: str
    lane: Lane
    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    interactive_equiv_usd: Decimal = Decimal(0)
    savings_usd: Decimal = Decimal(0)
    overspend_usd: Decimal = Decimal(0)
    unpriced: int = 0


@translated
def record_results(session: Session, billed: Iterable[Billed], now: datetime) -> int:
    """Record outcomes; returns how many were new (an attempt already recorded is skipped)."""
    recorded = 0
    items = list(billed)
    for chunk in chunks(items, CHUNK):
        recorded += _record_chunk(session, chunk, now)
    return recorded


@translated
def record_result(
    session: Session,
    request_id: int,
    usage: Usage,
    actual_cost: Decimal | None,
    interactive_equiv: Decimal | None,
    now: datetime,
    *,
    lane: Lane | None = None,
) -> bool:
    """:func:`record_results` for one request; ``False`` if this attempt was already recorded."""
    item = Billed(request_id, usage, actual_cost, interactive_equiv, lane)
    return record_results(session, [item], now) == 1


_ENTRY = (
    *("request_id", "attempt", "source", "provider", "model", "lane", "batch_id"),
    *("input_tokens", "cached_input_tokens", "output_tokens", "cost_usd", "interactive_equiv_usd"),
    "recorded_at",
)
# the request row's copy of its latest result, set from the same (same-typed) entry values
_USAGE = {
    "usage_input_tokens": "input_tokens",
    "usage_cached_input_tokens": "cached_input_tokens",
    "usage_output_tokens": "output_tokens",
    "actual_cost_usd": "cost_usd",
    "interactive_equiv_usd": "interactive_equiv_usd",
    "updated_at": "recorded_at",
}
_BATCH = Lane.BATCH.value
_USAGE_OF = itemgetter(*(_ENTRY.index(name) for name in _USAGE.values()))


def _record_chunk(session: Session, chunk: Sequence[Billed], now: datetime) -> int:
    """Insert the chunk's ledger rows (one per request and attempt, a repeat left out) and
    copy the usage of the new ones onto their requests.

    The values are bound once, through their column types' processors for this backend (so
    money is checked and stored exactly as a bound parameter would be), and handed to the
    driver as plain rows: SQLAlchemy's per-row parameter handling of the same two statements
    (a dict per row, each cost processed twice) was four fifths of collecting a result."""
    ids = sorted({item.request_id for item in chunk})
    rows = {
        row.id: row
        for row in session.execute(
            select(
                REQUEST.c.id,
                REQUEST.c.source,
                REQUEST.c.provider,
                REQUEST.c.model,
                REQUEST.c.lane,
                REQUEST.c.batch_id,
                REQUEST.c.attempts,
            ).where(among(REQUEST.c.id, ids))
        )
    }
    dialect = session.get_bind().dialect
    processors = bind_processors(LEDGER, _ENTRY, dialect)
    entries: dict[int, tuple[Any, ...]] = {}
    for item in chunk:
        row = rows.get(item.request_id)
        if row is None:
            raise StoreError(f"cannot bill request {item.request_id}: it is not in the store")
        lane = item.lane.value if item.lane is not None else row.lane
        if lane is None:
            raise StoreError(f"cannot bill request {item.request_id}: no lane recorded")
        if item.request_id in entries:
            continue
        usage = item.usage
        entry = (
            *(item.request_id, row.attempts, row.source, row.provider, row.model, lane),
            row.batch_id if lane == _BATCH else None,
            *(usage.input_tokens, usage.cached_input_tokens, usage.output_tokens),
            *(item.actual_cost, item.interactive_equiv, now),
        )
        entries[item.request_id] = bound(entry, processors)
    mark = placeholder(dialect)
    one = "(" + ", ".join([mark] * len(_ENTRY)) + ")"
    values = list(entries.values())
    inserted = session.connection().exec_driver_sql(
        f"INSERT INTO {LEDGER.name} ({', '.join(_ENTRY)}) VALUES "
        + ", ".join([one] * len(values))
        + " ON CONFLICT (request_id, attempt) DO NOTHING RETURNING request_id",
        tuple(chain.from_iterable(values)),
    )
    new_ids = sorted(request_id for (request_id,) in inserted)
    usage_rows = [(*_USAGE_OF(entries[i]), i) for i in new_ids]  # same types: bound already
    update_many(session, REQUEST, tuple(_USAGE), usage_rows, already_bound=True)
    return len(new_ids)


@translated
def spend(session: Session, since: datetime | None = None) -> list[Spend]:
    """Billed usage and money per (source, provider, model, lane), recorded at or after
    ``since`` (all time if ``None``), sorted by group."""
    query = select(
        LEDGER.c.source,
        LEDGER.c.provider,
        LEDGER.c.model,
        LEDGER.c.lane,
        LEDGER.c.input_tokens,
        LEDGER.c.cached_input_tokens,
        LEDGER.c.output_tokens,
        LEDGER.c.cost_usd,
        LEDGER.c.interactive_equiv_usd,
    )
    if since is not None:
        query = query.where(LEDGER.c.recorded_at >= since)
    groups: dict[tuple[str, str | None, str, str], Spend] = {}
    for row in session.execute(query.execution_options(yield_per=CHUNK)):
        group_key = (row.source, row.provider, row.model, row.lane)
        group = groups.get(group_key)
        if group is None:
            group = Spend(row.source, row.provider, row.model, Lane(row.lane))
            groups[group_key] = group
        group.requests += 1
        group.input_tokens += row.input_tokens
        group.cached_input_tokens += row.cached_input_tokens
        group.output_tokens += row.output_tokens
        if row.cost_usd is None:
            group.unpriced += 1
            continue
        group.cost_usd += row.cost_usd
        if row.interactive_equiv_usd is not None:
            group.interactive_equiv_usd += row.interactive_equiv_usd
            saved = row.interactive_equiv_usd - row.cost_usd
            group.savings_usd += saved
            if saved < 0:
                group.overspend_usd -= saved
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1] or "", k[2], k[3]))]
