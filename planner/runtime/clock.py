"""The only place planner reads a clock.

Everything else takes ``now`` as a parameter (STYLE 1), so decisions are reproducible and
tests never sleep; ruff's banned-api rule keeps ``datetime.now``/``time.time`` out of the
rest of the package.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["monotonic", "monotonic_usec", "utc_now"]


def utc_now() -> datetime:
    """The wall-clock time, timezone-aware in UTC (read once per tick and passed down)."""
    return datetime.now(UTC)


def monotonic() -> float:
    """Seconds on a clock that never jumps; for intervals and deadlines, never for dates."""
    return time.monotonic()


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the unit sd_notify's ``MONOTONIC_USEC=`` expects."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
