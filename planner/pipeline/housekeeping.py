"""The housekeeping stage: expired claims, orphan uploads at the providers, store retention.

1. **Claims.** Requests and batches whose lease ran out are released (``store.claims``).
2. **Orphan uploads.** Every provider's input files that carry one of our batch ids in their
   name are listed and judged by ``core.orphans``: a file of a batch that is still in flight is
   kept, a file of a finished batch is deleted, and a file no batch refers to (a crash between
   upload and recording its id, or a re-upload under the same id) is deleted once it is older
   than ``min_age`` and the provider shows no unfinished batch carrying that id. Collect
   already deletes a collected batch's files; this pass catches what no batch row points at
   (invariant I4 of the reliability spec: after housekeeping the provider holds no input file
   of ours for a finished batch). A provider whose circuit is open is skipped, and one whose
   listing fails is left alone until the next pass; both only delay the cleanup.
3. **Retention.** With ``ctx.retention`` set, terminal requests older than it are compacted
   and collected batches deleted, one chunk per transaction (``store.retention``).

Several replicas may run it at once: deleting a file twice is a 404 that counts as done, and
retention's chunks only touch rows that are already final.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from planner.core.orphans import (
    DONE_BATCH_STATES,
    ORPHAN_MIN_AGE,
    OurFile,
    judge,
    needs_remote_check,
)
from planner.errors import ProviderError
from planner.pipeline.context import StageContext
from planner.providers.base import LIST_SKEW, BatchProvider
from planner.store import batches as store_batches
from planner.store import claims as store_claims
from planner.store import retention as store_retention

_log = logging.getLogger(__name__)

MAX_RETENTION_CHUNKS = 100  # per pass; the rest waits for the next one


@dataclass(slots=True)
class HousekeepingResult:
    released_claims: int = 0
    files_deleted: list[str] = field(default_factory=list)
    deleted_by_provider: Counter[str] = field(default_factory=Counter)
    files_kept: Counter[str] = field(default_factory=Counter)  # by verdict
    errors: list[str] = field(default_factory=list)  # providers whose sweep failed
    requests_compacted: int = 0
    batches_deleted: int = 0
    events_deleted: int = 0


def _remote_unfinished(provider: BatchProvider, since: datetime | None) -> set[str]:
    if since is None:
        return set()
    return {
        remote.our_id
        for remote in provider.list_ours(since=since - LIST_SKEW)
        if remote.our_id is not None and remote.state not in DONE_BATCH_STATES
    }


def _sweep_provider(
    name: str,
    provider: BatchProvider,
    ctx: StageContext,
    now: datetime,
    min_age: timedelta,
    result: HousekeepingResult,
) -> None:
    files: list[OurFile] = list(provider.list_our_files())
    with ctx.session_factory() as session:
        states = store_batches.states_of(session, (f.batch_id for f in files))
    unfinished = _remote_unfinished(provider, needs_remote_check(files, states, now, min_age))
    for file in files:
        verdict = judge(
            file,
            states.get(file.batch_id),
            now,
            min_age=min_age,
            remote_unfinished=unfinished,
        )
        if not verdict.delete:
            result.files_kept[verdict.value] += 1
            continue
        provider.delete_file(file.file_id)
        result.files_deleted.append(file.file_id)
        result.deleted_by_provider[name] += 1
        _log.info(
            "deleted file %s of batch %s (%s)",
            file.file_id,
            file.batch_id,
            verdict.value,
            extra={
                "event": "orphan_file_deleted",
                "provider": name,
                "batch": file.batch_id,
                "verdict": verdict.value,
            },
        )


def sweep_files(
    ctx: StageContext,
    now: datetime,
    result: HousekeepingResult,
    *,
    min_age: timedelta = ORPHAN_MIN_AGE,
) -> None:
    """Delete our uploaded files that no batch in flight needs (module docstring, 2)."""
    for name, provider in sorted(ctx.providers.items()):
        if not ctx.guard.allows(name):
            continue  # its circuit is open: the files wait for a later pass
        try:
            _sweep_provider(name, provider, ctx, now, min_age, result)
        except ProviderError as exc:
            result.errors.append(name)
            _log.warning(
                "file sweep of %s stopped: %s",
                name,
                type(exc).__name__,
                extra={"event": "orphan_sweep_failed", "provider": name},
            )


def apply_retention(ctx: StageContext, now: datetime, result: HousekeepingResult) -> None:
    """Forget what finished more than ``ctx.retention`` ago, one chunk per transaction."""
    if ctx.retention is None:
        return
    cutoff = now - ctx.retention
    for _ in range(MAX_RETENTION_CHUNKS):
        with ctx.session_factory() as session, session.begin():
            purged = store_retention.purge_chunk(session, cutoff)
        result.requests_compacted += purged.requests
        result.batches_deleted += purged.batches
        result.events_deleted += purged.events
        if not purged.more:
            break
    if result.requests_compacted or result.batches_deleted:
        _log.info(
            "retention: %d requests compacted, %d batches deleted",
            result.requests_compacted,
            result.batches_deleted,
            extra={
                "event": "retention_applied",
                "requests": result.requests_compacted,
                "batches": result.batches_deleted,
                "events": result.events_deleted,
            },
        )


def run_housekeeping_stage(
    ctx: StageContext,
    now: datetime,
    *,
    min_age: timedelta = ORPHAN_MIN_AGE,
    retention: bool = True,
) -> HousekeepingResult:
    """Claims, then orphan uploads, then (``retention``) the store's retention."""
    result = HousekeepingResult()
    with ctx.session_factory() as session, session.begin():
        result.released_claims = store_claims.release_expired_claims(session, now)
    if result.released_claims:
        _log.info(
            "%d expired claims returned to the queue",
            result.released_claims,
            extra={"event": "claims_released"},
        )
    sweep_files(ctx, now, result, min_age=min_age)
    if retention:
        apply_retention(ctx, now, result)
    return result
