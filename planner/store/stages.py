"""When each pipeline stage last succeeded or failed: the ``stage_run`` table.

A stage records its pass after its own commits; the metrics collector reads :func:`last_runs`
at scrape time, so "last successful run" survives restarts and is shared by replicas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from planner.store._sql import translated
from planner.store.requests import dialect_insert
from planner.store.tables import STAGE_RUN


@dataclass(frozen=True, slots=True)
class StageRun:
    stage: str
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None


@translated
def record_success(session: Session, stage: str, now: datetime) -> None:
    """Note that ``stage`` finished a pass without error at ``now``."""
    statement = dialect_insert(session, STAGE_RUN).values(stage=stage, last_success_at=now)
    session.execute(
        statement.on_conflict_do_update(index_elements=["stage"], set_={"last_success_at": now})
    )


@translated
def record_failure(session: Session, stage: str, now: datetime, error: str) -> None:
    """Note that a pass of ``stage`` failed; ``error`` must already be free of secrets."""
    statement = dialect_insert(session, STAGE_RUN).values(
        stage=stage, last_failure_at=now, last_error=error
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["stage"], set_={"last_failure_at": now, "last_error": error}
        )
    )


@translated
def last_runs(session: Session) -> dict[str, StageRun]:
    """Every stage that has run, by name."""
    rows = session.execute(select(STAGE_RUN).order_by(STAGE_RUN.c.stage))
    return {row.stage: StageRun(*row) for row in rows}
