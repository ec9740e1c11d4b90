"""What the emulator billed, request by request: the oracle of "billed once, never twice".

Every key the sandbox ever billed keeps a record (its lane, how often it was billed, its usage
summed, its lanes, models and batches), and ``/_sandbox/ledger`` lists them all in the order
they were first billed: the tests read it to hold planner to billing nothing twice. Kept in
memory, a record costs ~0.6-0.8 KB (a few small dicts and lists per key): a run of a million
requests took the emulator past 1.5 GB, for records nobody reads until the end. So past
``memory_keys`` keys they move to a private SQLite database in a temporary file (deleted when
closed, its page cache a few MB) and every later bill goes there: the emulator stays flat
whatever it has billed, and a snapshot reads them back in the same order and shape.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MEMORY_KEYS = 50_000  # records kept in memory before they move to the database

_COLUMNS = "lane, times_billed, usage, lanes, models, batches"


@dataclass(slots=True)
class BilledRequest:
    """One key's record (see the module docstring)."""

    key: str
    lane: str
    times_billed: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    lanes: dict[str, int] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)

    def add(self, lane: str, usage: dict[str, Any], model: str | None, batch: str | None) -> None:
        """One more bill of this key: usage fields that are integers are summed."""
        self.lane = lane
        self.times_billed += 1
        self.lanes[lane] = self.lanes.get(lane, 0) + 1
        for name, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool):
                self.usage[name] = self.usage.get(name, 0) + value
        if model is not None and model not in self.models:
            self.models.append(model)
        if batch is not None:
            self.batches.append(batch)

    def as_json(self) -> dict[str, Any]:
        """As ``/_sandbox/ledger`` lists it."""
        return {
            "key": self.key,
            "lane": self.lane,
            "times_billed": self.times_billed,
            "usage": dict(self.usage),
            "lanes": dict(self.lanes),
            "models": list(self.models),
            "batches": list(self.batches),
        }


class Bills:
    """Every key billed, with its record; in memory up to ``memory_keys``, then on disk.
    Thread-safe (route handlers and settling threads bill at once)."""

    def __init__(self, memory_keys: int = MEMORY_KEYS) -> None:
        self._limit = memory_keys
        self._held: dict[str, BilledRequest] = {}
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def bill(
        self,
        key: str,
        lane: str,
        usage: dict[str, Any],
        *,
        model: str | None = None,
        batch: str | None = None,
    ) -> None:
        with self._lock:
            if self._db is not None:
                self._bill_stored(self._db, key, lane, usage, model, batch)
                return
            entry = self._held.get(key)
            if entry is None:
                entry = self._held[key] = BilledRequest(key, lane)
            entry.add(lane, usage, model, batch)
            if len(self._held) > self._limit:
                self._spill()

    def _spill(self) -> None:
        db = sqlite3.connect("", check_same_thread=False)  # private, on disk, gone on close
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(
            "CREATE TABLE bill (n INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, lane TEXT, "
            "times_billed INTEGER, usage TEXT, lanes TEXT, models TEXT, batches TEXT)"
        )
        db.executemany(
            f"INSERT INTO bill (key, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_row(entry) for entry in self._held.values()),
        )
        self._db = db
        self._held = {}

    @staticmethod
    def _bill_stored(
        db: sqlite3.Connection,
        key: str,
        lane: str,
        usage: dict[str, Any],
        model: str | None,
        batch: str | None,
    ) -> None:
        found = db.execute(f"SELECT {_COLUMNS} FROM bill WHERE key = ?", (key,)).fetchone()
        entry = BilledRequest(key, lane) if found is None else _entry(key, *found)
        entry.add(lane, usage, model, batch)
        if found is None:
            db.execute(
                f"INSERT INTO bill (key, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", _row(entry)
            )
        else:
            db.execute(
                "UPDATE bill SET lane = ?, times_billed = ?, usage = ?, lanes = ?, models = ?, "
                "batches = ? WHERE key = ?",
                (*_row(entry)[1:], key),
            )

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record as ``/_sandbox/ledger`` lists it, in the order first billed (read
        under the lock, so a snapshot is of one moment)."""
        with self._lock:
            if self._db is None:
                listed = [entry.as_json() for entry in self._held.values()]
            else:
                rows = self._db.execute(f"SELECT key, {_COLUMNS} FROM bill ORDER BY n")
                listed = [_entry(*row).as_json() for row in rows]
        return iter(listed)

    @property
    def spilled(self) -> bool:
        """Whether the records are in the database now."""
        return self._db is not None

    def close(self) -> None:
        """Forget every record, and delete the database they moved to (a reset)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._held = {}


def _row(entry: BilledRequest) -> tuple[Any, ...]:
    return (
        entry.key,
        entry.lane,
        entry.times_billed,
        json.dumps(entry.usage),
        json.dumps(entry.lanes),
        json.dumps(entry.models),
        json.dumps(entry.batches),
    )


def _entry(
    key: str, lane: str, times: int, usage: str, lanes: str, models: str, batches: str
) -> BilledRequest:
    return BilledRequest(
        key, lane, times, json.loads(usage), json.loads(lanes), json.loads(models),
        json.loads(batches),
    )  # fmt: skip
