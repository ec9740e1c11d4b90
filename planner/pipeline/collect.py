"""The collect stage: turn a finished batch into one outcome per request, then clean up.

Results are fetched by key (never by position). A request the provider reports nothing for
goes back to the queue (``not_executed``) only when its batch ended without running everything
(expired, cancelled, failed); absent from a batch the provider reports completed, it may have
run and been billed, so it is dead-lettered as ``missing_result``, as a result line that could
not be read is (``malformed_result``): only the operator's ``planner requeue`` sends either
again, so nothing is billed twice. So are the requests of a batch the provider no longer knows,
or whose result file is gone (``NotFound``: deleted at the provider, an emulator restarted):
their results can never be read, and they were asked for again on every pass before.

Results are settled a chunk at a time (``COLLECT_CHUNK``, ``PLANNER_COLLECT_CHUNK``, or fewer
once their lines reach ``COLLECT_CHUNK_BYTES``), read from the result file as they come: a
batch of 50,000 embeddings holds gigabytes of vectors, which were all in memory at once when a
batch was settled whole. Each chunk's sink files are named after its number (``delivery_id``)
and its commit counts it (``batch.collected_chunks``), with its outcomes; a crash in between
delivers the same chunk again under the same name (the requests a committed chunk settled are
no longer open, so the next chunk has the same lines).
The batch becomes ``collected`` once its last chunk is committed; only after that are its remote
files deleted (deleting first would lose results for good if we crashed before committing).

A crash between that commit and the deletion must not leave the files behind for good, so the
commit also records the cleanup as due: on a ``collected`` batch, ``next_poll_at`` is the time
its remote files are next to be deleted, and ``NULL`` once they are gone (or cannot be deleted).
Each collect pass first deletes what is due, so a restart finishes the cleanup.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from planner import crashpoints
from planner.core.model import Lane
from planner.core.policy import Reason
from planner.core.states import FINISHED_BATCH_STATES, BatchState, RequestState
from planner.errors import NotFound, ProviderError
from planner.pipeline.context import StageContext, chunk_size
from planner.pipeline.deliver import Outcome, SettleResult, deliver_rejected, settle
from planner.pipeline.shrink import is_token_limited, requeue_token_limited
from planner.providers.base import MISSING, NOT_EXECUTED, LineResult, RemoteBatch
from planner.store import batches as store_batches
from planner.store import budgets as store_budgets
from planner.store import requests as store_requests
from planner.store.batches import Batch

_log = logging.getLogger(__name__)

CLEANUP_RETRY = timedelta(minutes=10)  # after a transient failure to delete remote files
# results settled per transaction: a whole batch of 50,000 embeddings held every vector at once
COLLECT_CHUNK = 1_000
# ... or fewer, once their results-file lines add up to this: a thousand embeddings of 1,536
# floats are 30 MB of lines and, decoded and written again, took a ``run --once`` of 6,000 of
# them from 216 to 259 MiB
COLLECT_CHUNK_BYTES = 8 << 20
COLLECT_CHUNK_ENV = "PLANNER_COLLECT_CHUNK"
CLEANUP_CHUNK = 100  # batches cleaned up per pass


@dataclass(slots=True)
class CollectResult:
    batches: list[str] = field(default_factory=list)
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)
    token_limited: list[Batch] = field(default_factory=list)  # refused for a full queue
    rejected: int = 0  # dead-letter lines written for requests the policy rejected


def _never_sent(key: str, why: str) -> LineResult:
    return LineResult(key=key, ok=False, error_code=NOT_EXECUTED, error_message=why, retryable=True)


def _missing(result: LineResult) -> LineResult:
    """A key absent from a completed batch's output: it may have been billed (module doc)."""
    if result.error_code != NOT_EXECUTED:
        return result
    return replace(
        result,
        error_code=MISSING,
        error_message="no result line for this request, although the provider reports the "
        "batch completed: it may have run and been billed, so it is not sent again by itself",
        retryable=False,
    )


def _unreadable(key: str, why: str) -> LineResult:
    """A request whose result can never be read (the provider no longer knows its batch or its
    result file): it may have run and been billed, so, as a missing line, it is dead-lettered
    and only the operator's ``planner requeue --reason missing_result`` sends it again."""
    return LineResult(key=key, ok=False, error_code=MISSING, error_message=why, retryable=False)


def _gone(batch: Batch) -> str:
    return (
        f"{batch.provider} no longer knows batch {batch.remote_id} (or its result file), so "
        "its results cannot be read: the request may have run and been billed, so it is not "
        "sent again by itself (`planner requeue --reason missing_result` sends it once more)"
    )


