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
    """Poll every batch that is due (``all_due``: every active batch, as ``run --once`` does)."""
    result = PollResult()
    with ctx.session_factory() as session:
        due = store_batches.batches_in(session, ACTIVE, due_by=None if all_due else now)
    for batch in due:
        try:
            state = poll_batch(ctx, batch, now, base, cap)
        except ProviderError as exc:
            result.errors.append(batch.id)
            _log.warning(
                "poll of %s failed: %s",
                batch.id,
                type(exc).__name__,
                extra={"event": "batch_poll_failed", "batch": batch.id},
            )
            continue
        (result.finished if state in FINISHED_BATCH_STATES else result.running).append(batch.id)
    return result
