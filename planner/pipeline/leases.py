"""Source-unit leases kept in the store, for sources that never import it.

``StoreUnitLeases`` implements ``planner.sources.base.UnitLeases`` over ``store/claims.py``:
each call is one short transaction, and every lease is measured on the database's clock, so
replicas on several hosts agree on when one ran out whatever their own clocks say. A lease
whose owner is certainly gone (a process on this host that no longer runs: ``process.py``) is
taken over at once instead of waiting for it to run out, so a restart after a kill reads the
killed process's file again straight away.

A renewal asked for within a quarter of the lease of the last one that was written (or of the
acquisition) writes nothing and answers yes: the lease then still has three quarters of its
length to run, so nobody can have taken it, and a file read at speed does not commit (and
fsync) once per thousand lines. With a lease of zero every renewal is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from planner.pipeline.process import certainly_gone
from planner.store import claims

DEFAULT_UNIT_LEASE = timedelta(minutes=2)


class StoreUnitLeases:
    """The leases of one source's units, held as ``owner``."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        source: str,
        owner: str,
        lease: timedelta = DEFAULT_UNIT_LEASE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self.source = source
        self.owner = owner
        self.lease = lease
        self._monotonic = monotonic
        self._written: dict[str, float] = {}  # unit -> when its lease was last written

    def __repr__(self) -> str:
        return f"StoreUnitLeases(source={self.source!r}, owner={self.owner!r})"

    def acquire(self, unit: str) -> bool:
        started = self._monotonic()
        with self._session_factory() as session, session.begin():
            now = claims.database_now(session)
            taken = claims.lease_unit(session, self.source, unit, self.owner, self.lease, now)
            if not taken:
                holder = claims.unit_owner(session, self.source, unit)
                if holder is not None and not certainly_gone(holder):
                    return False  # a live replica's (or one this host cannot judge: it runs out)
                taken = claims.lease_unit(
                    session, self.source, unit, self.owner, self.lease, now, gone=holder
                )
        self._wrote(unit, started, taken)
        return taken

    def renew(self, unit: str) -> bool:
        started = self._monotonic()
        last = self._written.get(unit)
        if last is not None and started - last < self.lease.total_seconds() / 4:
            return True  # written moments ago: still ours for most of its length (module doc)
        with self._session_factory() as session, session.begin():
            now = claims.database_now(session)
            held = claims.renew_unit(session, self.source, unit, self.owner, self.lease, now)
        self._wrote(unit, started, held)
        return held

    def release(self, unit: str) -> None:
        self._written.pop(unit, None)
        with self._session_factory() as session, session.begin():
            claims.release_unit(session, self.source, unit, self.owner)

    def _wrote(self, unit: str, started: float, held: bool) -> None:
        """Remember when a lease held was written (timed from before the write, so the
        remembered time is never later than the database's)."""
        if held:
            self._written[unit] = started
        else:
            self._written.pop(unit, None)
