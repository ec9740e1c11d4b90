"""The shipped price catalog, read once from the package data (``planner/data/prices.yaml``).

Parsing and validation live in the pure ``planner.core.catalog``; this module only does the I/O.
"""

from __future__ import annotations

import functools
from datetime import datetime
from importlib import resources

import yaml

from planner.config.schema import PlannerConfig
from planner.core.catalog import Catalog
from planner.core.retirement import CatalogWarning, retirement_warnings

_DATA_FILE = "data/prices.yaml"
# libyaml's parser where PyYAML was built with it: the same safe constructors, and 0.07 s less
# of every command's start-up (the pure-Python parser took that long over the shipped file)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def shipped_catalog() -> Catalog:
    """The catalog that ships with planner (before the operator's ``models:`` overrides)."""
    text = resources.files("planner").joinpath(_DATA_FILE).read_text(encoding="utf-8")
    document = yaml.load(text, Loader=_LOADER)
    if not isinstance(document, dict) or "models" not in document:
        raise ValueError(f"planner/{_DATA_FILE}: expected a top-level `models:` mapping")
    return Catalog.from_mapping(document["models"])


def config_retirements(cfg: PlannerConfig, now: datetime) -> list[CatalogWarning]:
    """Retired or soon-retiring models the configuration names (its sources' default models,
    its ``models:`` entries and per-model limits), once each: what ``planner validate`` warns."""
    catalog = shipped_catalog().merged(cfg.models) if cfg.models else shipped_catalog()
    named = set(cfg.models)
    for source in cfg.sources.values():
        named.update(m for m in (source.default_model, source.default_embedding_model) if m)
    for limits in cfg.limits.values():
        named.update(limits.per_model)
    entries = [e for e in (catalog.get(m) for m in named) if e is not None]
    return retirement_warnings(entries, now)
