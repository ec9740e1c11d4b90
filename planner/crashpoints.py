"""Named places where the crash tests kill the process (``kill -9`` at an exact step).

``PLANNER_CRASH_AT=<name>`` makes the process SIGKILL itself the first time it reaches that
point; with ``PLANNER_CRASH_ONCE=<file>`` it does so only if the file does not exist yet (and
creates it first), so a restarted process runs through. Read once at import: in production the
variable is unset and ``reached`` is a dictionary lookup that finds nothing.

Points, in flow order: ``after_claim`` (a spool file claimed, nothing stored), ``after_ingest``
(stored, file not yet finished), ``after_intent`` (batch ``uploading`` committed, provider not
called), ``after_upload`` (the input file is at the provider, the batch not created),
``after_create`` (provider accepted the batch, outcome not committed),
``after_interactive_call`` (an interactive call answered, the answer not committed: its outcome
is unknown to the store), ``after_interactive_answer`` (a chunk's answers committed to the
outbox, not delivered), ``during_poll``
(provider answered, state not committed), ``after_sink_write`` (results written, ledger not
committed), ``between_chunks`` (a chunk of a batch's results committed, the next not read),
``before_cleanup`` (collected, remote files not deleted).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

POINTS = frozenset(
    {
        "after_claim",
        "after_ingest",
        "after_intent",
        "after_upload",
        "after_create",
        "after_interactive_call",
        "after_interactive_answer",
        "during_poll",
        "after_sink_write",
        "between_chunks",
        "before_cleanup",
    }
)

_TARGET = os.environ.get("PLANNER_CRASH_AT")
_ONCE = os.environ.get("PLANNER_CRASH_ONCE")


def reached(name: str) -> None:
    """Die here, hard, if the crash tests asked for it (see the module docstring)."""
    if name != _TARGET:
        return
    if _ONCE:
        marker = Path(_ONCE)
        if marker.exists():
            return
        marker.write_text(name)
    os.kill(os.getpid(), signal.SIGKILL)
