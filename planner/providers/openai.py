"""OpenAI-compatible Batch API through the ``openai`` SDK.

Works against OpenAI, self-hosted servers speaking the same files/batches surface, and Gemini's
OpenAI-compatibility layer. The compat layer cannot upload or download files
(specs/openai-batch-api.md §8, specs/gemini-batch-api.md §10): ``files_via_gemini=True`` says
the server is that layer, so files go through Gemini's native Files API (``google-genai``
``files.upload`` / ``download``; the returned ``files/<id>`` name is passed as
``input_file_id``) and, without a ``base_url``, the client talks to Google's compat endpoint,
never to OpenAI's host: an API key must reach only its own provider.

The SDK retries every method by default, POSTs included, without an idempotency key: uploads,
creates, cancels and interactive calls run with ``max_retries=0`` (our retry policy decides);
GETs keep ``max_retries``. Every call has an explicit timeout.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from itertools import chain
from typing import IO, Any, cast
from urllib.parse import urlsplit, urlunsplit

import openai
from pydantic import SecretStr

from planner import crashpoints
from planner.core.model import Endpoint
from planner.core.orphans import OurFile
from planner.core.states import FINISHED_BATCH_STATES
from planner.errors import NotFound, Permanent, ProviderError, Transient
from planner.providers import compat_wire, gemini_wire
from planner.providers import openai_wire as wire
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
from planner.providers.errors import from_openai, sdk_failures

DOWNLOAD_BLOCK = 1 << 20  # bytes of a result file read from the response at a time
log = logging.getLogger(__name__)

SDK_FAILURES = sdk_failures(openai.OpenAIError)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
COMPAT_SUFFIX = "/v1beta/openai"


def gemini_base_from_compat(base_url: str) -> str:
    """``https://host/v1beta/openai/`` -> ``https://host/`` (the native API's base URL)."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if path.endswith(COMPAT_SUFFIX):
        path = path[: -len(COMPAT_SUFFIX)]
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


