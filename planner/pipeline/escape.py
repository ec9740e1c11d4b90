"""The escape stage: cancel batches still at the provider whose requests' deadline slack is gone.

For each batch at the provider (``submitted``/``running``) that no cancel was asked for yet, the
earliest deadline of its waiting requests (their own, else their source policy's default counted
from ingestion) is compared with the time the way out needs (``core/escape.py``). When the slack
is gone: commit the intent (``cancel_requested_at``, with the reason), call the provider's
``cancel``, then commit the outcome (``cancel_sent_at``). A crash or an error in between leaves
the intent without its outcome, and the next pass sends the cancel again; ``cancel`` of a batch
that has finished meanwhile is not an error (OpenAI cannot cancel a ``failed`` batch, Gemini
refuses to cancel a finished job: both adapters re-read the batch and return quietly).

Nothing else happens here. The poll stage sees the batch ``cancelled`` (OpenAI passes through
``cancelling``, which we read as ``running``, for up to 10 minutes), collect keeps the lines
that finished and sends the others back to the queue without spending an attempt (our cancel
stopped them, not a fault of theirs), and the planner, finding their deadline
too close for a batch, sends them to the interactive (or flex) lane.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from planner.core.escape import DEFAULT_ESCAPE_RULES, EscapeRules, earliest, should_escape
from planner.core.escape import time_needed as needed_for
from planner.core.model import Endpoint, Request
from planner.core.policy import deadline_of
from planner.errors import ProviderError
from planner.pipeline.context import StageContext
from planner.store import batches as store_batches
from planner.store.batches import Batch, DeadlineGroup

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class EscapeResult:
    cancelled: list[str] = field(default_factory=list)  # cancel sent (or found finished)
    errors: list[str] = field(default_factory=list)  # cancel not confirmed; retried next pass
    waiting: list[str] = field(default_factory=list)  # circuit open: intent kept, sent later


def _deadline(ctx: StageContext, batch: Batch, group: DeadlineGroup) -> datetime | None:
    """The earliest deadline of one source's requests in ``batch``."""
    undated: datetime | None = None
    if group.undated_since is not None:
        # the policy is the source's: a request stand-in with the source and the batch's model
        stand_in = Request(
            source=group.source,
            key="",
            model=batch.model,
            endpoint=Endpoint(batch.endpoint),
            body={},
            received_at=group.undated_since,
        )
        undated = deadline_of(stand_in, ctx.planner.rules_for(stand_in))
    return earliest((group.deadline, undated))


def _send_cancel(ctx: StageContext, batch: Batch, now: datetime, result: EscapeResult) -> None:
    provider = ctx.providers.get(batch.provider)
    if provider is None or batch.remote_id is None:
        return
    if not ctx.guard.allows(batch.provider):  # its circuit is open: leave it alone for now
        result.waiting.append(batch.id)
        return
    try:
        provider.cancel(batch.remote_id)
    except ProviderError as exc:
        ctx.guard.record(batch.provider, now, exc)
        result.errors.append(batch.id)
        _log.warning(
            "cancel of %s failed: %s",
            batch.id,
            type(exc).__name__,
            extra={"event": "batch_escape_cancel_failed", "batch": batch.id},
        )
        return
    ctx.guard.record(batch.provider, now)
    with ctx.session_factory() as session, session.begin():
        store_batches.update_batch(session, batch.id, now, cancel_sent_at=now)
    result.cancelled.append(batch.id)
    _log.info(
        "cancelled %s to escape its deadline",
        batch.id,
        extra={"event": "batch_escape_cancelled", "batch": batch.id, "provider": batch.provider},
    )


def due_for_escape(
    ctx: StageContext, now: datetime, rules: EscapeRules = DEFAULT_ESCAPE_RULES
) -> list[tuple[Batch, datetime, timedelta]]:
    """Batches at the provider whose slack is gone, with their earliest deadline and the time
    the way out needs."""
    with ctx.session_factory() as session:
        groups = store_batches.deadlines_at_provider(session)
        by_batch: Mapping[str, list[DeadlineGroup]] = _grouped(groups)
        batches = {b.id: b for b in store_batches.batches_in(session, store_batches.AT_PROVIDER)}
    due: list[tuple[Batch, datetime, timedelta]] = []
    for batch_id, found in by_batch.items():
        batch = batches.get(batch_id)
        if batch is None:
            continue
        deadline = earliest(_deadline(ctx, batch, g) for g in found)
        waiting = sum(g.requests for g in found)
        rate = ctx.rate_limits.get(batch.provider)
        needed = needed_for(waiting, batch.est_input_tokens, rate, rules)
        if deadline is not None and should_escape(deadline, needed, now):
            due.append((batch, deadline, needed))
    return due


def _grouped(groups: list[DeadlineGroup]) -> dict[str, list[DeadlineGroup]]:
    by_batch: dict[str, list[DeadlineGroup]] = defaultdict(list)
    for group in groups:
        by_batch[group.batch_id].append(group)
    return by_batch


def run_escape_stage(
    ctx: StageContext, now: datetime, rules: EscapeRules = DEFAULT_ESCAPE_RULES
) -> EscapeResult:
    """Cancel every batch whose deadline slack is gone (see the module docstring)."""
    result = EscapeResult()
    with ctx.session_factory() as session:
        unsent = store_batches.cancels_to_send(session)  # intents a crash or error left
    for batch in unsent:
        _send_cancel(ctx, batch, now, result)
    for batch, deadline, needed in due_for_escape(ctx, now, rules):
        reason = (
            f"deadline escape: earliest deadline {deadline.isoformat()} leaves less than "
            f"{needed} to cancel, re-plan and answer interactively"
        )
        with ctx.session_factory() as session, session.begin():
            if not store_batches.request_cancel(session, batch.id, now, reason):
                continue  # finished, or another worker asked first
        _send_cancel(ctx, batch, now, result)
    return result
