"""Where results go. The config's ``kind`` names the class here (``sink_class``).

Constructors differ per kind (a folder, a URL and its secret); ``runtime/wiring.py`` maps each
configuration section onto its class's constructor. A kind's module is imported when its class
is asked for: the ``sql`` sink brings SQLAlchemy, which a ``planner plan`` does not need.
"""

from __future__ import annotations

import importlib
from typing import Any

from planner.sinks.base import Record, Sink, is_queued
from planner.sinks.jsonl_dir import JsonlDirSink
from planner.sinks.webhook import WebhookSink

# kind -> (module, class); each class's ``kind`` is the key (a test holds them equal)
SINKS: dict[str, tuple[str, str]] = {
    "jsonl_dir": ("planner.sinks.jsonl_dir", "JsonlDirSink"),
    "sql": ("planner.sinks.sql", "SqlSink"),
    "webhook": ("planner.sinks.webhook", "WebhookSink"),
}


def sink_class(kind: str) -> type[Sink]:
    """The class for a configured ``kind``; KeyError lists the known kinds."""
    try:
        module, name = SINKS[kind]
    except KeyError:
        known = ", ".join(sorted(SINKS))
        raise KeyError(f"unknown sink kind {kind!r}; known: {known}") from None
    found: type[Sink] = getattr(importlib.import_module(module), name)
    return found


def __getattr__(name: str) -> Any:
    """``planner.sinks.SqlSink``, imported on first use."""
    if name == "SqlSink":
        return sink_class("sql")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SINKS",
    "JsonlDirSink",
    "Record",
    "Sink",
    "SqlSink",
    "WebhookSink",
    "is_queued",
    "sink_class",
]
