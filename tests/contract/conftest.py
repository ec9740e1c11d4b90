"""Fixtures for the contract suites: a provider emulator per test, a store per backend.

``engine`` / ``factory``: a migrated store on every backend of ``store_backends.BACKENDS``
(SQLite always, PostgreSQL where configured; CI requires it), one per test.

``sandbox``: planner.sandbox served on a free 127.0.0.1 port, fresh state, a manual clock (only
``advance`` moves it) and 10 s per job state, so tests can watch a batch go pending -> running
-> finished by advancing the clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from planner.sandbox import RunningSandbox, serve
from planner.store.engine import make_engine, make_session_factory, upgrade
from tests.contract.store_backends import BACKENDS, backend_url

SECONDS_PER_STATE = 10.0


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    running = serve(port=0, speed=SECONDS_PER_STATE, manual_clock=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with backend_url(request.param, tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)
