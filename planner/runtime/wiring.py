"""The composition root: turns a loaded configuration into the objects the stages use.

Nothing else maps config sections to constructors (the store, the providers with their keys
or the sandbox, the sources, the sinks and their routes, the planner, the flush rules), so
every component stays testable with plain values, and a reload (SIGHUP) is a call to the same
functions with the new config. ``build_context`` is the whole of it for ``run``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.config import load_config, resolve_api_key, resolve_secret, resolve_store_url
from planner.config.prices import shipped_catalog
from planner.config.schema import (
    GeminiProviderConfig,
    PlannerConfig,
    SinkConfig,
    SqlSinkConfig,
    SqlSourceConfig,
    WebhookSinkConfig,
)
from planner.core.admission import AccountLimits, default_account_limits
from planner.core.budget import BudgetKey, BudgetRules, Scope
from planner.core.catalog import Catalog
from planner.core.flush import DeadlineRules, FlushRules
from planner.core.limits import BatchLimits, RateLimits, default_limits, merge_limits
from planner.core.model import Endpoint, Lane, ProviderKind, Request
from planner.core.pack import PackGroup
from planner.core.policy import PolicyRules
from planner.core.retry import RetryPolicy
from planner.errors import ConfigError
from planner.pipeline.context import StageContext, plan_chunk_size
from planner.pipeline.measure import measured_line_bytes
from planner.pipeline.plan import Planner
from planner.pipeline.preview import PlanReport, build_report
from planner.pipeline.process import this_process
from planner.pipeline.read_pool import ReadPool, WorkerSetup, no_body, worker_count
from planner.pipeline.repeats import Repeats, SeenContents
from planner.providers import LazyProviders, compat_wire, create_provider
from planner.providers.base import BatchLine, BatchProvider
from planner.runtime.checks import runtime_problems
from planner.runtime.dry_run import dry_run_planner, stored_keys
from planner.runtime.logging import register_secret
from planner.sinks.base import Sink
from planner.sinks.jsonl_dir import JsonlDirSink
from planner.sinks.webhook import WebhookSink
from planner.sources.base import ParsedLine, Source
from planner.sources.formats import Defaults, Reason
from planner.sources.jsonl_dir import JsonlDirSource
from planner.sources.lines import judge_here
from planner.tokenizers import TiktokenCounter

if TYPE_CHECKING:  # the store, SQLAlchemy, the SQL sources and sinks and the metrics (with
    # prometheus_client) are imported where used: ``planner plan`` on a machine without a
    # store needs none of them (a third of its start-up)
    from prometheus_client import CollectorRegistry
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from planner.metrics import Group, Metrics, StoreReading

MEMO_MAX = 4096  # entries of the per-model and per-group look-ups remembered below


def catalog_for(config: Path | PlannerConfig | None) -> Catalog:
    """The shipped catalog with the config's ``models:`` overrides applied."""
    if config is None:
        return shipped_catalog()
    cfg = load_config(config) if isinstance(config, Path) else config
    return shipped_catalog().merged(cfg.models) if cfg.models else shipped_catalog()


def provider_kind(cfg: PlannerConfig, provider: str) -> ProviderKind:
    return ProviderKind(cfg.providers[provider].kind)


def speaks(cfg: PlannerConfig, provider: str, endpoint: Endpoint) -> bool:
    """Whether a provider takes bodies of this endpoint's wire shape.

    Gemini's native API takes Gemini-shaped bodies; an OpenAI-compatible server takes
    OpenAI-shaped bodies; Gemini's compatibility layer takes both (Gemini-shaped ones are
    translated to its OpenAI surface by ``providers/compat_wire.py``).
    """
    p = cfg.providers[provider]
    if isinstance(p, GeminiProviderConfig) and p.openai_compat:
        return True
    return (endpoint.wire is ProviderKind.OPENAI) == (p.kind == "openai")