def _until_gone(
    results: Iterable[LineResult], keys: Iterable[str], why: str
) -> Iterator[LineResult]:
    """``results``; if the provider stops knowing the batch or its file while they are read,
    every key not read yet as ``_unreadable`` instead (one is never left waiting for a file
    that is gone: it was asked for again on every pass, for ever)."""
    read: set[str] = set()
    try:
        for result in results:
            read.add(result.key)
            yield result
    except NotFound:
        yield from (_unreadable(key, why) for key in keys if key not in read)


def _remote_of(batch: Batch) -> RemoteBatch:
    """The remote side of a stored batch, as far as cleaning up needs it."""
    return RemoteBatch(
        remote_id=batch.remote_id or "",
        our_id=batch.id,
        state=batch.state,
        provider_state=batch.state.value,
        input_file_id=batch.input_file_id,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
    )


_UNRUN = frozenset({NOT_EXECUTED, "batch_cancelled"})  # OpenAI's code for lines a cancel stopped


def _refund_escaped(batch: Batch, outcomes: list[Outcome]) -> tuple[list[Outcome], list[int]]:
    """A batch we cancelled to escape a deadline (``pipeline/escape.py``): the lines it never
    ran are retried without spending an attempt, since our cancel, not the request, stopped
    them; otherwise a request on its last attempt would be dead-lettered instead of escaping."""
    if batch.cancel_requested_at is None:
        return outcomes, []
    kept: list[Outcome] = []
    refunded: list[int] = []
    for o in outcomes:
        if not o.result.ok and o.result.error_code in _UNRUN and o.stored.attempts > 0:
            o = replace(o, stored=replace(o.stored, attempts=o.stored.attempts - 1))
            refunded.append(o.stored.id)
        kept.append(o)
    return kept, refunded


def collect_chunk_size(environ: Mapping[str, str] = os.environ) -> int:
    """Results settled per transaction: ``PLANNER_COLLECT_CHUNK``, else ``COLLECT_CHUNK``."""
    return chunk_size(environ, COLLECT_CHUNK_ENV, COLLECT_CHUNK)


_OPEN = frozenset({RequestState.PLANNED, RequestState.SUBMITTED})  # not settled by a chunk yet


def delivery_id(batch_id: str, chunk: int) -> str:
    """The sink delivery of a batch's ``chunk``-th chunk of results: the batch id for the first
    (as when a batch was settled whole), then ``<batch>.<n>``."""
    return batch_id if chunk == 0 else f"{batch_id}.{chunk}"


def collect_batch(ctx: StageContext, batch: Batch, now: datetime) -> SettleResult:
    if is_token_limited(batch):  # nothing ran: re-plan smaller (pipeline/shrink.py)
        settled = requeue_token_limited(ctx, batch, now)
        if batch.remote_id is not None:
            clean_up(ctx, batch.provider, batch.id, _remote_of(batch), now)
        return settled
    provider = ctx.providers[batch.provider]
    with ctx.session_factory() as session:
        members = store_requests.batch_members(session, batch.id)
    # requests a chunk before a crash already settled are still members, no longer open
    by_key = {m.key: m.id for m in members if m.state in _OPEN}
    remote: RemoteBatch | None = None
    results: Iterable[LineResult]
    if batch.remote_id is None:  # refused before the provider created anything
        why = f"batch {batch.id} was never created: {batch.error_message}"
        results = [_never_sent(key, why) for key in by_key]
    else:
        try:
            remote = provider.get(batch.remote_id)
        except NotFound:  # deleted at the provider (or an emulator restarted): never readable
            results = [_unreadable(key, _gone(batch)) for key in by_key]
        else:
            # every member's key, so a result of a settled one is recognised (skipped below)
            keys = [m.key for m in members]
            results = provider.fetch_results(remote, keys) if by_key else []
            if batch.state is BatchState.SUCCEEDED:
                results = map(_missing, results)
            results = _until_gone(results, list(by_key), _gone(batch))
    total = SettleResult()
    chunk = batch.collected_chunks
    del members
    open_results = (r for r in results if r.key in by_key)
    for part in _chunks(open_results, collect_chunk_size(), COLLECT_CHUNK_BYTES):
        with ctx.session_factory() as session:  # only this chunk's requests, bodies unread
            stored = {
                s.id: s
                for s in store_requests.load(session, [by_key[r.key] for r in part], bodies=False)
            }
        outcomes = [Outcome(stored[by_key[r.key]], r, Lane.BATCH) for r in part]
        outcomes, refunded = _refund_escaped(batch, outcomes)

        def count_chunk(session: Session, refunded: list[int] = refunded, n: int = chunk) -> None:
            store_requests.refund_attempts(session, refunded, now)
            # escaped once, never batched again (core/policy.py): the planner reads this mark
            store_budgets.mark_decisions(session, refunded, Reason.BATCH_ESCAPED.value, now)
            store_batches.update_batch(session, batch.id, now, collected_chunks=n + 1)

        total.add(
            settle(ctx, delivery_id(batch.id, chunk), outcomes, now, extra_writes=count_chunk)
        )
        chunk += 1
        crashpoints.reached("between_chunks")
    with ctx.session_factory() as session, session.begin():
        store_batches.transition_batch(
            session,
            batch.id,
            (batch.state,),
            BatchState.COLLECTED,
            now,
            reason="collected",
            next_poll_at=now if remote is not None else None,  # cleanup due (module docstring)
        )
    crashpoints.reached("before_cleanup")
    if remote is not None:
        clean_up(ctx, batch.provider, batch.id, remote, now)
    return total


