"""Leases on source units (``store/claims.py``: ``unit_claim``) on every store backend.

What replicas sharing a spool rest on: one live lease per unit, taken by exactly one of several
concurrent claimers; a lease that ran out can be taken over, after which its old owner can
neither renew nor release it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from planner.store import claims

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


def lease(factory: sessionmaker[Session], unit: str, owner: str, now: datetime = NOW) -> bool:
    with factory() as s, s.begin():
        return claims.lease_unit(s, "spool", unit, owner, LEASE, now)


def renew(factory: sessionmaker[Session], unit: str, owner: str, now: datetime = NOW) -> bool:
    with factory() as s, s.begin():
        return claims.renew_unit(s, "spool", unit, owner, LEASE, now)


def release(factory: sessionmaker[Session], unit: str, owner: str) -> bool:
    with factory() as s, s.begin():
        return claims.release_unit(s, "spool", unit, owner)


def test_a_live_lease_is_its_owners_alone(factory: sessionmaker[Session]) -> None:
    assert lease(factory, "a.jsonl", "w1")
    assert not lease(factory, "a.jsonl", "w2"), "a live lease is not taken"
    assert not lease(factory, "a.jsonl", "w2", NOW + LEASE), "still live at its last instant"
    assert lease(factory, "a.jsonl", "w1"), "the owner takes its own lease again"
    assert lease(factory, "b.jsonl", "w2"), "another unit is free"
    with factory() as s, s.begin():
        assert claims.lease_unit(s, "other", "a.jsonl", "w2", LEASE, NOW), "units are per source"
    assert not release(factory, "a.jsonl", "w2"), "only the owner releases"
    assert release(factory, "a.jsonl", "w1")
    assert lease(factory, "a.jsonl", "w2"), "a released unit is free"


def test_a_lease_that_ran_out_is_taken_over(factory: sessionmaker[Session]) -> None:
    assert lease(factory, "a.jsonl", "w1")
    later = NOW + LEASE + timedelta(seconds=1)
    assert renew(factory, "a.jsonl", "w1", NOW + timedelta(minutes=1))
    assert not lease(factory, "a.jsonl", "w2", later), "renewed: still live"
    much_later = NOW + timedelta(minutes=1) + LEASE + timedelta(seconds=1)
    assert lease(factory, "a.jsonl", "w2", much_later)
    assert not renew(factory, "a.jsonl", "w1", much_later), "the old owner lost it"
    assert not release(factory, "a.jsonl", "w1")
    assert renew(factory, "a.jsonl", "w2", much_later)


def test_a_lease_of_an_owner_known_gone_is_taken_over(factory: sessionmaker[Session]) -> None:
    assert lease(factory, "a.jsonl", "dead-one")
    with factory() as s, s.begin():
        assert claims.unit_owner(s, "spool", "a.jsonl") == "dead-one"
        assert not claims.lease_unit(s, "spool", "a.jsonl", "w2", LEASE, NOW, gone="other")
        assert claims.lease_unit(s, "spool", "a.jsonl", "w2", LEASE, NOW, gone="dead-one")
        assert claims.unit_owner(s, "spool", "a.jsonl") == "w2"
        assert claims.unit_owner(s, "spool", "b.jsonl") is None


def test_concurrent_claimers_one_winner_per_unit(factory: sessionmaker[Session]) -> None:
    """Eight workers race for the same twenty units (a fresh one and one that ran out)."""
    units = [f"u{i}.jsonl" for i in range(20)]
    for unit in units[::2]:
        assert lease(factory, unit, "dead", NOW - LEASE - timedelta(seconds=1))
    won: dict[str, list[str]] = {unit: [] for unit in units}
    start = threading.Barrier(8)
    lock = threading.Lock()

    def worker(owner: str) -> None:
        start.wait()
        for unit in units:
            if lease(factory, unit, owner):
                with lock:
                    won[unit].append(owner)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(len(owners) == 1 for owners in won.values()), won


def test_a_batch_being_sent_is_held_by_its_sender(factory: sessionmaker[Session]) -> None:
    """The submit stage's hold on an ``uploading`` batch: a live sender keeps it from other
    replicas' reconciliation; a sender known gone, or whose lease ran out, gives it up."""
    from planner.core.model import Endpoint
    from planner.core.states import BatchState
    from planner.store import batches
    from tests.contract.test_store import ingest

    ids = ingest(factory, ["held-1"])
    with factory() as s, s.begin():
        batches.create_batch_intent(
            s, "plb_held", "openai", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, ids, NOW
        )
        assert not claims.hold_batch(s, "plb_held", "a", LEASE, NOW), "only uploading batches"
        assert batches.transition_batch(
            s,
            "plb_held",
            ("planned",),
            BatchState.UPLOADING,
            NOW,
            claimed_by="a",
            lease_until=NOW + LEASE,
        )
    with factory() as s, s.begin():
        assert not claims.hold_batch(s, "plb_held", "b", LEASE, NOW), "a is sending it"
        assert claims.hold_batch(s, "plb_held", "a", LEASE, NOW), "its sender keeps it"
        assert claims.hold_batch(s, "plb_held", "b", LEASE, NOW, gone="a"), "a died"
        assert not claims.hold_batch(s, "plb_held", "a", LEASE, NOW), "now b sends it"
        later = NOW + LEASE + timedelta(seconds=1)
        assert claims.hold_batch(s, "plb_held", "c", LEASE, later), "b's lease ran out"
