"""The provider port: what the runtime asks of any batch provider, and the values it gets back.

The runtime drives every provider through :class:`BatchProvider` without knowing which one it
is. Implementations live next to this module (``gemini.py``, ``openai.py``); their pure halves
(payload builders, result parsers, state maps) live in ``*_wire.py`` so they can be tested from
the specs' examples without a network.

Contract highlights (each one is tested in ``tests/contract/test_providers.py``):

- our batch id travels with the remote batch (Gemini ``displayName = "planner:<id>"``, OpenAI
  ``metadata = {"planner_batch_id": <id>}``) so a restart can adopt instead of re-create;
- ``submit`` never lets an SDK retry the create call (a retried create can duplicate a batch);
- ``fetch_results`` yields exactly one :class:`LineResult` per expected key, joined by key,
  never by position; a key found nowhere is ``not_executed`` and retryable;
- ``list_our_files`` finds the input files we uploaded by their name (``planner-<our id>``),
  so housekeeping can delete the ones a crash left behind (``core.orphans``);
- every failure is raised as a :mod:`planner.errors` ``ProviderError`` subclass whose message
  never contains the API key.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import IO, Any, Literal, Protocol, runtime_checkable

from planner.core import json_text
from planner.core.model import Endpoint, Request, Usage
from planner.core.orphans import OurFile
from planner.core.states import BatchState

# Sent with each interactive call in sandbox mode only (``label_interactive_calls``), so the
# sandbox's ledger bills that lane per request key too; real providers never get our keys.
INTERACTIVE_KEY_HEADER = "x-planner-key"
NOT_EXECUTED = "not_executed"
# ``list_ours(since=...)`` compares the provider's created_at with our clock: look back this much
# further (the remote clock may lag or lead ours, and a batch is created after its upload)
LIST_SKEW = timedelta(minutes=10)
"""``LineResult.error_code`` of a key that appears in no result (never ran, or lost)."""

MALFORMED = "malformed_result"
"""``LineResult.error_code`` of a key whose result line could not be understood. Never retried
by itself: the provider did the work and may have billed it (``planner requeue`` sends it again)."""

MISSING = "missing_result"
"""``LineResult.error_code`` of a key absent from the output of a batch the provider reports
completed (``pipeline/collect.py`` turns ``not_executed`` into it): it may have run and been
billed, so, like a malformed line, it is dead-lettered instead of being sent again."""

SDK_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "google_genai")
"""Loggers that can print URLs, headers or bodies; Gemini's upload URLs act as credentials."""


SPOOL_BYTES = 8 << 20  # a batch or result file past this size is kept on disk, not in memory


def quiet_sdk_loggers(level: int = logging.WARNING) -> None:
    """Raise the SDK/transport loggers to ``level`` (WARNING by default).

    Called by every provider constructor; ``runtime/logging.py`` may call it again with a
    lower level when the operator asks for ``--debug-http`` (its redaction filter applies then).
    """
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(level)


class ErrorKind(StrEnum):
    """What kind of failure a batch or a line reports; mirrors the ProviderError subclasses."""

    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    PERMANENT = "permanent"
    NOT_FOUND = "not_found"
    AUTH_FAILED = "auth_failed"


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request as it goes into a batch: the join key, its model, endpoint and wire body."""

    key: str
    model: str
    endpoint: Endpoint
    body: Mapping[str, Any]
    # ``body`` as the store holds it (compact JSON, as a batch file writes it) when read from
    # there: a writer that would send the body unchanged writes this text instead of encoding
    body_json: str | None = None

    @classmethod
    def from_request(cls, request: Request) -> BatchLine:
        return cls(
            key=request.key, model=request.model, endpoint=request.endpoint, body=request.body
        )

    @classmethod
    def from_stored(cls, key: str, model: str, endpoint: Endpoint, body_json: str) -> BatchLine:
        """A line from a stored request's key, model, endpoint and body text."""
        return cls(key, model, endpoint, json.loads(body_json), body_json)


