"""The intake's own sink: results of the intake's requests kept in the store, to be served.

The pipeline's settle step calls every sink of a source before it commits the requests' final
states (``pipeline/deliver.py``), so by the time a request is ``succeeded`` or ``dead`` its
record is here; a repeated delivery after a crash upserts the same rows. It lives with the
intake, not in ``planner/sinks/``, because it writes to the store (sinks never do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from planner.runtime import clock
from planner.sinks.base import Record
from planner.store import intake as store_intake


class IntakeSink:
    """Stores each result and dead-letter record by ``(source, id)``."""

    kind = "intake"

    def __init__(self, name: str, session_factory: Callable[[], Session]) -> None:
        self._name = name
        self._session_factory = session_factory

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"IntakeSink({self._name!r})"

    def deliver(self, delivery_id: str, results: Sequence[Record], dead: Sequence[Record]) -> None:
        rows = [(str(r["source"]), str(r["id"]), True, r) for r in results]
        rows += [(str(r["source"]), str(r["id"]), False, r) for r in dead]
        with self._session_factory() as session, session.begin():
            store_intake.record_results(session, rows, clock.utc_now())
