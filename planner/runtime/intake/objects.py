"""The intake's wire shapes: OpenAI's File, Batch and list objects, its error envelope and
result lines (specs/openai-batch-api.md §3, §5.2, §5.4, §6.1), plus the native endpoints' bodies.

They are pydantic models so the OpenAPI document states exactly what is served; rendering from
the store's rows is plain arithmetic here, with no I/O. Timestamps are integer Unix seconds.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from planner.store.intake import BatchInfo, FileInfo, LineOutcome

BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses")
"""The endpoints a batch may name: the OpenAI endpoints planner can execute."""

LIVE = ("validating", "in_progress", "finalizing", "cancelling")
ENDED_STATES = frozenset({"succeeded", "dead", "rejected"})
"""Request states after which a line has its final answer."""

CANCELLED_CODE = "batch_cancelled"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error envelope; every 4xx of the intake has this body."""

    error: ErrorDetail


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, str] | None


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ExpiresAfter(BaseModel):
    """Accepted for compatibility; planner keeps output files until they are deleted."""

    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class BatchCreate(BaseModel):
    """``POST /v1/batches``; unknown keys are refused (400), like a misspelt key at OpenAI."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: Literal["/v1/chat/completions", "/v1/embeddings", "/v1/responses"]
    completion_window: Literal["24h"]
    metadata: (
        dict[
            Annotated[str, StringConstraints(max_length=64)],
            Annotated[str, StringConstraints(max_length=512)],
        ]
        | None
    ) = Field(None, max_length=16, description="At most 16 pairs, as at OpenAI.")
    output_expires_after: ExpiresAfter | None = None


class Accepted(BaseModel):
    """The outcome of one record of a native POST, in the order the records were sent."""

    index: int = Field(description="The record's position in the request, from 0.")
    id: str | None = Field(
        None,
        description="The stored request's id (its custom_id / key / id), for GET "
        "/requests/{id}; absent for a rejected record, which is stored nowhere.",
    )
    status: Literal["accepted", "duplicate", "rejected"]
    error: ErrorDetail | None = Field(None, description="Why a record was rejected.")


class SubmitResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    requests: list[Accepted]


class RequestView(BaseModel):
    """A native request's state and, once it ended, its result or dead-letter record."""

    id: str
    state: str
    reason: str | None
    lane: str | None
    result: dict[str, Any] | None


def unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def file_object(info: FileInfo) -> FileObject:
    return FileObject(
        id=info.id,
        bytes=info.size,
        created_at=int(info.created_at.timestamp()),
        filename=info.filename,
        purpose=info.purpose,
        expires_at=unix(info.expires_at),
    )


def request_counts(total: int, states: dict[str | None, int]) -> RequestCounts:
    """OpenAI's counts from the lines' request states (``None``: a quarantined line)."""
    failed = states.get(None, 0) + states.get("dead", 0) + states.get("rejected", 0)
    return RequestCounts(total=total, completed=states.get("succeeded", 0), failed=failed)


def all_ended(total: int, states: dict[str | None, int]) -> bool:
    ended = sum(n for state, n in states.items() if state is None or state in ENDED_STATES)
    return ended >= total


EMPTY_FILE = BatchError(
    code="empty_file", message="The input file has no request lines.", param="input_file_id"
)


def batch_object(batch: BatchInfo, counts: RequestCounts) -> BatchObject:
    failed = batch.status == "failed"  # only ever at creation: a file without lines
    return BatchObject(
        errors=BatchErrors(data=[EMPTY_FILE]) if failed else None,
        failed_at=int(batch.created_at.timestamp()) if failed else None,
        id=batch.id,
        endpoint=batch.endpoint,
        input_file_id=batch.input_file_id,
        completion_window=batch.completion_window,
        status=batch.status,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        created_at=int(batch.created_at.timestamp()),
        in_progress_at=unix(batch.in_progress_at),
        expires_at=int(batch.expires_at.timestamp()),
        finalizing_at=unix(batch.finalizing_at),
        completed_at=unix(batch.completed_at),
        cancelling_at=unix(batch.cancelling_at),
        cancelled_at=unix(batch.cancelled_at),
        request_counts=counts,
        metadata=batch.metadata,
    )


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:24]


def result_line(batch_id: str, outcome: LineOutcome) -> tuple[bool, dict[str, Any]]:
    """One ended line as an output line (``True``) or an error line (``False``), §5.2/§5.4."""
    custom_id = outcome.custom_id
    line_id = f"batch_req_{_digest(batch_id, str(outcome.line))}"
    record = outcome.record or {}
    if outcome.state == "succeeded" and "response" in record:
        response = {
            "status_code": 200,
            "request_id": f"req_{_digest(batch_id, str(outcome.line), 'r')}",
            "body": record["response"],
        }
        return True, {"id": line_id, "custom_id": custom_id, "response": response, "error": None}
    if outcome.quarantine_reason is not None:
        error = {"code": outcome.quarantine_reason, "message": outcome.quarantine_message or ""}
    elif outcome.state == "dead":
        dead = record.get("error") or {}
        error = {
            "code": str(dead.get("code") or "request_failed"),
            "message": str(dead.get("message") or outcome.state_reason or ""),
        }
    elif outcome.state == "rejected" and outcome.state_reason == CANCELLED_CODE:
        error = {"code": CANCELLED_CODE, "message": "The batch was cancelled before it ran."}
    else:
        error = {"code": "request_rejected", "message": outcome.state_reason or "rejected"}
    return False, {"id": line_id, "custom_id": custom_id, "response": None, "error": error}
