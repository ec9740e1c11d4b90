"""The intake's routes: native ``/requests`` and OpenAI's ``/v1/files`` and ``/v1/batches``.

Handlers only translate HTTP to ``IntakeService`` calls (``service.py``) and back; each reads the
clock once and passes ``now`` down. Blocking store calls run in FastAPI's thread pool (plain
``def`` handlers). The bearer check lives in the ``Guard`` middleware (``app.py``); the
``Security`` dependency here only states it in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from planner.runtime import clock
from planner.runtime.intake.objects import (
    BatchCreate,
    BatchList,
    BatchObject,
    ErrorBody,
    FileDeleted,
    FileList,
    FileObject,
    RequestView,
    SubmitResult,
    file_object,
)
from planner.runtime.intake.service import (
    MAX_FILE_LIST,
    MAX_LIST,
    IntakeError,
    IntakeService,
)
from planner.sources.formats import RecordError, decode_json

bearer = HTTPBearer(auto_error=False, description="One of the intake's tokens.")
_secured = [Security(bearer)]
_not_found: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
_conflict: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}}

native_router = APIRouter(dependencies=_secured, tags=["native"])
v1_router = APIRouter(prefix="/v1", dependencies=_secured, tags=["openai-batch"])

Ident = Annotated[str, Path(min_length=1, max_length=512)]

_RECORDS_SCHEMA = {
    "oneOf": [
        {"type": "object", "description": "One record in any of the spool's formats."},
        {
            "type": "array",
            "items": {"type": "object"},
            "minItems": 1,
            "description": "Several records; each gets its own answer.",
        },
    ]
}
_BINARY = {"type": "string", "format": "binary"}
_NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines")


def _service(request: Request) -> IntakeService:
    service: IntakeService = request.app.state.service
    return service


def _records(body: bytes, content_type: str) -> list[object]:
    """The records of a native POST: a JSON object, a JSON array of objects, or JSON lines."""
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IntakeError(
            400, f"body is not UTF-8 (byte {exc.start})", code="invalid_body"
        ) from None
    if media in _NDJSON:
        records: list[object] = []
        for line in text.splitlines():
            if line.strip():
                value = decode_json(line)
                records.append(value)  # a RecordError is answered as that record's error
        if not records:
            raise IntakeError(400, "body has no records", code="invalid_body")
        return records
    if media not in ("application/json", ""):
        raise IntakeError(
            415,
            f"content type {media!r} not accepted: send application/json or application/x-ndjson",
            code="invalid_content_type",
        )
    value = decode_json(text)
    if isinstance(value, RecordError):
        raise IntakeError(400, f"body: {value.message}", code="invalid_json")
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return list(value)
    raise IntakeError(
        400,
        "body must be a JSON object (one record) or a non-empty array of objects",
        code="invalid_body",
    )


# -- native ----------------------------------------------------------------------------------


@native_router.post(
    "/requests",
    response_model=SubmitResult,
    response_model_exclude_none=True,
    summary="Queue one record or many (any spool format); one answer per record",
    responses={415: {"model": ErrorBody}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _RECORDS_SCHEMA}},
        }
    },
)
async def post_requests(request: Request) -> SubmitResult:
    records = _records(await request.body(), request.headers.get("content-type", ""))
    service = _service(request)
    return await run_in_threadpool(service.submit, records, clock.utc_now())


@native_router.get(
    "/requests/{request_id}",
    response_model=RequestView,
    responses=_not_found,
    summary="A request's state and, once it ended, its result",
)
def get_request(request: Request, request_id: Ident) -> RequestView:
    stored, result = _service(request).request(request_id)
    return RequestView(
        id=request_id,
        state=stored.state.value,
        reason=stored.reason,
        lane=None if stored.lane is None else stored.lane.value,
        result=result,
    )


# -- files -----------------------------------------------------------------------------------


def _links(**targets: tuple[str, str]) -> dict[str, Any]:
    """OpenAPI links from a 200 answer's ``id`` to the operations that take it."""
    links: dict[str, Any] = {}
    for name, (operation, parameter) in targets.items():
        if parameter:
            links[name] = {
                "operationId": operation,
                "parameters": {parameter: "$response.body#/id"},
            }
        else:  # a batch of the uploaded file
            body = {
                "input_file_id": "$response.body#/id",
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            }
            links[name] = {"operationId": operation, "requestBody": body}
    return {"responses": {"200": {"links": links}}}


