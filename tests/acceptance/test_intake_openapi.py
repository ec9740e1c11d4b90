"""Schemathesis against the intake's own OpenAPI document, on a live uvicorn on loopback.

Every check schemathesis has (``--checks all``): no 5xx, every status and body as documented,
invalid input refused with a 4xx, valid input accepted, a missing token refused (401), the
``Allow`` header of a 405, created files and batches readable through the document's links.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.config.prices import shipped_catalog
from planner.config.schema import IntakeConfig
from planner.runtime.intake.server import IntakeServer, build_service, serve_intake
from planner.store.engine import make_engine, make_session_factory, upgrade

TOKEN = "schemathesis-token-1"


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[IntakeServer]:
    engine = make_engine(f"sqlite:///{tmp_path / 'planner.db'}")
    upgrade(engine)
    cfg = IntakeConfig.model_validate(
        {"enabled": True, "tokens_env": "TOKENS", "max_body": "1MB"},
        context={"base_dir": tmp_path},
    )
    service = build_service(cfg, make_session_factory(engine), shipped_catalog().family_of)
    running = serve_intake(cfg, service, {"TOKENS": TOKEN}, port=0)
    try:
        yield running
    finally:
        running.stop()
        engine.dispose()


def test_schemathesis_finds_no_failure(server: IntakeServer, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "schemathesis"
    done = subprocess.run(
        [
            str(cli),
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "14",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its replay files stay out of the repository
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "11 passed" in done.stdout or "Selected: 11/11" in done.stdout, done.stdout[-3000:]
