"""What every stage needs, as plain values: the store, the providers, the sinks, the prices.

Built once by ``runtime/wiring.py`` (the only place that reads the configuration); stages take
it as their first argument, and ``now`` as their last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from planner.core.catalog import Catalog
from planner.core.limits import RateLimits
from planner.pipeline.guard import ProviderGuard
from planner.pipeline.plan import Planner
from planner.pipeline.process import this_process

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
from planner.providers.base import BatchProvider
from planner.sinks.base import Sink
from planner.sources.base import Source

# Queued requests one planning round assesses and packs (``PLANNER_PLAN_CHUNK``). A round holds
# its requests' facts and assessments at once, about 3.5 KB each: with 20,000 the planning
# round peaked at 207 MiB (50,000: 300 MiB). A batch is packed from one round, so it holds at
# most this many requests: a queue of 2 million makes 100 batches, not 40.
PLAN_CHUNK = 20_000
PLAN_CHUNK_ENV = "PLANNER_PLAN_CHUNK"


def chunk_size(environ: Mapping[str, str], name: str, default: int) -> int:
    """A chunk size an operator may set in the environment variable ``name`` (a positive
    integer), else ``default``."""
    given = environ.get(name, "").strip()
    return int(given) if given.isdigit() and int(given) > 0 else default


def plan_chunk_size(environ: Mapping[str, str]) -> int:
    """Requests per planning round: ``PLANNER_PLAN_CHUNK``, else ``PLAN_CHUNK``."""
    return chunk_size(environ, PLAN_CHUNK_ENV, PLAN_CHUNK)


@dataclass(frozen=True, slots=True)
class StageContext:
    session_factory: Callable[[], Session]
    catalog: Catalog
    planner: Planner
    providers: Mapping[str, BatchProvider]
    sources: Sequence[Source]
    sinks_for: Callable[[str], Sequence[Sink]]  # source name -> the sinks its results go to
    # every configured sink by name (the outbox stage finds a queued row's sink here)
    sinks: Mapping[str, Sink] = field(default_factory=dict)
    rate_limits: Mapping[str, RateLimits] = field(default_factory=dict)  # by provider name
    max_attempts: int = 3  # attempts per request before it is dead-lettered
    interactive_concurrency: int = 8
    plan_chunk: int = PLAN_CHUNK  # queued requests assessed and packed per planning round
    retention: timedelta | None = None  # store.retention; None keeps everything
    list_lag: timedelta = timedelta(seconds=60)  # schedule.list_lag: two listings this far apart
    # circuit breakers and retry jitter; outlives one stage run (the daemon carries it over a
    # reload, so an open circuit stays open)
    guard: ProviderGuard = field(default_factory=ProviderGuard)
    # who this process is, as the owner of interactive sends (``store/sends.py``)
    owner: str = field(default_factory=this_process)
    # a stop was asked for (SIGTERM): long stages end between steps instead of starting more
    # work the grace period may cut short (the daemon sets it; ``run --once`` never stops)
    stop_requested: Callable[[], bool] = lambda: False
    # while inside, spool sources read (parse, check, measure) on every core
    # (``runtime/wiring.reading_on_every_core``); the default reads in this process
    reading: Callable[[], AbstractContextManager[object]] = nullcontext
    # frees the tokenizer's encodings once a single pass's intake is measured (``Pace``)
    release_tokenizer: Callable[[], None] = lambda: None
