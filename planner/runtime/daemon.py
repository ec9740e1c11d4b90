"""``planner run``: the stages on an APScheduler 3.x schedule, under systemd's life cycle.

One ``BackgroundScheduler`` with a single worker thread runs the stages as jobs: ingest
(every source's ``interval``), plan+submit (``schedule.submit``, plus a flush check every 30 s
that plans early for the reasons of ``core/flush.py``: requests or tokens enough for a batch,
a request waiting ``flush.max_wait``, or a deadline the next scheduled pass would be too late
for), the interactive lane (after each planning pass, and every 30 s for what waits in it),
poll+collect (``schedule.poll``) and
housekeeping (``pipeline/housekeeping.py``: expired claims back to the queue, orphan uploads
deleted at the providers, store retention). Every job has ``coalesce=True``,
``max_instances=1`` and an explicit ``misfire_grace_time``; one worker means two stages never
race on the same rows inside one process (replicas are fenced by the store's compare-and-set).
A stage that raises is logged and counted; the others keep running.

The main thread owns the signals: SIGTERM/SIGINT stop (the running stage finishes, then the
process exits within ``grace``), SIGHUP reloads the configuration (an invalid new file is
reported and the old one kept). It tells systemd READY=1 once everything runs, and sends
WATCHDOG=1 only while the scheduler's worker keeps finishing jobs.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from planner.config import load_config
from planner.config.schema import PlannerConfig
from planner.core.flush import DeadlineRules, FlushRules, QueueSummary, flush_reasons
from planner.core.model import Lane
from planner.errors import PlannerError, ProviderError
from planner.metrics import Metrics, ingest_stage
from planner.pipeline.collect import run_collect_stage
from planner.pipeline.context import StageContext
from planner.pipeline.deliver import SettleResult
from planner.pipeline.escape import run_escape_stage
from planner.pipeline.housekeeping import run_housekeeping_stage
from planner.pipeline.intake import ingest_all
from planner.pipeline.interactive import run_interactive_stage
from planner.pipeline.plan import run_plan_stage
from planner.pipeline.poll import run_poll_stage
from planner.pipeline.submit import run_submit_stage
from planner.runtime import clock
from planner.runtime.http import MetricsServer, serve_metrics
from planner.runtime.lifecycle import Lifecycle
from planner.runtime.runner import build_context
from planner.store import batches as store_batches
from planner.store import requests as store_requests
from planner.store import stages as store_stages

_log = logging.getLogger(__name__)
logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one INFO line per job run

FLUSH_CHECK = timedelta(seconds=30)
WATCHDOG_STALE = 15 * 60.0  # seconds without a finished job before systemd stops being told ok
HOUSEKEEPING = timedelta(minutes=15)  # claims, orphan uploads (kept 1 h at least), retention
MISFIRE_GRACE = 60  # seconds a late job may still run (APScheduler 3.x defaults to 1 s)


@dataclass
class Daemon:
    """The running daemon: its configuration, context, scheduler and metrics."""

    config_path: Path
    sandbox_url: str | None
    lifecycle: Lifecycle
    cfg: PlannerConfig
    ctx: StageContext
    metrics: Metrics
    scheduler: BackgroundScheduler
    server: MetricsServer | None = None
    last_job_finished: float = 0.0
    idle_queue: QueueSummary | None = (
        None  # the queue as the last pass that planned nothing left it
    )

    # -- stages ------------------------------------------------------------------------------
    def _stage(self, name: str, work: Callable[[datetime], Any]) -> Callable[[], None]:
        def job() -> None:
            started = clock.monotonic()
            now = clock.utc_now()
            ok = True
            try:
                work(now)
            except (PlannerError, OSError) as exc:
                ok = False
                _log.error(
                    "stage %s failed: %s",
                    name,
                    exc,
                    extra={"event": "stage_failed", "stage": name},
                )
            finally:
                for provider, is_open in self.ctx.guard.states(self.ctx.providers).items():
                    self.metrics.set_circuit_open(provider, is_open)
                self.last_job_finished = clock.monotonic()
                self.metrics.record_stage_run(
                    name,
                    ok=ok,
                    finished_at=clock.utc_now(),
                    duration_seconds=self.last_job_finished - started,
                )
                with self.ctx.session_factory() as session, session.begin():
                    if ok:
                        store_stages.record_success(session, name, now)
                    else:
                        store_stages.record_failure(session, name, now, "see the log")

        return job

    def ingest(self, now: datetime, only: str | None = None) -> None:
        """Ingest every source, or only the one named ``only`` (one job per source)."""
        sources = [s for s in self.ctx.sources if only is None or s.name == only]
        result = ingest_all(sources, self.ctx.session_factory, now)
        for source, n in result.inserted.items():
            self.metrics.record_ingested(source, n)
        for source, reasons in result.quarantined.items():
            for reason, n in reasons.items():
                self.metrics.record_quarantined(source, reason, n)

    def plan_and_submit(self, now: datetime) -> None:
        planned = run_plan_stage(
            self.ctx.planner, self.ctx.session_factory, now, self.ctx.plan_chunk
        )
        idle = planned.batches == 0 and not any(planned.lanes.values())
        with self.ctx.session_factory() as session:
            self.idle_queue = store_requests.queue_summary(session) if idle else None
        result = run_submit_stage(self.ctx, now)
        for batch_id in result.submitted:
            with self.ctx.session_factory() as session:
                batch = store_batches.get_batch(session, batch_id)
                estimated = store_requests.estimated_tokens(session, batch_id)
            if batch is not None:
                self.metrics.record_batch_submitted(batch.provider, batch.model)
                self.metrics.record_estimate(batch.provider, batch.model, *estimated)
        self.interactive(now)

    def flush_check(self, now: datetime) -> None:
        """Plan before the scheduled pass when waiting for it would cost (``core/flush.py``)."""
        with self.ctx.session_factory() as session:
            queue = store_requests.queue_summary(session)
        job = self.scheduler.get_job("submit")
        reasons = flush_reasons(
            queue,
            flush_rules(self.cfg),
            now,
            job.next_run_time if job is not None else None,
            unchanged_since_idle_pass=queue == self.idle_queue,
        )
        if reasons:
            _log.info(
                "planning %d queued requests before the scheduled pass: %s",
                queue.count,
                ", ".join(reasons),
                extra={"event": "flush", "reasons": [r.value for r in reasons]},
            )
            self.plan_and_submit(now)

    def interactive(self, now: datetime) -> None:
        result = run_interactive_stage(self.ctx, now, sleep=time.sleep, clock=clock.monotonic)
        self._record_settled(result.settled)
        for provider, n in result.unknown.items():
            self.metrics.record_unknown_outcomes(provider, n)

    def poll_and_collect(self, now: datetime) -> None:
        escaped = run_escape_stage(self.ctx, now)  # cancel batches whose slack is gone
        for batch_id in escaped.cancelled:
            with self.ctx.session_factory() as session:
                batch = store_batches.get_batch(session, batch_id)
            if batch is not None:
                self.metrics.record_batch_escape(batch.provider)
        polled = run_poll_stage(self.ctx, now, self.cfg.schedule.poll)
        for batch_id in polled.finished:  # turnaround, from submit to the provider's last word
            with self.ctx.session_factory() as session:
                batch = store_batches.get_batch(session, batch_id)
            if batch is not None and batch.submitted_at is not None:
                finished = batch.finished_at or now
                self.metrics.record_batch_finished(
                    batch.provider, batch.model, batch.submitted_at, finished
                )
        collected = run_collect_stage(self.ctx, now)
        if polled.finished or collected.batches:  # room in the enqueued-token queues again:
            self.idle_queue = None  # the next flush check may plan what was deferred
        for refused in collected.token_limited:
            self.metrics.record_token_limit_refusal(refused.provider, refused.model)
        self._record_settled(collected.settled)

    def provider_outcome(self, provider: str, error: ProviderError | None) -> None:
        """Every provider call the stages report to the guard, counted (never its text)."""
        self.metrics.record_provider_call(provider)
        if error is not None:
            self.metrics.record_provider_error(provider, error)

    def housekeeping(self, now: datetime) -> None:
        """Expired claims, orphan uploads at the providers, store retention."""
        result = run_housekeeping_stage(self.ctx, now)
        for provider, n in result.deleted_by_provider.items():
            self.metrics.record_orphan_files_deleted(provider, n)

    def _record_settled(self, settled: list[SettleResult]) -> None:
        for result in settled:
            for stored, lane, usage, cost, equiv in result.billed:
                if cost is None or equiv is None:
                    continue
                self.metrics.record_result(
                    stored.provider or "unknown",
                    stored.request.model,
                    lane if isinstance(lane, Lane) else Lane(lane),
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cached_input_tokens,
                    cost,
                    equiv,
                    estimated_in=stored.estimate.input_tokens if stored.estimate else None,
                )

    # -- schedule ----------------------------------------------------------------------------
    def schedule(self) -> None:
        self.scheduler.remove_all_jobs()
        cfg = self.cfg
        submit = cfg.schedule.submit
        submit_trigger: Any = (
            CronTrigger.from_crontab(submit.cron, timezone="UTC")
            if submit.cron
            else IntervalTrigger(seconds=(submit.interval or timedelta(minutes=15)).total_seconds())
        )
        jobs: list[tuple[str, Any, Callable[[datetime], None]]] = [
            (  # one job per source, at its own interval
                ingest_stage(name),
                IntervalTrigger(seconds=source.interval.total_seconds()),
                functools.partial(self.ingest, only=name),
            )
            for name, source in sorted(cfg.sources.items())
        ]
        jobs += [
            ("submit", submit_trigger, self.plan_and_submit),
            ("flush", IntervalTrigger(seconds=FLUSH_CHECK.total_seconds()), self.flush_check),
            # requests a pass left in their lane (a rate limit, an open circuit, a stop) and sends
            # a stopped process left in the outbox do not wait for the next planning pass
            (
                "interactive",
                IntervalTrigger(seconds=FLUSH_CHECK.total_seconds()),
                self.interactive,
            ),
            (
                "poll",
                IntervalTrigger(seconds=cfg.schedule.poll.total_seconds()),
                self.poll_and_collect,
            ),
            (
                "housekeeping",
                IntervalTrigger(seconds=HOUSEKEEPING.total_seconds()),
                self.housekeeping,
            ),
        ]
        first = clock.utc_now()
        for name, trigger, work in jobs:
            self.scheduler.add_job(
                self._stage(name, work),
                trigger,
                id=name,
                name=name,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=MISFIRE_GRACE,
                next_run_time=first,  # every stage once at start, then on its schedule
            )
            if isinstance(trigger, IntervalTrigger):
                self.metrics.set_stage_interval(name, trigger.interval.total_seconds())

    def reload(self) -> None:
        self.lifecycle.notifier.reloading()
        try:
            cfg = load_config(self.config_path)
            # the breakers outlive a reload: an open circuit must not close because of a SIGHUP
            ctx = replace(
                build_context(cfg, sandbox_url=self.sandbox_url),
                guard=self.ctx.guard,
                stop_requested=self.ctx.stop_requested,
            )
        except PlannerError as exc:
            self.metrics.record_config_reload(False)
            _log.error(
                "reload refused, keeping the running configuration: %s",
                exc,
                extra={"event": "reload_failed"},
            )
        else:
            self.cfg, self.ctx = cfg, ctx
            self.schedule()
            self.metrics.record_config_reload(True)
            _log.info("configuration reloaded", extra={"event": "reloaded"})
        self.lifecycle.notifier.ready()


def flush_rules(cfg: PlannerConfig) -> FlushRules:
    """The flush triggers of ``schedule.flush``, with each source's policy's batch window and
    default deadline (a source's own default deadline is already on its requests: it is
    applied when lines are read)."""
    flush = cfg.schedule.flush
    by_policy = {
        name: DeadlineRules(p.batch_window, p.default_deadline) for name, p in cfg.policies.items()
    }
    windows = [r.batch_window for r in by_policy.values()] or [timedelta(days=1)]
    defaults = [r.default_deadline for r in by_policy.values() if r.default_deadline is not None]
    return FlushRules(
        max_requests=flush.max_requests,
        max_tokens=flush.max_tokens,
        max_wait=flush.max_wait,
        # a source no longer configured: the longest window, the shortest default (early)
        default=DeadlineRules(max(windows), min(defaults) if defaults else None),
        by_source={
            name: by_policy[s.policy] for name, s in cfg.sources.items() if s.policy in by_policy
        },
    )


def _store_counts(ctx_ref: Callable[[], StageContext]) -> Callable[[], dict[str, Any]]:
    def counts() -> dict[str, Any]:
        with ctx_ref().session_factory() as session:
            return {
                "requests": store_requests.counts_by_state(session),
                "batches": store_batches.counts_by_state(session),
            }

    return counts


def run_daemon(
    config_path: Path,
    *,
    sandbox_url: str | None,
    grace_seconds: float = 60.0,
    metrics_port: int | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    cfg = load_config(config_path)
    ctx = build_context(cfg, sandbox_url=sandbox_url)
    registry = CollectorRegistry()
    holder: dict[str, StageContext] = {"ctx": ctx}
    metrics = Metrics(
        registry,
        known_models=ctx.catalog.models(),
        store_counts=_store_counts(lambda: holder["ctx"]),
        store_cache_seconds=5.0,
    )
    metrics.prime(sources=cfg.sources, providers=cfg.providers, policies=cfg.policies)
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone="UTC")
    with Lifecycle(grace_seconds=grace_seconds) as lifecycle:
        lifecycle.install()
        ctx = replace(ctx, stop_requested=lambda: lifecycle.stop_requested)
        holder["ctx"] = ctx
        daemon = Daemon(config_path, sandbox_url, lifecycle, cfg, ctx, metrics, scheduler)
        ctx.guard.observe(daemon.provider_outcome)  # the guard, and so this, outlives reloads
        for source in ctx.sources:
            source.recover(clock.utc_now())
        if cfg.metrics.enabled:
            port = cfg.metrics.listen.port if metrics_port is None else metrics_port
            daemon.server = serve_metrics(registry, cfg.metrics.listen.host, port)
        daemon.schedule()
        scheduler.start()
        daemon.last_job_finished = clock.monotonic()
        lifecycle.notifier.ready("running")
        _log.info("planner running", extra={"event": "started"})
        watchdog = lifecycle.notifier.watchdog_interval or 10.0
        try:
            while not lifecycle.stop_requested:
                lifecycle.wait(min(watchdog, 5.0))
                if lifecycle.take_reload():
                    daemon.reload()
                    holder["ctx"] = daemon.ctx
                started = daemon.last_job_finished or clock.monotonic()
                if clock.monotonic() - started < WATCHDOG_STALE:
                    lifecycle.notifier.watchdog()  # a hung worker lets systemd restart us
        finally:
            lifecycle.notifier.stopping()
            _log.info("stopping", extra={"event": "stopping"})
            # the running stage finishes; past the grace period the process exits anyway
            stopper = threading.Thread(target=scheduler.shutdown, daemon=True)
            stopper.start()
            stopper.join(lifecycle.grace_left() or grace_seconds)
            if daemon.server is not None:
                daemon.server.stop()
    return 0
