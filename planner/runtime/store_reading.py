"""What the metrics read from the store at each scrape, read again only when it can differ.

Prometheus scrapes every 15 s or so, whatever the daemon is doing. Counting every request by
state and summing the ledger at each scrape cost a large store a share of a core while nothing
happened (0.12 s a scrape at a million requests, seconds with budgets over a month of ledger
rows). :class:`StoreReader` keeps the last reading under the store's generation
(``store/generation.py``): any committed change to requests, batches or the ledger moves it,
from any process. It reads again:

* the counts, the oldest batches and the ledger's sums when the generation moved (the ledger's
  sums by adding the rows billed since: ``store.ledger.RunningSpend``);
* the budgets' gauges also when a budget's window rolled over (a new day or month) or the
  planner was replaced;
* everything, afresh, when the context's store changed (a reload may point at another one).

The generation is read first, in the session that reads the rest, so a change committed
between the two is read at the next scrape: a scrape may read once too often, never show a
figure older than the store's at its start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from planner.metrics import StoreReading
from planner.pipeline.budgeting import window_starts
from planner.pipeline.context import StageContext
from planner.pipeline.decisions import budget_gauges
from planner.pipeline.plan import Planner
from planner.runtime import clock
from planner.store import batches, generation, ledger, requests


class StoreReader:
    """``read()`` for the metrics' store collector (module docstring)."""

    def __init__(self, ctx: Callable[[], StageContext]) -> None:
        self._ctx = ctx
        self._store: Callable[[], Session] | None = None  # whose readings these are
        self._generation: int | None = None
        self._reading: StoreReading | None = None
        self._ledger = ledger.RunningSpend()
        self._gauged: tuple[Planner, object, dict[str, dict[str, Any]]] | None = None

    def __call__(self) -> StoreReading:
        ctx = self._ctx()
        if ctx.session_factory is not self._store:  # first scrape, or another store since
            self._store, self._reading, self._gauged = ctx.session_factory, None, None
            self._ledger = ledger.RunningSpend()
        with ctx.session_factory() as session:
            seen = generation.current(session)  # first: a change after it is read next time
            reading, moved = self._reading, False
            if seen is None or reading is None or seen != self._generation:
                moved = True
                reading = self._reading = StoreReading(
                    requests=requests.counts_by_state(session),
                    batches=batches.counts_by_state(session),
                    oldest=batches.oldest_times(session),
                    spend=self._ledger.read(session),
                )
                self._generation = seen
            now = clock.utc_now()
            planner, windows = ctx.planner, (seen, window_starts(ctx.planner.budget_rules, now))
            gauged = self._gauged
            if moved or gauged is None or gauged[0] is not planner or gauged[1] != windows:
                gauged = self._gauged = (planner, windows, budget_gauges(session, planner, now))
            return replace(reading, budgets=gauged[2])
