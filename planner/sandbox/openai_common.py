"""Shared plumbing of the OpenAI-shaped surfaces: flavours, settings, errors and faults.

Two surfaces speak the OpenAI wire protocol (specs/openai-batch-api.md): OpenAI itself under
``/v1`` and Gemini's compatibility layer under ``/v1beta/openai``. They differ in a handful of
facts — error envelope, id shapes, whether ``/files`` works, how the queue limit shows up — which
live in one ``Flavor`` each, so every handler is written once.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from planner.sandbox.faults import HttpFault, dropped_response
from planner.sandbox.gemini_render import error_body as google_error_body
from planner.sandbox.kernel import SandboxState

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
MAX_BATCH_INPUT_BYTES = 200 * 1024 * 1024
MAX_BATCH_LINES = 50_000
MAX_EMBEDDING_INPUTS = 50_000
COMPLETION_WINDOW_SECONDS = 86_400
FILE_RETENTION_SECONDS = 30 * 86_400
ENDPOINT_KINDS = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
}


@dataclass(frozen=True)
class Flavor:
    """What distinguishes one OpenAI-shaped surface from the other."""

    name: str  # the kernel surface: "openai" | "compat"
    prefix: str  # "/v1" | "/v1beta/openai"
    google_errors: bool  # Google's envelope instead of OpenAI's
    model_families: tuple[str, ...]
    endpoints: tuple[str, ...]

    def file_ref(self, stored_id: str) -> str:
        """The id a client sees for a stored file (compat: the Gemini name ``files/<id>``)."""
        return f"files/{stored_id}" if self.name == "compat" else stored_id

    def file_key(self, ref: str) -> str:
        return ref.removeprefix("files/") if self.name == "compat" else ref

    def batch_key(self, ref: str) -> str:
        """State key of a batch from the id a client sent (compat accepts a bare id too)."""
        if self.name == "compat" and not ref.startswith("batches/"):
            return f"batches/{ref}"
        return ref


OPENAI = Flavor(
    name="openai",
    prefix="/v1",
    google_errors=False,
    model_families=("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "omni-"),
    endpoints=("/v1/chat/completions", "/v1/embeddings", "/v1/responses"),
)
COMPAT = Flavor(
    name="compat",
    prefix="/v1beta/openai",
    google_errors=True,
    model_families=("gemini-", "gemma-", "text-embedding-", "embedding-"),
    endpoints=("/v1/chat/completions", "/v1/embeddings"),
)


@dataclass
class OpenAISettings:
    """Knobs of the OpenAI-shaped surfaces; tests lower the limits to exercise them cheaply.

    ``compat_files``: the compat layer documents no Files API, so by default its ``/files``
    routes answer 404; True serves them (a convenience some gateways offer).
    ``compat_error_array``: wrap Google error envelopes in a JSON array, as the compat layer
    often does.
    """

    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_batch_input_bytes: int = MAX_BATCH_INPUT_BYTES
    max_batch_lines: int = MAX_BATCH_LINES
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS
    compat_files: bool = False
    compat_error_array: bool = True
    organization: str = "org-sandbox"
    # ids of deleted files -> their listing sequence, so an ``after`` cursor survives a delete
    tombstones: dict[str, int] = field(default_factory=dict)


_SETTINGS: weakref.WeakKeyDictionary[SandboxState, OpenAISettings] = weakref.WeakKeyDictionary()


def settings_for(state: SandboxState) -> OpenAISettings:
    """The OpenAI surfaces' settings of ``state`` (created with defaults on first use)."""
    with state.lock:
        found = _SETTINGS.get(state)
        if found is None:
            found = _SETTINGS[state] = OpenAISettings()
        return found


def reset_settings(state: SandboxState) -> OpenAISettings:
    """Back to defaults (tests call this; ``state.reset()`` does not know about them)."""
    with state.lock:
        fresh = _SETTINGS[state] = OpenAISettings()
        return fresh


_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error answer; rendered in the flavour's envelope by ``render_error``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
        google_status: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type_
        self.headers = headers or {}
        self.google_status = google_status

    def openai_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def render_error(
    flavor: Flavor, error: ApiError, request_id: str, settings: OpenAISettings
) -> Response:
    headers = {"x-request-id": request_id, **error.headers}
    if not flavor.google_errors:
        return JSONResponse(error.openai_body(), status_code=error.status, headers=headers)
    body = google_error_body(error.status, error.message)
    body["error"]["status"] = error.google_status or _GOOGLE_STATUS.get(error.status, "UNKNOWN")
    wrapped: Any = [body] if settings.compat_error_array else body
    return JSONResponse(wrapped, status_code=error.status, headers=headers)