def router(cfg: PlannerConfig) -> Callable[[Request], str | None]:
    """The provider of a request; raises ``ValueError`` (saying why) for a Gemini-format line
    that the provider's compat mode cannot translate, so it is refused with that reason."""

    # (model, endpoint) -> (provider or None, whether the body must be translated to route it);
    # asked once per pair: every request is routed, and the answer depends on nothing else
    known: dict[tuple[str, Endpoint], tuple[str | None, bool]] = {}

    def answer(model: str, endpoint: Endpoint) -> tuple[str | None, bool]:
        provider = cfg.provider_for(model)
        if provider is None or not speaks(cfg, provider, endpoint):
            return None, False
        p = cfg.providers[provider]
        compat = isinstance(p, GeminiProviderConfig) and p.openai_compat
        return provider, compat and endpoint.wire is ProviderKind.GEMINI

    def route(request: Request) -> str | None:
        pair = (request.model, request.endpoint)
        found = known.get(pair)
        if found is None:
            if len(known) >= MEMO_MAX:
                known.clear()
            found = known[pair] = answer(*pair)
        provider, translated = found
        if translated:  # a Gemini-format line for the compat layer: refused if untranslatable
            compat_wire.to_openai(BatchLine.from_request(request))
        return provider

    return route


@dataclass(frozen=True)
class RouteReadsBody:
    """Whether ``router``'s answer for a request depends on its body: a Gemini-format line for
    a provider in compat mode is translated (and may be refused) as it is routed. A class, not
    a closure: read workers started by a fork server receive it pickled."""

    cfg: PlannerConfig
    compat: frozenset[str]

    def __call__(self, request: Request) -> bool:
        if not self.compat or request.endpoint.wire is not ProviderKind.GEMINI:
            return False
        return self.cfg.provider_for(request.model) in self.compat


def route_reads_body(cfg: PlannerConfig) -> RouteReadsBody:
    compat = frozenset(
        name
        for name, p in cfg.providers.items()
        if isinstance(p, GeminiProviderConfig) and p.openai_compat
    )
    return RouteReadsBody(cfg, compat)


def account_limits_for(cfg: PlannerConfig) -> Callable[[str], AccountLimits]:
    """Per configured provider: the documented account limits, then ``limits.<provider>``."""

    def account(provider: str) -> AccountLimits:
        p = cfg.providers.get(provider)
        if p is None:
            return AccountLimits()
        base = default_account_limits(ProviderKind(p.kind))
        override = cfg.limits.get(provider)
        return base if override is None else override.account(base)

    return account


def limits_for(cfg: PlannerConfig) -> Callable[[PackGroup], BatchLimits]:
    """Shipped limits per provider kind, tier and model, then the config's overrides (worked
    out once per group: the packer and the dry run ask for every request)."""
    known: dict[PackGroup, BatchLimits] = {}

    def limits(group: PackGroup) -> BatchLimits:
        found = known.get(group)
        if found is None:
            if len(known) >= MEMO_MAX:
                known.clear()
            found = known[group] = _limits(group)
        return found

    def _limits(group: PackGroup) -> BatchLimits:
        p = cfg.providers[group.provider]
        base = default_limits(ProviderKind(p.kind), group.model, tier=p.tier)
        override = cfg.limits.get(group.provider)
        if override is None:
            return base
        merged = merge_limits(base, override.overrides())
        per_model = override.per_model.get(group.model)
        return merged if per_model is None else merge_limits(merged, per_model.overrides())

    return limits


