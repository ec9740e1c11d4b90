"""Gemini native Batch API through the ``google-genai`` SDK.

The SDK's public surface carries every call it can express: files (``files.upload`` with the
resumable protocol, ``files.download``, ``files.list``, ``files.delete``), the creation of
file-input batches (``batches.create`` for generateContent, ``batches.create_embeddings`` for
embeddings, which sends ``inputConfig.file_name`` as Google expects) and ``batches.cancel``.

The rest goes through :class:`_RawRest`, the one place that uses the SDK's private HTTP
helper (``client._api_client.request``: same auth header, base URL, API version, timeout and
error classes as the public methods), each for a stated reason the SDK cannot meet
(specs/gemini-batch-api.md §5.3-§5.5, pitfalls 9 and 13):

- inline creates: ``types.InlinedRequest`` takes typed ``contents``/``config`` and re-encodes
  them, so a REST ``GenerateContentRequest`` as our sources carry it (``generationConfig`` in
  REST spelling, fields newer than the SDK) cannot be sent unchanged;
- ``get`` and ``list``: the typed ``BatchJob`` drops ``batchStats``, the Operation ``error``
  and ``inputConfig``, and inline per-request ``details`` objects make ``get`` raise;
- interactive calls: the same REST-body pass-through as inline creates.

``tests/contract/test_gemini_sdk_contract.py`` checks each reason against the installed SDK (in
the range pinned in pyproject.toml), so an SDK that learns to do one of these fails it and the
call moves to the public surface.

No SDK retries on any POST (create is not idempotent); GETs retry ``max_retries`` times.
Every call has an explicit timeout (the SDK's default is none at all).
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from itertools import chain
from typing import IO, Any, cast

from google import genai
from google.genai import errors as genai_errors
from google.genai.types import HttpOptionsDict
from pydantic import SecretStr

from planner import crashpoints
from planner.core import json_text
from planner.core.model import Endpoint
from planner.core.orphans import OurFile
from planner.core.states import FINISHED_BATCH_STATES
from planner.errors import NotFound, Permanent, ProviderError, Transient
from planner.providers import gemini_wire as wire
from planner.providers.base import (
    INTERACTIVE_KEY_HEADER,
    SPOOL_BYTES,
    BadLine,
    BatchLine,
    BatchPayload,
    LineResult,
    RemoteBatch,
    join_by_key,
    quiet_sdk_loggers,
)
from planner.providers.errors import from_genai, sdk_failures

log = logging.getLogger(__name__)

SDK_FAILURES = sdk_failures(genai_errors.APIError)

DEFAULT_BASE_URL = wire.PUBLIC_BASE_URL
DEFAULT_API_VERSION = "v1beta"  # what Google's docs use; the SDK 3.x default is v1 (pitfall 1)


def _secret(value: SecretStr | str) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


def make_client(
    api_key: SecretStr | str, base_url: str | None, api_version: str, timeout: float
) -> genai.Client:
    """A google-genai client with an explicit timeout (ms) and no SDK retries."""
    return genai.Client(
        api_key=_secret(api_key).get_secret_value(),
        http_options={
            "base_url": base_url or DEFAULT_BASE_URL,
            "api_version": api_version,
            "timeout": int(timeout * 1000),
        },
    )


class GeminiFiles:
    """The Files API half, shared with the OpenAI adapter for Gemini's compat layer (§10)."""

    def __init__(self, client: genai.Client, *, upload_timeout: float, secrets: Sequence[str]):
        self._client = client
        self._upload_ms = int(upload_timeout * 1000)
        self._secrets = tuple(secrets)

    def upload(self, data: bytes | IO[bytes], display_name: str) -> str:
        """Upload JSONL (bytes or a binary file, read from where it stands); returns the
        ``files/<id>`` name. Never retried by the SDK."""
        try:
            uploaded = self._client.files.upload(
                # a binary file is an IOBase at run time (SpooledTemporaryFile is since 3.11)
                file=io.BytesIO(data) if isinstance(data, bytes) else cast(io.IOBase, data),
                config={
                    "mime_type": "jsonl",
                    "display_name": display_name,
                    "http_options": {"timeout": self._upload_ms},
                },
            )
        except SDK_FAILURES as exc:
            raise from_genai(exc, operation="file upload", secrets=self._secrets) from exc
        if not uploaded.name:
            raise Transient("gemini file upload returned no file name")
        return uploaded.name

    def download(self, name: str) -> IO[bytes]:
        """Download a file by its ``files/...`` name (never by URI, pitfall 21), streamed by the
        SDK into a temporary file (on disk past ``SPOOL_BYTES``) and returned at its start: a
        results file of 20,000 answers is tens of megabytes, which ``bytes`` held whole."""
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned
        try:
            self._client.files.download(
                file=name,
                destination=cast(io.IOBase, out),
                config={"http_options": {"timeout": self._upload_ms}},
            )
        except SDK_FAILURES as exc:
            out.close()
            raise from_genai(exc, operation="file download", secrets=self._secrets) from exc
        out.seek(0)
        return out

    def list_ours(self, page_size: int = 100) -> Iterator[OurFile]:
        """Uploaded files whose display name carries one of our batch ids, every page."""
        try:
            for file in self._client.files.list(config={"page_size": page_size}):
                dumped = file.model_dump(mode="json", by_alias=True, exclude_none=True)
                ours = wire.parse_file(dumped)
                if ours is not None:
                    yield ours
        except SDK_FAILURES as exc:
            raise from_genai(exc, operation="file list", secrets=self._secrets) from exc

    def delete(self, name: str) -> None:
        """Delete an uploaded file; already gone is fine. Generated results files cannot be
        deleted (their ids are over the 40-character limit, pitfall 8), so they are skipped."""
        if name.startswith(wire.RESULTS_FILE_PREFIX):
            return
        try:
            self._client.files.delete(name=name)
        except SDK_FAILURES as exc:
            error = from_genai(exc, operation="file delete", secrets=self._secrets)
            if not isinstance(error, NotFound):
                raise error from exc


