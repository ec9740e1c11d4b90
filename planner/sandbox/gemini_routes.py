"""The Gemini Developer API surface of the sandbox (files, batches, interactive models).

Paths are the real ones (specs/gemini-batch-api.md §4): ``/{v}/files``, ``/upload/{v}/files``,
``/{v}/files/{id}:download``, ``/download/{v}/files/{id}:download``,
``/{v}/models/{model}:{method}``, ``/{v}/batches[/{id}[:cancel]]`` for ``v`` in v1, v1beta,
v1alpha. ``/v1/...`` is shared with the OpenAI surface, so a small ASGI dispatcher sends a
request here when it carries ``x-goog-api-key`` (or ``?key=``), and always for ``/v1beta/``
(except ``/v1beta/openai/``), ``/upload/`` and ``/download/``; the routes themselves live under
the internal prefix ``/_gemini``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from planner.sandbox import gemini_render as render
from planner.sandbox import usage, wire_json
from planner.sandbox.faults import HttpFault, dropped_response
from planner.sandbox.kernel import (
    Blob,
    Job,
    JobLine,
    LimitExceeded,
    SandboxState,
    StoredFile,
    UploadSession,
    bare_model,
    our_id_from_display_name,
    settle_in_background,
)
from planner.sandbox.responses import WireJSONResponse, download_response

PREFIX = "/_gemini"
VERSIONS = frozenset({"v1", "v1beta", "v1alpha"})
MAX_INLINE_BYTES = 20 * 1024 * 1024
MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
MAX_FILE_ID = 40
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
KEY_HEADERS = ("x-planner-key", "x-sandbox-key")
_FILE_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_MODEL_FAMILIES = ("gemini", "gemma", "text-embedding", "embedding")


def _text_lines(blob: Blob) -> Iterator[str]:
    """``blob.read().decode("utf-8", "replace").splitlines()``, one line after another, without
    the file in memory: UTF-8 never puts a newline byte inside a character, so each piece
    between newlines decodes alone, and ``splitlines`` of the piece with its newline finds
    the same lines (the newline ends whatever line is open, as in the whole text)."""
    pieces = blob.lines()
    previous = next(pieces)
    for piece in pieces:  # every piece but the last ended with a newline
        yield from (previous.decode("utf-8", "replace") + "\n").splitlines()
        previous = piece
    yield from previous.decode("utf-8", "replace").splitlines()


class GeminiError(Exception):
    """An error answered in Google's envelope."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            render.error_body(self.code, self.message, self.details),
            status_code=self.code,
            headers=self.headers,
        )


