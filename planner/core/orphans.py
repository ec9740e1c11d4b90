"""Which of our uploaded files at a provider may be deleted: the housekeeping rule, pure.

Every input file we upload is named for its batch (``planner-<batch id>``, ``.jsonl`` on the
OpenAI surfaces), so a listing of the provider's files tells which batch each one belongs to.
A crash between the upload and recording its id (or between the upload and the create) leaves
a file no batch refers to; a re-upload under the same batch id leaves a second one. The rule:

- the batch is still **active** in the store (planned, uploading, submitted, running): keep,
  whatever the file's age — its create may still adopt it, or the provider may still read it;
- the batch is **finished** in the store (succeeded, failed, expired, cancelled, collected):
  delete — the provider has read the input for good, and results never live in input files;
- the batch is **unknown** to the store (removed by retention, or the file outlived a crash
  before the batch row existed): delete once the file is older than ``min_age`` and no batch
  at the provider that carries the id is still unfinished. The age guard protects an upload in
  flight; the remote check protects a replica whose store we cannot see.

A file whose creation time the provider did not report is kept when its batch is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from planner.core.states import FINISHED_BATCH_STATES, TERMINAL_BATCH_STATES, BatchState

BATCH_ID_RE = re.compile(r"plb_[0-9a-f]{32}")
"""Our batch ids (``store.batches.new_batch_id``); a file named otherwise is never ours."""

FILE_NAME_PREFIX = "planner-"
"""What every input file we upload is named with (the wire modules build the full name)."""

ORPHAN_MIN_AGE = timedelta(hours=1)
"""How old a file of a batch the store does not know must be before it is deleted."""

ACTIVE_BATCH_STATES = frozenset(
    {BatchState.PLANNED, BatchState.UPLOADING, BatchState.SUBMITTED, BatchState.RUNNING}
)
DONE_BATCH_STATES = FINISHED_BATCH_STATES | TERMINAL_BATCH_STATES


def batch_id_from_file_name(name: object) -> str | None:
    """``planner-plb_<32 hex>`` or ``planner-plb_<32 hex>.jsonl`` -> the batch id, else None."""
    if not isinstance(name, str) or not name.startswith(FILE_NAME_PREFIX):
        return None
    candidate = name[len(FILE_NAME_PREFIX) :].removesuffix(".jsonl")
    return candidate if BATCH_ID_RE.fullmatch(candidate) else None


@dataclass(frozen=True, slots=True)
class OurFile:
    """An uploaded file at a provider that carries one of our batch ids in its name."""

    file_id: str
    batch_id: str
    created_at: datetime | None = None


class Verdict(StrEnum):
    KEEP_ACTIVE = "keep_active"  # its batch is still in flight
    KEEP_YOUNG = "keep_young"  # unknown batch, but possibly an upload in flight
    KEEP_REMOTE_ACTIVE = "keep_remote_active"  # unknown here, unfinished at the provider
    DELETE_FINISHED = "delete_finished"  # its batch is done
    DELETE_UNKNOWN = "delete_unknown"  # no batch refers to it, and it is old enough

    @property
    def delete(self) -> bool:
        return self in (Verdict.DELETE_FINISHED, Verdict.DELETE_UNKNOWN)


def judge(
    file: OurFile,
    state: BatchState | None,
    now: datetime,
    *,
    min_age: timedelta = ORPHAN_MIN_AGE,
    remote_unfinished: Collection[str] = frozenset(),
) -> Verdict:
    """The verdict on one file, given its batch's state in the store (``None``: unknown) and
    the batch ids the provider reports as not finished."""
    if state is not None:
        # every state is one or the other (tests/unit/test_orphans.py checks it)
        return Verdict.KEEP_ACTIVE if state in ACTIVE_BATCH_STATES else Verdict.DELETE_FINISHED
    if file.batch_id in remote_unfinished:
        return Verdict.KEEP_REMOTE_ACTIVE
    if file.created_at is None or now - file.created_at < min_age:
        return Verdict.KEEP_YOUNG
    return Verdict.DELETE_UNKNOWN


def needs_remote_check(
    files: Iterable[OurFile], states: Mapping[str, BatchState], now: datetime, min_age: timedelta
) -> datetime | None:
    """The creation time of the oldest file whose verdict hangs on the provider's batch list
    (its batch unknown here and the file old enough to delete), or None when no file does."""
    times = [
        f.created_at
        for f in files
        if f.batch_id not in states and f.created_at is not None and now - f.created_at >= min_age
    ]
    return min(times) if times else None
