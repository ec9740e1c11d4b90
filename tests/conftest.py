"""Test hygiene for every test: no provider keys or PLANNER_* leak in, tiktoken reads the
shared BPE files, and services CI provides are never silently skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    # Always through monkeypatch, so the value is restored after each test: the tokenizer
    # adapter writes TIKTOKEN_CACHE_DIR itself when given a cache dir (tiktoken reads only the
    # environment), and a temporary folder left there would make later subprocesses fall back.
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
    if cache_dir is None and SHARED_TIKTOKEN.is_dir():
        cache_dir = str(SHARED_TIKTOKEN)
    if cache_dir is not None:
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", cache_dir)
    yield


def require_service(what: str) -> None:
    """Skip locally when a service is missing, fail in CI (PLANNER_CI=1): never hide a gap."""
    if os.environ.get("PLANNER_CI"):
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} not available")


def planner_status(config: Path) -> dict[str, dict[str, int]]:
    """`planner status --json` of a config, run as a user runs it (a separate process)."""
    done = subprocess.run(
        [sys.executable, "-m", "planner", "status", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, dict[str, int]] = json.loads(done.stdout)
    return data
