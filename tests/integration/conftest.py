"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from planner.sandbox import RunningSandbox, serve


@pytest.fixture()
def sandbox_factory() -> Iterator[Callable[..., RunningSandbox]]:
    """Start sandboxes (``faults`` optional, jobs finish at once); all stopped afterwards."""
    running: list[RunningSandbox] = []

    def start(faults: str | None = None) -> RunningSandbox:
        sandbox = serve(speed=0.0, faults=faults)
        running.append(sandbox)
        return sandbox

    yield start
    for sandbox in running:
        sandbox.stop()
