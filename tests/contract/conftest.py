"""Fixtures for the contract suites: a provider emulator per test.

``sandbox``: planner.sandbox served on a free 127.0.0.1 port, fresh state, a manual clock (only
``advance`` moves it) and 10 s per job state, so tests can watch a batch go pending -> running
-> finished by advancing the clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from planner.sandbox import RunningSandbox, serve

SECONDS_PER_STATE = 10.0


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    running = serve(port=0, speed=SECONDS_PER_STATE, manual_clock=True)
    try:
        yield running
    finally:
        running.stop()