@dataclass(frozen=True, slots=True)
class BatchPayload:
    """What ``submit`` sends: either a JSONL file (``jsonl``) or inline requests (``inline``).

    ``keys`` lists every line's key in input order; ``size_bytes`` is the encoded size of the
    file or of the inline create body. ``jsonl`` is the file's bytes, or a binary file holding
    them (a batch file may be 200 MB: the OpenAI payload is written to a temporary file past a
    few megabytes and the upload streams it); ``close`` it when sent.
    """

    batch_id: str
    model: str
    endpoint: Endpoint
    keys: tuple[str, ...]
    size_bytes: int
    jsonl: bytes | IO[bytes] | None = None
    inline: tuple[Mapping[str, Any], ...] | None = None

    @property
    def mode(self) -> Literal["file", "inline"]:
        return "inline" if self.inline is not None else "file"

    def jsonl_bytes(self) -> bytes | None:
        """The JSONL file's content, read whole (for small files and tests)."""
        if self.jsonl is None or isinstance(self.jsonl, bytes):
            return self.jsonl
        self.jsonl.seek(0)
        try:
            return self.jsonl.read()
        finally:
            self.jsonl.seek(0)

    def close(self) -> None:
        """Release the temporary file, if the JSONL is one."""
        if self.jsonl is not None and not isinstance(self.jsonl, bytes):
            self.jsonl.close()


@dataclass(frozen=True, slots=True)
class RequestCounts:
    total: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class RemoteBatch:
    """A batch as the provider reports it, already translated to our vocabulary.

    ``provider_state`` keeps the raw status string for logs; ``error_code``/``error_kind``
    describe a batch-level failure (e.g. ``token_limit_exceeded`` -> ``QUOTA_EXCEEDED``).
    ``inline`` is True for Gemini batches whose results come back inside the batch resource.
    """

    remote_id: str
    our_id: str | None
    state: BatchState
    provider_state: str
    model: str | None = None
    endpoint: Endpoint | None = None
    counts: RequestCounts = field(default_factory=RequestCounts)
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    error_code: str | None = None
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    inline: bool = False


@dataclass(frozen=True, slots=True)
class LineResult:
    """The outcome of one request. ``response`` is the provider's response body (success only)."""

    key: str
    ok: bool
    response: Mapping[str, Any] | None = None
    usage: Usage | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False
    raw: str | None = None  # the result line as received, when it could not be understood
    tier: str | None = None  # the service tier the provider says answered (see service_tier)
    # bytes of the results-file line it was read from (0: not read from a file): collect
    # bounds the memory of a chunk of results by it (an embedding line may be 30 KB); where it
    # was read from, not what it says, so results compare equal whatever their sizes
    size: int = field(default=0, compare=False)


FLEX_TIER = "flex"


def service_tier(value: object) -> str | None:
    """The served tier a response reports, lower-cased: OpenAI's ``service_tier`` (``flex``,
    ``default``, ``priority`` ...), Gemini's ``usageMetadata.serviceTier`` (``flex``,
    ``standard``, ``priority``; an enum the SDK reads case-insensitively). ``None`` when absent
    or unspecified: then the tier asked for is taken as the one that answered."""
    if not isinstance(value, str) or not value.strip():
        return None
    tier = value.strip().lower().removeprefix("service_tier_")
    return None if tier in ("unspecified", "auto") else tier


@runtime_checkable
class BatchProvider(Protocol):
    """The port the pipeline uses; one implementation per provider kind."""

    kind: str

    def build_payload(self, batch_id: str, lines: Iterable[BatchLine]) -> BatchPayload:
        """Encode the lines, read once in order (pure; raises ValueError on mixed models or
        endpoints, duplicate keys, bad bodies or no lines)."""
        ...

    def submit(
        self,
        batch_id: str,
        model: str,
        endpoint: Endpoint,
        payload: BatchPayload,
        *,
        input_file_id: str | None = None,
    ) -> RemoteBatch:
        """Upload (file mode; skipped when ``input_file_id`` adopts an earlier upload) and
        create the batch with our id attached; the create is never retried by an SDK."""
        ...

    def get(self, remote_id: str) -> RemoteBatch: ...

    def cancel(self, remote_id: str) -> None:
        """Ask the provider to cancel; a batch that is already finished is not an error."""
        ...

    def fetch_results(self, remote: RemoteBatch, keys: Collection[str]) -> Iterator[LineResult]:
        """Exactly one LineResult per key in ``keys``, joined by key."""
        ...

    def delete_collected(self, remote: RemoteBatch) -> None:
        """Delete what the provider keeps of a collected batch: its input and output files,
        and the batch itself where it holds requests or answers and can be deleted (Gemini).
        What is gone already is fine."""
        ...

    def list_ours(self, since: datetime | None = None) -> Iterator[RemoteBatch]:
        """Batches carrying our id (created at or after ``since`` when given)."""
        ...

    def list_our_files(self) -> Iterator[OurFile]:
        """Uploaded input files named for one of our batches (``core.orphans``), whatever
        their batch; generated results files are not listed."""
        ...

    def delete_file(self, file_id: str) -> None:
        """Delete one file by the id ``list_our_files`` gave; already gone is fine."""
        ...

    def call_interactive(self, line: BatchLine, *, flex: bool) -> LineResult:
        """One synchronous call; a request-level 4xx comes back as ``ok=False``, the rest raises."""
        ...


