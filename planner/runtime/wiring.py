"""The composition root: turns a loaded configuration into the objects the stages use.

Nothing else maps config sections to constructors, so every component stays testable with
plain values, and a reload (SIGHUP) is a call to the same functions with the new config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import chain
from pathlib import Path

from planner.config import load_config, resolve_store_url
from planner.config.prices import shipped_catalog
from planner.config.schema import GeminiProviderConfig, PlannerConfig
from planner.core.catalog import Catalog
from planner.core.limits import BatchLimits, default_limits, merge_limits
from planner.core.model import Endpoint, ProviderKind, Request
from planner.core.pack import PackGroup
from planner.core.policy import PolicyRules
from planner.pipeline.plan import Planner
from planner.pipeline.preview import PlanReport, build_report
from planner.providers import gemini_wire, openai_wire
from planner.sources import JsonlDirSource
from planner.sources.base import ParsedLine, Source
from planner.tokenizers import TiktokenCounter


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

    Gemini's native API takes Gemini-shaped bodies; an OpenAI-compatible server (including
    Gemini's compatibility layer) takes OpenAI-shaped bodies.
    """
    p = cfg.providers[provider]
    openai_shaped = p.kind == "openai" or (isinstance(p, GeminiProviderConfig) and p.openai_compat)
    return (endpoint.wire is ProviderKind.OPENAI) == openai_shaped


def router(cfg: PlannerConfig) -> Callable[[Request], str | None]:
    def route(request: Request) -> str | None:
        provider = cfg.provider_for(request.model)
        if provider is None or not speaks(cfg, provider, request.endpoint):
            return None
        return provider

    return route


def limits_for(cfg: PlannerConfig) -> Callable[[PackGroup], BatchLimits]:
    """Shipped limits per provider kind, tier and model, then the config's overrides."""

    def limits(group: PackGroup) -> BatchLimits:
        p = cfg.providers[group.provider]
        base = default_limits(ProviderKind(p.kind), group.model, tier=p.tier)
        override = cfg.limits.get(group.provider)
        if override is None:
            return base
        merged = merge_limits(base, override.overrides())
        per_model = override.per_model.get(group.model)
        return merged if per_model is None else merge_limits(merged, per_model.overrides())

    return limits


def line_bytes(request: Request, provider: str) -> int:
    """Bytes of the request's line in the batch input file (with its newline)."""
    if request.endpoint.wire is ProviderKind.GEMINI:
        row = gemini_wire.input_line(request.key, request.body)
    else:
        body = {"model": request.model, **request.body}
        row = openai_wire.input_line(request.key, request.endpoint, body)
    return len(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()) + 1


def build_planner(cfg: PlannerConfig, catalog: Catalog | None = None) -> Planner:
    catalog = catalog or catalog_for(cfg)
    source_policy = {name: s.policy for name, s in cfg.sources.items()}
    rules = {name: policy.rules() for name, policy in cfg.policies.items()}

    def rules_of(request: Request) -> PolicyRules:
        return rules[source_policy.get(request.source, "default")]

    def output_tokens_of(request: Request) -> int:
        return cfg.policies[source_policy.get(request.source, "default")].default_output_tokens

    return Planner(
        catalog=catalog,
        counter=TiktokenCounter(
            catalog,
            cache_dir=cfg.tokenizer.cache_dir,
            download=cfg.tokenizer.download,
            download_timeout=cfg.tokenizer.download_timeout.total_seconds(),
        ),
        route=router(cfg),
        rules_for=rules_of,
        default_output_tokens_for=output_tokens_of,
        line_bytes=line_bytes,
        limits_for=limits_for(cfg),
    )


def build_sources(cfg: PlannerConfig, catalog: Catalog) -> list[Source]:
    sources: list[Source] = []
    for name, s in cfg.sources.items():
        sources.append(
            JsonlDirSource(
                name,
                s.path,
                family_of=catalog.family_of,
                default_model=s.default_model,
                default_embedding_model=s.default_embedding_model,
                default_deadline=s.default_deadline,
                settle=s.settle,
                max_line_bytes=s.max_line_bytes,
            )
        )
    return sources


def build_plan_report(
    cfg: PlannerConfig, *, now: datetime, on_request: Callable[[int], None] | None = None
) -> PlanReport:
    """``planner plan``: scan every source read-only, assess, pack and sum up."""
    catalog = catalog_for(cfg)
    planner = build_planner(cfg, catalog)
    sources = build_sources(cfg, catalog)
    lines: Iterator[ParsedLine] = chain.from_iterable(s.scan(now) for s in sources)
    return build_report(lines, planner, now, on_request)


def upgrade_store(cfg: PlannerConfig) -> str:
    """Apply migrations; returns the store URL with any password hidden, for messages."""
    from planner.store.engine import redact_url, upgrade

    url = resolve_store_url(cfg, os.environ)
    upgrade(url)
    return redact_url(url)
