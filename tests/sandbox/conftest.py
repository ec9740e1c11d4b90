"""Fixtures for the sandbox's own tests and for anything that needs a provider emulator.

``sandbox``: a RunningSandbox on a free 127.0.0.1 port (one server per session, started on first
use) whose state is wiped before every test: no files, jobs or ledger entries, default limits,
no faults, and an instant job clock (seconds_per_state = 0) that only moves when a test calls
``sandbox.state.clock.advance``. Tests that need jobs to linger set
``sandbox.state.clock.seconds_per_state`` before creating them; tests that need faults assign
``sandbox.state.faults = FaultPlan.from_spec("...")`` or POST to ``/_sandbox/faults``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from planner.sandbox import FaultPlan, Limits, RunningSandbox, SandboxClock, serve


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[RunningSandbox]:
    running = serve(port=0, speed=0.0, manual_clock=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def sandbox(_sandbox_server: RunningSandbox) -> RunningSandbox:
    state = _sandbox_server.state
    with state.lock:
        state.reset()
        state.clock = SandboxClock(0.0, manual=True)
        state.faults = FaultPlan()
        state.limits = Limits()
    return _sandbox_server


@pytest.fixture
def sandbox_url(sandbox: RunningSandbox) -> str:
    return sandbox.url


@pytest.fixture
def gemini(sandbox: RunningSandbox) -> Any:
    """The unmodified google-genai client pointed at the sandbox (v1beta, no retries)."""
    from google import genai
    from google.genai import types

    return genai.Client(
        api_key="test",
        http_options=types.HttpOptions(base_url=sandbox.url, api_version="v1beta"),
    )
