"""Building the stage context from a configuration, and running every stage once.

``run_once`` is ``planner run --once``: recover half-claimed spool files, ingest, plan, submit,
poll, collect, execute the interactive lane, then poll and collect once more (with the sandbox
at speed 0 a batch finishes at once, so a first run shows results; against a real provider the
batches are collected by a later run), and last housekeeping (``pipeline/housekeeping.py``).
The daemon (``runtime/daemon.py``) schedules the same stage functions.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from planner.config import resolve_api_key, resolve_store_url
from planner.config.schema import GeminiProviderConfig, PlannerConfig
from planner.core.limits import RateLimits
from planner.errors import ConfigError
from planner.pipeline.collect import run_collect_stage
from planner.pipeline.context import StageContext
from planner.pipeline.escape import run_escape_stage
from planner.pipeline.housekeeping import run_housekeeping_stage
from planner.pipeline.intake import ingest_all
from planner.pipeline.interactive import run_interactive_stage
from planner.pipeline.plan import run_plan_stage
from planner.pipeline.poll import run_poll_stage
from planner.pipeline.submit import run_submit_stage
from planner.providers import create_provider
from planner.providers.base import BatchProvider
from planner.runtime import clock
from planner.runtime.logging import register_secret
from planner.runtime.wiring import build_planner, build_sources, catalog_for
from planner.sinks import SINKS
from planner.sinks.base import Sink
from planner.store import batches as store_batches
from planner.store import requests as store_requests
from planner.store.engine import make_engine, make_session_factory, upgrade
from planner.store.ledger import Spend

_log = logging.getLogger(__name__)

SANDBOX_KEY = "sandbox-key"  # the sandbox accepts any key; this one is not a secret


def _provider_options(
    name: str, p: Any, sandbox_url: str | None, environ: Mapping[str, str]
) -> dict[str, Any]:
    compat = isinstance(p, GeminiProviderConfig) and p.openai_compat
    if sandbox_url is not None:
        key: Any = SANDBOX_KEY
        base = sandbox_url.rstrip("/")
        if p.kind == "openai":
            url: str | None = base + "/v1"
        else:
            url = base + "/v1beta/openai/" if compat else base
    else:
        key = resolve_api_key(p, environ)
        if key is None:
            variable = p.key_env_name() or "api_key_file"
            raise ConfigError(
                [
                    f"providers.{name}: no API key ({variable} is not set); set it, or run "
                    "with --sandbox to use the local emulator"
                ]
            )
        register_secret(key)
        url = p.base_url
    options: dict[str, Any] = {
        "api_key": key,
        "base_url": url,
        "timeout": p.timeout.total_seconds(),
    }
    if compat:
        options["files_via_gemini"] = True
    if sandbox_url is not None:  # lets the sandbox's ledger show each interactive bill per key
        options["label_interactive_calls"] = True
    return options


def build_providers(
    cfg: PlannerConfig, sandbox_url: str | None, environ: Mapping[str, str]
) -> dict[str, BatchProvider]:
    providers: dict[str, BatchProvider] = {}
    for name, p in cfg.providers.items():
        kind = "openai" if isinstance(p, GeminiProviderConfig) and p.openai_compat else p.kind
        providers[name] = create_provider(kind, **_provider_options(name, p, sandbox_url, environ))
    return providers


def build_sinks(cfg: PlannerConfig) -> Callable[[str], list[Sink]]:
    sinks: dict[str, Sink] = {name: SINKS[s.kind](name, s.path) for name, s in cfg.sinks.items()}
    every = list(sinks.values())
    routes = {
        name: ([sinks[s.sink]] if s.sink is not None else every) for name, s in cfg.sources.items()
    }

    def sinks_for(source: str) -> list[Sink]:
        return routes.get(source, every)

    return sinks_for


def open_store(cfg: PlannerConfig) -> Callable[[], Session]:
    engine = make_engine(resolve_store_url(cfg, os.environ))
    upgrade(engine)
    return make_session_factory(engine)


def build_context(cfg: PlannerConfig, *, sandbox_url: str | None) -> StageContext:
    if cfg.intake.enabled:  # configured but not built yet: say so instead of ignoring it
        raise ConfigError(
            [
                "intake.enabled: the HTTP intake is not available in this version; "
                "use a jsonl_dir source"
            ]
        )
    budgets = [name for name, p in cfg.policies.items() if p.budget_usd_per_day is not None]
    if budgets:  # a cap that silently did nothing would be worse than none
        raise ConfigError(
            [
                f"policies.{name}.budget_usd_per_day: budgets are not enforced in this version; "
                "remove it"
                for name in budgets
            ]
        )
    catalog = catalog_for(cfg)
    return StageContext(
        session_factory=open_store(cfg),
        catalog=catalog,
        planner=build_planner(cfg, catalog),
        providers=build_providers(cfg, sandbox_url, os.environ),
        sources=build_sources(cfg, catalog),
        sinks_for=build_sinks(cfg),
        rate_limits={
            name: RateLimits(p.requests_per_minute, p.tokens_per_minute)
            for name, p in cfg.providers.items()
        },
        retention=cfg.store.retention,
        list_lag=cfg.schedule.list_lag,
    )


@dataclass(slots=True)
class RunSummary:
    """What one ``run --once`` did, stage by stage, for the CLI to show."""

    stages: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_once(ctx: StageContext, now: Callable[[], datetime] = clock.utc_now) -> RunSummary:
    summary = RunSummary()
    for source in ctx.sources:
        source.recover(now())
    intake = ingest_all(ctx.sources, ctx.session_factory, now())
    summary.stages["intake"] = {
        "files": intake.units,
        "inserted": sum(intake.inserted.values()),
        "duplicates": sum(intake.duplicates.values()),
        "quarantined": sum(sum(r.values()) for r in intake.quarantined.values()),
    }
    planned = run_plan_stage(ctx.planner, ctx.session_factory, now(), ctx.plan_chunk)
    summary.stages["plan"] = {"batches": planned.batches, "lanes": planned.lanes}
    submitted = run_submit_stage(ctx, now(), all_due=True)  # one pass: retry times do not wait
    summary.stages["submit"] = {
        "submitted": len(submitted.submitted),
        "adopted": len(submitted.adopted),
        "refused": len(submitted.failed),
        "deferred": len(submitted.deferred),
        "skipped": len(submitted.skipped),
    }
    interactive = run_interactive_stage(ctx, now(), sleep=time.sleep, clock=clock.monotonic)
    summary.stages["interactive"] = {
        "succeeded": interactive.succeeded,
        "retried": interactive.retried,
        "dead": interactive.dead,
        "unknown_outcome": sum(interactive.unknown.values()),
        "recovered": interactive.recovered,
        "deferred": interactive.deferred,
    }
    escaped = run_escape_stage(ctx, now())  # cancel batches whose deadline slack is gone
    summary.stages["escape"] = {
        "cancelled": len(escaped.cancelled),
        "errors": len(escaped.errors),
    }
    polled = run_poll_stage(ctx, now(), all_due=True)
    collected = run_collect_stage(ctx, now())
    summary.stages["poll"] = {"finished": len(polled.finished), "running": len(polled.running)}
    summary.stages["collect"] = {
        "batches": len(collected.batches),
        "succeeded": collected.succeeded,
        "retried": collected.retried,
        "dead": collected.dead,
    }
    kept = run_housekeeping_stage(ctx, now())
    summary.stages["housekeeping"] = {
        "files_deleted": len(kept.files_deleted),
        "requests_compacted": kept.requests_compacted,
        "batches_deleted": kept.batches_deleted,
    }
    return summary


def _spend_rows(spend: list[Spend]) -> list[dict[str, Any]]:
    return [
        {
            "source": s.source,
            "provider": s.provider,
            "model": s.model,
            "lane": s.lane.value,
            "requests": s.requests,
            "input_tokens": s.input_tokens,
            "cached_input_tokens": s.cached_input_tokens,
            "output_tokens": s.output_tokens,
            "cost_usd": format(s.cost_usd, "f"),
            "interactive_equivalent_usd": format(s.interactive_equiv_usd, "f"),
            "savings_usd": format(s.savings_usd, "f"),
            "unpriced": s.unpriced,
        }
        for s in spend
    ]


def status(cfg: PlannerConfig) -> dict[str, Any]:
    """``planner status``: requests and batches by state, and the money so far."""
    from planner.store import ledger as store_ledger

    session_factory = open_store(cfg)
    with session_factory() as session:
        return {
            "requests": store_requests.counts_by_state(session),
            "batches": store_batches.counts_by_state(session),
            "spend": _spend_rows(store_ledger.spend(session)),
        }


def requeue(
    cfg: PlannerConfig, error_code: str, source: str | None, *, dry_run: bool, now: datetime
) -> dict[str, Any]:
    """``planner requeue``: dead-lettered requests with this error go back to the queue."""
    with open_store(cfg)() as session, session.begin():
        found = store_requests.requeue_dead(
            session, now, error_code=error_code, source=source, dry_run=dry_run
        )
    if found and not dry_run:
        _log.warning(
            "%d dead-lettered requests (%s) requeued by the operator",
            len(found),
            error_code,
            extra={"event": "requeued", "reason": error_code, "count": len(found)},
        )
    return {
        "requeued": 0 if dry_run else len(found),
        "dry_run": dry_run,
        "requests": [{"source": r.source, "key": r.key, "error": r.error_message} for r in found],
    }


def report(cfg: PlannerConfig, since: timedelta | None, now: datetime) -> dict[str, Any]:
    """``planner report``: what was billed (in the window ``since`` before ``now``, or ever),
    its interactive equivalent and the saving, by source, provider, model and lane, with
    totals. Read from the store's ledger, exact decimals, as strings."""
    from planner.store import ledger as store_ledger

    cutoff = None if since is None else now - since
    with open_store(cfg)() as session:
        spend = store_ledger.spend(session, cutoff)
    totals = {
        "requests": sum(s.requests for s in spend),
        "input_tokens": sum(s.input_tokens for s in spend),
        "cached_input_tokens": sum(s.cached_input_tokens for s in spend),
        "output_tokens": sum(s.output_tokens for s in spend),
        "cost_usd": format(sum((s.cost_usd for s in spend), Decimal(0)), "f"),
        "interactive_equivalent_usd": format(
            sum((s.interactive_equiv_usd for s in spend), Decimal(0)), "f"
        ),
        "savings_usd": format(sum((s.savings_usd for s in spend), Decimal(0)), "f"),
        "unpriced": sum(s.unpriced for s in spend),
    }
    return {
        "since": None if cutoff is None else cutoff.isoformat(),
        "until": now.isoformat(),
        "rows": _spend_rows(spend),
        "totals": totals,
    }
