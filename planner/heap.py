"""The C heap under planner: glibc's allocator, told to give memory back to the system.

Python's own allocator asks the C library for every block over 512 bytes. glibc serves a big
block (a batch file being written, a results file read whole, a chunk of rows) from pages of
its own, given back when it is freed, but each such free raises the size it treats as big, up
to 32 MiB; after that, the same blocks come from the heap and stay there once freed, behind any
small block still alive above them. A ``run --once`` of 200,000 requests ended its collect with
252 MB resident and peaked at 255-261 MiB; with the threshold fixed at 1 MiB, 224 MB and 231
MiB, in the same time. Elsewhere than glibc both calls do nothing.
"""

from __future__ import annotations

import ctypes
import functools

M_MMAP_THRESHOLD = -3  # glibc's ``mallopt`` parameter (malloc.h)
BIG_BLOCK_BYTES = 1 << 20  # blocks this big or bigger get pages of their own, given back


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def give_back_big_blocks() -> None:
    """Fix glibc's threshold for blocks with pages of their own at ``BIG_BLOCK_BYTES`` (which
    also stops it from rising as big blocks are freed); set once, at the start of a command."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, BIG_BLOCK_BYTES)


def trim() -> None:
    """Return the free pages at the heap's end and in its middle to the system (glibc's
    ``malloc_trim``): after dropping something big made of many small blocks (the encodings)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