# -- dispatch ---------------------------------------------------------------------------------
def is_gemini_request(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    if path.startswith(("/upload/", "/download/")):
        return True
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[1] not in VERSIONS:
        return False
    if parts[1] == "v1beta" and parts[2] != "openai":
        return True
    if any(name.lower() == b"x-goog-api-key" for name, _ in scope.get("headers", [])):
        return True
    query: bytes = scope.get("query_string", b"")
    return any(item.startswith(b"key=") for item in query.split(b"&"))


class GeminiDispatch:
    """ASGI middleware: route Gemini-bound requests to the ``/_gemini`` routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_gemini_request(scope):
            scope = dict(scope)
            scope["path"] = PREFIX + scope["path"]
            if "raw_path" in scope and scope["raw_path"] is not None:
                scope["raw_path"] = PREFIX.encode() + scope["raw_path"]
        await self.app(scope, receive, send)


# -- helpers ----------------------------------------------------------------------------------
def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise GeminiError(404, f"API version {version!r} is not served here.")


def _check_key(request: Request) -> None:
    if not request.headers.get("x-goog-api-key") and not request.query_params.get("key"):
        raise GeminiError(403, "Method doesn't allow unregistered callers (missing API key).")


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise GeminiError(400, f"Invalid JSON payload in {what}: {exc}") from None
    if not isinstance(data, dict):
        raise GeminiError(400, f"Invalid JSON payload in {what}: expected an object.")
    return data


def _pick(data: dict[str, Any], camel: str, snake: str) -> Any:
    return data[camel] if camel in data else data.get(snake)


def _public_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _page(
    items: list[Any], seq_of: Callable[[Any], int], request: Request
) -> tuple[list[Any], str | None]:
    """Newest first; the page token is the creation sequence of the last item returned."""
    raw_size = request.query_params.get("pageSize")
    size = DEFAULT_PAGE_SIZE
    if raw_size is not None:
        if not raw_size.isdigit():
            raise GeminiError(400, f"Invalid pageSize {raw_size!r}: expected a whole number.")
        size = min(max(int(raw_size), 1), MAX_PAGE_SIZE) if int(raw_size) else DEFAULT_PAGE_SIZE
    ordered = sorted(items, key=seq_of, reverse=True)
    token = request.query_params.get("pageToken")
    if token:
        if not token.startswith("s") or not token[1:].isdigit():
            raise GeminiError(400, f"Invalid pageToken {token!r}.")
        limit = int(token[1:])
        ordered = [item for item in ordered if seq_of(item) < limit]
    page = ordered[:size]
    next_token = f"s{seq_of(page[-1])}" if len(ordered) > size else None
    return page, next_token


def _fault_response(fault: HttpFault, *, model: str | None, chunk: bool) -> Response:
    headers = {"X-Goog-Upload-Status": "final"} if chunk else {}
    if fault.kind in ("rate_limit", "daily_quota"):
        per_day = fault.kind == "daily_quota"
        message = (
            "You exceeded your current quota, please check your plan and billing details."
            if per_day
            else "Resource has been exhausted (e.g. check quota)."
        )
        details = render.rate_limit_details(fault.retry_after or 0.0, per_day=per_day, model=model)
        return GeminiError(429, message, details=details, headers=headers).response()
    if fault.kind == "auth_error":
        return GeminiError(403, "Permission denied: API key not valid.", headers=headers).response()
    if fault.status == 503:
        return GeminiError(
            503, "The model is overloaded. Please try again later.", headers=headers
        ).response()
    return GeminiError(
        fault.status or 500, "An internal error has occurred.", headers=headers
    ).response()


class GeminiSurface:
    """Route handlers bound to one SandboxState."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # -- fault wrapper ------------------------------------------------------------------------
    async def run(
        self,
        operation: str,
        action: Callable[[], Response],
        *,
        ident: str = "",
        model: str | None = None,
    ) -> Response:
        fault = self.state.faults.http_fault("gemini", operation, ident)
        chunk = operation == "upload_chunk"
        if fault is not None and not fault.after_action:
            if fault.sleep:
                await asyncio.sleep(fault.sleep)
            if fault.status:
                return _fault_response(fault, model=model, chunk=chunk)
        try:  # in a worker thread: parsing a big input file must not stall other requests
            response = await asyncio.to_thread(action)
        except GeminiError as exc:
            response = exc.response()
        if fault is not None and fault.after_action:
            if fault.kind == "drop":
                return dropped_response(response.status_code)
            await asyncio.sleep(fault.sleep)
        return response

    # -- files --------------------------------------------------------------------------------
    def _file(self, file_id: str, *, for_download: bool = False) -> StoredFile:
        if not for_download and len(file_id) > MAX_FILE_ID:
            raise GeminiError(
                400,
                f"Invalid file name files/{file_id}: the id must be at most {MAX_FILE_ID} "
                "characters.",
            )
        now = self.state.clock.now()
        with self.state.lock:
            stored = self.state.files.get(file_id)
            live = stored is not None and (stored.expires_at is None or now < stored.expires_at)
            if live and stored is not None and stored.surface in ("gemini", "compat"):
                return stored
        raise GeminiError(404, f"File files/{file_id} not found.")

    def upload_start(self, request: Request, version: str, body: bytes) -> Response:
        headers = request.headers
        protocol = headers.get("x-goog-upload-protocol", "").lower()
        command = headers.get("x-goog-upload-command", "").lower()
        if protocol != "resumable" or command != "start":
            raise GeminiError(
                400,
                "Only resumable uploads are supported: send X-Goog-Upload-Protocol: resumable "
                "and X-Goog-Upload-Command: start.",
            )
        meta = _json_object(body, "upload metadata")
        file_meta = meta.get("file") or {}
        if not isinstance(file_meta, dict):
            raise GeminiError(400, "Invalid upload metadata: 'file' must be an object.")
        size_raw = headers.get("x-goog-upload-header-content-length") or _pick(
            file_meta, "sizeBytes", "size_bytes"
        )
        expected: int | None = None
        if size_raw is not None:
            try:
                expected = int(size_raw)
            except ValueError:
                raise GeminiError(400, f"Invalid upload size {size_raw!r}.") from None
            if expected < 0 or expected > MAX_FILE_BYTES:
                raise GeminiError(400, f"File size {expected} is outside 0..{MAX_FILE_BYTES}.")
        mime = (
            headers.get("x-goog-upload-header-content-type")
            or _pick(file_meta, "mimeType", "mime_type")
            or "application/octet-stream"
        )
        requested = file_meta.get("name")
        if requested is not None:
            requested = str(requested).removeprefix("files/")
            if len(requested) > MAX_FILE_ID or not _FILE_ID.match(requested):
                raise GeminiError(
                    400,
                    f"Invalid file name files/{requested}: at most {MAX_FILE_ID} lowercase "
                    "letters, digits or '-', not starting or ending with '-'.",
                )
            with self.state.lock:
                if requested in self.state.files:
                    raise GeminiError(409, f"File files/{requested} already exists.")
        session = UploadSession(
            id=self.state.new_id("", 32),
            surface="gemini",
            metadata={
                "display_name": _pick(file_meta, "displayName", "display_name"),
                "name": requested,
            },
            expected_size=expected,
            mime_type=str(mime),
            filename=headers.get("x-goog-upload-file-name"),
        )
        with self.state.lock:
            self.state.uploads[session.id] = session
        url = (
            f"{_public_base(request)}/upload/{version}/files"
            f"?upload_id={session.id}&upload_protocol=resumable"
        )
        return Response(
            status_code=200,
            content=b"",
            headers={
                "X-Goog-Upload-URL": url,
                "X-Goog-Upload-Control-URL": url,
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Chunk-Granularity": "262144",
            },
        )

    def upload_chunk(self, request: Request, version: str, body: bytes) -> Response:
        final = {"X-Goog-Upload-Status": "final"}
        upload_id = request.query_params.get("upload_id", "")
        with self.state.lock:
            session = self.state.uploads.get(upload_id)
            if session is None:
                raise GeminiError(404, "Unknown or finished upload session.", headers=final)
            commands = {
                c.strip()
                for c in request.headers.get("x-goog-upload-command", "").lower().split(",")
            }
            received = session.received.size
            if "query" in commands:
                return Response(
                    status_code=200,
                    headers={
                        "X-Goog-Upload-Status": "active",
                        "X-Goog-Upload-Size-Received": str(received),
                    },
                )
            if not commands & {"upload", "finalize"}:
                raise GeminiError(400, "Unknown X-Goog-Upload-Command.", headers=final)
            offset_raw = request.headers.get("x-goog-upload-offset", str(received))
            if not offset_raw.isdigit() or int(offset_raw) != received:
                raise GeminiError(
                    400,
                    f"X-Goog-Upload-Offset {offset_raw} does not match the {received} bytes "
                    "received so far.",
                    headers=final,
                )
            if "upload" in commands:
                session.received.write(body)
            if session.expected_size is not None and session.received.size > session.expected_size:
                del self.state.uploads[upload_id]
                raise GeminiError(
                    400,
                    f"Received {session.received.size} bytes, more than the declared "
                    f"{session.expected_size}.",
                    headers=final,
                )
            if "finalize" not in commands:
                return Response(
                    status_code=200,
                    headers={
                        "X-Goog-Upload-Status": "active",
                        "X-Goog-Upload-Size-Received": str(session.received.size),
                    },
                )
            del self.state.uploads[upload_id]
            if session.expected_size is not None and session.received.size != session.expected_size:
                raise GeminiError(
                    400,
                    f"Upload finalized with {session.received.size} bytes; "
                    f"{session.expected_size} were declared.",
                    headers=final,
                )
            requested = session.metadata.get("name")
            if requested is not None and requested in self.state.files:
                raise GeminiError(409, f"File files/{requested} already exists.", headers=final)
            now = self.state.clock.now()
            stored = self.state.add_file(
                surface="gemini",
                data=session.received.blob(),
                filename=session.filename or "",
                purpose="upload",
                mime_type=session.mime_type,
                display_name=session.metadata.get("display_name"),
                file_id=requested or self.state.new_id("", 12),
                expires_at=now + render.FILE_RETENTION_SECONDS,
            )
        body_out = {"file": render.file_resource(stored, _public_base(request), version)}
        return JSONResponse(body_out, status_code=200, headers=final)

    def file_get(self, request: Request, version: str, file_id: str) -> Response:
        stored = self._file(file_id)
        return JSONResponse(render.file_resource(stored, _public_base(request), version))

    def file_list(self, request: Request, version: str) -> Response:
        now = self.state.clock.now()
        with self.state.lock:
            files = [
                f
                for f in self.state.files.values()
                if f.surface == "gemini"
                and not f.generated
                and (f.expires_at is None or now < f.expires_at)
            ]
        page, token = _page(files, lambda f: int(f.metadata["seq"]), request)
        base = _public_base(request)
        body: dict[str, Any] = {}
        if page:
            body["files"] = [render.file_resource(f, base, version) for f in page]
        if token:
            body["nextPageToken"] = token
        return JSONResponse(body)

    def file_delete(self, file_id: str) -> Response:
        stored = self._file(file_id)
        with self.state.lock:
            self.state.files.pop(stored.id, None)
        return JSONResponse({})

    def file_download(self, file_id: str) -> Response:
        stored = self._file(file_id, for_download=True)
        if not stored.generated:
            raise GeminiError(
                400, f"File files/{file_id} was uploaded; only generated files can be downloaded."
            )
        return download_response(stored, stored.mime_type)

    # -- models -------------------------------------------------------------------------------
    @staticmethod
    def check_model(model: str, method: str, version: str, *, embedding: bool) -> str:
        if not _MODEL_ID.match(model) or not model.startswith(_MODEL_FAMILIES):
            raise GeminiError(
                404,
                f"models/{model} is not found for API version {version}, or is not supported "
                f"for {method}.",
            )
        if ("embedding" in model) != embedding:
            raise GeminiError(
                400, f"models/{model} is not supported for {method}: wrong model type."
            )
        return f"models/{model}"

    def _billing_key(self, request: Request, fallback: str, index: int | None = None) -> str:
        for name in KEY_HEADERS:
            value = request.headers.get(name)
            if value:
                return value if index is None else f"{value}#{index}"
        return fallback

    def generate(self, request: Request, version: str, model: str, body: bytes) -> Response:
        full = self.check_model(model, "generateContent", version, embedding=False)
        data = _json_object(body, "generateContent request")
        if not data.get("contents"):
            raise GeminiError(400, "* GenerateContentRequest.contents: contents is not specified")
        response, billed = render.generate_response(full, data)
        key = self._billing_key(request, f"interactive:{render.response_id(full, data)}")
        # the tier that answered, in usageMetadata.serviceTier (the SDK's output-only field): a
        # flex request is answered by flex unless the flex_default fault sends it to standard
        asked = str(data.get("serviceTier") or data.get("service_tier") or "").lower()
        flex = asked == "flex" and not self.state.faults.flex_default(key)
        response["usageMetadata"]["serviceTier"] = "flex" if flex else "standard"
        with self.state.lock:
            self.state.ledger.bill(key, "flex" if flex else "interactive", billed, model=full)
        return JSONResponse(response)

    def _embed_one(self, full: str, item: dict[str, Any]) -> tuple[list[float], int]:
        if not isinstance(item.get("content"), dict):
            raise GeminiError(400, "* EmbedContentRequest.content: content is not specified")
        item_model = item.get("model")
        if item_model is not None and bare_model(str(item_model)) != bare_model(full):
            raise GeminiError(
                400, f"Model {item_model} in a request does not match {full} in the URL."
            )
        return render.embed_values(full, item)

    def embed(self, request: Request, version: str, model: str, body: bytes) -> Response:
        full = self.check_model(model, "embedContent", version, embedding=True)
        data = _json_object(body, "embedContent request")
        values, tokens = self._embed_one(full, data)
        key = self._billing_key(request, f"interactive:{render.response_id(full, data)}")
        with self.state.lock:
            self.state.ledger.bill(
                key,
                "interactive",
                {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens},
                model=full,
            )
        return JSONResponse({"embedding": {"values": values}})

    def batch_embed(self, request: Request, version: str, model: str, body: bytes) -> Response:
        full = self.check_model(model, "batchEmbedContents", version, embedding=True)
        data = _json_object(body, "batchEmbedContents request")
        items = data.get("requests")
        if not isinstance(items, list) or not items:
            raise GeminiError(400, "* BatchEmbedContentsRequest.requests: requests is empty")
        results = []
        for item in items:
            if not isinstance(item, dict):
                raise GeminiError(400, "Each item of requests must be an object.")
            results.append(self._embed_one(full, item))
        with self.state.lock:
            for index, (item, (_, tokens)) in enumerate(zip(items, results, strict=True)):
                fallback = f"interactive:{render.response_id(full, item)}"
                key = self._billing_key(request, fallback, index if len(items) > 1 else None)
                self.state.ledger.bill(
                    key,
                    "interactive",
                    {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens},
                    model=full,
                )
        return JSONResponse({"embeddings": [{"values": values} for values, _ in results]})

    def count_tokens(self, version: str, model: str, body: bytes) -> Response:
        embedding = "embedding" in model
        self.check_model(model, "countTokens", version, embedding=embedding)
        data = _json_object(body, "countTokens request")
        inner = _pick(data, "generateContentRequest", "generate_content_request")
        source = inner if isinstance(inner, dict) else data
        if embedding:
            total = usage.embedding_tokens(
                usage.embedding_texts({"contents": source.get("contents", [])})
            )
        else:
            total = usage.prompt_tokens(source)
        return JSONResponse(
            {
                "totalTokens": total,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
            }
        )

    # -- batches ------------------------------------------------------------------------------
    def _parse_file_lines(self, file_id: str, full: str, kind: str) -> list[JobLine]:
        stored = self._file(file_id)
        lines: list[JobLine] = []
        for number, raw in enumerate(_text_lines(stored.blob), 1):
            if not raw.strip():
                continue
            where = f"files/{file_id} line {number}"
            try:
                item = wire_json.loads(raw)
            except ValueError as exc:
                raise GeminiError(400, f"{where}: invalid JSON ({exc}).") from None
            if not isinstance(item, dict):
                raise GeminiError(400, f"{where}: expected a JSON object.")
            key, request = item.get("key"), item.get("request")
            if not isinstance(key, str) or not key:
                raise GeminiError(400, f"{where}: 'key' must be a non-empty string.")
            if not isinstance(request, dict):
                raise GeminiError(400, f"{where}: 'request' must be an object.")
            self._check_request(request, full, kind, where)
            lines.append(JobLine(key=key, request=request))
        if not lines:
            raise GeminiError(400, f"files/{file_id} contains no requests.")
        return lines

    @staticmethod
    def _check_request(request: dict[str, Any], full: str, kind: str, where: str) -> None:
        model = request.get("model")
        if model is not None and bare_model(str(model)) != bare_model(full):
            raise GeminiError(
                400,
                f"{where}: model {model} differs from the batch model {full}; one model per batch.",
            )
        if kind == "embed" and not isinstance(request.get("content"), dict):
            raise GeminiError(400, f"{where}: an embedding request needs 'content'.")
        if kind == "generate" and not request.get("contents"):
            raise GeminiError(400, f"{where}: a generateContent request needs 'contents'.")

    def _parse_inline(
        self, requests: Any, full: str, kind: str, job_id: str
    ) -> tuple[list[JobLine], dict[int, dict[str, Any]]]:
        items = requests.get("requests") if isinstance(requests, dict) else None
        if not isinstance(items, list) or not items:
            raise GeminiError(400, "batch.inputConfig.requests.requests must be a non-empty list.")
        lines: list[JobLine] = []
        metadata: dict[int, dict[str, Any]] = {}
        for index, item in enumerate(items):
            where = f"batch.inputConfig.requests.requests[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
                raise GeminiError(400, f"{where}: expected {{'request': {{...}}}}.")
            request = item["request"]
            self._check_request(request, full, kind, where)
            meta = item.get("metadata")
            key = f"{job_id}#{index}"
            if isinstance(meta, dict):
                metadata[index] = meta
                if isinstance(meta.get("key"), str) and meta["key"]:
                    key = meta["key"]
            lines.append(JobLine(key=key, request=request))
        return lines, metadata

    def create(
        self, request: Request, version: str, model: str, body: bytes, kind: str
    ) -> Response:
        method = "batchGenerateContent" if kind == "generate" else "asyncBatchEmbedContent"
        full = self.check_model(model, method, version, embedding=kind == "embed")
        if len(body) > MAX_INLINE_BYTES:
            raise GeminiError(
                400, f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes."
            )
        data = _json_object(body, f"{method} request")
        batch = data.get("batch")
        if not isinstance(batch, dict):
            raise GeminiError(400, "* batch: batch is required.")
        config = _pick(batch, "inputConfig", "input_config")
        if not isinstance(config, dict):
            raise GeminiError(400, "* batch.inputConfig: input config is required.")
        file_name = _pick(config, "fileName", "file_name")
        requests = config.get("requests")
        if (file_name is None) == (requests is None):
            raise GeminiError(
                400, "batch.inputConfig needs exactly one of fileName / file_name or requests."
            )
        display = _pick(batch, "displayName", "display_name")
        job_id = "batches/" + self.state.new_id("", 36)
        inline_meta: dict[int, dict[str, Any]] = {}
        input_file_id: str | None = None
        if file_name is not None:
            if not isinstance(file_name, str) or not file_name.startswith("files/"):
                raise GeminiError(400, f"Invalid input file name {file_name!r}.")
            input_file_id = file_name.removeprefix("files/")
            lines = self._parse_file_lines(input_file_id, full, kind)
        else:
            lines, inline_meta = self._parse_inline(requests, full, kind, job_id)
        if kind == "embed":
            tokens = sum(
                usage.embedding_tokens(usage.embedding_texts(line.request)) for line in lines
            )
        else:
            tokens = sum(usage.prompt_tokens(line.request) for line in lines)
        now = self.state.clock.now()
        fault = self.state.faults.job_fault(job_id, "gemini")
        if fault is not None and fault.kind == "token_limit":
            raise GeminiError(
                429,
                f"Enqueued token limit reached for {bare_model(full)} (injected fault).",
                details=render.rate_limit_details(
                    self.state.faults.retry_after, per_day=False, model=full
                ),
            )
        job = Job(
            id=job_id,
            surface="gemini",
            kind=kind,
            model=full,
            lines=lines,
            created_at=now,
            seconds_per_state=self.state.clock.seconds_per_state,
            our_id=our_id_from_display_name(display if isinstance(display, str) else None),
            display_name=display if isinstance(display, str) else None,
            input_file_id=input_file_id,
            inline=file_name is None,
            enqueued_tokens=tokens,
            fault=fault,
            cancel_grace=0.0,
        )
        job.extra["inline_metadata"] = inline_meta
        priority = batch.get("priority")
        if priority is not None:
            job.extra["priority"] = priority
        try:
            self.state.add_job(job)
        except LimitExceeded as exc:
            raise GeminiError(429, exc.message, details=_help_details()) from None
        created = WireJSONResponse(self._creation_operation(job))  # its echo is raw JSON
        settle_in_background(self.state, job)
        return created

    @staticmethod
    def _creation_operation(job: Job) -> dict[str, Any]:
        """What create returns: the batch as it was at creation, always PENDING."""
        op = render.operation(job, job.created_at)
        meta = op["metadata"]
        meta["state"] = "BATCH_STATE_PENDING"
        meta.pop("output", None)
        meta.pop("endTime", None)
        meta["batchStats"] = {
            "requestCount": str(job.size),
            "pendingRequestCount": str(job.size),
        }
        return {"name": op["name"], "metadata": meta}

    def _job(self, batch_id: str) -> Job:
        name = f"batches/{batch_id}"
        with self.state.lock:
            job = self.state.jobs.get(name)
        if job is None or job.deleted or job.surface != "gemini":
            raise GeminiError(404, f"Batch {name} not found.")
        return job

    def batch_get(self, batch_id: str) -> Response:
        job = self._job(batch_id)
        now = self.state.clock.now()
        with self.state.lock:
            self.state.settle(job, now)
            body = render.operation(job, now)
        return WireJSONResponse(body)  # with every inline response of the batch

    def batch_list(self, request: Request) -> Response:
        now = self.state.clock.now()
        with self.state.lock:
            jobs = [
                j
                for j in self.state.jobs.values()
                if j.surface == "gemini" and self.state.visible_in_list(j, now)
            ]
            self.state.settle_all(now, jobs)
            page, token = _page(jobs, lambda j: int(j.extra["seq"]), request)
            body: dict[str, Any] = {}
            if page:
                body["operations"] = [render.operation(j, now, include_inline=False) for j in page]
        if token:
            body["nextPageToken"] = token
        return JSONResponse(body)

    def batch_cancel(self, batch_id: str) -> Response:
        job = self._job(batch_id)
        with self.state.lock:
            self.state.request_cancel(job, self.state.clock.now())
        return JSONResponse({})

    def batch_delete(self, batch_id: str) -> Response:
        job = self._job(batch_id)
        now = self.state.clock.now()
        with self.state.lock:
            self.state.request_cancel(job, now)
            self.state.settle(job, now)
            job.delete()
        return JSONResponse({})


def _help_details() -> list[Any]:
    return [
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Batch API limits",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits#batch-mode",
                }
            ],
        }
    ]


