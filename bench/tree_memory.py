"""Memory of a process and all its descendants, sampled from ``/proc`` (Linux); CPU ticks.

``wait4``'s ``ru_maxrss`` is the peak of one process: a pool of worker processes (tokenizing on
both cores) would not count. ``TreeSampler`` reads, every ``interval`` seconds while the
process runs, the RSS (``/proc/<pid>/statm``) and the PSS (``/proc/<pid>/smaps_rollup``: shared
pages split between the processes that map them, so a forked worker's copy-on-write pages are
not counted twice) of the process and every descendant, sums each, and keeps the peaks.

A sample is a snapshot: a peak shorter than ``interval`` can be missed, which is why the
runner prints ``ru_maxrss`` of the main process beside it. That one is the larger of the
process's own peak and its waited-for children's (Linux), so for ``run --once --sandbox`` it is
the emulator's once the emulator is the larger (at a million requests it holds 1.6 GiB of job
lines); the sampler also keeps the process's own high-water mark (``VmHWM`` in
``/proc/<pid>/status``, a peak the kernel keeps, so nothing is missed between samples but the
last ``interval``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # per second


def parent_of(stat: str) -> int:
    """The parent pid in the text of ``/proc/<pid>/stat``; the name (field 2, in parentheses)
    may itself hold spaces and parentheses, so fields are counted after its last ``)``."""
    return int(stat.rpartition(")")[2].split()[1])


def cpu_ticks(stat: str) -> tuple[int, int]:
    """``(utime + stime, cutime + cstime)`` in clock ticks from a ``/proc/<pid>/stat`` text
    (fields 14-17, counted after the name's last ``)``)."""
    fields = stat.rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return utime + stime, cutime + cstime


def process_seconds(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far, its waited-for children excluded."""
    return cpu_ticks((PROC / str(pid) / "stat").read_text())[0] / TICKS


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """``root`` and every process below it, given each pid's parent."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def pss_kib(smaps_rollup: str) -> int | None:
    """The ``Pss:`` figure of a ``smaps_rollup`` text, in KiB (None if there is none)."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def hwm_kib(status: str) -> int | None:
    """The ``VmHWM`` line of ``/proc/<pid>/status``: the process's peak RSS so far, in KiB."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the process ended meanwhile, or is not ours to read
        return None


def parents() -> dict[int, int]:
    """Every live process's parent, from ``/proc/<pid>/stat``."""
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _read(entry / "stat")
            if stat:
                found[int(entry.name)] = parent_of(stat)
    return found


@dataclass(frozen=True, slots=True)
class Sample:
    processes: int
    rss_kib: int
    pss_kib: int


def sample(pids: Iterable[int]) -> Sample:
    """The summed RSS and PSS of ``pids`` (those still alive); PSS falls back to RSS where the
    kernel has no ``smaps_rollup``."""
    count = rss = pss = 0
    for pid in pids:
        statm = _read(PROC / str(pid) / "statm")
        if not statm:
            continue
        resident = int(statm.split()[1]) * PAGE_KIB
        rollup = _read(PROC / str(pid) / "smaps_rollup")
        proportional = pss_kib(rollup) if rollup else None
        count += 1
        rss += resident
        pss += resident if proportional is None else proportional
    return Sample(count, rss, pss)


class TreeSampler:
    """Samples the tree under ``pid`` on a thread until ``stop()``; the peaks in MiB."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss_kib = self.peak_pss_kib = self.most_processes = 0
        self.own_hwm_kib = 0  # the root process's own peak (VmHWM), as last read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def __enter__(self) -> TreeSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def take(self) -> Sample:
        now = sample(descendants(self.pid, parents()))
        self.peak_rss_kib = max(self.peak_rss_kib, now.rss_kib)
        self.peak_pss_kib = max(self.peak_pss_kib, now.pss_kib)
        self.most_processes = max(self.most_processes, now.processes)
        status = _read(PROC / str(self.pid) / "status")
        own = hwm_kib(status) if status else None
        self.own_hwm_kib = max(self.own_hwm_kib, own or 0)
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            self.take()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_kib / 1024

    @property
    def peak_pss_mib(self) -> float:
        return self.peak_pss_kib / 1024

    @property
    def own_hwm_mib(self) -> float:
        return self.own_hwm_kib / 1024