def budgets(
    cfg: PlannerConfig,
) -> tuple[dict[BudgetKey, BudgetRules], Callable[[str], tuple[BudgetKey, ...]]]:
    """The configured budgets, and which of them each source falls under (its policy's and its
    own; a source no longer configured falls under the default policy's)."""
    rules: dict[BudgetKey, BudgetRules] = {}
    for name, policy in cfg.policies.items():
        if policy.budget is not None:
            rules[BudgetKey(Scope.POLICY, name)] = policy.budget.rules()
    for name, source in cfg.sources.items():
        if source.budget is not None:
            rules[BudgetKey(Scope.SOURCE, name)] = source.budget.rules()
    source_policy = {name: s.policy for name, s in cfg.sources.items()}

    def budgets_of(source: str) -> tuple[BudgetKey, ...]:
        keys = (
            BudgetKey(Scope.POLICY, source_policy.get(source, "default")),
            BudgetKey(Scope.SOURCE, source),
        )
        return tuple(k for k in keys if k in rules)

    return rules, budgets_of


def token_counter(cfg: PlannerConfig, catalog: Catalog) -> TiktokenCounter:
    """The tokenizer as the config sets it up (also built in read workers, by name)."""
    return TiktokenCounter(
        catalog,
        cache_dir=cfg.tokenizer.cache_dir,
        download=cfg.tokenizer.download,
        download_timeout=cfg.tokenizer.download_timeout.total_seconds(),
        fast=cfg.tokenizer.fast,
    )


DAEMON_LOCAL_CHUNKS = 8  # chunks of a pass read in the daemon itself before workers start


@contextmanager
def reading_on_every_core(
    cfg: PlannerConfig,
    planner: Planner,
    sources: Sequence[Source],
    start_after: int = 0,
    *,
    bodies: bool = True,
) -> Iterator[None]:
    """While inside, spool sources judge and measure their lines in worker processes
    (``pipeline/read_pool.py``), started once ``start_after`` chunks were read; none on a
    single core or with ``PLANNER_READ_WORKERS=0``. This process reads with the planner's own
    counter, so its encodings are loaded once here (and shared with forked workers).
    ``bodies=True`` (intake): a measured request comes back with its body as the text the
    store keeps, not decoded. ``bodies=False`` (``plan``): without its body unless routing
    reads it (``Planner.route_reads_body``)."""
    spools = [s for s in sources if isinstance(s, JsonlDirSource)]
    workers = worker_count()
    if not spools or workers == 0:
        yield
        return
    settings = {s.name: s.settings for s in spools}
    catalog, counter = planner.catalog, planner.counter
    routed = (counter.encoding_for(model) for _, model in routed_models(cfg, catalog))
    encodings = tuple(sorted({e for e in routed if e is not None}))
    # intake stores the measured text; plan keeps a body only where routing reads it
    keeps_body = no_body if bodies else planner.route_reads_body
    make_counter = partial(token_counter, cfg, catalog)
    setup = WorkerSetup(settings, catalog, make_counter, encodings, keeps_body, keeps_text=bodies)
    pool = ReadPool(
        setup, workers, start_after=start_after, here=counter, release_here=_release_of(planner)
    )
    with pool:
        for spool in spools:
            spool.judge = pool.judge
        try:
            yield
        finally:
            for spool in spools:
                spool.judge = judge_here


def build_planner(cfg: PlannerConfig, catalog: Catalog | None = None) -> Planner:
    catalog = catalog or catalog_for(cfg)
    source_policy = {name: s.policy for name, s in cfg.sources.items()}
    source_policy[cfg.intake.source] = cfg.intake.policy
    rules = {name: policy.rules() for name, policy in cfg.policies.items()}
    budget_rules, budgets_of = budgets(cfg)

    def rules_of(request: Request) -> PolicyRules:
        return rules[source_policy.get(request.source, "default")]

    def output_tokens_of(request: Request) -> int:
        return cfg.policies[source_policy.get(request.source, "default")].default_output_tokens

    return Planner(
        catalog=catalog,
        counter=token_counter(cfg, catalog),
        route=router(cfg),
        route_reads_body=route_reads_body(cfg),
        rules_for=rules_of,
        default_output_tokens_for=output_tokens_of,
        line_bytes=measured_line_bytes,
        limits_for=limits_for(cfg),
        account_limits=account_limits_for(cfg),
        budget_rules=budget_rules,
        budgets_of=budgets_of,
    )


