"""glibc keeps big freed blocks in the heap once its threshold has risen; ``heap`` fixes it, so
they go back to the system (planner's resident memory falls when a stage drops its buffers)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from planner import cli, heap
from tests.conftest import require_service

RETAINED = """
import sys
from planner.heap import give_back_big_blocks
if sys.argv[1] == "fixed":
    give_back_big_blocks()
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
first = bytearray(8 << 20)
del first  # glibc on its own now treats blocks up to 8 MiB as small
before = resident()
big, small = [], []
for _ in range(16):  # 64 MiB of big blocks, each followed by a small one that stays alive
    big.append(bytearray(4 << 20))
    small.append(bytearray(1000))
del big
print(resident() - before)
"""


def _retained(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", RETAINED, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_big_blocks_go_back_to_the_system() -> None:
    if heap._libc() is None:  # not glibc: planner leaves the allocator be
        require_service("glibc (libc.so.6)")
    assert _retained("fixed") < 8 << 20
    assert _retained("default") > 32 << 20  # why it is needed: glibc's own behaviour


def test_every_command_fixes_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(heap, "give_back_big_blocks", lambda: calls.append("fixed"))
    monkeypatch.setattr(cli, "app", lambda: calls.append("app"))
    monkeypatch.setattr(cli, "tune_gc", lambda: None)
    cli.main()
    assert calls == ["fixed", "app"]
