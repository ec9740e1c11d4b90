"""Where results go. The config's ``kind`` names the class here (``SINKS``)."""

from __future__ import annotations

from planner.sinks.base import Record, Sink
from planner.sinks.jsonl_dir import JsonlDirSink

SINKS: dict[str, type[JsonlDirSink]] = {JsonlDirSink.kind: JsonlDirSink}

__all__ = ["SINKS", "JsonlDirSink", "Record", "Sink"]
