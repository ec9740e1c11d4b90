"""The webhook sink (issue 14, item 3) against a real HTTP receiver on 127.0.0.1.

A receiver that is down loses nothing: the results are settled (ledger, states) and wait in the
store's outbox; a later process (a restart) delivers each once the receiver is up, signed with
HMAC-SHA256 over the body and with one idempotency key per result. Failures back off; 4xx and
5xx keep the record; the secret reaches no log, error or table.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from planner.config import load_config
from planner.errors import Permanent, RateLimited, Transient
from planner.pipeline.outbox import run_outbox_stage
from planner.runtime import clock
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context
from planner.sinks.webhook import WebhookSink, encode, signature
from planner.store import outbox as store_outbox
from planner.store import requests as store_requests
from planner.store.tables import OUTBOX
from tests.integration.webhook_receiver import Receiver, free_port

SECRET = "whsec-test-5f1d2c9a8b7e6d5c4b3a"
N = 8
CONFIG = """
state_dir: state
providers:
  openai: {{kind: openai}}
sources:
  spool: {{kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, sink: hook}}
sinks:
  hook: {{kind: webhook, url: "{url}", secret_env: HOOK_SECRET, retry_base: 1s, retry_cap: 1m}}
metrics: {{enabled: false}}
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port(), SECRET)
    yield r
    r.stop()


