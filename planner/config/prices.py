"""The shipped price catalog, read once from the package data (``planner/data/prices.yaml``).

Parsing and validation live in the pure ``planner.core.catalog``; this module only does the I/O.
"""

from __future__ import annotations

import functools
from importlib import resources

import yaml

from planner.core.catalog import Catalog

_DATA_FILE = "data/prices.yaml"


@functools.cache
def shipped_catalog() -> Catalog:
    """The catalog that ships with planner (before the operator's ``models:`` overrides)."""
    text = resources.files("planner").joinpath(_DATA_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or "models" not in document:
        raise ValueError(f"planner/{_DATA_FILE}: expected a top-level `models:` mapping")
    return Catalog.from_mapping(document["models"])
