"""Replicas sharing one spool folder through leases in the store (issue 14, item 4).

Before leases, a replica starting up took every file in ``.claimed/`` for an interrupted claim
and put it back while its owner was still reading it (``spool_recovered`` 14 ms after the claim,
then ``source_failed ... No such file or directory``). Now a live replica's file is never
recovered by another, a dead replica's file is read again once its lease ran out, and a replica
that lost its file to another says so at INFO: contention is not a failure.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from planner.config import load_config
from planner.core.model import ProviderKind
from planner.pipeline.intake import IntakeResult, ingest_all, ingest_source
from planner.pipeline.leases import StoreUnitLeases
from planner.pipeline.plan_stage import PLAN_LOCK, run_plan_stage
from planner.runtime import clock
from planner.runtime.wiring import build_context
from planner.sources import JsonlDirSource
from planner.store import claims
from planner.store import requests as store_requests
from planner.store.engine import make_engine, make_session_factory, upgrade
from planner.store.tables import REQUEST, UNIT_CLAIM
from tests.contract.store_backends import BACKENDS, backend_url, pg_schema_url

LINES = 20


@pytest.fixture(params=BACKENDS)
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Session]]:
    with backend_url(request.param, tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield make_session_factory(engine)
        finally:
            engine.dispose()


def replica(
    spool: Path,
    factory: Callable[[], Session],
    owner: str,
    lease: timedelta = timedelta(minutes=2),
) -> JsonlDirSource:
    return JsonlDirSource(
        "spool",
        spool,
        family_of=lambda model: ProviderKind.OPENAI,
        default_model="gpt-4o-mini",
        settle=timedelta(0),
        leases=StoreUnitLeases(factory, "spool", owner, lease),
    )


def drop(spool: Path, name: str, n: int = LINES) -> None:
    stem = name.removesuffix(".jsonl")
    rows = [json.dumps({"id": f"{stem}-{i}", "prompt": f"Line {i}."}) for i in range(n)]
    (spool / name).write_text("\n".join(rows) + "\nnot json\n")


def stored(factory: Callable[[], Session]) -> int:
    with factory() as session:
        return int(session.execute(select(func.count()).select_from(REQUEST)).scalar_one())


def leases_left(factory: Callable[[], Session]) -> int:
    with factory() as session:
        return int(session.execute(select(func.count()).select_from(UNIT_CLAIM)).scalar_one())


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What an operator would read as trouble: warnings and errors other than bad lines."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and getattr(r, "event", "") != "line_quarantined"
    ]


def test_a_live_claim_is_never_recovered_by_another_replica(
    tmp_path: Path, factory: Callable[[], Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    spool = tmp_path / "spool"
    spool.mkdir()
    drop(spool, "a.jsonl")
    a, b = replica(spool, factory, "a"), replica(spool, factory, "b")
    now = clock.utc_now()
    (claim,) = list(a.claim(now))
    lines = claim.lines()
    first = [next(lines) for _ in range(5)]  # a is mid-file ...
    assert b.recover(clock.utc_now()) == 0  # ... when b starts up: the file stays a's
    assert ingest_all([b], factory, clock.utc_now()).units == 0
    assert (spool / ".claimed" / "a.jsonl").is_file()
    items = first + list(lines)  # a reads on, undisturbed
    with factory() as session, session.begin():
        store_requests.ingest(session, [r for r in items if not hasattr(r, "reason")], now)
    claim.finish(now)
    assert stored(factory) == LINES
    assert sorted(p.name for p in (spool / "done").iterdir()) == ["a.jsonl"]
    assert list((spool / ".claimed").iterdir()) == [] and leases_left(factory) == 0
    events = [getattr(r, "event", "") for r in caplog.records]
    assert "spool_recovered" not in events and failures(caplog) == []


def test_a_killed_process_on_this_host_leaves_its_file_to_the_next_at_once(
    tmp_path: Path, factory: Callable[[], Session]
) -> None:
    """A lease held by a process of this host that no longer runs (kill -9, then a restart)
    does not have to run out: the restarted process reads the file again straight away."""
    spool = tmp_path / "spool"
    spool.mkdir()
    drop(spool, "a.jsonl")
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    elsewhere = replica(spool, factory, "other-host:1:feedfacecafe")
    (claim,) = list(elsewhere.claim(clock.utc_now()))
    del claim  # a replica on another host holds it: this host cannot tell it died, so it waits
    restarted = replica(spool, factory, f"{socket.gethostname()}:{os.getpid()}:abcdefabcdef")
    assert ingest_all([restarted], factory, clock.utc_now()).units == 0
    with factory() as session, session.begin():  # as if that replica had been this host's
        session.execute(
            update(UNIT_CLAIM).values(owner=f"{socket.gethostname()}:{int(done.stdout)}:0123")
        )
    assert ingest_all([restarted], factory, clock.utc_now()).units == 1
    assert stored(factory) == LINES and leases_left(factory) == 0


def test_a_lease_renewed_moments_ago_is_not_written_again(factory: Callable[[], Session]) -> None:
    """Within a quarter of the lease of its last write a renewal writes nothing (the lease has
    three quarters left); after that it is written, and a lease taken meanwhile is not ours."""
    seconds = [0.0]
    leases = StoreUnitLeases(factory, "spool", "a", timedelta(minutes=2), lambda: seconds[0])
    assert leases.acquire("f.jsonl")

    def lease_until() -> object:
        with factory() as session:
            return session.execute(select(UNIT_CLAIM.c.lease_until)).scalar_one()

    written = lease_until()
    seconds[0] = 29.0
    assert leases.renew("f.jsonl") and lease_until() == written  # nothing written
    seconds[0] = 31.0
    with factory() as session, session.begin():  # as if b had taken it over meanwhile
        session.execute(update(UNIT_CLAIM).values(owner="b"))
    assert not leases.renew("f.jsonl")  # written, so b's claim is seen
    assert not leases.renew("f.jsonl")  # and never answered from memory again


def test_a_dead_replicas_file_is_taken_over_and_its_owner_steps_aside(
    tmp_path: Path, factory: Callable[[], Session], caplog: pytest.LogCaptureFixture
) -> None:
    """a's lease runs out (lease 0: as if it had stalled past it) while it reads; b takes the
    file over, ingests it and finishes it; a then finds the lease gone and stops, quietly."""
    caplog.set_level(logging.INFO)
    spool = tmp_path / "spool"
    spool.mkdir()
    drop(spool, "a.jsonl")
    b = replica(spool, factory, "b")
    taken_over: list[IntakeResult] = []

    class Stalling(StoreUnitLeases):
        def renew(self, unit: str) -> bool:
            taken_over.append(ingest_all([b], factory, clock.utc_now()))  # b acts meanwhile
            return super().renew(unit)

    a = replica(spool, factory, "a")
    a.leases = Stalling(factory, "spool", "a", timedelta(0))
    result = ingest_source(a, factory, clock.utc_now())
    assert result.units == 0, "a did not finish a file it no longer held"
    assert [r.units for r in taken_over] == [1] and stored(factory) == LINES
    assert sorted(p.name for p in (spool / "done").iterdir()) == ["a.jsonl"]
    quarantine = (spool / "quarantine" / "a.jsonl.errors.jsonl").read_text().splitlines()
    assert len(quarantine) == 1, "the bad line is kept once, by the replica that finished"
    assert list((spool / ".claimed").iterdir()) == [] and leases_left(factory) == 0
    events = [(r.levelno, getattr(r, "event", "")) for r in caplog.records]
    assert (logging.INFO, "unit_taken_over") in events
    assert (logging.WARNING, "spool_recovered") in events  # b's recovery of a's stale claim
    assert [m for m in failures(caplog) if "recovered" not in m] == []


def test_two_replicas_drain_one_spool_each_file_once(
    tmp_path: Path, factory: Callable[[], Session], caplog: pytest.LogCaptureFixture
) -> None:
    """Two replicas run intake passes at once over 30 files: every line is stored once, every
    file ends in done/ once, and nobody logs a failure or a recovery."""
    caplog.set_level(logging.INFO)
    spool = tmp_path / "spool"
    spool.mkdir()
    names = [f"f{i:02d}.jsonl" for i in range(30)]
    for name in names:
        drop(spool, name, 10)
    replicas = [replica(spool, factory, owner) for owner in ("a", "b")]
    done: dict[str, int] = {}
    start = threading.Barrier(2)

    def work(source: JsonlDirSource, owner: str) -> None:
        start.wait()
        units = 0
        for _ in range(10):
            units += ingest_all([source], factory, clock.utc_now()).units
        done[owner] = units

    threads = [
        threading.Thread(target=work, args=(s, o)) for s, o in zip(replicas, "ab", strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(done.values()) == len(names)
    assert stored(factory) == 10 * len(names)
    assert sorted(p.name for p in (spool / "done").iterdir()) == names
    assert [p.name for p in spool.glob("*.jsonl")] == []
    assert list((spool / ".claimed").iterdir()) == [] and leases_left(factory) == 0
    events = [getattr(r, "event", "") for r in caplog.records]
    assert "spool_recovered" not in events and "source_failed" not in events
    assert failures(caplog) == []


CONFIG = """
state_dir: state
store: {{url: "{url}"}}
providers:
  openai: {{kind: openai}}
