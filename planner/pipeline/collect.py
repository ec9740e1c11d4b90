"""The collect stage: turn a finished batch into one outcome per request, then clean up.

Results are fetched by key (never by position); a request the provider reports nothing for is
``not_executed`` and goes back to the queue. The batch becomes ``collected`` in the same
transaction that records its outcomes; only after that are its remote files deleted (deleting
first would lose results for good if we crashed before committing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from planner import crashpoints
from planner.core.model import Lane
from planner.core.states import FINISHED_BATCH_STATES, BatchState
from planner.errors import ProviderError
from planner.pipeline.context import StageContext
from planner.pipeline.deliver import Outcome, SettleResult, settle
from planner.providers.base import NOT_EXECUTED, LineResult, RemoteBatch
from planner.store import batches as store_batches
from planner.store import requests as store_requests
from planner.store.batches import Batch

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class CollectResult:
    batches: list[str] = field(default_factory=list)
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)
    settled: list[SettleResult] = field(default_factory=list)


def _never_sent(key: str, why: str) -> LineResult:
    return LineResult(key=key, ok=False, error_code=NOT_EXECUTED, error_message=why, retryable=True)


def collect_batch(ctx: StageContext, batch: Batch, now: datetime) -> SettleResult:
    provider = ctx.providers[batch.provider]
    with ctx.session_factory() as session:
        stored = list(store_requests.in_batch(session, batch.id))
    stored = [
        s for s in stored if s.batch_id == batch.id and s.state.value in ("planned", "submitted")
    ]
    by_key = {s.request.key: s for s in stored}
    remote: RemoteBatch | None = None
    if batch.remote_id is None:  # refused before the provider created anything
        why = f"batch {batch.id} was never created: {batch.error_message}"
        results = [_never_sent(key, why) for key in by_key]
    else:
        remote = provider.get(batch.remote_id)
        results = list(provider.fetch_results(remote, list(by_key)))
    outcomes = [Outcome(by_key[r.key], r, Lane.BATCH) for r in results if r.key in by_key]

    def mark_collected(session: Session) -> None:
        store_batches.transition_batch(
            session, batch.id, (batch.state,), BatchState.COLLECTED, now, reason="collected"
        )

    settled = settle(ctx, batch.id, outcomes, now, extra_writes=mark_collected)
    crashpoints.reached("before_cleanup")
    if remote is not None:
        try:
            provider.delete_files(remote)
        except ProviderError as exc:  # files expire on their own; never worth failing for
            _log.warning(
                "could not delete files of %s: %s",
                batch.id,
                type(exc).__name__,
                extra={"event": "batch_cleanup_failed", "batch": batch.id},
            )
    return settled


def run_collect_stage(ctx: StageContext, now: datetime) -> CollectResult:
    """Collect every finished batch; one batch failing does not stop the others."""
    result = CollectResult()
    with ctx.session_factory() as session:
        finished = store_batches.batches_in(session, FINISHED_BATCH_STATES)
    for batch in finished:
        try:
            settled = collect_batch(ctx, batch, now)
        except ProviderError as exc:
            result.errors.append(batch.id)
            _log.warning(
                "collect of %s failed: %s",
                batch.id,
                type(exc).__name__,
                extra={"event": "batch_collect_failed", "batch": batch.id},
            )
            continue
        result.batches.append(batch.id)
        result.succeeded += settled.succeeded
        result.retried += settled.retried
        result.dead += settled.dead
        result.settled.append(settled)
    return result