_MODEL_METHODS = {
    "batchGenerateContent": "create",
    "asyncBatchEmbedContent": "create",
    "generateContent": "generate",
    "embedContent": "embed",
    "batchEmbedContents": "embed",
    "countTokens": "count_tokens",
}


def install(app: FastAPI, state: SandboxState) -> None:
    """Mount the Gemini surface on ``app`` and register its settle hook."""
    state.settle_hooks["gemini"] = render.settle_hook
    surface = GeminiSurface(state)
    app.add_middleware(GeminiDispatch)

    @app.exception_handler(GeminiError)
    async def _gemini_error(request: Request, exc: GeminiError) -> Response:
        del request
        return exc.response()

    _install_files(app, surface)
    _install_models(app, surface)
    _install_batches(app, surface)


def _install_files(app: FastAPI, surface: GeminiSurface) -> None:
    @app.post(PREFIX + "/upload/{version}/files")
    async def upload(request: Request, version: str) -> Response:
        _check_version(version)
        body = await request.body()
        if "upload_id" in request.query_params:
            ident = request.query_params["upload_id"]
            return await surface.run(
                "upload_chunk",
                lambda: surface.upload_chunk(request, version, body),
                ident=ident,
            )
        _check_key(request)
        return await surface.run("upload", lambda: surface.upload_start(request, version, body))

    @app.get(PREFIX + "/{version}/files")
    async def files_list(request: Request, version: str) -> Response:
        _check_version(version)
        _check_key(request)
        return await surface.run("file_list", lambda: surface.file_list(request, version))

    @app.get(PREFIX + "/{version}/files/{name}")
    async def files_get(request: Request, version: str, name: str) -> Response:
        _check_version(version)
        _check_key(request)
        if name.endswith(":download"):
            file_id = name.removesuffix(":download")
            return await surface.run(
                "download", lambda: surface.file_download(file_id), ident=file_id
            )
        return await surface.run(
            "file_get", lambda: surface.file_get(request, version, name), ident=name
        )

    @app.get(PREFIX + "/download/{version}/files/{name}")
    async def files_download(request: Request, version: str, name: str) -> Response:
        _check_version(version)
        _check_key(request)
        if not name.endswith(":download"):
            raise GeminiError(404, "Expected /download/{v}/files/{id}:download.")
        file_id = name.removesuffix(":download")
        return await surface.run("download", lambda: surface.file_download(file_id), ident=file_id)

    @app.delete(PREFIX + "/{version}/files/{name}")
    async def files_delete(request: Request, version: str, name: str) -> Response:
        _check_version(version)
        _check_key(request)
        return await surface.run("file_delete", lambda: surface.file_delete(name), ident=name)


