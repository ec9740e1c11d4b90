"""Source-unit leases kept in the store, for sources that never import it.

``StoreUnitLeases`` implements ``planner.sources.base.UnitLeases`` over ``store/claims.py``:
each call is one short transaction, and every lease is measured on the database's clock, so
replicas on several hosts agree on when one ran out whatever their own clocks say. A lease
whose owner is certainly gone (a process on this host that no longer runs: ``process.py``) is
taken over at once instead of waiting for it to run out, so a restart after a kill reads the
killed process's file again straight away.
"""

from __future__ import annotations

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
    ) -> None:
        self._session_factory = session_factory
        self.source = source
        self.owner = owner
        self.lease = lease

    def __repr__(self) -> str:
        return f"StoreUnitLeases(source={self.source!r}, owner={self.owner!r})"

    def acquire(self, unit: str) -> bool:
        with self._session_factory() as session, session.begin():
            now = claims.database_now(session)
            if claims.lease_unit(session, self.source, unit, self.owner, self.lease, now):
                return True
            holder = claims.unit_owner(session, self.source, unit)
            if holder is not None and not certainly_gone(holder):
                return False  # a live replica's (or one this host cannot judge: it runs out)
            return claims.lease_unit(
                session, self.source, unit, self.owner, self.lease, now, gone=holder
            )

    def renew(self, unit: str) -> bool:
        with self._session_factory() as session, session.begin():
            now = claims.database_now(session)
            return claims.renew_unit(session, self.source, unit, self.owner, self.lease, now)

    def release(self, unit: str) -> None:
        with self._session_factory() as session, session.begin():
            claims.release_unit(session, self.source, unit, self.owner)