sources:
  spool: {{kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s}}
sinks:
  out: {{kind: jsonl_dir, path: results}}
"""


def test_planning_waits_its_turn_instead_of_failing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While another replica plans (holds the plan lock), a planning pass does nothing and
    says so at INFO; it used to pack the same requests and fail ("only 0 of 20 requests were
    still available")."""
    caplog.set_level(logging.INFO)
    spool = tmp_path / "spool"
    spool.mkdir()
    drop(spool, "a.jsonl")
    with pg_schema_url() as url:
        (tmp_path / "planner.yaml").write_text(CONFIG.format(url=url))
        ctx = build_context(load_config(tmp_path / "planner.yaml"), sandbox_url="http://unused")
        ingest_all(ctx.sources, ctx.session_factory, clock.utc_now())
        with ctx.session_factory() as other, other.begin():
            assert claims.try_advisory_lock(other, PLAN_LOCK)  # the other replica plans
            busy = run_plan_stage(ctx.planner, ctx.session_factory, clock.utc_now(), 50)
        planned = run_plan_stage(ctx.planner, ctx.session_factory, clock.utc_now(), 50)
        with ctx.session_factory() as session:
            states = store_requests.counts_by_state(session)
    assert busy.batches == 0 and sum(busy.lanes.values()) == 0
    assert planned.batches == 1 and states["planned"] == sum(states.values()) == LINES
    events = [getattr(r, "event", "") for r in caplog.records]
    assert "plan_busy_elsewhere" in events
    assert failures(caplog) == []