def build_sources(
    cfg: PlannerConfig,
    catalog: Catalog,
    session_factory: Callable[[], Session] | None = None,
    owner: str | None = None,
) -> list[Source]:
    """The configured sources; with ``session_factory`` their claims are leases in the store
    (held as ``owner``, default this process), so replicas can share them."""
    sources: list[Source] = []
    for name, s in cfg.sources.items():
        leases = None
        if session_factory is not None:
            from planner.pipeline.leases import StoreUnitLeases

            leases = StoreUnitLeases(session_factory, name, owner or this_process(), s.lease)
        if isinstance(s, SqlSourceConfig):
            from planner.sources.sql import Columns as SqlColumns
            from planner.sources.sql import SqlSource

            sources.append(
                SqlSource(
                    name,
                    data_engine(s.url_env, f"sources.{name}.url_env", os.environ),
                    columns=SqlColumns(**s.columns.model_dump()),
                    defaults=Defaults(
                        source=name,
                        family_of=catalog.family_of,
                        facts_of=catalog.get,
                        default_models={
                            k: v for k, v in s.default_models.model_dump().items() if v
                        },
                        default_model=s.default_model,
                        default_embedding_model=s.default_embedding_model,
                        default_deadline=s.default_deadline,
                    ),
                    table=s.table,
                    query=s.query,
                    state_column=s.state_column,
                    error_column=s.error_column,
                    page=s.page,
                    leases=leases,
                )
            )
            continue
        sources.append(
            JsonlDirSource(
                name,
                s.path,
                family_of=catalog.family_of,
                facts_of=catalog.get,
                default_models={k: v for k, v in s.default_models.model_dump().items() if v},
                default_model=s.default_model,
                default_embedding_model=s.default_embedding_model,
                default_deadline=s.default_deadline,
                settle=s.settle,
                max_line_bytes=s.max_line_bytes,
                leases=leases,
            )
        )
    return sources


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
) -> LazyProviders:
    """Every configured provider, built when a stage first asks for it; its options (the key
    found, its host, the secret registered for redaction) are worked out now, so a missing key
    fails at start-up."""
    factories: dict[str, Callable[[], BatchProvider]] = {}
    for name, p in cfg.providers.items():
        kind = "openai" if isinstance(p, GeminiProviderConfig) and p.openai_compat else p.kind
        factories[name] = partial(
            create_provider, kind, **_provider_options(name, p, sandbox_url, environ)
        )
    return LazyProviders(factories)


_ENGINES: dict[str, Engine] = {}


def data_engine(url_env: str, where: str, environ: Mapping[str, str]) -> Engine:
    """The engine of a user's database (an sql source or sink), one per URL per process; the
    URL comes from the environment and its password is registered for redaction."""
    url = environ.get(url_env, "").strip()
    if not url:
        raise ConfigError([f"{where}: {url_env} is not set (it holds the SQLAlchemy URL)"])
    if url not in _ENGINES:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError([f"{where}: {url_env} does not hold a SQLAlchemy URL"]) from None
        if parsed.password:
            register_secret(str(parsed.password))
        _ENGINES[url] = create_engine(parsed, pool_pre_ping=True)
    return _ENGINES[url]


