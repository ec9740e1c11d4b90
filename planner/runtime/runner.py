"""``planner run --once``: every stage once, in the order of ``runtime/passes.py``, then exit.

Recover half-claimed spool files, then one pass: ingest, plan, submit, the interactive lane,
escape, poll and collect, housekeeping. With the sandbox at speed 0 a batch finishes at once,
so a first run shows results; against a real provider the batches are collected by a later run.
The stage results go to the same observer the daemon uses (``runtime/observer.py``): the
same log lines, and the provider calls counted so the CLI can exit 1 when every call failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry

from planner.metrics import Metrics
from planner.pipeline.context import StageContext
from planner.runtime import clock, passes
from planner.runtime.observer import MetricsObserver


@dataclass(slots=True)
class RunSummary:
    """What one ``run --once`` did, stage by stage, for the CLI to show."""

    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    every_call_failed: bool = False  # provider calls were made and not one succeeded


class _Announcing(MetricsObserver):
    """The daemon's observer, also telling ``on_stage`` each step of the pass that finished
    (the CLI's progress display on a terminal)."""

    def __init__(self, metrics: Metrics, on_stage: Callable[[str], None]) -> None:
        super().__init__(metrics)
        self._on_stage = on_stage

    def stage_finished(
        self, ctx: StageContext, stage: str, *, ok: bool, finished_at: datetime, seconds: float
    ) -> None:
        super().stage_finished(ctx, stage, ok=ok, finished_at=finished_at, seconds=seconds)
        self._on_stage(stage)


STEPS = tuple(name for name, _ in passes.PASS)
"""The steps of one pass, in order, as ``on_stage`` names them."""


def run_once(
    ctx: StageContext,
    now: Callable[[], datetime] = clock.utc_now,
    on_stage: Callable[[str], None] | None = None,
) -> RunSummary:
    # a registry of its own: nothing scrapes a --once run, but it counts what the daemon counts
    metrics = Metrics(CollectorRegistry(), known_models=ctx.catalog.models(), process_metrics=False)
    observer = MetricsObserver(metrics) if on_stage is None else _Announcing(metrics, on_stage)
    ctx.guard.observe(observer.provider_outcome)
    for source in ctx.sources:
        source.recover(now())
    figures = passes.run_pass(ctx, now, observer)
    return RunSummary(stages=figures, every_call_failed=observer.every_call_failed())