class _RawRest:
    """Raw JSON calls through the SDK's private HTTP helper, only where the public surface
    cannot express the call (the module docstring lists each reason)."""

    def __init__(
        self, client: genai.Client, *, timeout: float, max_retries: int, secrets: Sequence[str]
    ):
        self._client = client
        self._timeout_ms = int(timeout * 1000)
        self._max_retries = max_retries
        self._secrets = tuple(secrets)

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        operation: str,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        options: HttpOptionsDict = {
            "timeout": int(timeout * 1000) if timeout is not None else self._timeout_ms
        }
        if headers:
            options["headers"] = dict(headers)
        if method == "get" and self._max_retries > 0:
            options["retry_options"] = {"attempts": self._max_retries + 1}
        try:
            response = self._client._api_client.request(
                method, path, dict(body or {}), http_options=options
            )
        except SDK_FAILURES as exc:
            raise from_genai(exc, operation=operation, secrets=self._secrets) from exc
        if not response.body:
            return {}
        try:
            parsed = json_text.loads(response.body)  # inline results: every embedding
        except ValueError as exc:
            raise Transient(f"gemini {operation}: response is not JSON") from exc
        if not isinstance(parsed, dict):
            raise Transient(f"gemini {operation}: response is not a JSON object")
        return parsed