_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["file", "purpose"],
    "properties": {
        "file": {
            "type": "string",
            "description": "The JSONL input file (a file part, as the SDK sends it, or text); "
            "its lines are judged when a batch is created.",
        },
        "purpose": {"type": "string", "const": "batch", "description": "Only 'batch'."},
    },
}


@v1_router.post(
    "/files",
    response_model=FileObject,
    responses={415: {"model": ErrorBody}},
    summary="Upload a batch input file",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": _UPLOAD_SCHEMA}},
        },
        **_links(
            RetrieveFile=("retrieve_file", "file_id"),
            FileContent=("file_content", "file_id"),
            DeleteFile=("delete_file", "file_id"),
            CreateBatch=("create_batch", ""),
        ),
    },
)
async def create_file(request: Request) -> FileObject:
    """Multipart as the SDK sends it (``purpose``, then ``file`` with a filename); a ``file``
    sent as a plain field is taken as the file's text. Other fields are ignored."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        raise IntakeError(415, "upload a file as multipart/form-data", code="invalid_content_type")
    async with request.form(max_files=1, max_fields=100) as form:
        purpose = form.get("purpose")
        upload = form.get("file")
        if upload is None:
            raise IntakeError(
                400, "file: required", code="missing_required_parameter", param="file"
            )
        if purpose is None:
            raise IntakeError(
                400, "purpose: required", code="missing_required_parameter", param="purpose"
            )
        if isinstance(upload, str):
            content, filename = upload.encode(), "upload"
        else:
            content, filename = await upload.read(), upload.filename or "upload"
    service = _service(request)
    info = await run_in_threadpool(
        service.upload,
        filename,
        purpose if isinstance(purpose, str) else "",
        content,
        clock.utc_now(),
    )
    return file_object(info)


@v1_router.get("/files", response_model=FileList, summary="List files")
def list_files(
    request: Request,
    purpose: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FILE_LIST)] = MAX_FILE_LIST,
    after: Annotated[str | None, Query(max_length=64)] = None,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> FileList:
    page, more = _service(request).files(purpose, limit, after, order == "desc")
    data = [file_object(f) for f in page]
    return FileList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@v1_router.get(
    "/files/{file_id}", response_model=FileObject, responses=_not_found, summary="A file"
)
def retrieve_file(request: Request, file_id: Ident) -> FileObject:
    return file_object(_service(request).file(file_id))


@v1_router.get(
    "/files/{file_id}/content",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": "The file's bytes (JSONL).",
        },
        **_not_found,
    },
    summary="A file's bytes",
)
def file_content(request: Request, file_id: Ident) -> Response:
    return Response(_service(request).content(file_id), media_type="application/octet-stream")


@v1_router.delete(
    "/files/{file_id}", response_model=FileDeleted, responses=_not_found, summary="Delete a file"
)
def delete_file(request: Request, file_id: Ident) -> FileDeleted:
    _service(request).delete(file_id)
    return FileDeleted(id=file_id, deleted=True)


# -- batches ---------------------------------------------------------------------------------


@v1_router.post(
    "/batches",
    response_model=BatchObject,
    responses=_not_found,
    summary="Create a batch",
    openapi_extra=_links(
        RetrieveBatch=("retrieve_batch", "batch_id"), CancelBatch=("cancel_batch", "batch_id")
    ),
)
def create_batch(request: Request, spec: BatchCreate) -> BatchObject:
    return _service(request).create_batch(spec, clock.utc_now())


@v1_router.get("/batches", response_model=BatchList, summary="List batches, newest first")
def list_batches(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> BatchList:
    data, more = _service(request).batches(limit, after, clock.utc_now())
    return BatchList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@v1_router.get(
    "/batches/{batch_id}", response_model=BatchObject, responses=_not_found, summary="A batch"
)
def retrieve_batch(request: Request, batch_id: Ident) -> BatchObject:
    return _service(request).batch(batch_id, clock.utc_now())


@v1_router.post(
    "/batches/{batch_id}/cancel",
    response_model=BatchObject,
    responses=_conflict,
    summary="Cancel a batch: queued lines are not run; 409 when it already ended",
)
def cancel_batch(request: Request, batch_id: Ident) -> BatchObject:
    return _service(request).cancel(batch_id, clock.utc_now())


__all__ = ["native_router", "v1_router"]
