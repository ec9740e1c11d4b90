"""deploy/planner.service passes systemd's own checks (spec §4.1, §7.5)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_service

UNIT = REPO / "deploy" / "planner.service"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"


def analyze() -> str:
    if not Path(SYSTEMD_ANALYZE).exists():
        require_service("systemd-analyze")
    return SYSTEMD_ANALYZE


def directives(text: str) -> dict[str, list[str]]:
    """Unit directives as key -> values (keys such as LoadCredential= repeat)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def entry_point() -> str:
    """The installed ``planner`` script of this environment (what /usr/bin/planner will be)."""
    candidate = Path(sys.executable).parent / "planner"
    found = str(candidate) if candidate.exists() else shutil.which("planner")
    assert found, "the planner console script is not installed (pip install -e .)"
    return found


def test_verify_is_clean(tmp_path: Path) -> None:
    # `systemd-analyze verify` fails when ExecStart's binary does not exist, and
    # /usr/bin/planner exists only on an installed host. So verify a copy whose ExecStart
    # points at this environment's real planner script; every other line is unchanged.
    text = UNIT.read_text()
    assert text.count("ExecStart=/usr/bin/planner ") == 1
    copy = tmp_path / "planner.service"
    copy.write_text(text.replace("ExecStart=/usr/bin/planner ", f"ExecStart={entry_point()} "))
    result = subprocess.run(
        [analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "planner.service" not in result.stdout + result.stderr  # no warnings either


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    copy = tmp_path / "planner.service"
    copy.write_text(UNIT.read_text().replace("/usr/bin/planner", str(tmp_path / "missing")))
    result = subprocess.run(
        [analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_security_exposure_at_most_2_0() -> None:
    result = subprocess.run(
        [analyze(), "security", "--offline=true", "--threshold=20", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for planner\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) <= 2.0


def test_life_cycle_and_credentials_settings() -> None:
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"]  # notify-reload is 253+; Debian 12 ships 252
    assert d["NotifyAccess"] == ["main"]
    assert d["ExecStart"] == ["/usr/bin/planner run -c /etc/planner/planner.yaml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["2"]
    assert d["KillMode"] == ["mixed"]
    assert d["StateDirectory"] == ["planner"]
    assert d["WatchdogSec"] and d["TimeoutStopSec"]
    creds = {v.split(":", 1)[0] for v in d["LoadCredential"]}
    assert creds == {"gemini_api_key", "openai_api_key", "intake_tokens"}
    assert "ProcSubset" not in d  # hides /proc/stat: process metrics would vanish
    assert "Environment" not in d  # keys never go through the environment


@pytest.mark.parametrize("name", ["gemini_api_key", "openai_api_key", "intake_tokens"])
def test_config_example_points_at_the_credentials_directory(name: str) -> None:
    assert f"${{CREDENTIALS_DIRECTORY}}/{name}" in UNIT.read_text()
