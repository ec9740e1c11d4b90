"""The HTTP intake's own rows: OpenAI-compatible files and batches, batch lines, served results.

The requests themselves are ordinary rows of ``request`` (``store/requests.py``) under the
intake's source name; what lives here is what the OpenAI files/batches surface needs on top:
the bytes of uploaded and generated files, each batch's status and timestamps, which request (or
which quarantined line) each input line became, and the record each request ended with (written
by the intake's sink). Like every store module, functions work inside the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from planner.core import json_text
from planner.store._sql import CHUNK, chunks, rowcount, translated, translated_iter
from planner.store.requests import dialect_insert
from planner.store.tables import INTAKE_BATCH, INTAKE_FILE, INTAKE_LINE, INTAKE_RESULT, REQUEST


@dataclass(frozen=True, slots=True)
class FileInfo:
    """An intake file without its bytes."""

    id: str
    purpose: str
    filename: str
    size: int
    created_at: datetime
    expires_at: datetime | None
    batch_id: str | None


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """One intake batch as stored (``status`` is the OpenAI status string)."""

    id: str
    source: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    status: str
    total: int
    output_file_id: str | None
    error_file_id: str | None
    created_at: datetime
    in_progress_at: datetime | None
    finalizing_at: datetime | None
    completed_at: datetime | None
    cancelling_at: datetime | None
    cancelled_at: datetime | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LineRecord:
    """One input line of a batch: the request it became or why it was quarantined."""

    line: int
    custom_id: str | None
    key: str | None = None
    reason: str | None = None
    message: str | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """A batch line joined with its request's state and the record its request ended with."""

    line: int
    custom_id: str | None
    quarantine_reason: str | None
    quarantine_message: str | None
    state: str | None
    state_reason: str | None
    record: dict[str, Any] | None


_FILE_COLUMNS = (
    INTAKE_FILE.c.id,
    INTAKE_FILE.c.purpose,
    INTAKE_FILE.c.filename,
    INTAKE_FILE.c.size,
    INTAKE_FILE.c.created_at,
    INTAKE_FILE.c.expires_at,
    INTAKE_FILE.c.batch_id,
)


@translated
def add_file(session: Session, info: FileInfo, content: bytes) -> None:
    values = {name: getattr(info, name) for name in FileInfo.__slots__}
    session.execute(INTAKE_FILE.insert().values(**values, content=content))


@translated
def get_file(session: Session, file_id: str) -> FileInfo | None:
    row = session.execute(select(*_FILE_COLUMNS).where(INTAKE_FILE.c.id == file_id)).first()
    return None if row is None else FileInfo(*row)


@translated
def file_content(session: Session, file_id: str) -> bytes | None:
    return session.execute(
        select(INTAKE_FILE.c.content).where(INTAKE_FILE.c.id == file_id)
    ).scalar_one_or_none()


@translated
def delete_file(session: Session, file_id: str) -> bool:
    return rowcount(session.execute(delete(INTAKE_FILE).where(INTAKE_FILE.c.id == file_id))) == 1


@translated
def list_files(
    session: Session, *, purpose: str | None, limit: int, after: str | None, newest_first: bool
) -> tuple[list[FileInfo], bool]:
    """A page of files ordered by creation (then id); ``after`` is the last id of the previous
    page. Returns the page and whether more follow."""
    query = select(*_FILE_COLUMNS)
    if purpose is not None:
        query = query.where(INTAKE_FILE.c.purpose == purpose)
    order = (INTAKE_FILE.c.created_at, INTAKE_FILE.c.id)
    if after is not None:
        cursor = session.execute(
            select(INTAKE_FILE.c.created_at, INTAKE_FILE.c.id).where(INTAKE_FILE.c.id == after)
        ).first()
        if cursor is None:
            return [], False
        if newest_first:
            query = query.where(
                (INTAKE_FILE.c.created_at < cursor[0])
                | ((INTAKE_FILE.c.created_at == cursor[0]) & (INTAKE_FILE.c.id < cursor[1]))
            )
        else:
            query = query.where(
                (INTAKE_FILE.c.created_at > cursor[0])
                | ((INTAKE_FILE.c.created_at == cursor[0]) & (INTAKE_FILE.c.id > cursor[1]))
            )
    query = query.order_by(*(c.desc() for c in order) if newest_first else order)
    rows = session.execute(query.limit(limit + 1)).all()
    return [FileInfo(*row) for row in rows[:limit]], len(rows) > limit


