"""What the HTTP intake does, apart from HTTP: records to requests, files, batches, results.

Every record is judged by the one record parser (``planner.sources.formats.parse_record``) and
stored like any source's requests (``store/requests.py``), under the intake's source name.

- Native POST: per-record results. Each good record is stored (a key the source already has is
  a duplicate, left as it is); each bad one is answered with its reason and field and stored
  nowhere (the caller holds it). A body that is not JSON, or not an object or a list of
  objects, stores nothing at all.
- ``/v1/batches`` create: the input file's lines become requests with keys
  ``<batch id>/<custom_id>`` and the completion window (24 h) as their deadline; bad lines are
  quarantined in ``intake_line`` with their reason and reported in the batch's error file. The
  batch, its lines and its requests are committed in one transaction: all or nothing.
- A batch is ``in_progress`` until every line has ended (succeeded, dead or rejected); the
  first read that sees it (retrieve or list, on any replica) writes the output and error files
  and moves it to ``completed`` (``cancelled`` after a cancel) by compare-and-set, so it is
  finished exactly once. A cancel rejects the lines still waiting in the queue; lines already
  sent run to their end.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from planner.core import json_text
from planner.core.catalog import ModelEntry
from planner.core.model import ProviderKind, Request
from planner.core.states import RequestState
from planner.runtime.intake.objects import (
    CANCELLED_CODE,
    LIVE,
    Accepted,
    BatchCreate,
    BatchObject,
    ErrorDetail,
    SubmitResult,
    all_ended,
    batch_object,
    request_counts,
    result_line,
)
from planner.sources.formats import Defaults, RecordError, decode_json, parse_record
from planner.sources.lines import decode_line
from planner.store import intake as store_intake
from planner.store import requests as store_requests
from planner.store.intake import BatchInfo, FileInfo, LineRecord

COMPLETION_WINDOW = timedelta(hours=24)  # the only window OpenAI offers: the lines' deadline
MAX_LIST = 100  # batches per page, as at OpenAI

MAX_FILE_LIST = 10_000
MAX_ID = 512  # the widest id column (request.key, intake_line.custom_id)


class IntakeError(Exception):
    """A request the intake refuses: HTTP ``status`` and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(message=message, type=kind, param=param, code=code)


class IntakeObserver(Protocol):
    """Counts for the metrics: called after the commit that stored or quarantined records."""

    def ingested(self, source: str, n: int) -> None: ...

    def quarantined(self, source: str, reason: str, n: int) -> None: ...


def _not_found(kind: str, ident: str) -> IntakeError:
    shown = ident if storable(ident) else repr(ident)
    return IntakeError(404, f"No such {kind} object: {shown}", code="not_found", param="id")


def storable(text: str) -> bool:
    """Whether a name can be looked up in the store at all: UTF-8 without NUL (PostgreSQL text
    holds neither a NUL nor a lone surrogate) and no longer than any id column (512)."""
    if "\x00" in text or len(text) > MAX_ID:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _record_id(obj: object) -> str | None:
    if isinstance(obj, dict):
        for name in ("custom_id", "key", "id"):
            if isinstance(obj.get(name), str):
                return str(obj[name])
    return None