@dataclass(frozen=True, slots=True)
class BadLine:
    """A result line that could not be understood. ``key`` when it could still be recovered."""

    line_no: int
    reason: str
    key: str | None = None
    raw: str | None = None  # the line's text (a parsed line's JSON when its shape was wrong)


def _split_lines(data: bytes | IO[bytes]) -> Iterator[bytes]:
    """``data.splitlines()``, one line at a time (and for a file, read a line at a time and
    closed at the end): a results file may hold gigabytes of embedding vectors, and a list of
    all its lines would be a second copy of it."""
    if not isinstance(data, bytes):
        with data:
            for line in data:
                segment = line.removesuffix(b"\n")
                yield from segment.splitlines() if segment else (segment,)
        return
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", start)
        end = size if end < 0 else end
        segment = data[start:end]
        if segment:
            yield from segment.splitlines()  # a lone \r also ends a line, as in splitlines
        else:
            yield segment
        start = end + 1


def json_lines(
    data: bytes | IO[bytes], key_field: str
) -> Iterator[tuple[int, Mapping[str, Any], int] | BadLine]:
    """The JSON objects of a results file with their 1-based line numbers and sizes in bytes;
    a line that is not one becomes a ``BadLine``, carrying its ``key_field`` value when it can
    still be read."""
    key_re = re.compile(rf'"{re.escape(key_field)}"\s*:\s*"((?:[^"\\]|\\.)*)"')
    for line_no, raw in enumerate(_split_lines(data), start=1):
        if not raw.strip():
            continue
        text = raw.decode("utf-8", errors="replace")
        try:
            item = json_text.loads(text)
        except ValueError:
            match = key_re.search(text)
            key = json.loads(f'"{match.group(1)}"') if match else None
            yield BadLine(line_no, "not valid JSON", key, text)
            continue
        if not isinstance(item, Mapping):
            yield BadLine(line_no, "not a JSON object", raw=text)
            continue
        yield line_no, item, len(raw)


def join_by_key(
    keys: Collection[str],
    found: Iterable[LineResult | BadLine],
    *,
    batch: str,
    log: logging.Logger,
) -> Iterator[LineResult]:
    """Yield exactly one result per expected key: the first one found, else ``not_executed``.

    A bad line whose key is known becomes that key's ``malformed_result``, carrying the line's
    text, and is not retryable (the work was done and may have been billed). A bad line without
    a key, a result for a key we did not send and a second result for a key are logged (batch
    id and line number, never content) and cannot be attributed, so the key they might belong
    to ends up ``not_executed`` (the collector decides whether that is ``missing_result``); when
    exactly one key is left over and exactly one unreadable line had no key, that line's text
    goes with the left-over key, as the only candidate.
    """
    expected = set(keys)
    seen: set[str] = set()
    orphans: list[str] = []  # text of bad lines without a key
    for item in found:
        if isinstance(item, BadLine):
            log.warning(
                "malformed result line %d in batch %s: %s",
                item.line_no,
                batch,
                item.reason,
                extra={"event": "provider_result_malformed", "batch": batch},
            )
            if item.key is None:
                if item.raw is not None:
                    orphans.append(item.raw)
                continue
            item = LineResult(
                key=item.key,
                ok=False,
                error_code=MALFORMED,
                error_message=f"result line {item.line_no} unreadable: {item.reason}",
                raw=item.raw,
            )
        if item.key not in expected or item.key in seen:
            event = "provider_result_duplicate" if item.key in seen else "provider_result_unknown"
            log.warning("%s in batch %s", event, batch, extra={"event": event, "batch": batch})
            continue
        seen.add(item.key)
        yield item
    left = [key for key in dict.fromkeys(keys) if key not in seen]
    for key in left:
        yield LineResult(
            key=key,
            ok=False,
            error_code=NOT_EXECUTED,
            error_message="no result for this request in the provider's output",
            retryable=True,
            raw=orphans[0] if len(left) == 1 and len(orphans) == 1 else None,
        )
