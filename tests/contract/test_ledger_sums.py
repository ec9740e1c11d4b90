"""``store.ledger.spend`` sums in integer FUSD and gives what adding ``Decimal``s gives.

Every money figure users see (``report``, ``status``, the metrics, the dashboard) is made from
these sums. They are added as integers for speed; this holds them, on both backends and for any
ledger (unpriced rows, rows without an interactive price, rows that cost more than their
interactive equivalent, amounts from a femto-dollar to billions, a window by ``since``), to the
loop that adds each row's exact ``Decimal`` as the column reads it: equal to the digit, and
written the same (the same exponent, so ``str`` of each sum is the same text).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from planner.core.model import Lane
from planner.store import ledger, requests
from planner.store.tables import LEDGER
from tests.contract.test_store import make_request

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
_SOURCES = itertools.count()  # each example bills under a source of its own in the shared store

money = st.decimals(
    min_value=Decimal("-0.5"),
    max_value=Decimal("9999999999.999999999999999"),
    places=15,
    allow_nan=False,
    allow_infinity=False,
)
amounts = st.none() | money
rows = st.lists(
    st.tuples(
        st.sampled_from(["gpt-4o-mini", "text-embedding-3-small"]),
        st.sampled_from([Lane.BATCH, Lane.INTERACTIVE]),
        st.integers(0, 10**12),
        amounts,
        amounts,
        st.integers(-3, 3),  # hours from NOW it was recorded
    ),
    max_size=12,
)


def decimal_loop(session: Session, source: str, since: datetime | None) -> list[ledger.Spend]:
    """The sums made the plain way: each row's amounts as ``Decimal`` (the column's own
    reading), added one by one."""
    query = select(LEDGER).where(LEDGER.c.source == source)
    if since is not None:
        query = query.where(LEDGER.c.recorded_at >= since)
    groups: dict[tuple[str, str | None, str, str], ledger.Spend] = {}
    for row in session.execute(query.order_by(LEDGER.c.id)):
        key = (row.source, row.provider, row.model, row.lane)
        group = groups.setdefault(key, ledger.Spend(*key[:3], Lane(row.lane)))
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


def as_text(groups: list[ledger.Spend]) -> list[tuple[object, ...]]:
    return [
        (
            g.source,
            g.provider,
            g.model,
            g.lane,
            g.requests,
            g.input_tokens,
            g.cached_input_tokens,
            g.output_tokens,
            str(g.cost_usd),
            str(g.interactive_equiv_usd),
            str(g.savings_usd),
            str(g.overspend_usd),
            g.unpriced,
        )
        for g in groups
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(billed=rows, window=st.sampled_from([None, -1, 0, 2]))
def test_integer_sums_equal_the_decimal_loop(
    factory: sessionmaker[Session],
    billed: list[tuple[str, Lane, int, Decimal | None, Decimal | None, int]],
    window: int | None,
) -> None:
    source = f"sums{next(_SOURCES)}"
    request_id = _one_request(factory, source)
    with factory() as s, s.begin():
        for attempt, (model, lane, tokens, cost, equiv, hours) in enumerate(billed):
            _bill(
                s, request_id, attempt, cost, equiv,
                source=source, model=model, lane=lane, tokens=tokens, hours=hours,
            )  # fmt: skip
    since = None if window is None else NOW + timedelta(hours=window)
    with factory() as s:
        summed = [g for g in ledger.spend(s, since) if g.source == source]
        expected = decimal_loop(s, source, since)
    assert as_text(summed) == as_text(expected)


def test_money_text_in_another_form_is_read_as_the_column_reads_it(
    factory: sessionmaker[Session],
) -> None:
    """SQLite keeps money as text: a row written in another form than the column's (by hand,
    by an older writer) is summed as ``Money`` reads it, not refused or misread."""
    source = f"sums{next(_SOURCES)}"
    odd = ["0.00001", "1E-5", "-0.000000000000001", "12", "0.1234567890123456789", ".5"]

    request_id = _one_request(factory, source)
    with factory() as s, s.begin():
        for attempt, written in enumerate(odd):
            _bill(s, request_id, attempt, Decimal(0), Decimal(1), source=source)
            if s.get_bind().dialect.name == "sqlite":  # text as stored, past the column's type
                s.execute(
                    text("UPDATE ledger SET cost_usd = :t WHERE source = :s AND attempt = :a"),
                    {"t": written, "s": source, "a": attempt},
                )
    with factory() as s:
        summed = [g for g in ledger.spend(s) if g.source == source]
        assert as_text(summed) == as_text(decimal_loop(s, source, None))


def _one_request(factory: sessionmaker[Session], source: str) -> int:
    """A request of ``source`` to bill (a ledger row needs one), and its id."""
    with factory() as s, s.begin():
        requests.ingest(s, [make_request("k", source=source)], NOW)
        stored = requests.get(s, source, "k")
    assert stored is not None
    return stored.id


def _bill(
    s: Session,
    request_id: int,
    attempt: int,
    cost: Decimal | None,
    equiv: Decimal | None,
    *,
    source: str = "spool",
    model: str = "gpt-4o-mini",
    lane: Lane = Lane.BATCH,
    tokens: int = 10,
    hours: int = 0,
    row_id: int | None = None,
) -> None:
    """One ledger row, written through the column types (``row_id``: under that id)."""
    values: dict[str, object] = {
        "request_id": request_id,
        "attempt": attempt,
        "source": source,
        "provider": "openai",
        "model": model,
        "lane": lane.value,
        "input_tokens": tokens,
        "cached_input_tokens": tokens // 3,
        "output_tokens": tokens // 7,
        "cost_usd": cost,
        "interactive_equiv_usd": equiv,
        "recorded_at": NOW + timedelta(hours=hours),
    }
    if row_id is not None:
        values["id"] = row_id
    s.execute(insert(LEDGER).values(**values))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.lists(money, max_size=5), max_size=5))
def test_running_sums_equal_a_fresh_sum_after_every_step(
    factory: sessionmaker[Session], steps: list[list[Decimal]]
) -> None:
    """The metrics' sums, kept and added to as rows come, are the ledger's sums each time."""
    request_id = _one_request(factory, f"sums{next(_SOURCES)}")
    running = ledger.RunningSpend()
    attempt = 0
    for step in steps:
        with factory() as s, s.begin():
            for cost in step:
                _bill(s, request_id, attempt, cost, cost * 2)
                attempt += 1
        with factory() as s:
            assert as_text(running.read(s)) == as_text(ledger.spend(s))


def test_a_row_committed_under_a_lower_id_is_not_missed(factory: sessionmaker[Session]) -> None:
    """PostgreSQL hands ids out before commits land: a row can appear below the highest id
    already read. The count gives it away and every row is read again."""
    running = ledger.RunningSpend()
    request_id = _one_request(factory, "spool")
    writes = [
        [(0, "0.000001000000000", None), (1, "0.000002000000000", None)],
        [(2, "0.000004000000000", 10**9)],  # far above the others
        [(3, "0.000008000000000", 10**9 - 5)],  # late, under the highest id read
        [(4, "0.000016000000000", None)],  # SQLite: above it; PostgreSQL: the sequence's next
    ]
    for rows in writes:
        with factory() as s, s.begin():
            for attempt, cost, row_id in rows:
                _bill(s, request_id, attempt, Decimal(cost), Decimal(cost) * 2, row_id=row_id)
        with factory() as s:
            (group,) = running.read(s)
            assert as_text([group]) == as_text(ledger.spend(s))
    assert group.requests == 5
    assert group.cost_usd == Decimal("0.000031000000000")