def fault_error(fault: HttpFault) -> ApiError:
    """The error answer an injected HTTP fault turns into (the flavour renders it)."""
    if fault.kind == "rate_limit":
        delay = fault.retry_after or 0.0
        return ApiError(
            429,
            f"Rate limit reached for requests. Please try again in {delay:g}s. (sandbox fault)",
            code="rate_limit_exceeded",
            type_="requests",
            headers={"retry-after": f"{delay:g}", "retry-after-ms": str(round(delay * 1000))},
        )
    if fault.kind == "daily_quota":
        return ApiError(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            code="insufficient_quota",
            type_="insufficient_quota",
            headers={"x-should-retry": "false"},
        )
    if fault.kind == "auth_error":
        return ApiError(
            401, "Incorrect API key provided.", code="invalid_api_key", google_status=None
        )
    if fault.status == 503:
        return ApiError(
            503,
            "The server is overloaded or not ready yet.",
            type_="server_error",
            headers={"x-should-retry": "true"},
        )
    return ApiError(
        fault.status or 500,
        "The server had an error while processing your request. Sorry about that!",
        type_="server_error",
    )


@dataclass
class Call:
    """One HTTP call being answered: its request id and when it arrived (sandbox clock)."""

    request: Request
    request_id: str
    now: float


Action = Callable[[Call], Awaitable[Response]]


class Runner:
    """Wraps every handler: request id, injected faults, error rendering."""

    def __init__(self, state: SandboxState, flavor: Flavor) -> None:
        self.state = state
        self.flavor = flavor

    @property
    def settings(self) -> OpenAISettings:
        return settings_for(self.state)

    async def run(
        self, request: Request, operation: str, action: Action, ident: str = ""
    ) -> Response:
        request_id = "req_" + self.state.new_id("", 24)
        fault = self.state.faults.http_fault(self.flavor.name, operation, ident)
        if fault is not None and not fault.after_action:
            if fault.sleep:
                await asyncio.sleep(fault.sleep)
            if fault.status:
                return render_error(self.flavor, fault_error(fault), request_id, self.settings)
        call = Call(request=request, request_id=request_id, now=self.state.clock.now())
        try:
            response = await action(call)
        except ApiError as exc:
            response = render_error(self.flavor, exc, request_id, self.settings)
        response.headers["x-request-id"] = request_id
        if fault is not None and fault.after_action:
            if fault.kind == "drop":
                return dropped_response(response.status_code)
            await asyncio.sleep(fault.sleep)
        return response


def json_object(body: bytes, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 in the OpenAI manner."""
    if not body.strip():
        if required:
            raise ApiError(400, "We could not parse the JSON body of your request: it is empty.")
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)",
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "The JSON body of your request must be an object.")
    return data


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, f"Invalid '{name}': expected an integer, got {raw!r}.", param=name
        ) from None
    if not low <= value <= high:
        raise ApiError(
            400,
            f"Invalid '{name}': integer below minimum value or above maximum value "
            f"({low}..{high}), got {value}.",
            param=name,
            code="integer_out_of_range" if value > high else "integer_below_min_value",
        )
    return value


def page_after(
    items: list[Any],
    id_of: Callable[[Any], str],
    seq_of: Callable[[Any], int],
    after: str | None,
    after_seq: int | None,
    limit: int,
    *,
    newest_first: bool = True,
) -> dict[str, Any]:
    """An OpenAI list page: ``items`` ordered by sequence, those past the cursor, ``limit`` of them.

    ``after_seq`` is the cursor's sequence (None when ``after`` is absent).
    """
    ordered = sorted(items, key=seq_of, reverse=newest_first)
    if after is not None and after_seq is not None:
        if newest_first:
            ordered = [i for i in ordered if seq_of(i) < after_seq]
        else:
            ordered = [i for i in ordered if seq_of(i) > after_seq]
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": id_of(page[0]) if page else None,
        "last_id": id_of(page[-1]) if page else None,
        "has_more": len(ordered) > limit,
    }


def as_int(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds)
