"""The intake stage: claim source units, store their good requests, keep their bad lines.

Order per unit (a spool file): claim it, insert its requests in chunks (each chunk one commit;
``(source, key)`` is unique, so a re-read after a crash inserts nothing twice), and only then
``finish`` it (quarantine the bad lines, move the file to ``done/``). A crash before ``finish``
leaves the unit in ``.claimed/``; ``recover`` puts it back (at start, and on every pass once its
lease in the store ran out). A unit another replica took over meanwhile (``LeaseLost``) is left
to it: what was stored stays, the new owner reads the unit again, and nothing is an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

import planner.store.requests as store_requests
from planner import crashpoints
from planner.core.model import Request
from planner.pipeline.repeats import DUPLICATE_ID, conflict_message
from planner.sources.base import Claim, LeaseLost, LineError, Source

_log = logging.getLogger(__name__)

CHUNK = 1000  # requests per commit
LOGGED_PER_UNIT = 20
"""Bad lines of one unit logged one by one; past these, one warning at the unit's end says how
many more and why. Each is still kept with its reason and counted (``IntakeResult``, the
``planner_lines_quarantined`` metric): a spool of two million lines with one field wrong on
every line wrote two million warnings, and journald keeps 10,000 of a service's messages in 30
seconds by default (``RateLimitBurst``), so it dropped the daemon's other messages with them."""


@dataclass(slots=True)
class IntakeResult:
    """What one intake pass did, per source."""

    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    units: int = 0

    def count_error(self, source: str, error: LineError) -> None:
        reasons = self.quarantined.setdefault(source, {})
        reasons[error.reason] = reasons.get(error.reason, 0) + 1


def _store_chunk(
    session_factory: Callable[[], Session],
    chunk: list[Request],
    now: datetime,
    conflicts: list[Request],
) -> tuple[int, int]:
    with session_factory() as session, session.begin():
        outcome = store_requests.ingest(session, chunk, now)
    conflicts.extend(outcome.conflicts)
    return outcome.inserted, outcome.duplicates


@dataclass(slots=True)
class _UnitLog:
    """How many of one unit's bad lines were logged, and the reasons of those that were not."""

    logged: int = 0
    held: Counter[str] = field(default_factory=Counter)

    def summarize(self, source: str, unit: str) -> None:
        if not self.held:
            return
        more = self.held.total()
        reasons = self.held.most_common()
        _log.warning(
            "quarantined %s more lines of %s (%s); each is kept in the quarantine with its reason",
            f"{more:,}",
            unit,
            ", ".join(f"{reason} {count:,}" for reason, count in reasons),
            extra={
                "event": "lines_quarantined",
                "source": source,
                "unit": unit,
                "lines": more,
                "reasons": dict(reasons),
            },
        )


def _quarantine(result: IntakeResult, source: str, error: LineError, unit: _UnitLog) -> None:
    result.count_error(source, error)
    if unit.logged >= LOGGED_PER_UNIT:
        unit.held[error.reason] += 1
        return
    unit.logged += 1
    _log.warning(
        "quarantined %s: %s",
        error.origin,
        error.reason,
        extra={"event": "line_quarantined", "source": source, "reason": error.reason},
    )


Measure = Callable[[Request], Request]
"""Adds what planning needs to a request once (``pipeline/measure.py``), before it is stored."""


def _as_is(request: Request) -> Request:
    return request


def ingest_source(
    source: Source,
    session_factory: Callable[[], Session],
    now: datetime,
    result: IntakeResult | None = None,
    measure: Measure = _as_is,
) -> IntakeResult:
    """Claim every ready unit of ``source`` and store it (see the module docstring)."""
    result = result or IntakeResult()
    name = source.name
    for claim in source.claim(now):
        try:
            _ingest_unit(claim, name, session_factory, now, result, measure)
        except LeaseLost as exc:
            _log.info(
                "%s",
                exc,
                extra={"event": "unit_taken_over", "source": name, "unit": claim.name},
            )
    return result


def _ingest_unit(
    claim: Claim,
    name: str,
    session_factory: Callable[[], Session],
    now: datetime,
    result: IntakeResult,
    measure: Measure,
) -> None:
    """Store one claimed unit's good requests, then finish it (quarantine its bad lines)."""
    crashpoints.reached("after_claim")
    chunk: list[Request] = []
    conflicts: list[Request] = []
    logged = _UnitLog()
    for line in claim.lines():
        if isinstance(line, LineError):
            _quarantine(result, name, line, logged)
            continue
        chunk.append(measure(line))
        if len(chunk) >= CHUNK:
            _add(result, name, _store_chunk(session_factory, chunk, now, conflicts))
            chunk = []
    if chunk:
        _add(result, name, _store_chunk(session_factory, chunk, now, conflicts))
    for request in conflicts:  # same key as a stored request, different content
        message = conflict_message(request.key)
        _quarantine(result, name, claim.reject(request, DUPLICATE_ID, message), logged)
    crashpoints.reached("after_ingest")
    claim.finish(now)
    logged.summarize(name, claim.name)
    result.units += 1
    _log.info(
        "ingested %s from %s",
        claim.name,
        name,
        extra={"event": "unit_ingested", "source": name, "unit": claim.name},
    )


def _add(result: IntakeResult, source: str, counts: tuple[int, int]) -> None:
    inserted, duplicates = counts
    result.inserted[source] = result.inserted.get(source, 0) + inserted
    result.duplicates[source] = result.duplicates.get(source, 0) + duplicates


def ingest_all(
    sources: Iterable[Source],
    session_factory: Callable[[], Session],
    now: datetime,
    measure: Measure = _as_is,
) -> IntakeResult:
    """One intake pass over every source; one failing source does not stop the others.
    ``measure`` adds what planning needs to each request not measured yet (the spool's read
    workers measure as they parse; SQL and HTTP requests are measured here)."""
    result = IntakeResult()
    for source in sources:
        try:
            ingest_source(source, session_factory, now, result, measure)
        except OSError as exc:
            _log.error(
                "source %s failed: %s",
                source.name,
                exc,
                extra={"event": "source_failed", "source": source.name},
            )
    return result
