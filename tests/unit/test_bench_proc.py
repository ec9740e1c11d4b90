"""The /proc readers of `bench/`: process-tree memory and CPU ticks (tree_memory.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.idle import percent
from bench.tree_memory import TreeSampler, cpu_ticks, descendants, hwm_kib, parent_of, pss_kib


@pytest.mark.parametrize(
    ("stat", "parent"),
    [
        ("123 (python3) S 45 123 45 0 -1", 45),
        # a name may hold spaces and parentheses: fields are counted after the last ')'
        ("77 (a (b) c) R 1 77 77 0 -1", 1),
        ("9 ()) S 2 9 9", 2),
    ],
)
def test_parent_of_reads_the_fourth_field_after_the_name(stat: str, parent: int) -> None:
    assert parent_of(stat) == parent


def test_descendants_walks_the_whole_tree_and_nothing_else() -> None:
    # 1 -> 10 -> (11, 12 -> 13); 20 is a sibling tree of 10
    parents = {10: 1, 11: 10, 12: 10, 13: 12, 20: 1, 21: 20}
    assert sorted(descendants(10, parents)) == [10, 11, 12, 13]
    assert descendants(13, parents) == [13]
    assert descendants(99, parents) == [99]  # not (or no longer) listed: itself only


def test_pss_kib_takes_the_pss_line() -> None:
    rollup = (
        "55d0-7ffc ---p 00000000 00:00 0    [rollup]\n"
        "Rss:               12345 kB\n"
        "Pss:                6789 kB\n"
        "Pss_Anon:           5000 kB\n"
    )
    assert pss_kib(rollup) == 6789
    assert pss_kib("Rss: 1 kB\n") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sampler_counts_a_child_process() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    before_kib = int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1])
    try:
        sampler = TreeSampler(os.getpid())
        taken = sampler.take()
        alone = TreeSampler(child.pid).take()
    finally:
        child.communicate(b"")
    assert taken.processes >= 2  # this process and its child (at least)
    assert taken.rss_kib > alone.rss_kib > 0
    assert sampler.peak_rss_kib == taken.rss_kib and sampler.peak_pss_kib == taken.pss_kib
    # its own peak, as the kernel keeps it: at least what it held before, at most what it
    # has reached since
    after = hwm_kib(Path(f"/proc/{os.getpid()}/status").read_text())
    assert after is not None and before_kib <= sampler.own_hwm_kib <= after


def test_hwm_kib_takes_the_high_water_mark() -> None:
    assert hwm_kib("VmPeak:  999 kB\nVmHWM:\t  4321 kB\nVmRSS:  1234 kB\n") == 4321
    assert hwm_kib("VmRSS:  1234 kB\n") is None


def test_cpu_ticks_reads_fields_14_to_17() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...
    stat = "42 (planner (x)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 3 0"
    assert cpu_ticks(stat) == (300, 10)
    assert percent(30, 60.0) == pytest.approx(100 * 30 / os.sysconf("SC_CLK_TCK") / 60)