def _chunks(results: Iterable[LineResult], size: int, max_bytes: int) -> Iterator[list[LineResult]]:
    """``results`` in lists of ``size``, or fewer whose lines reach ``max_bytes``, in order,
    each taken as the one before is settled. The same file always cuts the same way, so a
    chunk delivered again after a crash holds the same results (``delivery_id``)."""
    part: list[LineResult] = []
    held = 0
    for result in results:
        part.append(result)
        held += result.size
        if len(part) >= size or held >= max_bytes:
            yield part
            part = []
            held = 0
    if part:
        yield part


def clean_up(
    ctx: StageContext, provider: str, batch_id: str, remote: RemoteBatch, now: datetime
) -> None:
    """Delete what the provider keeps of a collected batch (its files; on Gemini the batch
    too), then record that it is done (or given up)."""
    due: datetime | None = None
    handler = ctx.providers.get(provider)
    try:
        if handler is None:  # no longer configured: the files expire on their own
            raise ProviderError(f"provider {provider!r} is not configured")
        handler.delete_collected(remote)
    except ProviderError as exc:  # files expire on their own; never worth failing for
        if exc.retryable:
            due = now + CLEANUP_RETRY
        _log.warning(
            "could not delete what the provider keeps of %s: %s",
            batch_id,
            type(exc).__name__,
            extra={"event": "batch_cleanup_failed", "batch": batch_id},
        )
    with ctx.session_factory() as session, session.begin():
        store_batches.update_batch(
            session, batch_id, now, expected=(BatchState.COLLECTED,), next_poll_at=due
        )


def clean_up_due(ctx: StageContext, now: datetime) -> int:
    """Finish the cleanups a crash (or a transient error) left due; returns how many ran."""
    with ctx.session_factory() as session:
        due = store_batches.cleanups_due(session, now, CLEANUP_CHUNK)
    for batch in due:
        clean_up(ctx, batch.provider, batch.id, _remote_of(batch), now)
    return len(due)


def run_collect_stage(
    ctx: StageContext,
    now: datetime,
    on_batch: Callable[[str, SettleResult], None] = lambda batch_id, settled: None,
) -> CollectResult:
    """Collect every finished batch; one batch failing does not stop the others. Requests the
    policy rejected get their dead-letter line here too (an outcome with nothing to fetch).

    ``on_batch`` is told each batch's ``SettleResult`` once the batch is settled (its chunks
    committed), and the result is not kept: it carries two integers per billed request for the
    estimate-error metric, and a stage that kept every batch's held 16 MB at a million results."""
    result = CollectResult()
    result.rejected = deliver_rejected(ctx, now)
    clean_up_due(ctx, now)
    with ctx.session_factory() as session:
        finished = store_batches.batches_in(session, FINISHED_BATCH_STATES)
    for batch in finished:
        if batch.remote_id is not None and not ctx.guard.allows(batch.provider):
            continue  # its circuit is open: the results wait at the provider, untouched
        try:
            settled = collect_batch(ctx, batch, now)
        except ProviderError as exc:
            ctx.guard.record(batch.provider, now, exc)
            result.errors.append(batch.id)
            _log.warning(
                "collect of %s failed: %s",
                batch.id,
                type(exc).__name__,
                extra={"event": "batch_collect_failed", "batch": batch.id},
            )
            continue
        if batch.remote_id is not None:
            ctx.guard.record(batch.provider, now)
        if is_token_limited(batch):
            result.token_limited.append(batch)
        result.batches.append(batch.id)
        result.succeeded += settled.succeeded
        result.retried += settled.retried
        result.dead += settled.dead
        on_batch(batch.id, settled)
    return result
