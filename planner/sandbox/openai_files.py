"""The Files API of the OpenAI-shaped surfaces: upload, retrieve, list, content, delete.

Wire shapes: specs/openai-batch-api.md §3.2–§3.6 and §4. Upload does not look inside the file
(line problems surface later as a failed batch, pitfall 4); only the ``.jsonl`` name of a
``purpose=batch`` file and the size are checked here.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from planner.sandbox.kernel import Blob, SandboxState, StoredFile
from planner.sandbox.openai_common import (
    FILE_RETENTION_SECONDS,
    ApiError,
    Call,
    Flavor,
    as_int,
    int_param,
    page_after,
    settings_for,
)
from planner.sandbox.responses import download_response

PURPOSES = frozenset({"batch", "assistants", "fine-tune", "vision", "user_data", "evals"})
MIN_EXPIRY_SECONDS = 3600
MAX_EXPIRY_SECONDS = 2_592_000
MAX_LIST_LIMIT = 10_000


def surfaces_of(flavor: Flavor) -> frozenset[str]:
    """Which stored files a flavour can see (compat also sees native Gemini uploads)."""
    return frozenset({"compat", "gemini"}) if flavor.name == "compat" else frozenset({"openai"})


def file_object(flavor: Flavor, stored: StoredFile) -> dict[str, Any]:
    return {
        "id": flavor.file_ref(stored.id),
        "object": "file",
        "bytes": stored.size,
        "created_at": int(stored.created_at),
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "expires_at": as_int(stored.expires_at),
        "status_details": None,
    }


def not_found(ref: str) -> ApiError:
    return ApiError(404, f"No such File object: {ref}", param="id", code=None)


def lookup(state: SandboxState, flavor: Flavor, ref: str, now: float) -> StoredFile:
    """A live file this flavour can see, or 404."""
    with state.lock:
        stored = state.files.get(flavor.file_key(ref))
    if (
        stored is None
        or stored.surface not in surfaces_of(flavor)
        or (stored.expires_at is not None and now >= stored.expires_at)
    ):
        raise not_found(ref)
    return stored


class FilesApi:
    def __init__(self, state: SandboxState, flavor: Flavor) -> None:
        self.state = state
        self.flavor = flavor

    async def create(self, call: Call) -> Response:
        form = await call.request.form()
        purpose = form.get("purpose")
        upload = form.get("file")
        if not isinstance(purpose, str) or not purpose:
            raise ApiError(
                400,
                "Missing required parameter: 'purpose'.",
                code="missing_required_parameter",
                param="purpose",
            )
        if purpose not in PURPOSES:
            raise ApiError(
                400,
                f"Invalid value for 'purpose': {purpose!r}. Supported values are: "
                + ", ".join(f"'{p}'" for p in sorted(PURPOSES))
                + ".",
                code="invalid_value",
                param="purpose",
            )
        if not isinstance(upload, UploadFile):
            raise ApiError(
                400,
                "Missing required parameter: 'file'.",
                code="missing_required_parameter",
                param="file",
            )
        filename = upload.filename or "upload"
        if purpose == "batch" and not filename.endswith(".jsonl"):
            raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
        expires_after = _expiry(
            form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
        )
        await upload.seek(0)
        data = await run_in_threadpool(Blob.copied_from, upload.file)
        limit = settings_for(self.state).max_upload_bytes
        if data.size > limit:
            raise ApiError(
                400,
                f"File is too large: {data.size} bytes; the maximum is {limit} bytes.",
                param="file",
                code="file_too_large",
            )
        if expires_after is None and purpose == "batch":
            expires_after = FILE_RETENTION_SECONDS
        now = call.now
        key = self.state.new_id("file-" if self.flavor.name == "openai" else "", 24)
        stored = self.state.add_file(
            surface=self.flavor.name,
            data=data,
            filename=filename,
            purpose=purpose,
            mime_type=upload.content_type or "application/octet-stream",
            file_id=key,
            expires_at=None if expires_after is None else now + expires_after,
        )
        return JSONResponse(file_object(self.flavor, stored))

    async def retrieve(self, call: Call, ref: str) -> Response:
        return JSONResponse(
            file_object(self.flavor, lookup(self.state, self.flavor, ref, call.now))
        )

    async def content(self, call: Call, ref: str) -> Response:
        stored = lookup(self.state, self.flavor, ref, call.now)
        return download_response(stored, "application/octet-stream")

    async def delete(self, call: Call, ref: str) -> Response:
        stored = lookup(self.state, self.flavor, ref, call.now)
        settings = settings_for(self.state)
        with self.state.lock:
            self.state.files.pop(stored.id, None)
            settings.tombstones[stored.id] = int(stored.metadata.get("seq", 0))
        return JSONResponse(
            {"id": self.flavor.file_ref(stored.id), "object": "file", "deleted": True}
        )

    async def list(self, call: Call) -> Response:
        request: Request = call.request
        limit = int_param(request, "limit", MAX_LIST_LIMIT, 1, MAX_LIST_LIMIT)
        purpose = request.query_params.get("purpose")
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise ApiError(
                400,
                f"Invalid value for 'order': {order!r}; expected 'asc' or 'desc'.",
                param="order",
            )
        after = request.query_params.get("after") or None
        surfaces = surfaces_of(self.flavor)
        with self.state.lock:
            files = [
                f
                for f in self.state.files.values()
                if f.surface in surfaces
                and (purpose is None or f.purpose == purpose)
                and (f.expires_at is None or call.now < f.expires_at)
            ]
            after_seq = self._cursor(after)
        page = page_after(
            files,
            lambda f: self.flavor.file_ref(f.id),
            lambda f: int(f.metadata.get("seq", 0)),
            after,
            after_seq,
            limit,
            newest_first=order == "desc",
        )
        page["data"] = [file_object(self.flavor, f) for f in page["data"]]
        return JSONResponse(page)

    def _cursor(self, after: str | None) -> int | None:
        if after is None:
            return None
        key = self.flavor.file_key(after)
        stored = self.state.files.get(key)
        if stored is not None:
            return int(stored.metadata.get("seq", 0))
        seq = settings_for(self.state).tombstones.get(key)
        if seq is None:
            raise ApiError(400, f"Invalid 'after': no file {after!r}.", param="after")
        return seq


def _expiry(anchor: Any, seconds: Any) -> int | None:
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise ApiError(
            400,
            "Invalid value for 'expires_after[anchor]': expected 'created_at'.",
            param="expires_after.anchor",
        )
    try:
        value = int(str(seconds))
    except ValueError:
        raise ApiError(
            400,
            "Invalid 'expires_after[seconds]': expected an integer.",
            param="expires_after.seconds",
        ) from None
    if not MIN_EXPIRY_SECONDS <= value <= MAX_EXPIRY_SECONDS:
        raise ApiError(
            400,
            f"Invalid 'expires_after[seconds]': {value} is outside "
            f"{MIN_EXPIRY_SECONDS}..{MAX_EXPIRY_SECONDS}.",
            param="expires_after.seconds",
        )
    return value