_BATCH_COLUMNS = (
    INTAKE_BATCH.c.id,
    INTAKE_BATCH.c.source,
    INTAKE_BATCH.c.input_file_id,
    INTAKE_BATCH.c.endpoint,
    INTAKE_BATCH.c.completion_window,
    INTAKE_BATCH.c.metadata_json,
    INTAKE_BATCH.c.status,
    INTAKE_BATCH.c.total,
    INTAKE_BATCH.c.output_file_id,
    INTAKE_BATCH.c.error_file_id,
    INTAKE_BATCH.c.created_at,
    INTAKE_BATCH.c.in_progress_at,
    INTAKE_BATCH.c.finalizing_at,
    INTAKE_BATCH.c.completed_at,
    INTAKE_BATCH.c.cancelling_at,
    INTAKE_BATCH.c.cancelled_at,
    INTAKE_BATCH.c.expires_at,
)


def _batch(row: Any) -> BatchInfo:
    values = list(row)
    values[5] = None if values[5] is None else json.loads(values[5])
    return BatchInfo(*values)


@translated
def add_batch(session: Session, batch: BatchInfo, lines: Sequence[LineRecord]) -> None:
    """Store a new batch and its lines (the caller ingests the lines' requests in the same
    transaction, so a batch is never half there)."""
    values = {name: getattr(batch, name) for name in BatchInfo.__slots__ if name != "metadata"}
    values["metadata_json"] = None if batch.metadata is None else json.dumps(batch.metadata)
    session.execute(INTAKE_BATCH.insert().values(**values))
    rows = [
        {name: getattr(line, name) for name in LineRecord.__slots__} | {"batch_id": batch.id}
        for line in lines
    ]
    for chunk in chunks(rows):
        session.execute(INTAKE_LINE.insert(), list(chunk))


@translated
def get_batch(session: Session, batch_id: str) -> BatchInfo | None:
    row = session.execute(select(*_BATCH_COLUMNS).where(INTAKE_BATCH.c.id == batch_id)).first()
    return None if row is None else _batch(row)


@translated
def list_batches(
    session: Session, *, limit: int, after: str | None
) -> tuple[list[BatchInfo], bool]:
    """A page of batches, newest first; ``after`` is the last id of the previous page."""
    query = select(*_BATCH_COLUMNS)
    if after is not None:
        cursor = session.execute(
            select(INTAKE_BATCH.c.created_at, INTAKE_BATCH.c.id).where(INTAKE_BATCH.c.id == after)
        ).first()
        if cursor is None:
            return [], False
        query = query.where(
            (INTAKE_BATCH.c.created_at < cursor[0])
            | ((INTAKE_BATCH.c.created_at == cursor[0]) & (INTAKE_BATCH.c.id < cursor[1]))
        )
    query = query.order_by(INTAKE_BATCH.c.created_at.desc(), INTAKE_BATCH.c.id.desc())
    rows = session.execute(query.limit(limit + 1)).all()
    return [_batch(row) for row in rows[:limit]], len(rows) > limit


@translated
def move_batch(
    session: Session, batch_id: str, expected: Iterable[str], status: str, **fields: Any
) -> bool:
    """Compare-and-set: move the batch to ``status`` only if it is in an ``expected`` status
    (two replicas finishing the same batch: one wins, the other's transaction is rolled back)."""
    result = session.execute(
        update(INTAKE_BATCH)
        .where(INTAKE_BATCH.c.id == batch_id, INTAKE_BATCH.c.status.in_(list(expected)))
        .values(status=status, **fields)
    )
    return rowcount(result) == 1