def build_sink(name: str, s: SinkConfig, environ: Mapping[str, str]) -> Sink:
    """One configured sink; a webhook's secret is read here and registered for redaction."""
    if isinstance(s, WebhookSinkConfig):
        secret = resolve_secret(s.secret_env, s.secret_file, environ, f"sinks.{name}.secret_file")
        if secret is None:
            raise ConfigError([f"sinks.{name}: no signing secret ({s.secret_env} is not set)"])
        register_secret(secret)
        retry = RetryPolicy(
            base_seconds=s.retry_base.total_seconds(), cap_seconds=s.retry_cap.total_seconds()
        )
        return WebhookSink(
            name,
            s.url,
            secret.get_secret_value(),
            timeout=s.timeout.total_seconds(),
            retry=retry,
        )
    if isinstance(s, SqlSinkConfig):
        from planner.sinks.sql import SqlSink

        engine = data_engine(s.url_env, f"sinks.{name}.url_env", environ)
        return SqlSink(name, engine, s.table, key_column=s.key_column, columns=s.columns)
    return JsonlDirSink(name, s.path)


def build_sink_map(cfg: PlannerConfig, environ: Mapping[str, str]) -> dict[str, Sink]:
    return {name: build_sink(name, s, environ) for name, s in cfg.sinks.items()}


def build_sinks(
    cfg: PlannerConfig,
    sinks: Mapping[str, Sink] | None = None,
    session_factory: Callable[[], Session] | None = None,
) -> Callable[[str], list[Sink]]:
    """Which sinks each source's results go to (its ``sink``, or every sink); with the store,
    the HTTP intake's results go to its own sink (it serves them) and ``intake.sink``."""
    sinks = build_sink_map(cfg, os.environ) if sinks is None else sinks
    every = list(sinks.values())
    routes = {
        name: ([sinks[s.sink]] if s.sink is not None else every) for name, s in cfg.sources.items()
    }
    if session_factory is not None:
        from planner.runtime.intake.sink import IntakeSink

        intake = cfg.intake
        extra = [sinks[intake.sink]] if intake.sink is not None else []
        routes[intake.source] = [IntakeSink(intake.source, session_factory), *extra]

    def sinks_for(source: str) -> list[Sink]:
        return routes.get(source, every)

    return sinks_for


def open_store(cfg: PlannerConfig) -> Callable[[], Session]:
    from planner.store.engine import make_engine, make_session_factory, upgrade

    engine = make_engine(resolve_store_url(cfg, os.environ))
    upgrade(engine)
    return make_session_factory(engine)


def _release_of(planner: Planner) -> Callable[[], None]:
    """What frees the planner's tokenizer (``StageContext.release_tokenizer``)."""
    counter = planner.counter
    return counter.release if isinstance(counter, TiktokenCounter) else lambda: None


def build_context(
    cfg: PlannerConfig, *, sandbox_url: str | None, local_chunks: int = DAEMON_LOCAL_CHUNKS
) -> StageContext:
    """The stages' context for ``run``. ``local_chunks``: chunks of a pass read in this process
    before read workers start (``run --once`` passes 0: a single pass that reads in workers
    from the start never counts here, so its process never holds toktok's tables)."""
    problems = runtime_problems(cfg)  # validate ran the same checks, with file positions
    if problems:
        raise ConfigError(problems)
    catalog = catalog_for(cfg)
    session_factory = open_store(cfg)
    sinks = build_sink_map(cfg, os.environ)
    sources = build_sources(cfg, catalog, session_factory)
    planner = build_planner(cfg, catalog)
    return StageContext(
        session_factory=session_factory,
        catalog=catalog,
        planner=planner,
        providers=build_providers(cfg, sandbox_url, os.environ),
        sources=sources,
        reading=partial(reading_on_every_core, cfg, planner, sources, local_chunks),
        release_tokenizer=_release_of(planner),
        sinks_for=build_sinks(cfg, sinks, session_factory),
        sinks=sinks,
        rate_limits={
            name: RateLimits(p.requests_per_minute, p.tokens_per_minute)
            for name, p in cfg.providers.items()
        },
        plan_chunk=plan_chunk_size(os.environ),
        retention=cfg.store.retention,
        list_lag=cfg.schedule.list_lag,
    )


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
        }
        | (  # the HTTP intake's requests are judged by its own policy too
            {cfg.intake.source: by_policy[cfg.intake.policy]}
            if cfg.intake.policy in by_policy
            else {}
        ),
    )