class GeminiProvider:
    """``BatchProvider`` for the Gemini Developer API's native batch surface.

    ``inline_max_bytes`` / ``inline_max_output_bytes``: a generateContent batch goes inline
    only when its create body and its expected output both fit (gemini_wire's docstring);
    pass 0 to always use a file. ``flex_timeout`` applies to flex-tier interactive calls
    (Google targets 1-15 minutes for them).
    """

    kind = "gemini"

    def __init__(
        self,
        *,
        api_key: SecretStr | str,
        base_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 60.0,
        upload_timeout: float = 600.0,
        flex_timeout: float = 900.0,
        max_retries: int = 2,
        inline_max_bytes: int = wire.DEFAULT_INLINE_MAX_BYTES,
        inline_max_output_bytes: int = wire.DEFAULT_INLINE_MAX_OUTPUT_BYTES,
        list_page_size: int = 100,
        label_interactive_calls: bool = False,
    ) -> None:
        quiet_sdk_loggers()
        self._label_calls = label_interactive_calls
        key = _secret(api_key)
        secrets = (key.get_secret_value(),)
        self._secrets = secrets
        self.base_url = base_url or DEFAULT_BASE_URL
        client = make_client(key, self.base_url, api_version, timeout)
        self._client = client
        self._timeout_ms = int(timeout * 1000)
        self._http = _RawRest(client, timeout=timeout, max_retries=max_retries, secrets=secrets)
        self._files = GeminiFiles(client, upload_timeout=upload_timeout, secrets=secrets)
        self._flex_timeout = flex_timeout
        self._inline_max_bytes = inline_max_bytes
        self._inline_max_output_bytes = inline_max_output_bytes
        self._page_size = list_page_size

    def __repr__(self) -> str:
        return f"GeminiProvider(base_url={self.base_url!r})"

    def build_payload(self, batch_id: str, lines: Iterable[BatchLine]) -> BatchPayload:
        return wire.build_payload(
            batch_id,
            list(lines),  # read twice: inline or file is decided on the whole batch
            inline_max_bytes=self._inline_max_bytes,
            inline_max_output_bytes=self._inline_max_output_bytes,
        )

    def submit(
        self,
        batch_id: str,
        model: str,
        endpoint: Endpoint,
        payload: BatchPayload,
        *,
        input_file_id: str | None = None,
    ) -> RemoteBatch:
        """Upload (unless ``input_file_id`` names an earlier upload to adopt) and create."""
        if (model, endpoint) != (payload.model, payload.endpoint):
            raise ValueError(f"batch {batch_id}: payload was built for {payload.model}")
        display = wire.batch_display_name(batch_id)
        uploaded = None
        if payload.inline is not None:
            body = wire.create_body(display, endpoint, inline=payload.inline)
            op = self._http.call(
                "post", wire.create_path(model, endpoint), body, operation="batch create"
            )
        else:
            if input_file_id is None:
                if payload.jsonl is None:
                    raise ValueError(f"batch {batch_id}: payload has neither inline nor JSONL")
                uploaded = input_file_id = self._files.upload(
                    payload.jsonl, wire.file_display_name(batch_id)
                )
                crashpoints.reached("after_upload")
            try:
                op = self._create_from_file(model, endpoint, input_file_id, display)
            except ProviderError as error:
                if uploaded is not None and not isinstance(error, Transient):
                    self._forget_upload(uploaded)  # proven not created: the upload is an orphan
                raise
        remote = wire.parse_operation(op)
        return _fill(
            remote,
            our_id=batch_id,
            input_file_id=input_file_id,
            endpoint=endpoint,
            model=model,
            inline=payload.inline is not None,
        )

    def _create_from_file(
        self, model: str, endpoint: Endpoint, file_name: str, display: str
    ) -> dict[str, Any]:
        """``batches.create`` / ``batches.create_embeddings`` (public SDK) for a file-input
        batch; the typed answer as the Operation shape ``gemini_wire`` reads."""
        config: Any = {"display_name": display, "http_options": {"timeout": self._timeout_ms}}
        try:
            if endpoint is Endpoint.EMBED_CONTENT:
                with warnings.catch_warnings():  # "experimental" to the SDK; documented by Google
                    warnings.filterwarnings("ignore", message=r"batches\.create_embeddings")
                    job = self._client.batches.create_embeddings(
                        model=wire.model_resource(model),
                        src={"file_name": file_name},
                        config=config,
                    )
            else:
                job = self._client.batches.create(
                    model=wire.model_resource(model), src=file_name, config=config
                )
        except SDK_FAILURES as exc:
            raise from_genai(exc, operation="batch create", secrets=self._secrets) from exc
        return wire.operation_from_batch_job(job.model_dump(mode="json", exclude_none=True))

    def _forget_upload(self, name: str) -> None:
        try:
            self._files.delete(name)
        except ProviderError:
            log.warning("orphan upload %s left behind", name, extra={"event": "orphan_upload"})

    def get(self, remote_id: str) -> RemoteBatch:
        op = self._http.call("get", wire.batch_path(remote_id), operation="batch get")
        remote = wire.parse_operation(op)
        if wire.map_state(remote.provider_state) is None:
            log.warning(
                "unknown batch state %r for %s",
                remote.provider_state,
                remote_id,
                extra={"event": "provider_unknown_state"},
            )
        return remote

    def cancel(self, remote_id: str) -> None:
        try:
            self._client.batches.cancel(
                name=wire.batch_path(remote_id),
                config={"http_options": {"timeout": self._timeout_ms}},
            )
        except SDK_FAILURES as exc:
            error = from_genai(exc, operation="batch cancel", secrets=self._secrets)
            if not isinstance(error, Permanent | Transient):
                raise error from exc
            if self.get(remote_id).state in FINISHED_BATCH_STATES:
                return  # already finished: nothing to cancel
            raise error from exc

    def fetch_results(self, remote: RemoteBatch, keys: Collection[str]) -> Iterator[LineResult]:
        """Inline results from the batch resource and/or the results file; joined by key.

        Whatever shape the job was submitted in, both output shapes are read: Google may
        answer a file job inline (and nothing documents that it never answers an inline job
        with a file), so collection never depends on getting the shape it asked for. The
        batch is read afresh first: list items omit inline results (§4.8)."""
        op = self._http.call("get", wire.batch_path(remote.remote_id), operation="batch get")
        fresh = wire.parse_operation(op)
        endpoint = fresh.endpoint or remote.endpoint
        found: Iterable[LineResult | BadLine] = wire.parse_inline_responses(op, endpoint)
        output_file = fresh.output_file_id or remote.output_file_id
        if output_file:
            data = self._files.download(output_file)
            found = chain(found, wire.parse_results_file(data, endpoint))
        return join_by_key(keys, found, batch=remote.remote_id, log=log)

    def delete_collected(self, remote: RemoteBatch) -> None:
        """Its files, then the batch itself (§4.10): an inline batch holds its requests and
        answers, which Google keeps for as long as the batch exists, so a collected one is
        deleted as its files are. Gone already is fine."""
        for name in (remote.input_file_id, remote.output_file_id):
            if name:
                self._files.delete(name)
        try:
            self._client.batches.delete(
                name=wire.batch_path(remote.remote_id),
                config={"http_options": {"timeout": self._timeout_ms}},
            )
        except SDK_FAILURES as exc:
            error = from_genai(exc, operation="batch delete", secrets=self._secrets)
            if not isinstance(error, NotFound):
                raise error from exc

    def list_our_files(self) -> Iterator[OurFile]:
        return self._files.list_ours(self._page_size)

    def delete_file(self, file_id: str) -> None:
        self._files.delete(file_id)

    def list_ours(self, since: datetime | None = None) -> Iterator[RemoteBatch]:
        """Every page is scanned: Google documents neither page order nor a filter (§4.8)."""
        token: str | None = None
        while True:
            path = f"batches?pageSize={self._page_size}"
            if token:
                path += f"&pageToken={token}"
            page = self._http.call("get", path, operation="batch list")
            for op in page.get("operations") or []:
                if not isinstance(op, Mapping):
                    continue
                remote = wire.parse_operation(op)
                if remote.our_id is None:
                    continue
                if (
                    since is not None
                    and remote.created_at is not None
                    and remote.created_at < since
                ):
                    continue
                yield remote
            token = page.get("nextPageToken") or None
            if not token:
                return

    def call_interactive(self, line: BatchLine, *, flex: bool) -> LineResult:
        body = wire.interactive_body(line, flex=flex)
        try:
            response = self._http.call(
                "post",
                wire.interactive_path(line.model, line.endpoint),
                body,
                operation="interactive call",
                timeout=self._flex_timeout if flex else None,
                headers={INTERACTIVE_KEY_HEADER: line.key} if self._label_calls else None,
            )
        except Permanent as error:
            return LineResult(
                line.key,
                ok=False,
                error_code="request_rejected",
                error_message=str(error),
                retryable=False,
            )
        return wire.interactive_result(line, response)


def _fill(
    remote: RemoteBatch,
    *,
    our_id: str,
    input_file_id: str | None,
    endpoint: Endpoint,
    model: str,
    inline: bool,
) -> RemoteBatch:
    """Complete a create response with what we already know (Google echoes little at first)."""
    return replace(
        remote,
        our_id=remote.our_id or our_id,
        input_file_id=remote.input_file_id or input_file_id,
        endpoint=remote.endpoint or endpoint,
        model=remote.model or model,
        inline=inline,
    )


__all__ = ["GeminiFiles", "GeminiProvider", "make_client"]
