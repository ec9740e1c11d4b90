"""Test hygiene for every test: no provider keys or PLANNER_* leak in, tiktoken reads the
shared BPE files, and services CI provides are never silently skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_TIKTOKEN = (REPO.parent / "shared" / "tiktoken").resolve()

_PROVIDER_KEYS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_BASE_URL")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("PLANNER_") and name not in ("PLANNER_CI", "PLANNER_TEST_PG_URL"):
            monkeypatch.delenv(name)
    for name in _PROVIDER_KEYS:
        monkeypatch.delenv(name, raising=False)
    if "TIKTOKEN_CACHE_DIR" not in os.environ and SHARED_TIKTOKEN.is_dir():
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(SHARED_TIKTOKEN))
    yield


def require_service(what: str) -> None:
    """Skip locally when a service is missing, fail in CI (PLANNER_CI=1): never hide a gap."""
    if os.environ.get("PLANNER_CI"):
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} not available")