def routed_models(cfg: PlannerConfig, catalog: Catalog) -> list[tuple[str, str]]:
    """(provider, model) for every catalog model the configuration routes to a provider."""
    routed = ((cfg.provider_for(model), model) for model in sorted(catalog.models()))
    return [(provider, model) for provider, model in routed if provider is not None]


def ledger_groups(cfg: PlannerConfig, catalog: Catalog) -> list[Group]:
    """Every (source, provider, model, lane) the ledger can bill under this configuration:
    their money series are exported from the first scrape, at 0 until billed."""
    models = routed_models(cfg, catalog)
    sources = set(cfg.sources) | ({cfg.intake.source} if cfg.intake.enabled else set())
    return [(s, p, m, lane.value) for s in sorted(sources) for p, m in models for lane in Lane]


def store_reader(ctx: Callable[[], StageContext]) -> Callable[[], StoreReading]:
    """What the metrics read from the store at scrape time, from the context of the moment,
    read again only when it can differ (``runtime/store_reading.py``)."""
    from planner.runtime.store_reading import StoreReader

    return StoreReader(ctx)


def prime_metrics(metrics: Metrics, cfg: PlannerConfig, catalog: Catalog) -> None:
    """Create the series this configuration can produce at 0 (at start and after a reload)."""
    metrics.prime(
        sources=cfg.sources,
        models=routed_models(cfg, catalog),
        providers=cfg.providers,
        reasons=[r.value for r in Reason],
    )
    metrics.prime_ledger(ledger_groups(cfg, catalog))


def build_metrics(
    registry: CollectorRegistry,
    cfg: PlannerConfig,
    ctx: Callable[[], StageContext],
    *,
    process_metrics: bool = True,
    cache_seconds: float = 1.0,
) -> Metrics:
    """The daemon's metrics: events of this process, and the store read at scrape time."""
    from planner.metrics import Metrics

    catalog = ctx().catalog
    metrics = Metrics(
        registry,
        known_models=catalog.models(),
        store=store_reader(ctx),
        store_cache_seconds=cache_seconds,
        process_metrics=process_metrics,
    )
    prime_metrics(metrics, cfg, catalog)
    return metrics


def build_plan_report(
    cfg: PlannerConfig,
    *,
    now: datetime,
    on_request: Callable[[int], None] | None = None,
    keep: list[object] | None = None,
) -> PlanReport:
    """``planner plan``: scan every source read-only, assess, pack and sum up. ``keep``: the
    token counter is added to it, for a caller that ends the process without freeing it
    (its encodings took 0.09 s to free, 5% of a plan of 20,000 requests)."""
    catalog = catalog_for(cfg)
    planner = build_planner(cfg, catalog)
    if keep is not None:
        keep.append(planner.counter)
    sources = build_sources(cfg, catalog)
    lines: Iterator[ParsedLine] = chain.from_iterable(s.scan(now) for s in sources)
    planner, book = dry_run_planner(cfg, planner, now)  # as the store has it, read only
    seen = SeenContents()
    with stored_keys(cfg) as lookup, reading_on_every_core(cfg, planner, sources, bodies=False):
        repeats = Repeats(lookup, seen)  # keys read or stored before, judged as intake will
        try:
            report = build_report(repeats.judge(lines), planner, now, on_request, book=book)
        finally:
            seen.close()
    report.duplicates = repeats.duplicates
    report.settling = sum(s.settling(now) for s in sources if isinstance(s, JsonlDirSource))
    return report


def upgrade_store(cfg: PlannerConfig) -> str:
    """Apply migrations; returns the store URL with any password hidden, for messages."""
    from planner.store.engine import redact_url, upgrade

    url = resolve_store_url(cfg, os.environ)
    upgrade(url)
    return redact_url(url)
