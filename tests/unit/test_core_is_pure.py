"""planner/core is pure: no I/O modules imported, no open(), no wall-clock reads (DESIGN)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "planner" / "core"
BANNED_MODULES = frozenset(
    {
        "os", "pathlib", "io", "socket", "time", "subprocess", "yaml", "tiktoken", "sqlalchemy",
        "sqlmodel", "httpx", "requests", "openai", "google", "prometheus_client", "apscheduler",
        "shutil", "tempfile", "urllib",
    }
)  # fmt: skip
CLOCK_CALLS = frozenset({"now", "utcnow", "today"})
CLOCK_OWNERS = frozenset({"datetime", "date"})


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


def _owner(func: ast.Attribute) -> str | None:
    value = func.value
    if isinstance(value, ast.Name):
        return value.id
    return value.attr if isinstance(value, ast.Attribute) else None


def _bad_call(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Name) and func.id in {"open", "input", "print"}:
        return f"{func.id}()"
    if (
        isinstance(func, ast.Attribute)
        and func.attr in CLOCK_CALLS
        and _owner(func) in CLOCK_OWNERS
    ):
        return f"{_owner(func)}.{func.attr}()"
    return None


def violations(source: str, name: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source, name)):
        line = getattr(node, "lineno", 0)
        banned = [m for m in _imported(node) if m.split(".")[0] in BANNED_MODULES]
        found.extend(f"{name}:{line}: imports {module}" for module in banned)
        call = _bad_call(node)
        if call is not None:
            found.append(f"{name}:{line}: calls {call}")
    return found


def test_core_modules_are_pure() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 8  # the walk really sees the modules
    problems = [v for path in files for v in violations(path.read_text(), path.name)]
    assert problems == []


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import os.path",
        "from pathlib import Path",
        "import yaml",
        "from tiktoken import get_encoding",
        "from google.genai import types",
        "open('x')",
        "datetime.now(UTC)",
        "datetime.datetime.utcnow()",
        "date.today()",
        "import time",
    ],
)
def test_the_checker_catches(source: str) -> None:
    assert violations(source, "sample.py") != []


@pytest.mark.parametrize(
    "source",
    ["from datetime import datetime", "from planner.core.model import Request", "x.now()"],
)
def test_the_checker_allows(source: str) -> None:
    assert violations(source, "sample.py") == []
