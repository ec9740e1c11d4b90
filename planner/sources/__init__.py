"""Where requests come from. The config's ``kind`` names the class here (``source_class``).

Each kind is one module implementing ``planner.sources.base.Source``; constructors take plain
values, never config objects, so the composition root (``runtime/wiring.py``) does the mapping.
A kind's module is imported when its class is asked for: the ``sql`` source brings SQLAlchemy,
a third of the start-up of a ``planner plan`` that reads only a spool.
"""

from __future__ import annotations

from typing import Any

from planner.kinds import Registry, class_of
from planner.sources.base import Claim, LineError, ParsedLine, Source
from planner.sources.jsonl_dir import ClaimedFile, JsonlDirSource

# kind -> (module, class); each class's ``kind`` is the key (a test holds them equal)
SOURCES: Registry = {
    "jsonl_dir": ("planner.sources.jsonl_dir", "JsonlDirSource"),
    "sql": ("planner.sources.sql", "SqlSource"),
}


def source_class(kind: str) -> type[Source]:
    """The class for a configured ``kind``; KeyError lists the known kinds."""
    found: type[Source] = class_of(SOURCES, kind, "source")
    return found


def __getattr__(name: str) -> Any:
    """``planner.sources.SqlSource``, imported on first use."""
    if name == "SqlSource":
        return source_class("sql")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
