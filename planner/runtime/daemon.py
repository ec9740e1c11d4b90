"""``planner run``: the stages on an APScheduler 3.x schedule, under systemd's life cycle.

The daemon only schedules: what a step does, in which order, and what is recorded about it
(stage runs, metrics, log lines) is ``runtime/passes.py`` and its observer
(``runtime/observer.py``), shared with ``run --once``; the objects come from
``runtime/wiring.py``. One ``BackgroundScheduler`` with a single worker thread runs the steps
as jobs: ingest
(every source's ``interval``), plan+submit (``schedule.submit``, plus a flush check every 30 s
that plans early for the reasons of ``core/flush.py``: requests or tokens enough for a batch,
a request waiting ``flush.max_wait``, or a deadline the next scheduled pass would be too late
for), the interactive lane (after each planning pass, and every 30 s for what waits in it),
poll+collect (``schedule.poll``) and
housekeeping (``pipeline/housekeeping.py``: expired claims back to the queue, orphan uploads
deleted at the providers, store retention). Every job has ``coalesce=True``,
``max_instances=1`` and an explicit ``misfire_grace_time``; one worker means two stages never
race on the same rows inside one process (replicas are fenced by the store's compare-and-set).
A stage that raises is logged and counted; the others keep running. The last log line of a
process that exits is ``stopped``.

The main thread owns the signals: SIGTERM/SIGINT stop (the running stage finishes, then the
process exits within ``grace``), SIGHUP reloads the configuration (an invalid new file is
reported and the old one kept). It tells systemd READY=1 once everything runs, and sends
WATCHDOG=1 only while the scheduler's worker keeps finishing jobs.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from planner.config.schema import PlannerConfig
from planner.core.flush import QueueSummary, flush_reasons
from planner.errors import PlannerError
from planner.metrics import Metrics, ingest_stage
from planner.pipeline.context import StageContext
from planner.runtime import clock, passes
from planner.runtime.checks import load_runtime_config
from planner.runtime.http import MetricsServer, serve_metrics
from planner.runtime.intake.server import (
    IntakeMetrics,
    IntakeServer,
    build_service,
    serve_intake,
)
from planner.runtime.lifecycle import Lifecycle
from planner.runtime.observer import MetricsObserver
from planner.runtime.wiring import build_context, build_metrics, flush_rules, prime_metrics
from planner.store import requests as store_requests

_log = logging.getLogger(__name__)
logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one INFO line per job run

FLUSH_CHECK = timedelta(seconds=30)
OUTBOX_CHECK = timedelta(seconds=10)  # webhook records due again (each row has its own back-off)
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
    intake: IntakeServer | None = None
    last_job_finished: float = 0.0
    idle_queue: QueueSummary | None = (
        None  # the queue as the last pass that planned nothing left it
    )

    observer: MetricsObserver = field(init=False)

    def __post_init__(self) -> None:
        self.observer = MetricsObserver(self.metrics)

    # -- stages ------------------------------------------------------------------------------
    def _run(
        self, now: datetime, names: Collection[str], only_source: str | None = None
    ) -> passes.Figures:
        """The steps ``names`` of ``passes.PASS``, in pass order, inside the running job."""
        pace = passes.Pace(poll_base=self.cfg.schedule.poll, only_source=only_source)
        return passes.run_steps(self.ctx, now, self.observer, pace, names)

    def _stage(self, name: str, work: Callable[[datetime], Any]) -> Callable[[], None]:
        def job() -> None:
            now = clock.utc_now()
            try:
                passes.run_step(name, self.ctx, now, self.observer, lambda: work(now))
            except (PlannerError, OSError) as exc:
                _log.error(
                    "stage %s failed: %s",
                    name,
                    exc,
                    extra={"event": "stage_failed", "stage": name},
                )
            finally:
                self.last_job_finished = clock.monotonic()

        return job

    def ingest(self, now: datetime, only: str | None = None) -> None:
        """Ingest every source, or only the one named ``only`` (one job per source)."""
        self._run(now, {"ingest"}, only_source=only)

    def plan_and_submit(self, now: datetime) -> None:
        """Plan and submit, then the interactive lane at once (what the plan put there)."""
        figures = self._run(now, {"submit"})
        plan = figures["plan"]
        idle = plan["batches"] == 0 and not any(plan["lanes"].values())
        with self.ctx.session_factory() as session:
            self.idle_queue = store_requests.queue_summary(session) if idle else None
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
        self._run(now, {"interactive"})

    def poll_and_collect(self, now: datetime) -> None:
        figures = self._run(now, {"poll"})
        if figures["poll"]["finished"] or figures["collect"]["batches"]:
            self.idle_queue = None  # room in the enqueued-token queues: plan what was deferred

    def outbox(self, now: datetime) -> None:
        """Records a queued sink (a webhook) has not accepted yet, when due again."""
        self._run(now, {"outbox"})

    def housekeeping(self, now: datetime) -> None:
        """Expired claims, orphan uploads at the providers, store retention."""
        self._run(now, {"housekeeping"})

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
            ("outbox", IntervalTrigger(seconds=OUTBOX_CHECK.total_seconds()), self.outbox),
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
            cfg = load_runtime_config(self.config_path)
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
            prime_metrics(self.metrics, cfg, ctx.catalog)
            self.schedule()
            self.metrics.record_config_reload(True)
            _log.info("configuration reloaded", extra={"event": "reloaded"})
        self.lifecycle.notifier.ready()


def run_daemon(
    config_path: Path,
    *,
    sandbox_url: str | None,
    grace_seconds: float = 60.0,
    metrics_port: int | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    cfg = load_runtime_config(config_path)
    ctx = build_context(cfg, sandbox_url=sandbox_url)
    registry = CollectorRegistry()
    holder: dict[str, StageContext] = {"ctx": ctx}
    metrics = build_metrics(registry, cfg, lambda: holder["ctx"])
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone="UTC")
    with Lifecycle(grace_seconds=grace_seconds) as lifecycle:
        lifecycle.install()
        ctx = replace(ctx, stop_requested=lambda: lifecycle.stop_requested)
        holder["ctx"] = ctx
        daemon = Daemon(config_path, sandbox_url, lifecycle, cfg, ctx, metrics, scheduler)
        ctx.guard.observe(
            daemon.observer.provider_outcome
        )  # the guard, and so this, outlives reloads
        for source in ctx.sources:
            source.recover(clock.utc_now())
        if cfg.metrics.enabled:
            port = cfg.metrics.listen.port if metrics_port is None else metrics_port
            daemon.server = serve_metrics(registry, cfg.metrics.listen.host, port)
        if cfg.intake.enabled:  # its listener is not moved by a reload: restart for that
            service = build_service(
                cfg.intake,
                ctx.session_factory,
                ctx.catalog.family_of,
                IntakeMetrics(metrics, cfg.intake.source),
                facts_of=ctx.catalog.get,
            )
            daemon.intake = serve_intake(cfg.intake, service, os.environ)
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
            if daemon.intake is not None:
                daemon.intake.stop()
            if daemon.server is not None:
                daemon.server.stop()
            _log.info(  # the last line: an operator knows the process ended on purpose
                "planner stopped%s",
                "" if not stopper.is_alive() else " (a stage was still running at the deadline)",
                extra={"event": "stopped", "clean": not stopper.is_alive()},
            )
    return 0
