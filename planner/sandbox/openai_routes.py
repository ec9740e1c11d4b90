"""Mounts the OpenAI surface (``/v1``) and Gemini's OpenAI-compat surface (``/v1beta/openai``).

Both answer the unmodified ``openai`` SDK (specs/openai-batch-api.md §11): files, batches,
chat completions, embeddings (and responses on ``/v1``). Every call goes through
``Runner.run``: a fresh ``x-request-id``, the shared FaultPlan (surface "openai" or "compat"),
and errors in the flavour's envelope. Path ids use ``:path`` converters because the SDK
percent-encodes ids and compat ids contain a slash (``batches%2F<id>`` arrives decoded as
``batches/<id>``).

Interactive calls are billed in the ledger under the first of: ``metadata.planner_key`` in the
body, the ``x-planner-key`` header, the generated request id; in lane "flex" when the flex tier
answered (``service_tier: "flex"`` asked and no ``flex_default`` fault), else "interactive".
Chat completions and responses report the tier that answered in ``service_tier``, as OpenAI
does (``default`` when none was asked for; a flex request may come back ``default``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from planner.sandbox.kernel import SandboxState
from planner.sandbox.openai_answers import answer, check_request
from planner.sandbox.openai_batches import BatchesApi
from planner.sandbox.openai_common import (
    COMPAT,
    OPENAI,
    Action,
    ApiError,
    Call,
    Flavor,
    Runner,
    json_object,
    settings_for,
)
from planner.sandbox.openai_files import FilesApi
from planner.sandbox.openai_results import settle_hook

__all__ = ["install"]

KEY_HEADER = "x-planner-key"


def install(app: FastAPI, state: SandboxState) -> None:
    """Mount both OpenAI-shaped surfaces on ``app`` and register their settle hooks."""
    state.settle_hooks["openai"] = settle_hook
    state.settle_hooks["compat"] = settle_hook
    settings_for(state)
    for flavor in (OPENAI, COMPAT):
        _Surface(app, state, flavor).mount()


def _require_key(request: Request) -> None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer ") or not header[7:].strip():
        raise ApiError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            code="missing_api_key",
        )


class _Surface:
    """The routes of one flavour."""

    def __init__(self, app: FastAPI, state: SandboxState, flavor: Flavor) -> None:
        self.app = app
        self.state = state
        self.flavor = flavor
        self.runner = Runner(state, flavor)
        self.files = FilesApi(state, flavor)
        self.batches = BatchesApi(state, flavor)

    async def _call(
        self,
        request: Request,
        operation: str,
        action: Action,
        ident: str = "",
        *,
        files_route: bool = False,
    ) -> Response:
        async def guarded(call: Call) -> Response:
            _require_key(request)
            if (
                files_route
                and self.flavor.name == "compat"
                and not self.runner.settings.compat_files
            ):
                raise ApiError(
                    404,
                    "The Files API is not supported through the OpenAI compatibility layer; "
                    "upload and download files with the Gemini Files API.",
                )
            return await action(call)

        return await self.runner.run(request, operation, guarded, ident)

    def mount(self) -> None:
        self._mount_files()
        self._mount_batches()
        self._mount_interactive()

    def _mount_files(self) -> None:
        p, files = self.flavor.prefix, self.files

        async def create(request: Request) -> Response:
            return await self._call(request, "upload", files.create, files_route=True)

        async def listing(request: Request) -> Response:
            return await self._call(request, "file_list", files.list, files_route=True)

        async def content(request: Request, ref: str) -> Response:
            return await self._call(
                request, "download", lambda c: files.content(c, ref), ref, files_route=True
            )

        async def retrieve(request: Request, ref: str) -> Response:
            return await self._call(
                request, "file_get", lambda c: files.retrieve(c, ref), ref, files_route=True
            )

        async def delete(request: Request, ref: str) -> Response:
            return await self._call(
                request, "file_delete", lambda c: files.delete(c, ref), ref, files_route=True
            )

        add = self.app.add_api_route
        add(p + "/files", create, methods=["POST"])
        add(p + "/files", listing, methods=["GET"])
        add(p + "/files/{ref:path}/content", content, methods=["GET"])
        add(p + "/files/{ref:path}", retrieve, methods=["GET"])
        add(p + "/files/{ref:path}", delete, methods=["DELETE"])

    def _mount_batches(self) -> None:
        p, batches = self.flavor.prefix, self.batches

        async def create(request: Request) -> Response:
            return await self._call(request, "create", batches.create)

        async def listing(request: Request) -> Response:
            return await self._call(request, "list", batches.list)

        async def cancel(request: Request, ref: str) -> Response:
            return await self._call(request, "cancel", lambda c: batches.cancel(c, ref), ref)

        async def retrieve(request: Request, ref: str) -> Response:
            return await self._call(request, "get", lambda c: batches.retrieve(c, ref), ref)

        add = self.app.add_api_route
        add(p + "/batches", create, methods=["POST"])
        add(p + "/batches", listing, methods=["GET"])
        add(p + "/batches/{ref:path}/cancel", cancel, methods=["POST"])
        add(p + "/batches/{ref:path}", retrieve, methods=["GET"])

    def _mount_interactive(self) -> None:
        endpoints = {
            "/chat/completions": ("chat", "generate"),
            "/embeddings": ("embeddings", "embed"),
        }
        if self.flavor.name == "openai":
            endpoints["/responses"] = ("responses", "generate")
        for path, (kind, operation) in endpoints.items():
            self.app.add_api_route(
                self.flavor.prefix + path, self._interactive(kind, operation), methods=["POST"]
            )

    def _served_tier(self, body: dict[str, object], key: str) -> str:
        """The tier that answers: the one asked for (``auto``/absent: ``default``), except a
        flex request hit by the ``flex_default`` fault, answered by the default tier."""
        asked = str(body.get("service_tier") or "auto").lower()
        if asked == "flex":
            return "default" if self.state.faults.flex_default(key) else "flex"
        return "priority" if asked in ("priority", "fast") else "default"

    def _interactive(self, kind: str, operation: str) -> Callable[[Request], object]:
        async def endpoint(request: Request) -> Response:
            async def act(call: Call) -> Response:
                body = json_object(await request.body())
                model = check_request(self.flavor, kind, body, batch=False)
                response, bill = answer(kind, body, call.now)
                metadata = body.get("metadata")
                planner_key = metadata.get("planner_key") if isinstance(metadata, dict) else None
                key = str(planner_key or request.headers.get(KEY_HEADER) or call.request_id)
                tier = None if kind == "embeddings" else self._served_tier(body, key)
                if tier is not None:
                    response["service_tier"] = tier
                lane = "flex" if tier == "flex" else "interactive"
                with self.state.lock:
                    self.state.ledger.bill(key, lane, bill, model=model)
                return JSONResponse(response)

            return await self._call(request, operation, act)

        return endpoint
