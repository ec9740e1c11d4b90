"""The one observer of stage results: metrics and the log lines an operator follows.

``runtime/passes.py`` hands every stage result here, in ``run --once`` and in the daemon alike.
What happened is turned into the event metrics of ``planner/metrics.py`` (counts, histograms,
gauges of this process) and into INFO lines: a batch submitted, finished and collected (its
model, counts and cost), results written. It also counts provider calls and failures, so
``run --once`` can tell a cron script that every call failed (exit code 1).

Money and token totals are not counted here: they are read from the store's ledger at scrape
time (``metrics.LedgerCollector``), so they cannot drift from it.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from planner.errors import ProviderError, RateLimited
from planner.metrics import Metrics
from planner.pipeline.collect import CollectResult
from planner.pipeline.context import StageContext
from planner.pipeline.deliver import SettleResult
from planner.pipeline.escape import EscapeResult
from planner.pipeline.housekeeping import HousekeepingResult
from planner.pipeline.intake import IntakeResult
from planner.pipeline.interactive import InteractiveResult
from planner.pipeline.plan_stage import PlanStageResult
from planner.pipeline.poll import PollResult
from planner.pipeline.submit import SubmitResult
from planner.store import batches as store_batches
from planner.store import requests as store_requests

_log = logging.getLogger(__name__)


class MetricsObserver:
    """Records stage results in ``metrics`` and logs them (``passes.Observer``)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.calls: Counter[str] = Counter()  # provider calls made, by provider
        self.failed_calls: Counter[str] = Counter()  # of them, those that failed
        self.throttled_calls: Counter[str] = Counter()  # of those, answered "slow down" (429)

    # -- provider calls (the guard reports every outcome) -------------------------------------
    def provider_outcome(self, provider: str, error: ProviderError | None) -> None:
        """Every provider call the stages report to the guard, counted (never its text)."""
        self.calls[provider] += 1
        self.metrics.record_provider_call(provider)
        if error is not None:
            self.failed_calls[provider] += 1
            if isinstance(error, RateLimited):
                self.throttled_calls[provider] += 1
            self.metrics.record_provider_error(provider, error)

    def every_call_failed(self) -> bool:
        """Calls were made and none succeeded (no key, a bad key, nothing reachable).

        A pass whose every failure was a rate limit is not one: the provider was reached and
        took the key, it asked us to wait, and the next pass retries at the time it named. A
        cron script alerting on that would alert on a busy provider, not on a broken set-up.
        """
        if not self.calls or self.calls != self.failed_calls:
            return False
        return self.throttled_calls != self.failed_calls

    # -- stages -------------------------------------------------------------------------------
    def ingested(self, ctx: StageContext, result: IntakeResult) -> None:
        for source, n in result.inserted.items():
            self.metrics.record_ingested(source, n)
        for source, reasons in result.quarantined.items():
            for reason, n in reasons.items():
                self.metrics.record_quarantined(source, reason, n)

    def planned(self, ctx: StageContext, result: PlanStageResult) -> None:
        pass  # the queue it changed is read from the store at scrape time

    def submitted(self, ctx: StageContext, result: SubmitResult) -> None:
        for duplicate in result.duplicates:
            self.metrics.record_duplicate_batch(duplicate.provider)
        for batch_id in result.submitted:
            with ctx.session_factory() as session:
                batch = store_batches.get_batch(session, batch_id)
                estimated = store_requests.estimated_tokens(session, batch_id)
            if batch is not None:
                self.metrics.record_batch_submitted(batch.provider, batch.model)
                self.metrics.record_estimate(batch.provider, batch.model, *estimated)

    def interactive_done(self, ctx: StageContext, result: InteractiveResult) -> None:
        self._record_settled(result.settled)
        for provider, n in result.unknown.items():
            self.metrics.record_unknown_outcomes(provider, n)
        for settled in result.settled:
            self._log_written(ctx, settled, "interactive lane")

    def _log_written(self, ctx: StageContext, settled: SettleResult, what: str) -> None:
        """That the results of one settle went out, and to which sinks."""
        written = settled.succeeded + settled.dead
        if not written:
            return
        sources = settled.sources
        sinks = sorted({sink.name for source in sources for sink in ctx.sinks_for(source)})
        _log.info(
            "%s: %d results and %d dead letters written to %s",
            what,
            settled.succeeded,
            settled.dead,
            ", ".join(sinks) if sinks else "the configured sinks",
            extra={
                "event": "results_written",
                "results": settled.succeeded,
                "dead": settled.dead,
                "sinks": sinks,
            },
        )

    def escaped(self, ctx: StageContext, result: EscapeResult) -> None:
        for batch_id in result.cancelled:
            with ctx.session_factory() as session:
                batch = store_batches.get_batch(session, batch_id)
            if batch is not None:
                self.metrics.record_batch_escape(batch.provider)

    def polled(self, ctx: StageContext, result: PollResult, now: datetime) -> None:
        for batch_id in result.finished:  # turnaround, from submit to the provider's last word
            with ctx.session_factory() as session:
                batch = store_batches.get_batch(session, batch_id)
            if batch is None:
                continue
            finished = batch.finished_at or now
            took = None if batch.submitted_at is None else finished - batch.submitted_at
            if batch.submitted_at is not None:
                self.metrics.record_batch_finished(
                    batch.provider, batch.model, batch.submitted_at, finished
                )
            _log.info(
                "batch %s %s at %s: %s, %d requests, after %s",
                batch.id,
                batch.state.value,
                batch.provider,
                batch.model,
                batch.request_count,
                "?" if took is None else str(took).split(".")[0],
                extra={
                    "event": "batch_finished",
                    "batch": batch.id,
                    "state": batch.state.value,
                    "provider": batch.provider,
                    "model": batch.model,
                    "requests": batch.request_count,
                    "seconds": None if took is None else round(took.total_seconds()),
                },
            )

    def batch_collected(self, ctx: StageContext, batch_id: str, settled: SettleResult) -> None:
        self._record_settled([settled])
        with ctx.session_factory() as session:
            batch = store_batches.get_batch(session, batch_id)
        model = batch.model if batch is not None else "?"
        cost, saved = settled.cost_usd, settled.saved_usd
        _log.info(
            "batch %s collected: %s, %d succeeded, %d retried, %d dead-lettered; "
            "cost %s USD, saved %s USD",
            batch_id,
            model,
            settled.succeeded,
            settled.retried,
            settled.dead,
            format(cost, "f"),
            format(saved, "f"),
            extra={
                "event": "batch_collected",
                "batch": batch_id,
                "model": model,
                "succeeded": settled.succeeded,
                "retried": settled.retried,
                "dead": settled.dead,
                "cost_usd": format(cost, "f"),
                "savings_usd": format(saved, "f"),
            },
        )
        self._log_written(ctx, settled, f"batch {batch_id}")

    def collected(self, ctx: StageContext, result: CollectResult) -> None:
        for refused in result.token_limited:
            self.metrics.record_token_limit_refusal(refused.provider, refused.model)

    def housekept(self, ctx: StageContext, result: HousekeepingResult) -> None:
        for provider, n in result.deleted_by_provider.items():
            self.metrics.record_orphan_files_deleted(provider, n)

    def stage_finished(
        self, ctx: StageContext, stage: str, *, ok: bool, finished_at: datetime, seconds: float
    ) -> None:
        for provider, is_open in ctx.guard.states(ctx.providers).items():
            self.metrics.set_circuit_open(provider, is_open)
        self.metrics.record_stage_run(
            stage, ok=ok, finished_at=finished_at, duration_seconds=seconds
        )

    def _record_settled(self, settled: list[SettleResult]) -> None:
        for result in settled:
            for (provider, model), pairs in result.input_tokens.items():
                for billed, estimated in zip(pairs[0::2], pairs[1::2], strict=True):
                    self.metrics.record_estimate_error(provider, model, billed, estimated)


__all__ = ["MetricsObserver"]