def _install_models(app: FastAPI, surface: GeminiSurface) -> None:
    @app.post(PREFIX + "/{version}/models/{spec}")
    async def models(request: Request, version: str, spec: str) -> Response:
        _check_version(version)
        _check_key(request)
        model, _, method = spec.rpartition(":")
        operation = _MODEL_METHODS.get(method)
        if not model or operation is None:
            raise GeminiError(404, f"Unknown method models/{spec}.")
        body = await request.body()
        handlers: dict[str, Callable[[], Response]] = {
            "batchGenerateContent": lambda: surface.create(
                request, version, model, body, "generate"
            ),
            "asyncBatchEmbedContent": lambda: surface.create(
                request, version, model, body, "embed"
            ),
            "generateContent": lambda: surface.generate(request, version, model, body),
            "embedContent": lambda: surface.embed(request, version, model, body),
            "batchEmbedContents": lambda: surface.batch_embed(request, version, model, body),
            "countTokens": lambda: surface.count_tokens(version, model, body),
        }
        return await surface.run(operation, handlers[method], ident=model, model=f"models/{model}")


def _install_batches(app: FastAPI, surface: GeminiSurface) -> None:
    @app.get(PREFIX + "/{version}/batches")
    async def batches_list(request: Request, version: str) -> Response:
        _check_version(version)
        _check_key(request)
        return await surface.run("list", lambda: surface.batch_list(request))

    @app.get(PREFIX + "/{version}/batches/{name}")
    async def batches_get(request: Request, version: str, name: str) -> Response:
        _check_version(version)
        _check_key(request)
        return await surface.run("get", lambda: surface.batch_get(name), ident=name)

    @app.post(PREFIX + "/{version}/batches/{name}")
    async def batches_post(request: Request, version: str, name: str) -> Response:
        _check_version(version)
        _check_key(request)
        batch_id, _, method = name.rpartition(":")
        if method == "cancel":
            return await surface.run(
                "cancel", lambda: surface.batch_cancel(batch_id), ident=batch_id
            )
        if method == "delete":
            return await surface.run(
                "delete", lambda: surface.batch_delete(batch_id), ident=batch_id
            )
        raise GeminiError(404, f"Unknown method batches/{name}.")

    @app.delete(PREFIX + "/{version}/batches/{name}")
    async def batches_delete(request: Request, version: str, name: str) -> Response:
        _check_version(version)
        _check_key(request)
        return await surface.run("delete", lambda: surface.batch_delete(name), ident=name)