def workspace(tmp_path: Path, url: str, *, urgent: bool = False, rejected: bool = False) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    deadline = ', "deadline": "1h"' if urgent else ""
    lines = [f'{{"id": "r{i}", "prompt": "Say {i}."{deadline}}}' for i in range(N)]
    if rejected:  # no configured provider serves it: rejected when planned, a dead letter
        lines.append('{"id": "g1", "model": "gemini-2.5-flash", "prompt": "Hi."}')
    (spool / "in.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "planner.yaml").write_text(CONFIG.format(url=url))
    return tmp_path / "planner.yaml"


def pending(session_factory: Callable[[], Any]) -> list[dict[str, Any]]:
    with session_factory() as session:
        return [dict(r._mapping) for r in session.execute(select(OUTBOX))]


def test_a_receiver_down_at_first_gets_every_result_once_after_a_restart(
    tmp_path: Path,
    receiver: Receiver,
    sandbox_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    sandbox = sandbox_factory()
    config = workspace(tmp_path, receiver.url, rejected=True)
    cfg = load_config(config)
    ctx = build_context(cfg, sandbox_url=sandbox.url)
    summary = run_once(ctx)  # the receiver is not listening yet
    assert summary.stages["outbox"] == {"delivered": 0, "failed": 1}, "one try, then it waits"
    with ctx.session_factory() as session:
        states = store_requests.counts_by_state(session)
    assert states["succeeded"] == N, "the results are settled while the receiver is down"
    rows = pending(ctx.session_factory)
    assert len(rows) == N + 1
    assert sorted(r["event"] for r in rows) == ["dead"] + ["result"] * N
    assert [r["attempts"] for r in rows].count(1) == 1 and rows[0]["last_error"].startswith(
        "webhook hook: ConnectError"
    )
    assert all(SECRET not in json.dumps(r, default=str) for r in rows)
    # a pass before the back-off is over leaves the rows alone
    again = run_outbox_stage(ctx, clock.utc_now() - timedelta(seconds=1))
    assert again.delivered == {} and receiver.received == []

    receiver.start()
    restarted = build_context(load_config(config), sandbox_url=sandbox.url)  # a new process
    done = run_outbox_stage(restarted, clock.utc_now() + timedelta(minutes=2))
    assert done.delivered == {"hook": N + 1} and pending(restarted.session_factory) == []
    by_id = {r.body["id"]: r for r in receiver.received}
    assert sorted(by_id) == ["g1"] + [f"r{i}" for i in range(N)] and len(receiver.received) == N + 1
    assert all(r.signature_ok for r in receiver.received)
    assert by_id["g1"].event == "dead" and by_id["g1"].body["reason"] == "no_provider"
    assert {by_id[f"r{i}"].event for i in range(N)} == {"result"}
    keys = [r.key for r in receiver.received]
    assert len(set(keys)) == N + 1 and all(k.startswith("plk_") for k in keys)
    assert {r.key for r in receiver.received} == {r["key"] for r in rows}, "keys survive retries"
    body = by_id["r0"].body
    assert body["response"] and body["cost_usd"] is not None and body["lane"] == "batch"
    assert run_outbox_stage(restarted, clock.utc_now() + timedelta(hours=1)).delivered == {}
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert SECRET not in logged


def test_refusals_back_off_and_keep_the_record(
    tmp_path: Path,
    receiver: Receiver,
    sandbox_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """503 then 429 (Retry-After 7 s) then 400: each keeps the record with a later attempt
    time; a 400 does not stop the other records; at last every record arrives once."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    receiver.script = [503]
    receiver.start()
    config = workspace(tmp_path, receiver.url, urgent=True)  # interactive lane this time
    ctx = build_context(load_config(config), sandbox_url=sandbox_factory().url)
    run_once(ctx)
    assert receiver.refused == 1 and receiver.received == [], "a 5xx: the rest waits"
    (first,) = [r for r in pending(ctx.session_factory) if r["attempts"]]
    now = clock.utc_now()
    receiver.script = [429]
    result = run_outbox_stage(ctx, now + timedelta(minutes=2), rng=random.Random(1))
    assert result.failed == {"hook": 1} and result.delivered == {}
    (hinted,) = [r for r in pending(ctx.session_factory) if r["attempts"] == 2]
    assert hinted["id"] == first["id"]
    wait = (hinted["next_attempt_at"] - (now + timedelta(minutes=2))).total_seconds()
    assert 7 <= wait <= 7.8, "Retry-After wins, with a little jitter on top"
    receiver.script = [400]
    result = run_outbox_stage(ctx, now + timedelta(minutes=4))
    assert result.failed == {"hook": 1} and result.delivered == {"hook": N - 1}
    (kept,) = pending(ctx.session_factory)
    assert kept["attempts"] == 3 and kept["last_error"] == "webhook hook answered HTTP 400"
    assert kept["next_attempt_at"] >= now + timedelta(minutes=4, seconds=59), "longest back-off"
    result = run_outbox_stage(ctx, now + timedelta(minutes=6))
    assert result.delivered == {"hook": 1} and pending(ctx.session_factory) == []
    assert sorted(r.body["id"] for r in receiver.received) == [f"r{i}" for i in range(N)]
    assert {r.body["lane"] for r in receiver.received} == {"interactive"}


def test_sink_maps_answers_onto_the_error_tree(receiver: Receiver) -> None:
    sink = WebhookSink("hook", receiver.url, SECRET, timeout=5)
    with pytest.raises(Transient, match="ConnectError"):
        sink.deliver("k1", [{"id": "a"}], [])
    receiver.script = [500, 408, 429, 404]
    receiver.start()
    with pytest.raises(Transient, match="HTTP 500"):
        sink.deliver("k1", [{"id": "a"}], [])
    with pytest.raises(Transient, match="HTTP 408"):
        sink.deliver("k1", [{"id": "a"}], [])
    with pytest.raises(RateLimited) as limited:
        sink.deliver("k1", [{"id": "a"}], [])
    assert limited.value.retry_after == 7
    with pytest.raises(Permanent, match="HTTP 404"):
        sink.deliver("k1", [{"id": "a"}], [])
    sink.deliver("k2", [{"id": "b"}], [{"id": "c", "error": {"code": "x"}}])
    assert [(r.key, r.event, r.body["id"]) for r in receiver.received] == [
        ("k2.1", "result", "b"),
        ("k2.2", "dead", "c"),
    ]
    assert all(r.signature_ok for r in receiver.received)
    assert SECRET not in repr(sink)
    body = encode({"id": "é"})
    assert body == '{"id":"é"}'.encode()
    assert (
        signature(SECRET, body)
        == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    )
    sink.close()


def test_outbox_rows_are_claimed_by_one_sender_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from planner.store.engine import make_engine, make_session_factory, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    now = clock.utc_now()
    entries = [store_outbox.Entry("hook", f"k{i}", "result", "{}") for i in range(3)]
    with factory() as s, s.begin():
        assert store_outbox.enqueue(s, entries + entries[:1], now) == 3
        assert store_outbox.enqueue(s, entries, now) == 0, "a key a sink holds is kept once"
    with factory() as s, s.begin():
        mine = store_outbox.claim_due(s, "a", ["hook"], 2, timedelta(minutes=5), now)
        theirs = store_outbox.claim_due(s, "b", ["hook"], 5, timedelta(minutes=5), now)
    assert [p.key for p in mine] == ["k0", "k1"] and [p.key for p in theirs] == ["k2"]
    with factory() as s, s.begin():
        assert not store_outbox.delivered(s, mine[0].id, "b"), "only its sender"
        assert store_outbox.delivered(s, mine[0].id, "a")
        assert store_outbox.failed(s, mine[1].id, "a", now + timedelta(minutes=1), "HTTP 500")
        assert store_outbox.release(s, [theirs[0].id], "b") == 1
        assert store_outbox.pending_by_sink(s) == {"hook": 2}
    with factory() as s, s.begin():
        due = store_outbox.claim_due(s, "c", ["hook"], 5, timedelta(minutes=5), now)
    assert [p.key for p in due] == ["k2"], "k1 waits for its next attempt time"
    engine.dispose()
