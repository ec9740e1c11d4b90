"""What ``planner plan`` reads from the store, so that the dry run decides as ``run`` would.

The planning stage (``pipeline/plan_stage.run_plan_stage``) decides with the budgets, the turnaround
learned from finished batches, the calibrated estimates and the learned enqueued-token limits
the store holds. The dry run reads
the same facts with the same functions, read only: it never creates or migrates a store. A
store that does not exist yet, or was never migrated (a new PostgreSQL database, before the
first ``run``), has spent, reserved and learned nothing (the priors hold). Without a store,
SQLAlchemy is not even imported (a third of ``plan``'s start-up): the default store's file is
looked for first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from planner.config import default_store_file, resolve_store_url
from planner.config.schema import PlannerConfig
from planner.core.budget import BudgetBook
from planner.pipeline.budgeting import open_book
from planner.pipeline.plan import Planner
from planner.pipeline.repeats import StoreLookup

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from planner.store.requests import StoredContent

MIGRATED = "alembic_version"  # present once ``planner db upgrade`` (or the first run) migrated


def _migrated_store(cfg: PlannerConfig) -> Engine | None:
    """An engine on the store, read only, when there is one and it was migrated (dispose of it
    when done); ``None`` otherwise, and for the default store's missing file without importing
    SQLAlchemy at all."""
    default = default_store_file(cfg)
    if default is not None and not default.is_file():
        return None
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from planner.store.engine import deferred, make_engine

    url = resolve_store_url(cfg, os.environ)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return None
    engine = make_engine(url)
    if not inspect(engine).has_table(MIGRATED):  # never migrated: nothing stored
        engine.dispose()
        return None
    return deferred(engine)


def dry_run_planner(
    cfg: PlannerConfig, planner: Planner, now: datetime
) -> tuple[Planner, BudgetBook | None]:
    """``planner`` with the store's learned turnarounds, calibration and limits, and the budgets as
    the store has them now (``None`` without budgets)."""
    empty = BudgetBook.start(planner.budget_rules, {}, {}) if planner.budget_rules else None
    engine = _migrated_store(cfg)
    if engine is None:
        return planner, empty
    from planner.store import batches as store_batches
    from planner.store import calibration as store_calibration
    from planner.store import limits as store_limits
    from planner.store.engine import make_session_factory

    try:
        with make_session_factory(engine)() as session:
            learned = replace(
                planner.with_learned_limits(store_limits.learned_limits(session), now),
                turnarounds=store_batches.turnarounds(session),
                calibration=store_calibration.input_calibrations(session),
                learned_outputs=store_calibration.learned_outputs(session),
            )
            book = None
            if planner.budget_rules:
                book = open_book(session, planner.budget_rules, planner.budgets_of, now)
            return learned, book
    finally:
        engine.dispose()


@contextmanager
def stored_keys(cfg: PlannerConfig) -> Iterator[StoreLookup | None]:
    """What the store holds under given keys of a source, read only, while the dry run reads
    its sources (``None``: no store yet, so nothing is stored)."""
    engine = _migrated_store(cfg)
    if engine is None:
        yield None
        return
    from planner.store import requests as store_requests
    from planner.store.engine import make_session_factory

    factory: Callable[[], Session] = make_session_factory(engine)

    def lookup(source: str, keys: Sequence[str]) -> dict[str, StoredContent]:
        with factory() as session, session.begin():
            return store_requests.stored_contents(session, source, keys)

    try:
        yield lookup
    finally:
        engine.dispose()