@dataclass(frozen=True)
class IntakeService:
    """The intake's operations on the store; ``now`` is passed to each by the HTTP layer."""

    session_factory: Callable[[], Session]
    source: str
    family_of: Callable[[str], ProviderKind | None]
    default_model: str | None = None
    observer: IntakeObserver | None = None
    # the catalog's facts of a model (output maximum, embedding dimensions, kind), so a record
    # the provider would refuse is refused here, as the spool's and SQL's records are
    facts_of: Callable[[str], ModelEntry | None] | None = None

    def _defaults(self, deadline: timedelta | None) -> Defaults:
        return Defaults(
            source=self.source,
            family_of=self.family_of,
            default_model=self.default_model,
            default_deadline=deadline,
            facts_of=self.facts_of,
        )

    # -- native ---------------------------------------------------------------------------
    def submit(self, records: Sequence[object], now: datetime) -> SubmitResult:
        """Store the good records, answer every record (see the module docstring)."""
        defaults = self._defaults(None)
        answers: list[Accepted | None] = []
        good: list[tuple[int, Request]] = []
        seen: set[str] = set()
        for index, obj in enumerate(records):
            parsed = parse_record(obj, defaults, now=now, origin=f"POST /requests #{index}")
            if isinstance(parsed, RecordError):
                answers.append(_rejected(index, parsed))
            elif parsed.key in seen:
                error = RecordError("duplicate_id", "this id is used twice in the request", None)
                answers.append(_rejected(index, error))
            else:
                seen.add(parsed.key)
                good.append((index, parsed))
                answers.append(None)
        with self.session_factory() as session, session.begin():
            existing = store_intake.existing_keys(session, self.source, [r.key for _, r in good])
            outcome = store_requests.ingest(session, [r for _, r in good], now)
        conflicts = {r.key for r in outcome.conflicts}
        for index, request in good:
            if request.key in conflicts:  # stored before with another body: that one stands
                error = RecordError(
                    "duplicate_id", "this id is already stored with a different request", None
                )
                answers[index] = _rejected(index, error)
                continue
            status = "duplicate" if request.key in existing else "accepted"
            answers[index] = Accepted(index=index, id=request.key, status=status)
        final = [a for a in answers if a is not None]
        if self.observer is not None and outcome.inserted:
            self.observer.ingested(self.source, outcome.inserted)
        return SubmitResult(
            accepted=sum(a.status == "accepted" for a in final),
            duplicates=sum(a.status == "duplicate" for a in final),
            rejected=sum(a.status == "rejected" for a in final),
            requests=final,
        )

    def request(self, key: str) -> tuple[store_requests.StoredRequest, dict[str, object] | None]:
        if not storable(key):
            raise _not_found("request", key)
        with self.session_factory() as session:
            stored = store_requests.get(session, self.source, key)
            if stored is None:
                raise _not_found("request", key)
            return stored, store_intake.result_of(session, self.source, key)

    # -- files ----------------------------------------------------------------------------
    def upload(self, filename: str, purpose: str, content: bytes, now: datetime) -> FileInfo:
        """Keep an input file; its lines are judged when a batch is created from it (an upload
        never fails for its content, as at OpenAI)."""
        if purpose != "batch":
            raise IntakeError(
                400,
                f"purpose must be 'batch' (planner's intake takes batch input files); "
                f"got {purpose!r}",
                code="invalid_value",
                param="purpose",
            )
        info = FileInfo(
            id=f"file-{secrets.token_hex(12)}",
            purpose="batch",
            filename=filename[:255] if filename and storable(filename) else "upload",
            size=len(content),
            created_at=now,
            expires_at=None,
            batch_id=None,
        )
        with self.session_factory() as session, session.begin():
            store_intake.add_file(session, info, content)
        return info

    def file(self, file_id: str) -> FileInfo:
        with self.session_factory() as session:
            info = store_intake.get_file(session, file_id) if storable(file_id) else None
        if info is None:
            raise _not_found("File", file_id)
        return info

    def content(self, file_id: str) -> bytes:
        with self.session_factory() as session:
            data = store_intake.file_content(session, file_id) if storable(file_id) else None
        if data is None:
            raise _not_found("File", file_id)
        return data

    def delete(self, file_id: str) -> None:
        with self.session_factory() as session, session.begin():
            if not storable(file_id) or not store_intake.delete_file(session, file_id):
                raise _not_found("File", file_id)

    def files(
        self, purpose: str | None, limit: int, after: str | None, newest_first: bool
    ) -> tuple[list[FileInfo], bool]:
        if not all(storable(v) for v in (purpose, after) if v is not None):
            return [], False  # nothing is stored under such a name
        with self.session_factory() as session:
            return store_intake.list_files(
                session, purpose=purpose, limit=limit, after=after, newest_first=newest_first
            )

    # -- batches --------------------------------------------------------------------------
    def create_batch(self, spec: BatchCreate, now: datetime) -> BatchObject:
        if not storable(spec.input_file_id):
            raise _not_found("File", spec.input_file_id)
        with self.session_factory() as session:
            info = store_intake.get_file(session, spec.input_file_id)
            data = store_intake.file_content(session, spec.input_file_id)
        if info is None or data is None:
            raise _not_found("File", spec.input_file_id)
        if info.purpose != "batch":
            raise IntakeError(
                400,
                f"file {info.id} has purpose {info.purpose!r}; a batch needs a 'batch' file",
                code="invalid_value",
                param="input_file_id",
            )
        batch_id = f"batch_{secrets.token_hex(12)}"
        lines, requests = self._parse_file(batch_id, info.id, data, spec.endpoint, now)
        batch = BatchInfo(
            id=batch_id,
            source=self.source,
            input_file_id=info.id,
            endpoint=spec.endpoint,
            completion_window=spec.completion_window,
            metadata=spec.metadata,
            status="in_progress" if lines else "failed",  # OpenAI fails an empty file (errors.data)
            total=len(lines),
            output_file_id=None,
            error_file_id=None,
            created_at=now,
            in_progress_at=now if lines else None,
            finalizing_at=None,
            completed_at=None,
            cancelling_at=None,
            cancelled_at=None,
            expires_at=now + COMPLETION_WINDOW,
        )
        with self.session_factory() as session, session.begin():
            store_intake.add_batch(session, batch, lines)
            inserted = store_requests.ingest(session, requests, now).inserted
        if self.observer is not None:
            self.observer.ingested(self.source, inserted)
            reasons: dict[str, int] = {}
            for line in lines:
                if line.reason is not None:
                    reasons[line.reason] = reasons.get(line.reason, 0) + 1
            for reason, n in sorted(reasons.items()):
                self.observer.quarantined(self.source, reason, n)
        return self.batch(batch_id, now)

    def _parse_file(
        self, batch_id: str, file_id: str, data: bytes, endpoint: str, now: datetime
    ) -> tuple[list[LineRecord], list[Request]]:
        defaults = self._defaults(COMPLETION_WINDOW)
        lines: list[LineRecord] = []
        requests: list[Request] = []
        seen: set[str] = set()
        for number, raw in enumerate(data.split(b"\n"), start=1):
            text = decode_line(raw, file=file_id, line=number)
            if text is None:
                continue
            if not isinstance(text, str):  # a LineError: bad encoding
                raw_text = text.raw.replace("\x00", "\\u0000")  # PostgreSQL text holds no NUL
                lines.append(LineRecord(number, None, None, text.reason, text.message, raw_text))
                continue
            obj = decode_json(text)
            custom_id = _record_id(obj) if isinstance(obj, dict) else None
            custom_id = custom_id if custom_id is not None and storable(custom_id) else None
            error = _line_error(obj, endpoint)
            parsed: Request | RecordError = error or parse_record(
                obj, defaults, now=now, origin=f"{file_id}:{number}"
            )
            if isinstance(parsed, Request) and parsed.key in seen:
                parsed = RecordError(
                    "duplicate_id", "custom_id used by an earlier line", "custom_id"
                )
            if isinstance(parsed, RecordError):
                message = f"line {number}: {parsed}"
                lines.append(LineRecord(number, custom_id, None, parsed.reason, message, text))
                continue
            seen.add(parsed.key)
            request = replace(parsed, key=f"{batch_id}/{parsed.key}")
            lines.append(LineRecord(number, parsed.key, request.key))
            requests.append(request)
        return lines, requests

    def batch(self, batch_id: str, now: datetime) -> BatchObject:
        if not storable(batch_id):
            raise _not_found("Batch", batch_id)
        with self.session_factory() as session, session.begin():
            batch = store_intake.get_batch(session, batch_id)
            if batch is None:
                raise _not_found("Batch", batch_id)
            return self._view(session, batch, now)

    def batches(
        self, limit: int, after: str | None, now: datetime
    ) -> tuple[list[BatchObject], bool]:
        if after is not None and not storable(after):
            return [], False
        with self.session_factory() as session, session.begin():
            page, more = store_intake.list_batches(session, limit=limit, after=after)
            return [self._view(session, b, now) for b in page], more

    def cancel(self, batch_id: str, now: datetime) -> BatchObject:
        if not storable(batch_id):
            raise _not_found("Batch", batch_id)
        with self.session_factory() as session, session.begin():
            batch = store_intake.get_batch(session, batch_id)
            if batch is None:
                raise _not_found("Batch", batch_id)
            if batch.status not in LIVE:
                raise IntakeError(
                    409,
                    f"Cannot cancel a batch with status '{batch.status}'.",
                    code="batch_not_cancellable",
                )
            if store_intake.move_batch(
                session, batch_id, ["in_progress"], "cancelling", cancelling_at=now
            ):
                waiting = (RequestState.QUEUED, RequestState.HELD)
                ids = store_intake.request_keys(session, batch, [s.value for s in waiting])
                store_requests.transition_requests(
                    session,
                    ids,
                    RequestState.REJECTED,
                    now,
                    expected=waiting,
                    reason=CANCELLED_CODE,
                )
        return self.batch(batch_id, now)

    def _view(self, session: Session, batch: BatchInfo, now: datetime) -> BatchObject:
        states = store_intake.line_states(session, batch)
        if batch.status in ("in_progress", "cancelling") and all_ended(batch.total, states):
            batch = self._finish(session, batch, now)
        return batch_object(batch, request_counts(batch.total, states))

    def _finish(self, session: Session, batch: BatchInfo, now: datetime) -> BatchInfo:
        """Write the output and error files and end the batch, once (compare-and-set first)."""
        output: list[bytes] = []
        errors: list[bytes] = []
        for outcome in store_intake.line_outcomes(session, batch):
            ok, line = result_line(batch.id, outcome)
            (output if ok else errors).append(json_text.dumps(line).encode() + b"\n")
        output_id = f"file-{secrets.token_hex(12)}" if output else None
        error_id = f"file-{secrets.token_hex(12)}" if errors else None
        cancelled = batch.status == "cancelling"
        ended = {"cancelled_at": now} if cancelled else {"completed_at": now}
        moved = store_intake.move_batch(
            session,
            batch.id,
            [batch.status],
            "cancelled" if cancelled else "completed",
            output_file_id=output_id,
            error_file_id=error_id,
            finalizing_at=now,
            **ended,
        )
        if moved:
            for file_id, kind, chunks in (
                (output_id, "output", output),
                (error_id, "error", errors),
            ):
                if file_id is None:
                    continue
                content = b"".join(chunks)
                info = FileInfo(
                    id=file_id,
                    purpose="batch_output",
                    filename=f"{batch.id}_{kind}.jsonl",
                    size=len(content),
                    created_at=now,
                    expires_at=None,
                    batch_id=batch.id,
                )
                store_intake.add_file(session, info, content)
        fresh = store_intake.get_batch(session, batch.id)
        return fresh if fresh is not None else batch


def _rejected(index: int, error: RecordError) -> Accepted:
    detail = ErrorDetail(
        message=str(error), type="invalid_request_error", param=error.field, code=error.reason
    )
    return Accepted(index=index, status="rejected", error=detail)


def _line_error(obj: object, endpoint: str) -> RecordError | None:
    """What a batch input line must be beyond a valid record: an OpenAI batch line whose
    ``url`` is the batch's endpoint (specs/openai-batch-api.md §5.1)."""
    if isinstance(obj, RecordError):
        return obj
    if not isinstance(obj, dict):
        return None  # parse_record says what it is
    if "custom_id" not in obj:
        return RecordError(
            "missing_id",
            "a batch input line is an OpenAI batch line and needs a custom_id",
            "custom_id",
        )
    if obj.get("url") != endpoint:
        return RecordError(
            "bad_endpoint",
            f"url {obj.get('url')!r} is not the batch's endpoint {endpoint!r}",
            "url",
        )
    return None
