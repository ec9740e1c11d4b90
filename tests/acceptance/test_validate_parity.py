"""`validate` refuses exactly what `run` refuses, each problem at FILE:LINE:COL, exit 2, one
line each, never a traceback and never a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BASE = """state_dir: state
providers:
  openai: {kind: openai}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini}
sinks:
  out: {kind: jsonl_dir, path: results}
"""
SECRET = "pw-PLANTED-0123456789"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planner", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        (
            "intake:\n  enabled: true\n  tokens_env: PLANNER_TEST_TOKENS\n",
            {},
            ":10:15: intake.tokens_env $PLANNER_TEST_TOKENS: no bearer tokens",
        ),
        (
            "store:\n  url_env: PLANNER_TEST_DB\n",
            {"PLANNER_TEST_DB": f"postgresql://user:{SECRET}@db:notaport/planner"},
            ":9:12: $PLANNER_TEST_DB holds an invalid database URL",
        ),
        (
            "store:\n  url_env: PLANNER_TEST_DB\n",
            {"PLANNER_TEST_DB": f"postgresql+psycopg://user:{SECRET}@:5432/planner"},
            "a PostgreSQL URL needs a host and a port from 1 to 65535",
        ),
        (
            "store:\n  url_env: PLANNER_TEST_DB\n",
            {"PLANNER_TEST_DB": f"mysql://user:{SECRET}@db/planner"},
            "unsupported database mysql://user:***@db/planner",
        ),
        ("store:\n  url_env: PLANNER_TEST_UNSET\n", {}, ":9:12: $PLANNER_TEST_UNSET is not set"),
    ],
)
def test_validate_refuses_what_run_refuses(
    tmp_path: Path, extra: str, env: dict[str, str], expected: str
) -> None:
    config = tmp_path / "planner.yaml"
    config.write_text(BASE + extra)
    (tmp_path / "spool").mkdir()
    validate = _cli("validate", "-c", str(config), env=env)
    run = _cli("run", "--once", "--sandbox", "-c", str(config), env=env)
    assert (validate.returncode, run.returncode) == (2, 2), (validate.stderr, run.stderr)
    assert validate.stderr == run.stderr  # the same problems, word for word
    (line,) = validate.stderr.splitlines()
    assert line.startswith(f"{config}:") and expected in line, line
    assert "Traceback" not in run.stderr
    assert SECRET not in validate.stdout + validate.stderr + run.stdout + run.stderr
