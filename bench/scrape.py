"""What a Prometheus scrape costs the daemon on a large store, idle, against reading it all.

Usage::

    python -m bench scrape              # 500,000 requests, as many ledger rows
    python -m bench scrape 2000000

It builds an SQLite store under a temporary folder (1,000 requests ingested and billed through
the store's own functions, then copied in SQL until there are N of each), builds the daemon's
context on it and times, in CPU seconds of this process:

* baseline — what a scrape of an idle store read before the store had a generation: requests
  and batches counted by state, the oldest batches and the ledger's row count and highest id
  (its sums were kept while those two stood still);
* sum it all — reading it all, the ledger summed from its first row (``store.ledger.spend``,
  as ``planner report`` does);
* after a chunk — the first scrape after 1,000 more ledger rows (a collected chunk): the counts
  by state again, and only the new rows added to the ledger's sums (the write not timed);
* scrape   — ``runtime/wiring.store_reader`` as the daemon calls it at each scrape of an idle
  store: the generation (one row), the budgets, and the reading kept from the last change.

It prints each per scrape and as a share of one core at Prometheus' common 15 s interval (the
idle daemon's goal is under 0.5%), and the idle scrape's speed as a ratio of the baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, insert, literal, select

from planner.config import load_config
from planner.core.model import Endpoint, Request, Usage
from planner.core.states import RequestState
from planner.runtime.wiring import build_context, store_reader
from planner.store import batches, ledger, requests
from planner.store.tables import LEDGER, REQUEST

CONFIG = """
state_dir: {state}
providers:
  openai: {{kind: openai}}
sources:
  spool: {{kind: jsonl_dir, path: {spool}, sink: out}}
sinks:
  out: {{kind: jsonl_dir, path: {out}}}
metrics: {{enabled: false}}
"""
SEED = 1_000
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def seed(factory, count: int) -> None:  # type: ignore[no-untyped-def]
    """``count`` requests and as many ledger rows: SEED made by the store, then copied."""
    made = [
        Request(
            source="spool",
            key=f"k{i}",
            model="gpt-4o-mini",
            endpoint=Endpoint.CHAT_COMPLETIONS,
            body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]},
            received_at=NOW,
            deadline=NOW + timedelta(hours=24),
            max_output_tokens=100,
            metadata={},
            origin=f"bench:{i}",
        )
        for i in range(SEED)
    ]
    with factory() as s, s.begin():
        requests.ingest(s, made, NOW)
    with factory() as s, s.begin():
        ids = [row.id for row in requests.queued_for_planning(s)]
        requests.transition_requests(s, ids, RequestState.INTERACTIVE, NOW, lane="interactive")
        bills = [
            ledger.Billed(i, Usage(100, 10), Decimal("0.00001"), Decimal("0.00002")) for i in ids
        ]
        ledger.record_results(s, bills, NOW)
        requests.transition_requests(s, ids, RequestState.SUCCEEDED, NOW)
    copies = 1
    while SEED * copies < count:
        n = min(copies, count // SEED - copies)
        with factory() as s, s.begin():
            _copy(s, copies, n)
        copies += n


def _copy(s, copies: int, n: int) -> None:  # type: ignore[no-untyped-def]
    """Rows SEED * copies .. SEED * (copies + n), copies of the first ones under new keys."""
    for round_no in range(n):
        suffix = f"-{copies + round_no}"
        columns = [c for c in REQUEST.c if c.name != "id"]
        source = [
            (REQUEST.c.key + literal(suffix)).label("key") if c.name == "key" else c
            for c in columns
        ]
        picked = select(*source).where(REQUEST.c.id <= SEED)
        s.execute(insert(REQUEST).from_select([c.name for c in columns], picked))
        bill_columns = [c for c in LEDGER.c if c.name not in ("id", "attempt")]
        bill = select(*bill_columns, (LEDGER.c.attempt + copies + round_no).label("attempt"))
        s.execute(
            insert(LEDGER).from_select(
                [c.name for c in bill_columns] + ["attempt"], bill.where(LEDGER.c.id <= SEED)
            )
        )


def _bill_again(s, attempt: int) -> None:  # type: ignore[no-untyped-def]
    """The first SEED ledger rows billed once more, as attempt ``attempt``."""
    columns = [c for c in LEDGER.c if c.name not in ("id", "attempt")]
    bill = select(*columns, literal(attempt).label("attempt")).where(LEDGER.c.id <= SEED)
    s.execute(insert(LEDGER).from_select([c.name for c in columns] + ["attempt"], bill))


def _cpu(call, times: int) -> float:  # type: ignore[no-untyped-def]
    start = time.process_time()
    for _ in range(times):
        call()
    return (time.process_time() - start) / times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("rows", nargs="?", type=int, default=500_000, help="requests and ledger rows")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "spool").mkdir()
        config = root / "planner.yaml"
        config.write_text(CONFIG.format(state=root / "state", spool=root / "spool", out=root / "o"))
        ctx = build_context(load_config(config), sandbox_url="http://127.0.0.1:9")
        started = time.monotonic()
        seed(ctx.session_factory, args.rows)
        with ctx.session_factory() as s:
            counts = requests.counts_by_state(s)
            billed = sum(g.requests for g in ledger.spend(s))
        print(
            f"store: {sum(counts.values()):,} requests, {billed:,} ledger rows "
            f"(made in {time.monotonic() - started:.0f} s)"
        )

        def before() -> None:
            with ctx.session_factory() as s:
                requests.counts_by_state(s)
                batches.counts_by_state(s)
                batches.oldest_times(s)
                s.execute(select(func.count(), func.max(LEDGER.c.id))).one()

        def everything() -> None:
            with ctx.session_factory() as s:
                requests.counts_by_state(s)
                batches.counts_by_state(s)
                batches.oldest_times(s)
                ledger.spend(s)

        read = store_reader(lambda: ctx)
        read()  # the first scrape reads everything
        chunk = [0]

        def billed_then_read() -> None:
            """1,000 more ledger rows (a collected chunk, in a timed-apart write), then a scrape."""
            chunk[0] += 1
            paused = time.process_time()
            with ctx.session_factory() as s, s.begin():
                _bill_again(s, 10**6 + chunk[0])
            billed[0] += time.process_time() - paused
            read()

        billed = [0.0]
        after_chunk = _cpu(billed_then_read, 3) - billed[0] / 3
        figures = [
            ("baseline (before)", _cpu(before, 5)),
            ("sum it all", _cpu(everything, 3)),
            ("after a chunk", after_chunk),
            ("scrape (idle store)", _cpu(read, 50)),
        ]
        for name, cpu in figures:
            print(f"{name:20} {cpu * 1000:8.2f} ms CPU, {cpu * 100 / 15:.3f}% of a core at 15 s")
        cpu = dict(figures)
        print(
            f"an idle scrape: {cpu['baseline (before)'] / cpu['scrape (idle store)']:,.0f}x the "
            f"baseline's speed; after a chunk: {cpu['sum it all'] / cpu['after a chunk']:,.0f}x "
            "summing it all"
        )


if __name__ == "__main__":
    main()
