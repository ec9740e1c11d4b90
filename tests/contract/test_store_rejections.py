"""Rejected requests waiting for their dead-letter line (``store/rejections.py``), on every
store backend: one rejection time at a time, oldest first, each taken until marked written,
never a request in another state, never one whose line is written."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from planner.core.states import RequestState
from planner.store import rejections, requests
from tests.contract.test_store import NOW, ingest

LATER = NOW + timedelta(minutes=5)


def reject(factory: sessionmaker[Session], ids: list[int], when: datetime, why: str) -> None:
    with factory() as s, s.begin():
        requests.transition_requests(s, ids, RequestState.REJECTED, when, reason=why)


def test_rejected_requests_are_taken_by_rejection_time_until_marked(
    factory: sessionmaker[Session],
) -> None:
    first, second, third, waiting = ingest(factory, ["a", "b", "c", "d"])
    reject(factory, [third], LATER, "too_large: alone it breaks max_bytes")
    reject(factory, [first, second], NOW, "no_provider: no configured provider")
    with factory() as s:
        oldest = rejections.undelivered(s, 10)
        assert [r.id for r in oldest] == [first, second]  # the oldest rejection time only
        assert [r.id for r in rejections.undelivered(s, 1)] == [first]
        assert oldest[0].reason == "no_provider: no configured provider"
    with factory() as s, s.begin():
        assert rejections.mark_delivered(s, oldest) == 2
        assert rejections.mark_delivered(s, oldest) == 0  # written once
    with factory() as s:
        assert [r.id for r in rejections.undelivered(s, 10)] == [third]
        (done,) = requests.load(s, [first])
        assert done.state is RequestState.REJECTED
    with factory() as s, s.begin():
        rejections.mark_delivered(s, rejections.undelivered(s, 10))
    with factory() as s:
        assert rejections.undelivered(s, 10) == []  # the queued one is never taken
        assert requests.load(s, [waiting])[0].state is RequestState.QUEUED
