"""Where requests come from. The config's ``kind`` names the class here (``SOURCES``).

Each kind is one module implementing ``planner.sources.base.Source``; constructors take plain
values, never config objects, so the composition root (``runtime/wiring.py``) does the mapping.
"""

from __future__ import annotations

from planner.sources.base import Claim, LineError, ParsedLine, Source
from planner.sources.jsonl_dir import ClaimedFile, JsonlDirSource
from planner.sources.sql import SqlSource

SOURCES: dict[str, type[Source]] = {
    JsonlDirSource.kind: JsonlDirSource,
    SqlSource.kind: SqlSource,
}


def source_class(kind: str) -> type[Source]:
    """The class for a configured ``kind``; KeyError lists the known kinds."""
    try:
        return SOURCES[kind]
    except KeyError:
        known = ", ".join(sorted(SOURCES))
        raise KeyError(f"unknown source kind {kind!r}; known: {known}") from None


__all__ = [
    "SOURCES",
    "Claim",
    "ClaimedFile",
    "JsonlDirSource",
    "LineError",
    "ParsedLine",
    "Source",
    "SqlSource",
    "source_class",
]
