"""The interactive outbox (``store/sends.py``) on every store backend.

What the lane's at-most-once sending rests on: an intent is taken only while the request waits
in its lane at that attempt and nobody else sends it; an answer is kept only by the intent's
owner; a settled request's row goes; a waiting request with a row is not offered again.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from planner.core.model import Lane
from planner.core.states import RequestState
from planner.store import requests, sends
from tests.contract.test_store import NOW, ingest

LEASE = timedelta(minutes=30)


def interactive(factory: sessionmaker[Session], keys: list[str]) -> list[int]:
    ids = ingest(factory, keys)
    with factory() as s, s.begin():
        requests.transition_requests(
            s, ids, RequestState.INTERACTIVE, NOW, lane=Lane.INTERACTIVE.value, provider="openai"
        )
    return ids


def attempts_of(factory: sessionmaker[Session], request_id: int) -> int:
    with factory() as s:
        return requests.load(s, [request_id])[0].attempts


def begin(factory: sessionmaker[Session], request_id: int, attempt: int, owner: str) -> bool:
    with factory() as s, s.begin():
        return sends.begin(s, request_id, attempt, owner, NOW, LEASE)


def test_one_intent_per_request_and_only_while_it_waits(factory: sessionmaker[Session]) -> None:
    first, second = interactive(factory, ["a", "b"])
    attempt = attempts_of(factory, first)
    assert attempt == 1  # entering the lane is an attempt
    assert not begin(factory, first, attempt + 1, "w1"), "a stale attempt is not sent"
    assert begin(factory, first, attempt, "w1")
    assert not begin(factory, first, attempt, "w2"), "another worker may not send it too"
    assert begin(factory, first, attempt, "w1"), "the owner renews its own intent (429 retry)"
    # a queued request is not in a sending lane
    queued = ingest(factory, ["c"])[-1]
    assert not begin(factory, queued, 0, "w1")
    with factory() as s:
        (row,) = sends.load(s)
        unsent = [r.id for r in requests.queued_for_planning(s, states=sends.SENDABLE, unsent=True)]
    assert (row.request_id, row.owner, row.answer_json, row.lease_until) == (
        first,
        "w1",
        None,
        NOW + LEASE,
    )
    assert unsent == [second]


def test_only_the_owner_answers_or_withdraws(factory: sessionmaker[Session]) -> None:
    (rid,) = interactive(factory, ["a"])
    assert begin(factory, rid, 1, "w1")
    with factory() as s, s.begin():
        assert not sends.answer(s, rid, "w2", '{"ok":true}', NOW)
        assert not sends.withdraw(s, rid, "w2")
        assert sends.answer(s, rid, "w1", '{"ok":true}', NOW)
        assert not sends.answer(s, rid, "w1", '{"ok":false}', NOW), "answered once"
        assert not sends.withdraw(s, rid, "w1"), "an answered send is never withdrawn"
    with factory() as s:
        (row,) = sends.load(s)
    assert row.answer_json == '{"ok":true}' and row.answered_at == NOW
    assert not begin(factory, rid, 1, "w1"), "an answered send is not sent again"


def test_withdraw_frees_the_request_and_finish_deletes(factory: sessionmaker[Session]) -> None:
    first, second = interactive(factory, ["a", "b"])
    assert begin(factory, first, 1, "w1") and begin(factory, second, 1, "w1")
    with factory() as s, s.begin():
        assert sends.withdraw(s, first, "w1")
    assert begin(factory, first, 1, "w2"), "a withdrawn intent leaves the request free"
    with factory() as s, s.begin():
        sends.answer(s, first, "w2", "{}", NOW)
        sends.answer(s, second, "w1", "{}", NOW)
        sends.assign_delivery(s, [first], "d1")
        sends.assign_delivery(s, [first, second], "d2")
    with factory() as s:
        named = {r.request_id: r.delivery_id for r in sends.load(s)}
    assert named == {first: "d1", second: "d2"}, "a delivery name, once given, is kept"
    with factory() as s, s.begin():
        assert sends.finish(s, [first, second]) == 2
    with factory() as s:
        assert sends.load(s) == []


def test_requeue_takes_only_the_named_dead_letters(factory: sessionmaker[Session]) -> None:
    lost, other, bad, done = interactive(factory, ["lost", "other", "bad", "done"])
    with factory() as s, s.begin():
        for rid, message in (
            (lost, "unknown_outcome: sent to openai, but no answer came back"),
            (other, "unknown_outcome: sent to openai, but the sender stopped"),
            (bad, "Permanent: 400 bad request"),
        ):
            requests.transition_request(s, rid, RequestState.FAILED, NOW, error_message=message)
            requests.transition_request(s, rid, RequestState.DEAD, NOW, reason=message)
        requests.transition_request(s, done, RequestState.SUCCEEDED, NOW)
        # a move that does not name "dead" never revives a dead request
        assert requests.transition_requests(s, [lost, bad], RequestState.QUEUED, NOW) == 0
    with factory() as s, s.begin():
        listed = requests.requeue_dead(s, NOW, error_code="unknown_outcome", dry_run=True)
    assert [r.key for r in listed] == ["lost", "other"]
    with factory() as s:
        assert {r.state for r in requests.load(s, [lost, other])} == {RequestState.DEAD}
    with factory() as s, s.begin():
        assert requests.requeue_dead(s, NOW, error_code="unknown_out") == [], "whole codes only"
        moved = requests.requeue_dead(s, NOW, error_code="unknown_outcome", source="spool")
    assert [r.key for r in moved] == ["lost", "other"]
    with factory() as s:
        rows = {r.request.key: r for r in requests.load(s, [lost, other, bad, done])}
    assert {k: r.state for k, r in rows.items()} == {
        "lost": RequestState.QUEUED,
        "other": RequestState.QUEUED,
        "bad": RequestState.DEAD,
        "done": RequestState.SUCCEEDED,
    }
    assert rows["lost"].attempts == 1, "attempts are kept: the next send is attempt 2"
    assert rows["lost"].reason == "requeued by the operator after unknown_outcome"
