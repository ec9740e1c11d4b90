"""The store functions behind deadline escape and the learned enqueued-token limit, on SQLite
and PostgreSQL: earliest deadlines per active batch, the cancel intent, learned limits that only
go down, in-flight tokens per queue, refunded attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from planner.core.enqueued import LearnedLimit
from planner.core.model import Endpoint, Request
from planner.core.states import BatchState, RequestState
from planner.store import batches, limits, requests

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _request(key: str, source: str, deadline: datetime | None, received: datetime) -> Request:
    return Request(
        source=source,
        key=key,
        model="gpt-4o-mini",
        endpoint=Endpoint.CHAT_COMPLETIONS,
        body={"messages": []},
        received_at=received,
        deadline=deadline,
    )


def _submitted_batch(
    s: Session, batch_id: str, keys: list[str], tokens: int = 100, model: str = "gpt-4o-mini"
) -> None:
    ids = [requests.get(s, src, key).id for src, key in (k.split("/") for k in keys)]  # type: ignore[union-attr]
    batches.create_batch_intent(
        s, batch_id, "openai", model, Endpoint.CHAT_COMPLETIONS, ids, NOW, est_input_tokens=tokens
    )
    batches.transition_batch(s, batch_id, ("planned",), "uploading", NOW)
    batches.transition_batch(s, batch_id, ("uploading",), "submitted", NOW, remote_id="r")
    requests.transition_requests(s, ids, RequestState.SUBMITTED, NOW, expected=("planned",))


def test_earliest_deadlines_per_batch_and_source(factory: sessionmaker[Session]) -> None:
    d1, d2 = NOW + timedelta(hours=30), NOW + timedelta(hours=26)
    early, late = NOW - timedelta(hours=3), NOW - timedelta(hours=1)
    with factory() as s, s.begin():
        requests.ingest(
            s,
            [
                _request("a", "spool", d1, late),
                _request("b", "spool", d2, late),
                _request("c", "spool", None, late),
                _request("d", "spool", None, early),
                _request("e", "other", d1, early),
            ],
            NOW,
        )
        _submitted_batch(s, "plb_1", ["spool/a", "spool/b", "spool/c", "spool/d", "other/e"])
    with factory() as s:
        found = {(g.batch_id, g.source): g for g in batches.deadlines_at_provider(s)}
    assert set(found) == {("plb_1", "spool"), ("plb_1", "other")}
    spool = found[("plb_1", "spool")]
    assert (spool.requests, spool.deadline, spool.undated_since) == (4, d2, early)
    other = found[("plb_1", "other")]
    assert (other.requests, other.deadline, other.undated_since) == (1, d1, None)

    # the intent: once, only for a batch at the provider; then it leaves the list
    with factory() as s, s.begin():
        assert batches.request_cancel(s, "plb_1", NOW, "deadline escape")
        assert not batches.request_cancel(s, "plb_1", NOW, "deadline escape")
        assert batches.deadlines_at_provider(s) == []
        assert [b.id for b in batches.cancels_to_send(s)] == ["plb_1"]
        batches.update_batch(s, "plb_1", NOW, cancel_sent_at=NOW)
        assert batches.cancels_to_send(s) == []
        got = batches.get_batch(s, "plb_1")
        assert got is not None and got.cancel_requested_at == NOW
        assert got.reason == "deadline escape"


def test_learned_limit_only_goes_down_and_in_flight_is_per_queue(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s, s.begin():
        requests.ingest(s, [_request(k, "spool", None, NOW) for k in "abcd"], NOW)
        _submitted_batch(s, "plb_held", ["spool/a"], tokens=700)
        _submitted_batch(s, "plb_refused", ["spool/b", "spool/c"], tokens=2_000)
        _submitted_batch(s, "plb_other", ["spool/d"], tokens=50, model="gpt-5-mini")
        assert batches.enqueued_tokens(s) == {
            ("openai", "gpt-4o-mini"): 2_700,
            ("openai", "gpt-5-mini"): 50,
        }
        assert batches.enqueued_tokens(s, exclude="plb_refused")[("openai", "gpt-4o-mini")] == 700
        # 700 tokens were accepted without the refused batch: the queue holds 700
        assert limits.learn_from_token_limit(s, "plb_refused", NOW) == 700
        refused = batches.get_batch(s, "plb_refused")
        assert refused is not None and (refused.reason or "").startswith("token_limit_exceeded")
    later = NOW + timedelta(hours=1)
    with factory() as s, s.begin():
        assert limits.record_learned_limit(s, "openai", "gpt-4o-mini", 5_000, later) == 700
        assert limits.record_learned_limit(s, "openai", "gpt-4o-mini", 300, later) == 300
        assert limits.learned_limits(s) == {("openai", "gpt-4o-mini"): LearnedLimit(300, later)}


def test_refunded_attempts_never_go_below_zero(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        requests.ingest(s, [_request("a", "spool", None, NOW)], NOW)
        stored = requests.get(s, "spool", "a")
        assert stored is not None
        batches.create_batch_intent(
            s, "plb_1", "openai", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, [stored.id], NOW
        )
        assert requests.refund_attempts(s, [stored.id], NOW) == 1
        assert requests.refund_attempts(s, [stored.id], NOW) == 0
        again = requests.get(s, "spool", "a")
        assert again is not None and again.attempts == 0


def test_queued_for_planning_moves_on_after_an_id(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        requests.ingest(s, [_request(k, "spool", None, NOW) for k in "abc"], NOW)
        ids = [r.id for r in requests.queued_for_planning(s)]
        after = [r.id for r in requests.queued_for_planning(s, after_id=ids[0])]
    assert after == ids[1:]
    assert BatchState.SUBMITTED in batches.AT_PROVIDER


def test_a_planning_round_takes_the_next_ids_across_its_states(
    factory: sessionmaker[Session],
) -> None:
    """Rounds over queued and held requests (each state read from its own place in id order,
    then merged): every round has the next ``limit`` ids of either state after the last one,
    in order, and the rounds together have each such request once."""
    keys = [f"k{i:02}" for i in range(23)]
    with factory() as s, s.begin():
        requests.ingest(s, [_request(k, "spool", None, NOW) for k in keys], NOW)
        ids = [r.id for r in requests.queued_for_planning(s)]
        held = ids[1::3] + ids[-4:]
        requests.transition_requests(s, held, RequestState.HELD, NOW, reason="budget")
        requests.transition_requests(s, ids[2::7], RequestState.REJECTED, NOW)
    plannable = [i for i in ids if i not in ids[2::7]]  # queued or held, in id order
    rounds: list[list[int]] = []
    last: int | None = None
    with factory() as s, s.begin():
        while True:
            got = [
                r.id
                for r in requests.queued_for_planning(
                    s, 5, after_id=last, states=(RequestState.QUEUED, RequestState.HELD)
                )
            ]
            if not got:
                break
            rounds.append(got)
            last = got[-1]
    assert [len(r) for r in rounds[:-1]] == [5] * (len(rounds) - 1)
    assert [i for r in rounds for i in r] == plannable
