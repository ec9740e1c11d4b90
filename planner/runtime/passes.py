"""The order of a pass over the pipeline's stages, written once, and the observer of each step.

A pass is: ingest (every source), plan and submit, the interactive lane, escape + poll +
collect, the outbox of queued sinks (webhooks), housekeeping. ``run --once`` runs :data:`PASS`
in order (``runtime/runner.py``); the daemon (``runtime/daemon.py``) schedules the same steps as
jobs on their own intervals, and a job that runs several steps runs them in this order through
:func:`run_steps`. Every step hands
its stage results to one :class:`Observer` (``runtime/observer.py`` turns them into metrics and
log lines), in both modes, so ``run --once`` and the daemon count and log the same things.

:func:`run_step` is the bookkeeping around one step: its duration, the ``stage_run`` row in the
store (``planner status`` and the alerts read it) and the observer's ``stage_finished``. It
re-raises: the daemon logs and carries on, ``run --once`` lets the CLI turn it into exit code 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from planner.errors import ProviderError
from planner.pipeline.collect import CollectResult, run_collect_stage
from planner.pipeline.context import StageContext
from planner.pipeline.deliver import SettleResult
from planner.pipeline.escape import EscapeResult, run_escape_stage
from planner.pipeline.housekeeping import HousekeepingResult, run_housekeeping_stage
from planner.pipeline.intake import IntakeResult, ingest_all
from planner.pipeline.interactive import InteractiveResult, run_interactive_stage
from planner.pipeline.measure import measure
from planner.pipeline.outbox import run_outbox_stage
from planner.pipeline.plan_stage import PlanStageResult, run_plan_stage
from planner.pipeline.poll import PollResult, run_poll_stage
from planner.pipeline.submit import SubmitResult, run_submit_stage
from planner.runtime import clock
from planner.store import stages as store_stages

Figures = dict[str, dict[str, Any]]
"""What a step did, by stage, for ``run --once`` to print: ``{"plan": {"batches": 2}, ...}``."""


class Observer(Protocol):
    """Told every stage result right after the stage's commits, and each collected batch as
    soon as it is settled (``batch_collected``, before the stage's ``collected``); never
    changes the store."""

    def ingested(self, ctx: StageContext, result: IntakeResult) -> None: ...
    def planned(self, ctx: StageContext, result: PlanStageResult) -> None: ...
    def submitted(self, ctx: StageContext, result: SubmitResult) -> None: ...
    def interactive_done(self, ctx: StageContext, result: InteractiveResult) -> None: ...
    def escaped(self, ctx: StageContext, result: EscapeResult) -> None: ...
    def polled(self, ctx: StageContext, result: PollResult, now: datetime) -> None: ...
    def batch_collected(self, ctx: StageContext, batch_id: str, settled: SettleResult) -> None: ...
    def collected(self, ctx: StageContext, result: CollectResult) -> None: ...
    def housekept(self, ctx: StageContext, result: HousekeepingResult) -> None: ...
    def provider_outcome(self, provider: str, error: ProviderError | None) -> None: ...
    def stage_finished(
        self, ctx: StageContext, stage: str, *, ok: bool, finished_at: datetime, seconds: float
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Pace:
    """How a step treats retry and poll times: ``run --once`` does everything due at all
    (``all_due``); the daemon waits for each batch's next poll time, ``poll_base`` apart."""

    all_due: bool = False
    poll_base: timedelta = timedelta(seconds=60)
    only_source: str | None = None  # the daemon's ingest job of one source
    # the daemon keeps the tokenizer's encodings for its next pass (loading them costs 0.3 s);
    # a single pass drops them after intake, where its peak memory was still to come
    keep_tokenizer: bool = True


ONCE = Pace(all_due=True, keep_tokenizer=False)

Step = Callable[[StageContext, datetime, Observer, Pace], Figures]


def ingest(ctx: StageContext, now: datetime, observer: Observer, pace: Pace) -> Figures:
    sources = [s for s in ctx.sources if pace.only_source in (None, s.name)]
    planner = ctx.planner
    with ctx.reading():
        result = ingest_all(
            sources, ctx.session_factory, now, lambda r: measure(r, ctx.catalog, planner.counter)
        )
    if not pace.keep_tokenizer:
        ctx.release_tokenizer()
    observer.ingested(ctx, result)
    return {
        "intake": {
            "files": result.units,
            "inserted": sum(result.inserted.values()),
            "duplicates": sum(result.duplicates.values()),
            "quarantined": sum(sum(r.values()) for r in result.quarantined.values()),
        }
    }


def plan_and_submit(ctx: StageContext, now: datetime, observer: Observer, pace: Pace) -> Figures:
    planned = run_plan_stage(ctx.planner, ctx.session_factory, now, ctx.plan_chunk)
    observer.planned(ctx, planned)
    submitted = run_submit_stage(ctx, now, all_due=pace.all_due)
    observer.submitted(ctx, submitted)
    return {
        "plan": {
            "batches": planned.batches,
            "lanes": planned.lanes,
            # batch-bound but left queued: their model's queue at the provider is full
            "waiting_for_room": planned.deferred,
        },
        "submit": {
            "submitted": len(submitted.submitted),
            "adopted": len(submitted.adopted),
            "refused": len(submitted.failed),
            "deferred": len(submitted.deferred),
            "skipped": len(submitted.skipped),
        },
    }


def interactive(ctx: StageContext, now: datetime, observer: Observer, pace: Pace) -> Figures:
    result = run_interactive_stage(ctx, now, sleep=time.sleep, clock=clock.monotonic)
    observer.interactive_done(ctx, result)
    return {
        "interactive": {
            "succeeded": result.succeeded,
            "retried": result.retried,
            "dead": result.dead,
            "unknown_outcome": sum(result.unknown.values()),
            "recovered": result.recovered,
            "deferred": result.deferred,
        }
    }


def poll_and_collect(ctx: StageContext, now: datetime, observer: Observer, pace: Pace) -> Figures:
    escaped = run_escape_stage(ctx, now)  # cancel batches whose deadline slack is gone
    observer.escaped(ctx, escaped)
    polled = run_poll_stage(ctx, now, pace.poll_base, all_due=pace.all_due)
    observer.polled(ctx, polled, now)
    collected = run_collect_stage(ctx, now, partial(observer.batch_collected, ctx))
    observer.collected(ctx, collected)
    return {
        "escape": {"cancelled": len(escaped.cancelled), "errors": len(escaped.errors)},
        "poll": {"finished": len(polled.finished), "running": len(polled.running)},
        "collect": {
            "batches": len(collected.batches),
            "succeeded": collected.succeeded,
            "retried": collected.retried,
            "dead": collected.dead,
        },
    }


def outbox(ctx: StageContext, now: datetime, observer: Observer, pace: Pace) -> Figures:
    """Records waiting for a queued sink (a webhook) that is due again."""
    result = run_outbox_stage(ctx, now)
    return {
        "outbox": {
            "delivered": sum(result.delivered.values()),
            "failed": sum(result.failed.values()),
        }
    }


def housekeeping(ctx: StageContext, now: datetime, observer: Observer, pace: Pace) -> Figures:
    """Expired claims, orphan uploads at the providers, store retention."""
    result = run_housekeeping_stage(ctx, now)
    observer.housekept(ctx, result)
    return {
        "housekeeping": {
            "files_deleted": len(result.files_deleted),
            "requests_compacted": result.requests_compacted,
            "batches_deleted": result.batches_deleted,
        }
    }


PASS: tuple[tuple[str, Step], ...] = (
    ("ingest", ingest),
    ("submit", plan_and_submit),
    ("interactive", interactive),
    ("poll", poll_and_collect),
    ("outbox", outbox),
    ("housekeeping", housekeeping),
)
"""One pass, in order; the names are the daemon's job (stage) names (``metrics.STAGES``)."""


def run_steps(
    ctx: StageContext, now: datetime, observer: Observer, pace: Pace, names: Collection[str]
) -> Figures:
    """The steps of :data:`PASS` named in ``names``, in pass order (one daemon job)."""
    figures: Figures = {}
    for name, step in PASS:
        if name in names:
            figures.update(step(ctx, now, observer, pace))
    return figures


def run_pass(
    ctx: StageContext, now: Callable[[], datetime], observer: Observer, pace: Pace = ONCE
) -> Figures:
    """Every step of :data:`PASS` in order, each at a fresh ``now()`` and each its own stage
    run (``run --once``). A failing step stops the pass."""
    figures: Figures = {}
    for name, step in PASS:
        at = now()
        figures.update(run_step(name, ctx, at, observer, partial(step, ctx, at, observer, pace)))
    return figures


def run_step(
    name: str,
    ctx: StageContext,
    now: datetime,
    observer: Observer,
    work: Callable[[], Figures | None],
) -> Figures:
    """One stage run with its bookkeeping: timed, recorded in ``stage_run``, told to the
    observer. A failure is recorded and re-raised (the caller decides whether to go on)."""
    started = clock.monotonic()
    ok = False
    try:
        figures = work() or {}
        ok = True
        return figures
    finally:
        observer.stage_finished(
            ctx, name, ok=ok, finished_at=clock.utc_now(), seconds=clock.monotonic() - started
        )
        with ctx.session_factory() as session, session.begin():
            if ok:
                store_stages.record_success(session, name, now)
            else:
                store_stages.record_failure(session, name, now, "see the log")


__all__ = ["ONCE", "PASS", "Figures", "Observer", "Pace", "run_pass", "run_step", "run_steps"]
