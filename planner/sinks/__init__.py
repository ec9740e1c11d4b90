"""Where results go. The config's ``kind`` names the class here (``sink_class``).

Constructors differ per kind (a folder, a URL and its secret); ``runtime/wiring.py`` maps each
configuration section onto its class's constructor. A kind's module is imported when its class
is asked for: the ``sql`` sink brings SQLAlchemy, which a ``planner plan`` does not need.
"""

from __future__ import annotations

from typing import Any

from planner.kinds import Registry, class_of
from planner.sinks.base import Record, Sink, is_queued
from planner.sinks.jsonl_dir import JsonlDirSink
from planner.sinks.webhook import WebhookSink

# kind -> (module, class); each class's ``kind`` is the key (a test holds them equal)
SINKS: Registry = {
    "jsonl_dir": ("planner.sinks.jsonl_dir", "JsonlDirSink"),
    "sql": ("planner.sinks.sql", "SqlSink"),
    "webhook": ("planner.sinks.webhook", "WebhookSink"),
}


def sink_class(kind: str) -> type[Sink]:
    """The class for a configured ``kind``; KeyError lists the known kinds."""
    found: type[Sink] = class_of(SINKS, kind, "sink")
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
