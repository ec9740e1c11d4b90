"""``kind: jsonl_dir``: results as JSONL files in a folder, one file per delivery.

``<path>/<delivery_id>.jsonl`` holds one line per succeeded request, and
``<path>/dead/<delivery_id>.jsonl`` one line per dead-lettered request. Each file is written to
a temporary name, flushed to disk (fsync) and renamed into place, then the folder is synced: a
reader never sees half a file, and writing the same delivery again replaces it with the same
content instead of appending duplicates.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from planner.core import json_text
from planner.errors import SinkError
from planner.sinks.base import Record


def _write_atomically(target: Path, records: Sequence[Record]) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json_text.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        partial.replace(target)
    except OSError as exc:  # read-only, full, not a folder: say so, leave nothing behind
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise SinkError(
            f"cannot write results to {target.parent}: {exc.strerror or exc}; nothing was "
            "marked delivered, so the next pass writes them again"
        ) from exc
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class JsonlDirSink:
    """A results folder (see the module docstring)."""

    kind = "jsonl_dir"

    def __init__(self, name: str, path: Path) -> None:
        self._name = name
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self._name

    def deliver(self, delivery_id: str, results: Sequence[Record], dead: Sequence[Record]) -> None:
        if results:
            _write_atomically(self.path / f"{delivery_id}.jsonl", results)
        if dead:
            _write_atomically(self.path / "dead" / f"{delivery_id}.jsonl", dead)