def _line_join(batch: BatchInfo) -> Any:
    return INTAKE_LINE.outerjoin(
        REQUEST, (REQUEST.c.source == batch.source) & (REQUEST.c.key == INTAKE_LINE.c.key)
    ).outerjoin(
        INTAKE_RESULT,
        (INTAKE_RESULT.c.source == batch.source) & (INTAKE_RESULT.c.key == INTAKE_LINE.c.key),
    )


@translated
def line_states(session: Session, batch: BatchInfo) -> dict[str | None, int]:
    """How many lines of the batch are in each request state (``None``: quarantined)."""
    rows = session.execute(
        select(REQUEST.c.state, func.count())
        .select_from(_line_join(batch))
        .where(INTAKE_LINE.c.batch_id == batch.id)
        .group_by(REQUEST.c.state)
    ).all()
    return {state: int(n) for state, n in rows}


@translated
def request_keys(session: Session, batch: BatchInfo, states: Iterable[str]) -> list[int]:
    """Ids of the batch's requests that are in one of ``states``."""
    return list(
        session.execute(
            select(REQUEST.c.id)
            .select_from(_line_join(batch))
            .where(INTAKE_LINE.c.batch_id == batch.id, REQUEST.c.state.in_(list(states)))
        ).scalars()
    )


@translated_iter
def line_outcomes(session: Session, batch: BatchInfo) -> Iterator[LineOutcome]:
    """Every line of the batch in input order, with its request's state and final record."""
    query = (
        select(
            INTAKE_LINE.c.line,
            INTAKE_LINE.c.custom_id,
            INTAKE_LINE.c.reason,
            INTAKE_LINE.c.message,
            REQUEST.c.state,
            REQUEST.c.reason,
            INTAKE_RESULT.c.record_json,
        )
        .select_from(_line_join(batch))
        .where(INTAKE_LINE.c.batch_id == batch.id)
        .order_by(INTAKE_LINE.c.line)
    )
    for row in session.execute(query.execution_options(yield_per=CHUNK)):
        record = None if row.record_json is None else json_text.loads(row.record_json)
        yield LineOutcome(row[0], row[1], row[2], row[3], row[4], row[5], record)


@translated
def record_results(
    session: Session, records: Iterable[tuple[str, str, bool, Mapping[str, Any]]], now: datetime
) -> int:
    """Upsert ``(source, key, ok, record)``: a repeated delivery writes the same rows again."""
    rows = [
        {
            "source": source,
            "key": key,
            "ok": ok,
            "record_json": json_text.dumps(record),
            "recorded_at": now,
        }
        for source, key, ok, record in records
    ]
    for chunk in chunks(rows):
        statement = dialect_insert(session, INTAKE_RESULT)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["source", "key"],
                set_={
                    "ok": statement.excluded.ok,
                    "record_json": statement.excluded.record_json,
                    "recorded_at": statement.excluded.recorded_at,
                },
            ),
            list(chunk),
        )
    return len(rows)


@translated
def result_of(session: Session, source: str, key: str) -> dict[str, Any] | None:
    text = session.execute(
        select(INTAKE_RESULT.c.record_json).where(
            INTAKE_RESULT.c.source == source, INTAKE_RESULT.c.key == key
        )
    ).scalar_one_or_none()
    return None if text is None else dict(json.loads(text))


@translated
def existing_keys(session: Session, source: str, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` the source already has in the store."""
    found: set[str] = set()
    for chunk in chunks(list(keys)):
        found.update(
            session.execute(
                select(REQUEST.c.key).where(REQUEST.c.source == source, REQUEST.c.key.in_(chunk))
            ).scalars()
        )
    return found
