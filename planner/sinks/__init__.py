"""Where results go. The config's ``kind`` names the class here (``SINKS``).

Constructors differ per kind (a folder, a URL and its secret); ``runtime/wiring.py`` maps each
configuration section onto its class's constructor.
"""

from __future__ import annotations

from planner.sinks.base import Record, Sink, is_queued
from planner.sinks.jsonl_dir import JsonlDirSink
from planner.sinks.sql import SqlSink
from planner.sinks.webhook import WebhookSink

SINKS: dict[str, type[Sink]] = {
    JsonlDirSink.kind: JsonlDirSink,
    SqlSink.kind: SqlSink,
    WebhookSink.kind: WebhookSink,
}

__all__ = ["SINKS", "JsonlDirSink", "Record", "Sink", "SqlSink", "WebhookSink", "is_queued"]
