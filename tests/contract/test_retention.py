"""Store retention (``store/retention.py``), on SQLite and PostgreSQL.

What it pins down: terminal requests older than the cutoff lose their body and history but keep
their row, so re-ingesting their keys is still a duplicate and the ledger (and every money
total) is unchanged; collected batches older than the cutoff whose cleanup is done go with
their events; nothing in flight is touched; chunks add up to one pass; a second pass is a no-op.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from planner.core.model import Endpoint, Lane, Request, Usage
from planner.core.states import BatchState, RequestState
from planner.store import batches, events, ledger, requests, retention
from planner.store.tables import BATCH, BODY_JSON, LEDGER, REQUEST, REQUEST_BODY

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=1)
CUTOFF = NOW - timedelta(days=30)
R = RequestState
B = BatchState


def _request(key: str) -> Request:
    return Request(
        source="spool",
        key=key,
        model="gpt-4o-mini",
        endpoint=Endpoint.CHAT_COMPLETIONS,
        body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"secret {key}"}]},
        received_at=OLD,
        metadata={"team": "a"},
        origin=f"spool/a.jsonl:{key}",
    )


KEYS = [
    "old-ok",  # succeeded in a collected batch, long ago: compacted, its batch deleted
    "old-dead",  # dead-lettered in the same batch: compacted
    "old-rejected",  # rejected by the policy long ago: compacted
    "old-queued",  # ingested long ago, still queued: untouched
    "old-failed",  # failed in an old collected batch, awaiting its retry: untouched
    "old-running",  # in a batch still at the provider: untouched
    "old-cleanup",  # succeeded long ago: compacted; its batch's remote cleanup is still due
    "new-ok",  # succeeded (interactive) yesterday: untouched
]


def _batch(s: Session, batch_id: str, ids: list[int], at: datetime) -> None:
    batches.create_batch_intent(
        s, batch_id, "openai", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, ids, at
    )
    batches.transition_batch(s, batch_id, [B.PLANNED], B.UPLOADING, at)
    batches.transition_batch(s, batch_id, [B.UPLOADING], B.SUBMITTED, at, remote_id="r-" + batch_id)
    requests.transition_requests(s, ids, R.SUBMITTED, at)


def _collect(s: Session, batch_id: str, at: datetime, *, cleanup_due: bool = False) -> None:
    batches.transition_batch(s, batch_id, [B.SUBMITTED], B.SUCCEEDED, at)
    batches.transition_batch(
        s, batch_id, [B.SUCCEEDED], B.COLLECTED, at, next_poll_at=at if cleanup_due else None
    )


@pytest.fixture
def ids(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as s, s.begin():
        requests.ingest(s, [_request(k) for k in KEYS], OLD)
    with factory() as s:
        found = {k: requests.get(s, "spool", k) for k in KEYS}
    by_key = {k: v.id for k, v in found.items() if v is not None}
    cost = Decimal("0.000075")
    with factory() as s, s.begin():
        _batch(s, "plb_old", [by_key["old-ok"], by_key["old-dead"]], OLD)
        requests.transition_request(s, by_key["old-ok"], R.SUCCEEDED, OLD)
        ledger.record_result(s, by_key["old-ok"], Usage(100, 10), cost, cost * 2, OLD)
        requests.transition_request(s, by_key["old-dead"], R.FAILED, OLD)
        requests.transition_request(s, by_key["old-dead"], R.DEAD, OLD, error_message="bad")
        _collect(s, "plb_old", OLD)

        requests.transition_request(s, by_key["old-rejected"], R.REJECTED, OLD, reason="unpriced")

        _batch(s, "plb_busy", [by_key["old-failed"]], OLD)
        requests.transition_request(s, by_key["old-failed"], R.FAILED, OLD)
        _collect(s, "plb_busy", OLD)

        _batch(s, "plb_running", [by_key["old-running"]], OLD)

        _batch(s, "plb_cleanup", [by_key["old-cleanup"]], OLD)
        requests.transition_request(s, by_key["old-cleanup"], R.SUCCEEDED, OLD)
        _collect(s, "plb_cleanup", OLD, cleanup_due=True)

        requests.transition_request(
            s, by_key["new-ok"], R.INTERACTIVE, RECENT, lane=Lane.INTERACTIVE.value
        )
        requests.transition_request(s, by_key["new-ok"], R.SUCCEEDED, RECENT)
        ledger.record_result(s, by_key["new-ok"], Usage(50, 5), cost, cost, RECENT)
    return by_key


def _purge_all(factory: sessionmaker[Session], limit: int) -> retention.Purged:
    total = retention.Purged()
    for _ in range(100):
        with factory() as s, s.begin():
            part = retention.purge_chunk(s, CUTOFF, limit)
        total = retention.Purged(
            total.requests + part.requests,
            total.batches + part.batches,
            total.events + part.events,
        )
        if not part.more:
            return total
    raise AssertionError("retention never finished")


@pytest.mark.parametrize("limit", [1000, 1])
def test_retention_forgets_old_finished_work_and_keeps_what_counts(
    factory: sessionmaker[Session], ids: dict[str, int], limit: int
) -> None:
    with factory() as s:
        spend_before = ledger.spend(s)
        counts_before = requests.counts_by_state(s)
        ledger_before = s.execute(select(LEDGER).order_by(LEDGER.c.id)).all()

    purged = _purge_all(factory, limit)

    compacted = {"old-ok", "old-dead", "old-rejected", "old-cleanup"}
    assert (purged.requests, purged.batches) == (len(compacted), 1)
    assert purged.events > 0
    with factory() as s:
        rows = {r.key: r for r in s.execute(select(REQUEST, BODY_JSON))}
        kept = set(s.execute(select(REQUEST_BODY.c.request_id)).scalars())
        for key in KEYS:  # every row is still there, in the state it had
            assert key in rows
        for key in compacted:
            row = rows[key]
            assert (row.body_json, row.metadata_json, row.origin) == ("{}", "{}", "")
            assert row.id not in kept  # its body is deleted, not emptied
            assert row.error_message is None
            assert events.history(s, events.Entity.REQUEST, row.id) == []
        assert rows["old-rejected"].reason == "unpriced"  # the outcome stays readable
        for key in set(KEYS) - compacted:
            assert "secret" in rows[key].body_json, key
            assert rows[key].id in kept
            if key != "old-queued":  # ingestion writes no event
                assert events.history(s, events.Entity.REQUEST, rows[key].id), key
        assert rows["old-ok"].batch_id is None and rows["old-dead"].batch_id is None
        assert rows["old-failed"].batch_id == "plb_busy"
        assert rows["old-cleanup"].batch_id == "plb_cleanup"

        left = {r.id: r.state for r in s.execute(select(BATCH.c.id, BATCH.c.state))}
        assert left == {
            "plb_busy": B.COLLECTED.value,  # a request in it still awaits its retry
            "plb_running": B.SUBMITTED.value,
            "plb_cleanup": B.COLLECTED.value,  # its remote files are not deleted yet
        }
        assert events.history(s, events.Entity.BATCH, "plb_old") == []
        assert events.history(s, events.Entity.BATCH, "plb_busy")

        # money: the same ledger rows, the same totals, the same status counts
        assert s.execute(select(LEDGER).order_by(LEDGER.c.id)).all() == ledger_before
        assert ledger.spend(s) == spend_before
        assert requests.counts_by_state(s) == counts_before

    # the same keys dropped again are duplicates, not new work
    with factory() as s, s.begin():
        again = requests.ingest(s, [_request(k) for k in KEYS], NOW)
    assert (again.inserted, again.duplicates) == (0, len(KEYS))

    # a second pass finds nothing more
    assert _purge_all(factory, limit) == retention.Purged()


def test_retention_leaves_everything_younger_than_the_cutoff(
    factory: sessionmaker[Session], ids: dict[str, int]
) -> None:
    with factory() as s, s.begin():
        purged = retention.purge_chunk(s, OLD - timedelta(seconds=1))
    assert purged == retention.Purged()
    with factory() as s:
        assert s.execute(select(BATCH.c.id)).all()
        bodies = s.execute(select(BODY_JSON).select_from(REQUEST)).scalars().all()
    assert all("secret" in b for b in bodies)


def test_a_batch_is_deleted_once_its_last_request_is_final(
    factory: sessionmaker[Session], ids: dict[str, int]
) -> None:
    _purge_all(factory, 1000)
    with factory() as s, s.begin():  # the retry fails for good, long ago
        requests.transition_request(s, ids["old-failed"], R.DEAD, OLD)
        batches.update_batch(s, "plb_cleanup", OLD, expected=[B.COLLECTED], next_poll_at=None)
    purged = _purge_all(factory, 1000)
    assert (purged.requests, purged.batches) == (1, 2)
    with factory() as s:
        left = set(s.execute(select(BATCH.c.id)).scalars())
    assert left == {"plb_running"}
