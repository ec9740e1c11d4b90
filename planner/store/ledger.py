"""The money ledger: what each attempt of each request was billed, exactly once in our books.

One ``ledger`` row per ``(request_id, attempt)`` under a unique constraint, inserted with
``ON CONFLICT DO NOTHING``: collecting the same result file twice after a crash records nothing
the second time. The request row gets the same usage and cost (its latest result) in the same
transaction. Sums are made here, in integer FUSD (SQLite keeps money as text), so reports are
exact on both backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from planner.core.cost import from_usd
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
from planner.store.tables import LEDGER, MONEY_QUANTUM, MONEY_SCALE, REQUEST


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


Group = tuple[str, str | None, str, str]
"""(source, provider, model, lane) as the ledger holds them."""


@translated
def spend(session: Session, since: datetime | None = None) -> list[Spend]:
    """Billed usage and money per (source, provider, model, lane), recorded at or after
    ``since`` (all time if ``None``), sorted by group.

    Every amount is read as the text the column holds (SQLite keeps money as decimal text; a
    ``NUMERIC`` cast to text on PostgreSQL) and added as integer FUSD (``core/cost.py``: the
    store's scale, so exactly), then made a ``Decimal`` once per sum: three times as fast as a
    ``Decimal`` per row, which was 7 s of CPU for a million ledger rows (``report``, and the
    metrics before :class:`RunningSpend`). The sums are what adding the amounts as the column's
    exact decimals gives, to the digit and the exponent (a property test holds it to that)."""
    groups: dict[Group, _Sums] = {}
    _add_rows(session, groups, since=since)
    return _listed(groups)


class RunningSpend:
    """The ledger's all-time :func:`spend`, kept between reads (the metrics, after each change
    of the store): a read adds only the rows above the highest id read so far.

    Exact because ledger rows are only ever added (never changed, and kept by retention), and
    checked by their count: when the ledger holds more rows than were read so far plus the ones
    just read, one was committed late under a lower id (PostgreSQL hands ids out before the
    commits, which may land in another order) and every row is read again. A million rows cost
    2.3 s to sum and their count 0.05 s; the rows of one collected chunk cost milliseconds."""

    def __init__(self) -> None:
        self._groups: dict[Group, _Sums] = {}
        self._rows = 0
        self._highest = 0

    @translated
    def read(self, session: Session) -> list[Spend]:
        """The sums now (see the class docstring)."""
        total = int(session.execute(select(func.count()).select_from(LEDGER)).scalar_one())
        added: dict[Group, _Sums] = {}
        rows, highest = _add_rows(session, added, after=self._highest)
        if total == self._rows + rows:
            for key, sums in added.items():
                self._groups.setdefault(key, _Sums()).merge(sums)
            self._rows, self._highest = total, highest
        else:  # a row was missed (or the count moved while reading): sum them all
            self._groups = {}
            self._rows, self._highest = _add_rows(session, self._groups)
        return _listed(self._groups)


def _add_rows(
    session: Session,
    groups: dict[Group, _Sums],
    *,
    since: datetime | None = None,
    after: int = 0,
) -> tuple[int, int]:
    """Add the ledger rows recorded at or after ``since``, with an id above ``after``, to
    ``groups``; returns how many were added and the highest id among them (else ``after``)."""
    money = (LEDGER.c.cost_usd, LEDGER.c.interactive_equiv_usd)
    query = select(
        LEDGER.c.id,
        LEDGER.c.source,
        LEDGER.c.provider,
        LEDGER.c.model,
        LEDGER.c.lane,
        LEDGER.c.input_tokens,
        LEDGER.c.cached_input_tokens,
        LEDGER.c.output_tokens,
        *(cast(column, String) for column in money),
    )
    if since is not None:
        query = query.where(LEDGER.c.recorded_at >= since)
    if after:
        query = query.where(LEDGER.c.id > after)
    rows, highest = 0, after
    for (
        row_id,
        source,
        provider,
        model,
        lane,
        tokens_in,
        cached,
        tokens_out,
        cost,
        equiv,
    ) in session.execute(query.execution_options(yield_per=CHUNK)):
        key = (source, provider, model, lane)
        sums = groups.get(key)
        if sums is None:
            sums = groups[key] = _Sums()
        sums.add(tokens_in, cached, tokens_out, cost, equiv)
        rows += 1
        highest = max(highest, row_id)
    return rows, highest


def _listed(groups: dict[Group, _Sums]) -> list[Spend]:
    order = sorted(groups, key=lambda k: (k[0], k[1] or "", k[2], k[3]))
    return [groups[key].spend(*key) for key in order]


class _Sums:
    """One group's running sums in integers; ``None`` for a money sum nothing was added to
    yet (its ``Spend`` field then keeps its default, as adding no ``Decimal`` would)."""

    __slots__ = ("cost", "equiv", "overspend", "requests", "savings", "tokens", "unpriced")

    def __init__(self) -> None:
        self.requests = 0
        self.tokens = [0, 0, 0]
        self.unpriced = 0
        self.cost: int | None = None
        self.equiv: int | None = None
        self.savings: int | None = None
        self.overspend: int | None = None

    def add(
        self, tokens_in: int, cached: int, tokens_out: int, cost: str | None, equiv: str | None
    ) -> None:
        self.requests += 1
        tokens = self.tokens
        tokens[0] += tokens_in
        tokens[1] += cached
        tokens[2] += tokens_out
        if cost is None:
            self.unpriced += 1
            return
        paid = _fusd(cost)
        self.cost = paid + (self.cost or 0)
        if equiv is None:
            return
        would = _fusd(equiv)
        self.equiv = would + (self.equiv or 0)
        saved = would - paid
        self.savings = saved + (self.savings or 0)
        if saved < 0:
            self.overspend = (self.overspend or 0) - saved

    def merge(self, other: _Sums) -> None:
        """Add ``other``'s sums to these, as if its rows had been added here."""
        self.requests += other.requests
        self.tokens = [
            mine + theirs for mine, theirs in zip(self.tokens, other.tokens, strict=True)
        ]
        self.unpriced += other.unpriced
        self.cost = _plus(self.cost, other.cost)
        self.equiv = _plus(self.equiv, other.equiv)
        self.savings = _plus(self.savings, other.savings)
        self.overspend = _plus(self.overspend, other.overspend)

    def spend(self, source: str, provider: str | None, model: str, lane: str) -> Spend:
        tokens_in, cached, tokens_out = self.tokens
        return Spend(
            source,
            provider,
            model,
            Lane(lane),
            requests=self.requests,
            input_tokens=tokens_in,
            cached_input_tokens=cached,
            output_tokens=tokens_out,
            cost_usd=_usd(self.cost),
            interactive_equiv_usd=_usd(self.equiv),
            savings_usd=_usd(self.savings),
            overspend_usd=_usd(self.overspend),
            unpriced=self.unpriced,
        )


def _fusd(text: str) -> int:
    """A money column's text as FUSD: ``"0.000010000000000"`` -> ``10_000_000_000``. The
    column's own form (15 decimal places) is read as the integer of its digits; any other text
    as ``Money`` reads it (``Decimal``, rounded to 15 places)."""
    if len(text) > MONEY_SCALE and text[-MONEY_SCALE - 1] == ".":
        try:
            return int(text.replace(".", "", 1))
        except ValueError:  # not digits: Decimal says what it is
            pass
    return from_usd(Decimal(text).quantize(MONEY_QUANTUM))


def _plus(mine: int | None, theirs: int | None) -> int | None:
    """Two money sums added; ``None`` (nothing added yet) only when both are."""
    if mine is None:
        return theirs
    return mine if theirs is None else mine + theirs


def _usd(fusd: int | None) -> Decimal:
    """A sum back in USD with the column's 15 places (``Spend``'s default when ``None``)."""
    return Decimal(0) if fusd is None else Decimal(fusd).scaleb(-MONEY_SCALE)
