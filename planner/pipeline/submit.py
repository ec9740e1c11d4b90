"""The submit stage: send planned batches to their provider, crash-safely.

For each batch: commit ``planned -> uploading`` (the intent), then upload and create at the
provider with our batch id attached, then commit ``uploading -> submitted`` with the remote id
(and its requests ``planned -> submitted``). A batch found in ``uploading`` (a crash or an
ambiguous error between intent and outcome) is first looked up at the provider by our id and
adopted if it exists; only when the provider does not know it is it sent again, under the
same id. Never re-created blindly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from planner import crashpoints
from planner.core.states import BatchState, RequestState
from planner.errors import Permanent, ProviderError
from planner.pipeline.context import StageContext
from planner.providers.base import BatchLine, BatchProvider, RemoteBatch
from planner.store import batches as store_batches
from planner.store import requests as store_requests
from planner.store.batches import Batch

_log = logging.getLogger(__name__)

LIST_SKEW = timedelta(minutes=10)  # remote created_at may lag or lead our clock


@dataclass(slots=True)
class SubmitResult:
    submitted: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # transient trouble; tried next pass


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
        )


def _find_ours(provider: BatchProvider, batch: Batch) -> RemoteBatch | None:
    for remote in provider.list_ours(since=batch.created_at - LIST_SKEW):
        if remote.our_id == batch.id:
            return remote
    return None


def _send(ctx: StageContext, provider: BatchProvider, batch: Batch) -> RemoteBatch:
    with ctx.session_factory() as session:
        lines = [
            BatchLine.from_request(s.request) for s in store_requests.in_batch(session, batch.id)
        ]
    payload = provider.build_payload(batch.id, lines)
    return provider.submit(batch.id, batch.model, batch.endpoint, payload)


def submit_batch(ctx: StageContext, batch: Batch, now: datetime, result: SubmitResult) -> None:
    provider = ctx.providers[batch.provider]
    if batch.state is BatchState.UPLOADING:
        found = _find_ours(provider, batch)
        if found is not None:
            _mark_submitted(ctx.session_factory, batch, found, now)
            result.adopted.append(batch.id)
            _log.info("adopted %s", batch.id, extra={"event": "batch_adopted", "batch": batch.id})
            return
    else:
        with ctx.session_factory() as session, session.begin():
            if not store_batches.transition_batch(
                session,
                batch.id,
                (BatchState.PLANNED,),
                BatchState.UPLOADING,
                now,
                attempt=batch.attempt + 1,
            ):
                return  # another worker took it
    crashpoints.reached("after_intent")
    try:
        remote = _send(ctx, provider, batch)
    except (Permanent, ValueError) as exc:
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
        # maybe created: it stays ``uploading`` and the next pass looks it up before resending
        result.deferred.append(batch.id)
        _log.warning(
            "batch %s not confirmed (%s); will reconcile",
            batch.id,
            type(exc).__name__,
            extra={"event": "batch_submit_unconfirmed", "batch": batch.id},
        )
        return
    crashpoints.reached("after_create")
    _mark_submitted(ctx.session_factory, batch, remote, now)
    result.submitted.append(batch.id)
    _log.info(
        "submitted %s as %s",
        batch.id,
        remote.remote_id,
        extra={"event": "batch_submitted", "batch": batch.id, "provider": batch.provider},
    )


def run_submit_stage(ctx: StageContext, now: datetime) -> SubmitResult:
    """Submit every planned batch and reconcile every unconfirmed one; one failure stops none."""
    result = SubmitResult()
    with ctx.session_factory() as session:
        pending = store_batches.batches_in(session, (BatchState.UPLOADING, BatchState.PLANNED))
    for batch in pending:
        try:
            submit_batch(ctx, batch, now, result)
        except ProviderError as exc:
            result.deferred.append(batch.id)
            _log.warning(
                "batch %s: %s",
                batch.id,
                type(exc).__name__,
                extra={"event": "batch_submit_deferred", "batch": batch.id},
            )
    return result
