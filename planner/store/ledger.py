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
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from planner.core.model import Lane, Usage
from planner.errors import StoreError
from planner.store._sql import CHUNK, among, chunks, translated
from planner.store.requests import dialect_insert
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


def _record_chunk(session: Session, chunk: Sequence[Billed], now: datetime) -> int:
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
    entries: dict[int, dict[str, Any]] = {}
    for item in chunk:
        row = rows.get(item.request_id)
        if row is None:
            raise StoreError(f"cannot bill request {item.request_id}: it is not in the store")
        lane = item.lane.value if item.lane is not None else row.lane
        if lane is None:
            raise StoreError(f"cannot bill request {item.request_id}: no lane recorded")
        entries.setdefault(
            item.request_id,
            {
                "request_id": item.request_id,
                "attempt": row.attempts,
                "source": row.source,
                "provider": row.provider,
                "model": row.model,
                "lane": lane,
                "batch_id": row.batch_id if lane == Lane.BATCH.value else None,
                "input_tokens": item.usage.input_tokens,
                "cached_input_tokens": item.usage.cached_input_tokens,
                "output_tokens": item.usage.output_tokens,
                "cost_usd": item.actual_cost,
                "interactive_equiv_usd": item.interactive_equiv,
                "recorded_at": now,
            },
        )
    statement = (
        dialect_insert(session, LEDGER)
        .on_conflict_do_nothing(index_elements=["request_id", "attempt"])
        .returning(LEDGER.c.request_id)
    )
    new_ids = set(session.execute(statement, list(entries.values())).scalars())
    if new_ids:
        session.connection().execute(
            update(REQUEST)
            .where(REQUEST.c.id == bindparam("b_id"))
            .values(
                usage_input_tokens=bindparam("b_in"),
                usage_cached_input_tokens=bindparam("b_cached"),
                usage_output_tokens=bindparam("b_out"),
                actual_cost_usd=bindparam("b_cost", type_=REQUEST.c.actual_cost_usd.type),
                interactive_equiv_usd=bindparam(
                    "b_equiv", type_=REQUEST.c.interactive_equiv_usd.type
                ),
                updated_at=bindparam("b_now", type_=REQUEST.c.updated_at.type),
            ),
            [
                {
                    "b_id": request_id,
                    "b_in": entries[request_id]["input_tokens"],
                    "b_cached": entries[request_id]["cached_input_tokens"],
                    "b_out": entries[request_id]["output_tokens"],
                    "b_cost": entries[request_id]["cost_usd"],
                    "b_equiv": entries[request_id]["interactive_equiv_usd"],
                    "b_now": now,
                }
                for request_id in sorted(new_ids)
            ],
        )
    return len(new_ids)


@translated
def fingerprint(session: Session) -> tuple[int, int | None]:
    """(rows, highest id): changes whenever a row is added, and rows are only ever added, so
    equal fingerprints mean equal sums (the metrics reuse their last :func:`spend`)."""
    rows, highest = session.execute(select(func.count(), func.max(LEDGER.c.id))).one()
    return int(rows), None if highest is None else int(highest)


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
