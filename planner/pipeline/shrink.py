"""Shrink and re-plan: what collect does with a batch refused for a full enqueued-token queue.

OpenAI accepts the create, then fails the batch with ``token_limit_exceeded``; Gemini answers
the create with 429 ``RESOURCE_EXHAUSTED`` (the submit stage records that refusal with
``store.limits.learn_from_token_limit``). Either way nothing ran and nothing was billed
(reliability spec §3.1, §7.3), so in one transaction:

- the learned limit of the batch's (provider, model) is lowered (unless submit already did);
- its requests go back to the queue without a failure and without spending an attempt: the
  refusal says nothing about them (a failed OpenAI batch cannot be cancelled, so nothing is
  asked of the provider);
- the batch becomes ``collected``.

The planner then applies ``min(configured, learned)`` per batch and to the whole queue, so the
requests are re-planned as in-flight batches finish, in batches no larger than the limit.
It is not a provider fault: nothing here reports to the circuit breaker.
"""

from __future__ import annotations

import logging
from datetime import datetime

from planner.core.enqueued import TOKEN_LIMIT_CODE, is_token_limit
from planner.core.states import BatchState, RequestState
from planner.pipeline.context import StageContext
from planner.pipeline.deliver import SettleResult
from planner.store import batches as store_batches
from planner.store import limits as store_limits
from planner.store import requests as store_requests
from planner.store.batches import Batch

_log = logging.getLogger(__name__)

_WAITING = (RequestState.PLANNED, RequestState.SUBMITTED)


def is_token_limited(batch: Batch) -> bool:
    """A failed batch whose reason or error says its model's enqueued-token queue was full."""
    return batch.state is BatchState.FAILED and (
        is_token_limit(batch.reason) or is_token_limit(batch.error_message)
    )


def requeue_token_limited(ctx: StageContext, batch: Batch, now: datetime) -> SettleResult:
    """Learn the limit, send the batch's requests back to the queue, mark it collected."""
    result = SettleResult()
    with ctx.session_factory() as session, session.begin():
        if not store_batches.transition_batch(
            session,
            batch.id,
            (BatchState.FAILED,),
            BatchState.COLLECTED,
            now,
            reason=f"{TOKEN_LIMIT_CODE}: requests re-planned",
            next_poll_at=now if batch.remote_id is not None else None,  # files to clean up
        ):
            return result  # another worker collected it
        learned_here = not is_token_limit(batch.reason)  # submit learns create-time refusals
        if learned_here:
            store_limits.learn_from_token_limit(session, batch.id, now)
        ids = [
            s.id
            for s in store_requests.in_batch(session, batch.id, bodies=False)
            if s.batch_id == batch.id and s.state in _WAITING
        ]
        result.retried = store_requests.transition_requests(
            session,
            ids,
            RequestState.QUEUED,
            now,
            expected=_WAITING,
            reason=f"{TOKEN_LIMIT_CODE} in {batch.id}: re-planned when the queue has room",
            batch_id=None,
        )
        store_requests.refund_attempts(session, ids, now)
    _log.warning(
        "batch %s refused: enqueued-token queue of %s full; %d requests re-planned",
        batch.id,
        batch.model,
        result.retried,
        extra={"event": "batch_token_limited", "batch": batch.id, "provider": batch.provider},
    )
    return result
