"""The submit stage: send planned batches to their provider, crash-safely.

For each batch: commit ``planned -> uploading`` (the intent), then upload and create at the
provider with our batch id attached, then commit ``uploading -> submitted`` with the remote id
(and its requests ``planned -> submitted``). A batch found in ``uploading`` (a crash or an
ambiguous error between intent and outcome) is first looked up at the provider by our id and
adopted if it exists; only when the provider does not know it is it sent again, under the
same id. Never re-created blindly.

Retries (reliability spec §3.2-3.3): a batch whose submit failed for a reason a wait may cure
stays ``uploading`` with ``next_poll_at`` set by ``core.retry.decide`` (backoff with jitter, or
the provider's Retry-After), and a scheduled pass leaves it alone until then. Every outcome is
reported to the provider's circuit breaker (``ctx.guard``); while a provider's breaker is open
its batches are skipped as they are (planned or uploading) and nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from planner import crashpoints
from planner.core.enqueued import is_token_limit
from planner.core.retry import Retry
from planner.core.states import BatchState, RequestState
from planner.errors import AuthFailed, Permanent, ProviderError, QuotaExceeded, RateLimited
from planner.pipeline.context import StageContext
from planner.pipeline.process import certainly_gone
from planner.providers.base import LIST_SKEW, BatchLine, BatchProvider, RemoteBatch
from planner.store import batches as store_batches
from planner.store import claims as store_claims
from planner.store import limits as store_limits
from planner.store import requests as store_requests
from planner.store.batches import Batch

_log = logging.getLogger(__name__)

# How long a replica holds a batch it is sending (intent to confirmed create); others leave it
# alone meanwhile, then look it up at the provider before sending it again.
SEND_LEASE = timedelta(minutes=10)


@dataclass(slots=True)
class SubmitResult:
    submitted: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # transient trouble; tried next pass
    skipped: list[str] = field(default_factory=list)  # the provider's circuit is open
    duplicates: list[Batch] = field(default_factory=list)  # found more than once at adoption


def _mark_submitted(
    session_factory: Callable[[], Session], batch: Batch, remote: RemoteBatch, now: datetime
) -> None:
    with session_factory() as session, session.begin():
        moved = store_batches.transition_batch(
            session,
            batch.id,
            (BatchState.UPLOADING,),
            BatchState.SUBMITTED,
            now,
            remote_id=remote.remote_id,
            input_file_id=remote.input_file_id,
            claimed_by=None,
            lease_until=None,
            next_poll_at=None,  # a retry time set while deferred must not delay the first poll
        )
        if moved:
            store_requests.transition_requests(
                session,
                store_batches.request_ids(session, batch.id),
                RequestState.SUBMITTED,
                now,
                expected=(RequestState.PLANNED,),
                reason=f"in {batch.id} at the provider as {remote.remote_id}",
            )


def _fail(
    session_factory: Callable[[], Session], batch: Batch, message: str, now: datetime
) -> None:
    """The provider refused the batch for good: ``failed``; collect re-plans its requests."""
    with session_factory() as session, session.begin():
        store_batches.transition_batch(
            session,
            batch.id,
            (BatchState.UPLOADING,),
            BatchState.FAILED,
            now,
            reason="rejected at submit",
            error_message=message,
            claimed_by=None,
            lease_until=None,
        )


def _find_ours(provider: BatchProvider, batch: Batch) -> list[RemoteBatch]:
    """Every batch at the provider carrying our id (more than one is a duplicate)."""
    since = batch.created_at - LIST_SKEW
    return [remote for remote in provider.list_ours(since=since) if remote.our_id == batch.id]


def _surely_absent(ctx: StageContext, batch: Batch, now: datetime) -> bool:
    """A listing that misses an unconfirmed batch proves nothing yet: a new batch can take a while
    to show up in the provider's list. Only two listings ``list_lag`` apart that both missed it
    allow a re-send; the first miss is recorded in ``last_polled_at`` (cleared when the batch is
    sent again, so every send earns its own two listings). Returns whether to send now."""
    first_miss = batch.last_polled_at
    if first_miss is not None and now - first_miss >= ctx.list_lag:
        with ctx.session_factory() as session, session.begin():
            store_batches.update_batch(
                session, batch.id, now, expected=(BatchState.UPLOADING,), last_polled_at=None
            )
        return True
    with ctx.session_factory() as session, session.begin():
        store_batches.update_batch(
            session,
            batch.id,
            now,
            expected=(BatchState.UPLOADING,),
            last_polled_at=first_miss or now,
            next_poll_at=(first_miss or now) + ctx.list_lag,
            claimed_by=None,
            lease_until=None,
        )
    _log.info(
        "batch %s not in the provider's list yet; listing again after %s",
        batch.id,
        ((first_miss or now) + ctx.list_lag).isoformat(),
        extra={"event": "batch_not_listed_yet", "batch": batch.id, "provider": batch.provider},
    )
    return False


def _send(ctx: StageContext, provider: BatchProvider, batch: Batch) -> RemoteBatch:
    with ctx.session_factory() as session:  # bodies streamed into the file, never all decoded
        lines = (BatchLine.from_stored(*row) for row in store_requests.wire_rows(session, batch.id))
        payload = provider.build_payload(batch.id, lines)
    try:
        return provider.submit(batch.id, batch.model, batch.endpoint, payload)
    finally:
        payload.close()  # its temporary file, if the provider wrote one


def _defer(
    ctx: StageContext,
    batch: Batch,
    error: ProviderError,
    tries: int,
    now: datetime,
    result: SubmitResult,
    *,
    refused: bool = False,
) -> None:
    """Maybe created: the batch stays ``uploading`` (the next pass looks it up before sending
    again), not to be tried before the retry time. A ``GiveUp`` for auth or quota leaves the
    timing to the breaker; one for too many attempts parks the batch for the longest backoff
    rather than failing it, because failing a batch the provider may have created could bill
    its requests twice.

    ``refused``: the send was turned away outright (429, quota, 401/403), so it created
    nothing, and the batch is as surely absent as before the send (which only happens once it
    is): the next pass need not wait out the list lag again."""
    ctx.guard.record(batch.provider, now, error)
    decision = ctx.guard.retry(error, tries, now)
    fields: dict[str, Any] = {"attempt": tries, "claimed_by": None, "lease_until": None}
    if refused:
        fields["last_polled_at"] = now - ctx.list_lag
    if isinstance(decision, Retry):
        fields["next_poll_at"] = decision.at
    elif decision.reason not in ("auth", "quota"):
        fields["next_poll_at"] = now + timedelta(seconds=ctx.guard.retry_policy.cap_seconds)
        _log.error(
            "batch %s not submitted after %d attempts (gave up: %s); parked for %s",
            batch.id,
            tries,
            decision.reason,
            fields["next_poll_at"].isoformat(),
            extra={"event": "batch_submit_parked", "batch": batch.id, "provider": batch.provider},
        )
    with ctx.session_factory() as session, session.begin():
        store_batches.update_batch(
            session, batch.id, now, expected=(BatchState.UPLOADING,), **fields
        )
    result.deferred.append(batch.id)
    _log.warning(
        "batch %s not confirmed (%s); will reconcile",
        batch.id,
        type(error).__name__,
        extra={
            "event": "batch_submit_unconfirmed",
            "batch": batch.id,
            "provider": batch.provider,
            "retry_at": fields["next_poll_at"].isoformat() if "next_poll_at" in fields else None,
        },
    )


def _hold(ctx: StageContext, batch: Batch, now: datetime) -> bool:
    """Take the send of an ``uploading`` batch, unless another live replica is sending it (its
    lease is live and it may not have been told yet whether its create went through)."""
    holder = batch.claimed_by
    gone = holder if holder is not None and certainly_gone(holder) else None
    with ctx.session_factory() as session, session.begin():
        return store_claims.hold_batch(session, batch.id, ctx.owner, SEND_LEASE, now, gone=gone)


def submit_batch(ctx: StageContext, batch: Batch, now: datetime, result: SubmitResult) -> None:
    provider = ctx.providers[batch.provider]
    tries = batch.attempt + 1
    if batch.state is BatchState.UPLOADING:
        if not _hold(ctx, batch, now):
            result.deferred.append(batch.id)
            _log.info(
                "batch %s is being sent by %s",
                batch.id,
                batch.claimed_by,
                extra={"event": "batch_sent_elsewhere", "batch": batch.id},
            )
            return
        try:
            found = _find_ours(provider, batch)
        except ProviderError as exc:
            _defer(ctx, batch, exc, tries, now, result)
            return
        ctx.guard.record(batch.provider, now)
        if len(found) > 1:  # two creates both went through: the requests are billed twice
            result.duplicates.append(batch)
            _log.error(
                "batch %s exists %d times at %s: its requests may be billed twice",
                batch.id,
                len(found),
                batch.provider,
                extra={"event": "duplicate_batch", "batch": batch.id, "count": len(found)},
            )
        if found:
            _mark_submitted(ctx.session_factory, batch, found[0], now)
            result.adopted.append(batch.id)
            _log.info("adopted %s", batch.id, extra={"event": "batch_adopted", "batch": batch.id})
            return
        if not _surely_absent(ctx, batch, now):
            result.deferred.append(batch.id)
            return
    else:
        with ctx.session_factory() as session, session.begin():
            if not store_batches.transition_batch(
                session,
                batch.id,
                (BatchState.PLANNED,),
                BatchState.UPLOADING,
                now,
                attempt=tries,
                claimed_by=ctx.owner,  # no other replica reconciles it while this one sends
                lease_until=now + SEND_LEASE,
            ):
                return  # another worker took it
    crashpoints.reached("after_intent")
    try:
        remote = _send(ctx, provider, batch)
    except (Permanent, ValueError) as exc:
        if isinstance(exc, ProviderError):
            ctx.guard.record(batch.provider, now, exc)  # it answered: no breaker failure
        _fail(ctx.session_factory, batch, str(exc), now)
        result.failed.append(batch.id)
        _log.error(
            "batch %s refused: %s",
            batch.id,
            exc,
            extra={"event": "batch_refused", "batch": batch.id},
        )
        return
    except ProviderError as exc:
        if is_token_limit(str(exc)):  # Gemini's enqueued-token queue is full: shrink, not resend
            ctx.guard.record(batch.provider, now)  # it answered: neither a fault nor a quota trip
            _fail(ctx.session_factory, batch, str(exc), now)
            with ctx.session_factory() as session, session.begin():
                store_limits.learn_from_token_limit(session, batch.id, now)
            result.failed.append(batch.id)
            _log.warning(
                "batch %s refused: the enqueued-token limit is reached; re-planned smaller",
                batch.id,
                extra={"event": "batch_token_limited", "batch": batch.id},
            )
            return
        refused = isinstance(exc, RateLimited | QuotaExceeded | AuthFailed)
        _defer(ctx, batch, exc, tries, now, result, refused=refused)
        return
    ctx.guard.record(batch.provider, now)
    crashpoints.reached("after_create")
    _mark_submitted(ctx.session_factory, batch, remote, now)
    result.submitted.append(batch.id)
    _log.info(
        "submitted %s as %s",
        batch.id,
        remote.remote_id,
        extra={"event": "batch_submitted", "batch": batch.id, "provider": batch.provider},
    )


def run_submit_stage(ctx: StageContext, now: datetime, *, all_due: bool = False) -> SubmitResult:
    """Submit every planned batch and reconcile every unconfirmed one whose retry time has come
    (``all_due``: regardless of it, as ``run --once`` does); one failure stops none."""
    result = SubmitResult()
    with ctx.session_factory() as session:
        pending = store_batches.batches_in(
            session, (BatchState.UPLOADING, BatchState.PLANNED), due_by=None if all_due else now
        )
    admitted: dict[str, bool] = {}
    for batch in pending:
        if batch.provider not in admitted:
            admitted[batch.provider] = ctx.guard.admit(
                batch.provider, ctx.providers[batch.provider], now
            )
        if not (admitted[batch.provider] and ctx.guard.allows(batch.provider)):
            result.skipped.append(batch.id)  # left as it is; sent once the circuit closes
            continue
        try:
            submit_batch(ctx, batch, now, result)
        except ProviderError as exc:  # e.g. the intent could not be written: next pass
            result.deferred.append(batch.id)
            _log.warning(
                "batch %s: %s",
                batch.id,
                type(exc).__name__,
                extra={"event": "batch_submit_deferred", "batch": batch.id},
            )
    return result