class OpenAIProvider:
    """``BatchProvider`` for OpenAI-compatible batch APIs (see the module docstring)."""

    kind = "openai"

    def __init__(
        self,
        *,
        api_key: SecretStr | str,
        base_url: str | None = None,
        timeout: float = 60.0,
        upload_timeout: float = 600.0,
        flex_timeout: float = 900.0,
        max_retries: int = 2,
        files_via_gemini: bool = False,
        gemini_base_url: str | None = None,
        gemini_api_version: str = "v1beta",
        list_page_size: int = 100,
        label_interactive_calls: bool = False,
    ) -> None:
        quiet_sdk_loggers()
        self._label_calls = label_interactive_calls
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._secrets = (key.get_secret_value(),)
        default = gemini_wire.COMPAT_BASE_URL if files_via_gemini else DEFAULT_BASE_URL
        self.base_url = base_url or default
        self._client = openai.OpenAI(
            api_key=key.get_secret_value(),
            base_url=self.base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._once = self._client.with_options(max_retries=0)
        self._upload_timeout = upload_timeout
        self._flex_timeout = flex_timeout
        self._page_size = list_page_size
        self._gemini_files = None
        if files_via_gemini:
            from planner.providers.gemini import GeminiFiles, make_client

            native = gemini_base_url or gemini_base_from_compat(self.base_url)
            self._gemini_files = GeminiFiles(
                make_client(key, native, gemini_api_version, timeout),
                upload_timeout=upload_timeout,
                secrets=self._secrets,
            )

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r})"

    def _error(self, exc: BaseException, operation: str) -> ProviderError:
        return from_openai(exc, operation=operation, secrets=self._secrets)

    def _compat(self, line: BatchLine) -> BatchLine:
        """On Gemini's compat layer a Gemini-format line goes in the OpenAI shape (compat_wire)."""
        return compat_wire.to_openai(line) if self._gemini_files is not None else line

    def build_payload(self, batch_id: str, lines: Iterable[BatchLine]) -> BatchPayload:
        """The JSONL file, written to a temporary file past ``SPOOL_BYTES`` (on disk, not in
        memory: a batch file may be 200 MB) that the upload streams; the payload owns it."""
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - see above
        try:
            return wire.build_payload(batch_id, map(self._compat, lines), out)
        except BaseException:
            out.close()
            raise

    # --- files ------------------------------------------------------------------------------

    def _upload(self, batch_id: str, data: bytes | IO[bytes]) -> str:
        if self._gemini_files is not None:
            return self._gemini_files.upload(data, wire.input_filename(batch_id))
        try:
            created = self._once.with_options(timeout=self._upload_timeout).files.create(
                file=(wire.input_filename(batch_id), data, "application/jsonl"), purpose="batch"
            )
        except SDK_FAILURES as exc:
            raise self._error(exc, "file upload") from exc
        return created.id

    def _download(self, file_id: str) -> IO[bytes]:
        """The file, streamed into a temporary file (on disk past ``SPOOL_BYTES``): the output
        of 50,000 embeddings is a gigabyte or more, which the response body held whole."""
        if self._gemini_files is not None:
            return self._gemini_files.download(file_id)
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned
        try:
            files = self._client.with_options(timeout=self._upload_timeout).files
            with files.with_streaming_response.content(file_id) as response:
                for block in response.iter_bytes(DOWNLOAD_BLOCK):
                    out.write(block)
        except SDK_FAILURES as exc:
            out.close()
            raise self._error(exc, "file download") from exc
        out.seek(0)
        return out

    def _delete_file(self, file_id: str) -> None:
        if self._gemini_files is not None:
            self._gemini_files.delete(file_id)
            return
        try:
            self._client.files.delete(file_id)
        except SDK_FAILURES as exc:
            error = self._error(exc, "file delete")
            if not isinstance(error, NotFound):
                raise error from exc

    # --- batches ----------------------------------------------------------------------------

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
        if self._gemini_files is not None:
            endpoint = compat_wire.endpoint_for(endpoint)
        if (model, endpoint) != (payload.model, payload.endpoint):
            raise ValueError(f"batch {batch_id}: payload was built for {payload.model}")
        uploaded = None
        if input_file_id is None:
            if payload.jsonl is None:
                raise ValueError(f"batch {batch_id}: OpenAI batches need a JSONL payload")
            uploaded = input_file_id = self._upload(batch_id, payload.jsonl)
            crashpoints.reached("after_upload")
        try:
            batch = self._once.batches.create(
                input_file_id=input_file_id,
                endpoint=cast(Any, endpoint.value),
                completion_window="24h",
                metadata=wire.batch_metadata(batch_id),
            )
        except SDK_FAILURES as exc:
            error = self._error(exc, "batch create")
            if uploaded is not None and not isinstance(error, Transient):
                self._forget_upload(uploaded)  # proven not created: the upload is an orphan
            raise error from exc
        remote = wire.parse_batch(batch.model_dump())
        if remote.our_id is None:
            # a server that drops metadata cannot be reconciled by our id: say so loudly
            log.warning(
                "provider did not keep metadata for batch %s",
                remote.remote_id,
                extra={"event": "provider_metadata_dropped"},
            )
        return remote

    def _forget_upload(self, file_id: str) -> None:
        try:
            self._delete_file(file_id)
        except ProviderError:
            log.warning("orphan upload %s left behind", file_id, extra={"event": "orphan_upload"})

    def get(self, remote_id: str) -> RemoteBatch:
        try:
            batch = self._client.batches.retrieve(remote_id)
        except SDK_FAILURES as exc:
            raise self._error(exc, "batch get") from exc
        remote = wire.parse_batch(batch.model_dump())
        if wire.map_state(remote.provider_state) is None:
            log.warning(
                "unknown batch status %r for %s",
                remote.provider_state,
                remote_id,
                extra={"event": "provider_unknown_state"},
            )
        return remote

    def cancel(self, remote_id: str) -> None:
        """A batch that is already finished is not an error: OpenAI answers 409 (pitfall 11),
        Google's compat layer 400; either way the batch is re-read to be sure."""
        try:
            self._once.batches.cancel(remote_id)
        except SDK_FAILURES as exc:
            error = self._error(exc, "batch cancel")
            if isinstance(error, Permanent) and self.get(remote_id).state in FINISHED_BATCH_STATES:
                return
            raise error from exc

    def fetch_results(self, remote: RemoteBatch, keys: Collection[str]) -> Iterator[LineResult]:
        """Output AND error files, joined by ``custom_id``; absent keys are not executed."""
        parts: list[Iterator[LineResult | BadLine]] = [
            wire.parse_results_file(self._download(file_id))
            for file_id in (remote.output_file_id, remote.error_file_id)
            if file_id
        ]
        return join_by_key(keys, chain.from_iterable(parts), batch=remote.remote_id, log=log)

    def delete_collected(self, remote: RemoteBatch) -> None:
        """Its input, output and error files (a batch itself cannot be deleted on OpenAI)."""
        for file_id in (remote.input_file_id, remote.output_file_id, remote.error_file_id):
            if file_id:
                self._delete_file(file_id)

    def list_our_files(self) -> Iterator[OurFile]:
        """Batch input files named ``planner-<id>.jsonl``; through Gemini's Files API on the
        compat layer, which has no files surface of its own."""
        if self._gemini_files is not None:
            yield from self._gemini_files.list_ours(self._page_size)
            return
        try:
            for file in self._client.files.list(purpose="batch", limit=self._page_size):
                ours = wire.parse_file(file.model_dump())
                if ours is not None:
                    yield ours
        except SDK_FAILURES as exc:
            raise self._error(exc, "file list") from exc

    def delete_file(self, file_id: str) -> None:
        self._delete_file(file_id)

    def list_ours(self, since: datetime | None = None) -> Iterator[RemoteBatch]:
        """Pages newest first (§3.9), so the scan stops at the first batch older than ``since``."""
        try:
            for batch in self._client.batches.list(limit=self._page_size):
                remote = wire.parse_batch(batch.model_dump())
                if (
                    since is not None
                    and remote.created_at is not None
                    and remote.created_at < since
                ):
                    return
                if remote.our_id is not None:
                    yield remote
        except SDK_FAILURES as exc:
            raise self._error(exc, "batch list") from exc

    def call_interactive(self, line: BatchLine, *, flex: bool) -> LineResult:
        """POST the body as is (no SDK re-encoding, e.g. base64 embeddings); a request-level
        4xx is returned as ``ok=False``, everything else raises."""
        line = self._compat(line)
        body = wire.interactive_body(line, flex=flex)
        client = self._once.with_options(timeout=self._flex_timeout) if flex else self._once
        headers = {INTERACTIVE_KEY_HEADER: line.key} if self._label_calls else {}
        try:
            response = client.post(
                wire.endpoint_path(line.endpoint),
                cast_to=object,
                body=body,
                options={"headers": headers},
            )
        except SDK_FAILURES as exc:
            error = self._error(exc, "interactive call")
            if isinstance(error, Permanent):
                return LineResult(
                    line.key,
                    ok=False,
                    error_code="request_rejected",
                    error_message=str(error),
                    retryable=False,
                )
            raise error from exc
        return wire.interactive_result(line, response)
