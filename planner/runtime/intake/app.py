"""The intake's ASGI application: bearer auth, body limits, one error envelope, the routes.

Order of checks for every request but ``GET /openapi.json``: the bearer token first (compared
with ``hmac.compare_digest`` against every configured token, so a wrong token costs the same
time however much of it matches: 401), then the body size (``Content-Length`` over the limit,
or a body that grows past it while read: 413), then the route's own validation (400). Every
error, including FastAPI's validation errors and unknown routes, has OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}`` so the ``openai`` SDK raises its usual
exceptions. Store failures answer 503; no input is meant to reach a 500.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from planner import __version__
from planner.errors import StoreError
from planner.runtime.intake.objects import ErrorBody, ErrorDetail
from planner.runtime.intake.routes import native_router, v1_router
from planner.runtime.intake.service import IntakeError, IntakeService

_log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/openapi.json"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_response(
    status: int, message: str, *, code: str | None, kind: str, param: str | None = None
) -> JSONResponse:
    body = ErrorBody(
        error=ErrorDetail(
            message=_printable(message),
            type=kind,
            param=None if param is None else _printable(param),
            code=code,
        )
    )
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _printable(text: str) -> str:
    """Text that encodes as UTF-8: a lone surrogate from a client's JSON shows as ``\\udXXX``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _TooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: the bearer token, then the body size, before any route runs."""

    def __init__(self, app: ASGIApp, tokens: Sequence[str], max_body: int) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]
        self.max_body = max_body

    def authorised(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        given = token.strip()
        matches = [hmac.compare_digest(given, t) for t in self.tokens]  # every token, always
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{secrets.token_hex(12)}".encode()
        outer = send

        async def stamped(message: Message) -> None:  # every answer names itself (request_id)
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await outer(message)

        send = stamped

        if scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        if not self.authorised(scope):
            response = error_response(
                401,
                "Incorrect or missing API key: send 'Authorization: Bearer <token>' with one of "
                "the intake's tokens.",
                code="invalid_api_key",
                kind="invalid_request_error",
            )
            await response(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._too_large(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            f"request body larger than the intake's limit of {self.max_body} bytes "
            "(intake.max_body)",
            code="request_too_large",
            kind="invalid_request_error",
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _location(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form", "header")]
    return ".".join(parts)


def _methods_of(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path (``Allow`` of a 405)."""
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    for template, item in paths.items():
        parts = re.split(r"(\{[^}]+\})", template)
        pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        if re.fullmatch(pattern, request.url.path):
            return sorted(method.upper() for method in item)
    return []


def create_app(service: IntakeService, tokens: Sequence[str], max_body: int) -> FastAPI:
    """The intake application; ``tokens`` are the accepted bearer tokens (never logged)."""
    app = FastAPI(
        title="planner intake",
        version=__version__,
        description="Queue LLM requests for planner: native endpoints and an OpenAI-compatible "
        "Batch API under /v1. Every operation needs 'Authorization: Bearer <token>'.",
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.service = service
    app.include_router(native_router)
    app.include_router(v1_router)

    @app.exception_handler(IntakeError)
    async def intake_error(_: Request, exc: IntakeError) -> JSONResponse:
        d = exc.detail
        return error_response(exc.status, d.message, code=d.code, kind=d.type, param=d.param)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first = errors[0] if errors else {}
        param = _location(first.get("loc", ())) or None
        where = f"{param}: " if param else ""
        message = f"{where}{first.get('msg', 'invalid request')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problems)"
        code = "missing_required_parameter" if first.get("type") == "missing" else "invalid_value"
        return error_response(400, message, code=code, kind="invalid_request_error", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error_response(
            exc.status_code,
            str(exc.detail),
            code={404: "not_found", 405: "method_not_allowed"}.get(exc.status_code),
            kind="invalid_request_error",
        )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:  # every method of the path, not only the first route's
            response.headers["Allow"] = ", ".join(_methods_of(request))
        return response

    @app.exception_handler(StoreError)
    async def store_down(_: Request, exc: StoreError) -> JSONResponse:
        _log.error("intake store failure: %s", exc, extra={"event": "intake.store_failed"})
        return error_response(
            503, "the store is unavailable; retry later", code="unavailable", kind="server_error"
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(Guard, tokens=list(tokens), max_body=max_body)
    return app


def _document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the intake's real error answers: 400 (not 422), 401, 413."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ErrorBody.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components.update(components["ErrorBody"].pop("$defs", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            extra = {
                "400": "Invalid request",
                "401": "Missing or wrong bearer token",
                "503": "The store is unavailable",
            }
            if method in ("post", "put", "patch"):
                extra["413"] = "Body over intake.max_body"
            for status, text in extra.items():
                responses.setdefault(
                    status,
                    {"description": text, "content": {"application/json": {"schema": error_ref}}},
                )
    return schema
