"""The poll stage: ask the provider where each submitted batch stands and record it.

Reads are idempotent, so a crash here loses nothing. A batch is polled again after
``poll_interval``, growing with its age (a batch running for hours need not be asked every
minute) up to ``max_interval``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from planner import crashpoints
from planner.core.retry import Retry
from planner.core.states import FINISHED_BATCH_STATES, BatchState
from planner.errors import NotFound, ProviderError
from planner.pipeline.context import StageContext
from planner.store import batches as store_batches
from planner.store.batches import Batch

_log = logging.getLogger(__name__)

ACTIVE = (BatchState.SUBMITTED, BatchState.RUNNING)


@dataclass(slots=True)
class PollResult:
    finished: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # the provider's circuit is open


def next_poll(batch: Batch, now: datetime, base: timedelta, cap: timedelta) -> datetime:
    """Back off with age: the base interval, or a tenth of the batch's age, up to ``cap``."""
    age = now - (batch.submitted_at or batch.created_at)
    return now + min(max(base, age / 10), cap)


def poll_batch(
    ctx: StageContext, batch: Batch, now: datetime, base: timedelta, cap: timedelta
) -> BatchState:
    provider = ctx.providers[batch.provider]
    assert batch.remote_id is not None, "a submitted batch always has a remote id"
    try:
        remote = provider.get(batch.remote_id)
    except NotFound:
        with ctx.session_factory() as session, session.begin():
            store_batches.transition_batch(
                session,
                batch.id,
                ACTIVE,
                BatchState.FAILED,
                now,
                reason="not found at the provider",
                error_message=f"{batch.remote_id} is unknown to {batch.provider}",
            )
        return BatchState.FAILED
    crashpoints.reached("during_poll")
    fields: dict[str, Any] = {
        "last_polled_at": now,
        "next_poll_at": next_poll(batch, now, base, cap),
        "output_file_id": remote.output_file_id,
        "error_file_id": remote.error_file_id,
    }
    with ctx.session_factory() as session, session.begin():
        if remote.state == batch.state or remote.state not in (
            BatchState.RUNNING,
            *FINISHED_BATCH_STATES,
        ):
            store_batches.update_batch(session, batch.id, now, expected=ACTIVE, **fields)
            return batch.state
        message = remote.error_message
        if remote.error_code:
            message = f"{remote.error_code}: {message or ''}".strip()
        store_batches.transition_batch(
            session,
            batch.id,
            # the state we read, not ACTIVE: ``running -> running`` is no transition, and
            # naming it as expected is refused (a submitted batch first seen running did that)
            (batch.state,),
            remote.state,
            now,
            reason=f"provider says {remote.provider_state}",
            error_message=message,
            **fields,
        )
    return remote.state


def run_poll_stage(
    ctx: StageContext,
    now: datetime,
    base: timedelta = timedelta(seconds=60),
    cap: timedelta = timedelta(minutes=30),
    *,
    all_due: bool = False,
) -> PollResult:
    """Poll every batch that is due (``all_due``: every active batch, as ``run --once`` does).

    A provider whose circuit breaker is open is skipped (its batches keep their state and
    ``next_poll_at``); a failed poll is reported to the breaker and moves the batch's
    ``next_poll_at`` to the retry time ``core.retry.decide`` gives (at least ``cap`` later once
    the attempts are used up: a batch at the provider is never given up on here)."""
    result = PollResult()
    with ctx.session_factory() as session:
        due = store_batches.batches_in(session, ACTIVE, due_by=None if all_due else now)
    admitted: dict[str, bool] = {}
    for batch in due:
        name = batch.provider
        if name not in admitted:
            admitted[name] = ctx.guard.admit(name, ctx.providers[name], now)
        if not (admitted[name] and ctx.guard.allows(name)):
            result.skipped.append(batch.id)
            continue
        try:
            state = poll_batch(ctx, batch, now, base, cap)
        except ProviderError as exc:
            ctx.guard.record(name, now, exc)
            decision = ctx.guard.retry(exc, ctx.guard.failed_attempt(batch.id), now)
            retry_at: datetime | None = now + cap  # attempts used up, or a request-level error
            if isinstance(decision, Retry):
                retry_at = decision.at
            elif decision.reason in ("auth", "quota"):
                retry_at = None  # the open breaker holds it; poll at once when it closes
            if retry_at is not None:
                with ctx.session_factory() as session, session.begin():
                    store_batches.update_batch(
                        session, batch.id, now, expected=ACTIVE, next_poll_at=retry_at
                    )
            result.errors.append(batch.id)
            _log.warning(
                "poll of %s failed: %s",
                batch.id,
                type(exc).__name__,
                extra={
                    "event": "batch_poll_failed",
                    "batch": batch.id,
                    "provider": name,
                    "retry_at": retry_at.isoformat() if retry_at else None,
                },
            )
            continue
        ctx.guard.record(name, now)
        ctx.guard.forget(batch.id)
        (result.finished if state in FINISHED_BATCH_STATES else result.running).append(batch.id)
    return result
