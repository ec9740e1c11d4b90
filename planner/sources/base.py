"""The sources port: what every input kind (spool folder, SQL table, HTTP intake) offers.

A source hands out requests in two ways. ``scan`` is a read-only preview for ``planner plan``:
it claims and moves nothing. ``claim`` hands out units of work (a spool file, a page of rows)
that belong to the caller alone; the caller commits the good requests to the store and only
then calls ``finish``, so a crash in between re-delivers the unit, and the store's unique
``(source, key)`` drops what it already has. Bad records travel as ``LineError`` values next to
the good ones, in input order, so one bad record never stops the rest and none is dropped.

Replicas sharing one input coordinate through ``UnitLeases`` (implemented over the store by the
pipeline, since sources never import it): a unit is leased before it is taken, the lease is
renewed while it is read and dropped when it is finished, so a unit whose lease is live is never
taken back from a working replica, and one whose owner died is recovered once its lease ran out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from planner.core.model import Request
from planner.errors import PlannerError


class LeaseLost(PlannerError):
    """Another worker took over a unit this one was reading (its lease ran out meanwhile).

    Not a failure: what was stored stays stored (ingestion is idempotent), and the new owner
    reads the unit again."""


@runtime_checkable
class UnitLeases(Protocol):
    """Leases on one source's units, shared by every replica (``store/claims.py``)."""

    def acquire(self, unit: str) -> bool:
        """Take ``unit`` unless another worker holds a live lease on it."""
        ...

    def renew(self, unit: str) -> bool:
        """Keep ``unit``; ``False`` if it was taken over (stop working on it)."""
        ...

    def release(self, unit: str) -> None:
        """Give ``unit`` up (done, or put back)."""
        ...


@dataclass(frozen=True, slots=True)
class LineError:
    """One input record that cannot become a request, with everything needed to fix it.

    ``reason`` is a short stable code (see ``planner.sources.formats.Reason``) for counting and
    quarantine; ``message`` is the full human text, already prefixed with ``file:line:``;
    ``raw`` is the record as read (cut to a prefix for records over the size limit).
    """

    file: str
    line: int
    reason: str
    message: str
    raw: str

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.line}"

    def __str__(self) -> str:
        return self.message


ParsedLine = Request | LineError
"""What a source yields for each non-blank input record, in input order."""


@runtime_checkable
class Claim(Protocol):
    """A unit of input owned by one caller until ``finish``."""

    @property
    def name(self) -> str: ...

    def lines(self) -> Iterator[ParsedLine]:
        """The unit's records, good and bad, in order; may be called again after a failure."""
        ...

    def reject(self, request: Request, reason: str, message: str) -> LineError:
        """After ``lines()``: keep one of its requests that the store refused (a key stored
        with other content) with the bad records, as a ``LineError`` placed at its record."""
        ...

    def finish(self, now: datetime) -> None:
        """Call after the good records are committed: keeps the bad ones, retires the unit."""
        ...


@runtime_checkable
class Source(Protocol):
    """One configured input. ``name`` becomes ``Request.source``."""

    @property
    def name(self) -> str: ...

    def scan(self, now: datetime) -> Iterator[ParsedLine]:
        """Preview what is ready now, without claiming or moving anything."""
        ...

    def claim(self, now: datetime) -> Iterator[Claim]:
        """Claim ready units one at a time; a unit taken by someone else is skipped."""
        ...

    def recover(self, now: datetime) -> int:
        """Return units a crashed claimer left behind to the ready pool; how many."""
        ...
