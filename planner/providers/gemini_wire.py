"""Gemini Batch API wire shapes, pure: payload builders, result parsers and the state map.

Everything here is dict in, dict/bytes out, following ``specs/gemini-batch-api.md`` (section
numbers below refer to it). No SDK, no network: ``gemini.py`` sends what these functions build
and hands back what it receives.

Inline or file (§1, §9): a create call with inline requests must stay under 20 MB, and inline
results come back inside the batch resource on every ``get``. So a batch goes inline only when
its encoded requests fit ``inline_max_bytes`` AND its expected output (``maxOutputTokens`` per
line, or ``DEFAULT_OUTPUT_TOKENS`` when unset, times ``BYTES_PER_OUTPUT_TOKEN``) fits
``inline_max_output_bytes``; otherwise it goes as a JSONL file. Embedding batches always go as
files: the SDK's inline embedding shape carries no per-item key (§7.4), and we join by key only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import IO, Any

from planner.core.model import Endpoint, Usage
from planner.core.orphans import FILE_NAME_PREFIX, OurFile, batch_id_from_file_name
from planner.core.states import BatchState
from planner.providers.base import (
    MALFORMED,
    BadLine,
    BatchLine,
    BatchPayload,
    ErrorKind,
    LineResult,
    RemoteBatch,
    RequestCounts,
    json_lines,
    service_tier,
)

PUBLIC_BASE_URL = "https://generativelanguage.googleapis.com/"
"""The Gemini Developer API's host: the native API and its OpenAI compatibility layer (§10)."""
COMPAT_BASE_URL = PUBLIC_BASE_URL + "v1beta/openai/"
"""Where the OpenAI SDK talks to Gemini (``openai_compat: true``) unless ``base_url`` says."""
DISPLAY_PREFIX = "planner:"
FILE_PREFIX = FILE_NAME_PREFIX
INLINE_HARD_LIMIT_BYTES = 20 * 1024 * 1024  # §9: whole create request under 20 MB
DEFAULT_INLINE_MAX_BYTES = 8 * 1024 * 1024  # margin below the hard limit
DEFAULT_INLINE_MAX_OUTPUT_BYTES = 8 * 1024 * 1024  # inline results ride on every poll
DEFAULT_OUTPUT_TOKENS = 8192  # assumed when a request sets no maxOutputTokens
BYTES_PER_OUTPUT_TOKEN = 4
RESULTS_FILE_PREFIX = "files/batch-"  # generated results files: download only (§3, pitfall 8)

ENDPOINTS = (Endpoint.GENERATE_CONTENT, Endpoint.EMBED_CONTENT)

_B = BatchState
STATES: dict[str, BatchState] = {
    "BATCH_STATE_UNSPECIFIED": _B.SUBMITTED,
    "BATCH_STATE_PENDING": _B.SUBMITTED,
    "BATCH_STATE_RUNNING": _B.RUNNING,
    "BATCH_STATE_SUCCEEDED": _B.SUCCEEDED,
    "BATCH_STATE_FAILED": _B.FAILED,
    "BATCH_STATE_CANCELLED": _B.CANCELLED,
    "BATCH_STATE_EXPIRED": _B.EXPIRED,
    # the SDK's spellings (§8.1), accepted as they are; the Vertex-only ones for completeness
    "JOB_STATE_UNSPECIFIED": _B.SUBMITTED,
    "JOB_STATE_QUEUED": _B.SUBMITTED,
    "JOB_STATE_PENDING": _B.SUBMITTED,
    "JOB_STATE_RUNNING": _B.RUNNING,
    "JOB_STATE_PAUSED": _B.RUNNING,
    "JOB_STATE_UPDATING": _B.RUNNING,
    "JOB_STATE_CANCELLING": _B.RUNNING,
    "JOB_STATE_SUCCEEDED": _B.SUCCEEDED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": _B.SUCCEEDED,
    "JOB_STATE_FAILED": _B.FAILED,
    "JOB_STATE_CANCELLED": _B.CANCELLED,
    "JOB_STATE_EXPIRED": _B.EXPIRED,
}

# google.rpc.Code numbers -> names (per-request errors may carry either, §7.3)
RPC_CODES: dict[int, str] = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
RETRYABLE_STATUSES = frozenset(
    {
        "CANCELLED",
        "UNKNOWN",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
    }
)
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
_STATUS_KIND: dict[str, ErrorKind] = {
    "RESOURCE_EXHAUSTED": ErrorKind.QUOTA_EXCEEDED,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "PERMISSION_DENIED": ErrorKind.AUTH_FAILED,
    "UNAUTHENTICATED": ErrorKind.AUTH_FAILED,
    "INVALID_ARGUMENT": ErrorKind.PERMANENT,
    "FAILED_PRECONDITION": ErrorKind.PERMANENT,
    "OUT_OF_RANGE": ErrorKind.PERMANENT,
    "UNIMPLEMENTED": ErrorKind.PERMANENT,
    "ALREADY_EXISTS": ErrorKind.PERMANENT,
}
_FRACTION_RE = re.compile(r"(\.\d{6})\d+")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


# --- our id at the provider (reliability spec §1.2-1.3) ---------------------------------------


def batch_display_name(batch_id: str) -> str:
    return DISPLAY_PREFIX + batch_id


def our_id_from_display_name(display_name: object) -> str | None:
    if isinstance(display_name, str) and display_name.startswith(DISPLAY_PREFIX):
        return display_name[len(DISPLAY_PREFIX) :] or None
    return None


def file_display_name(batch_id: str) -> str:
    return FILE_PREFIX + batch_id


def parse_file(file: Mapping[str, Any]) -> OurFile | None:
    """A File resource (§4.3, camelCase) -> ours when we uploaded it for one of our batches
    (display name ``planner-<id>``, or ``planner-<id>.jsonl`` through the compat layer).
    Generated results files are never ours to delete (pitfall 8)."""
    name = file.get("name")
    if (
        not isinstance(name, str)
        or not name.startswith("files/")
        or name.startswith(RESULTS_FILE_PREFIX)
        or file.get("source") == "GENERATED"
    ):
        return None
    batch_id = batch_id_from_file_name(file.get("displayName"))
    if batch_id is None:
        return None
    return OurFile(name, batch_id, parse_timestamp(file.get("createTime")))


# --- paths ------------------------------------------------------------------------------------


def model_resource(model: str) -> str:
    """``models/<id>`` (or ``tunedModels/<id>`` unchanged), as the create URL needs (§3)."""
    if model.startswith(("models/", "tunedModels/")):
        return model
    return "models/" + model


def create_path(model: str, endpoint: Endpoint) -> str:
    method = (
        "batchGenerateContent"
        if endpoint is Endpoint.GENERATE_CONTENT
        else ("asyncBatchEmbedContent")
    )
    _check_endpoint(endpoint)
    return f"{model_resource(model)}:{method}"


def interactive_path(model: str, endpoint: Endpoint) -> str:
    _check_endpoint(endpoint)
    method = "generateContent" if endpoint is Endpoint.GENERATE_CONTENT else "embedContent"
    return f"{model_resource(model)}:{method}"


def batch_path(remote_id: str) -> str:
    """``batches/<id>``; the SDK refuses bare ids and further slashes (§3), so do we."""
    if not remote_id.startswith("batches/") or "/" in remote_id[len("batches/") :]:
        raise ValueError(f"not a Gemini batch name (expected 'batches/<id>'): {remote_id!r}")
    return remote_id


def _check_endpoint(endpoint: Endpoint) -> None:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint {endpoint.value!r} is not a Gemini native endpoint")


# --- building the payload ---------------------------------------------------------------------


def check_body(endpoint: Endpoint, body: Mapping[str, Any], *, where: str) -> None:
    """Reject bodies the batch would fail on, with the line named (``where``)."""
    if endpoint is Endpoint.EMBED_CONTENT:
        content = body.get("content")
        if not isinstance(content, Mapping):
            raise ValueError(
                f"{where}: an embedContent body needs exactly one 'content' object "
                "(one Content per embedding input)"
            )
        if "contents" in body or "requests" in body:
            raise ValueError(
                f"{where}: an embedContent body takes one 'content', not 'contents'/'requests'"
            )
    else:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise ValueError(f"{where}: a generateContent body needs a non-empty 'contents' list")


def input_line(key: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One JSONL input line (§7.1/§7.2): ``{"key", "request"}``."""
    return {"key": key, "request": dict(body)}


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # as the file is written


def input_line_bytes(key: str, body_bytes: int) -> int:
    """Bytes of ``encode_jsonl([input_line(key, body)])`` (newline included) from
    ``body_bytes``, the UTF-8 length of the body as compact JSON, without encoding it again."""
    key_bytes = len(_COMPACT.encode(key).encode())
    return len('{"key":,"request":}\n') + key_bytes + body_bytes


def inline_item(key: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One inline request (§4.5): the key rides in ``metadata`` (string values only)."""
    return {"request": dict(body), "metadata": {"key": key}}


def encode_jsonl(rows: Sequence[Mapping[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for row in rows
    )


def expected_output_bytes(lines: Sequence[BatchLine]) -> int:
    total = 0
    for line in lines:
        if line.endpoint is Endpoint.EMBED_CONTENT:
            continue
        config = line.body.get("generationConfig") or line.body.get("generation_config") or {}
        tokens = config.get("maxOutputTokens", config.get("max_output_tokens"))
        if not isinstance(tokens, int) or tokens <= 0:
            tokens = DEFAULT_OUTPUT_TOKENS
        total += tokens * BYTES_PER_OUTPUT_TOKEN
    return total


def build_payload(
    batch_id: str,
    lines: Sequence[BatchLine],
    *,
    inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
    inline_max_output_bytes: int = DEFAULT_INLINE_MAX_OUTPUT_BYTES,
) -> BatchPayload:
    """Encode ``lines`` as inline requests or a JSONL file (see the module docstring)."""
    if not lines:
        raise ValueError(f"batch {batch_id}: no lines")
    model, endpoint = lines[0].model, lines[0].endpoint
    _check_endpoint(endpoint)
    keys: list[str] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, start=1):
        where = f"batch {batch_id} line {n} (key {line.key!r})"
        if line.model != model or line.endpoint is not endpoint:
            raise ValueError(f"{where}: one model and endpoint per batch, expected {model}")
        if line.key in seen:
            raise ValueError(f"{where}: duplicate key")
        seen.add(line.key)
        keys.append(line.key)
        check_body(endpoint, line.body, where=where)
    inline_limit = min(inline_max_bytes, INLINE_HARD_LIMIT_BYTES)
    if endpoint is Endpoint.GENERATE_CONTENT and expected_output_bytes(lines) <= (
        inline_max_output_bytes
    ):
        items = tuple(inline_item(line.key, line.body) for line in lines)
        size = len(json.dumps(create_body(batch_display_name(batch_id), endpoint, inline=items)))
        if size <= inline_limit:
            return BatchPayload(batch_id, model, endpoint, tuple(keys), size, inline=items)
    data = encode_jsonl([input_line(line.key, line.body) for line in lines])
    return BatchPayload(batch_id, model, endpoint, tuple(keys), len(data), jsonl=data)


def create_body(
    display_name: str,
    endpoint: Endpoint,
    *,
    file_name: str | None = None,
    inline: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The create call's JSON body (§4.5, §4.6), spelled as the SDK spells it."""
    if (file_name is None) == (inline is None):
        raise ValueError("exactly one of file_name and inline")
    if file_name is not None:
        # the SDK sends fileName for generate and file_name for embeddings (pitfall 16)
        field = "fileName" if endpoint is Endpoint.GENERATE_CONTENT else "file_name"
        input_config: dict[str, Any] = {field: file_name}
    else:
        input_config = {"requests": {"requests": [dict(item) for item in inline or ()]}}
    return {"batch": {"displayName": display_name, "inputConfig": input_config}}


# --- reading batches --------------------------------------------------------------------------


def map_state(state: object) -> BatchState | None:
    """Our state for a wire (``BATCH_STATE_*``) or SDK (``JOB_STATE_*``) state; None if unknown."""
    return STATES.get(state) if isinstance(state, str) else None


def parse_timestamp(value: object) -> datetime | None:
    """RFC 3339 with up to nanoseconds (§5.1) -> aware datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION_RE.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _int(value: object) -> int:
    """int64 fields arrive as strings and zero ones are omitted (pitfalls 18-19)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def parse_operation(op: Mapping[str, Any]) -> RemoteBatch:
    """A batch Operation (§5.1) as a RemoteBatch. Unknown states read as SUBMITTED."""
    meta = op.get("metadata") if isinstance(op.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    name = str(op.get("name") or meta.get("name") or "")
    raw_state = str(meta.get("state") or "BATCH_STATE_UNSPECIFIED")
    state = map_state(raw_state) or BatchState.SUBMITTED
    stats = meta.get("batchStats") if isinstance(meta.get("batchStats"), Mapping) else {}
    assert isinstance(stats, Mapping)
    succeeded = _int(stats.get("successfulRequestCount"))
    failed = _int(stats.get("failedRequestCount"))
    counts = RequestCounts(
        total=_int(stats.get("requestCount")), completed=succeeded, failed=failed
    )
    input_config = meta.get("inputConfig") if isinstance(meta.get("inputConfig"), Mapping) else {}
    assert isinstance(input_config, Mapping)
    input_file = input_config.get("fileName") or input_config.get("file_name")
    output = meta.get("output") if isinstance(meta.get("output"), Mapping) else {}
    assert isinstance(output, Mapping)
    type_url = str(meta.get("@type") or "")
    endpoint = (
        Endpoint.EMBED_CONTENT
        if "Embed" in type_url
        else (Endpoint.GENERATE_CONTENT if type_url else None)
    )
    error_code = error_kind = error_message = None
    error = op.get("error")
    if isinstance(error, Mapping) and state is BatchState.FAILED:
        error_code, error_message, retryable = line_error(error)
        error_kind = _STATUS_KIND.get(
            error_code, ErrorKind.TRANSIENT if retryable else (ErrorKind.PERMANENT)
        )
    elif state is BatchState.FAILED:
        error_code, error_kind = "batch_failed", ErrorKind.TRANSIENT
        error_message = "the provider reported the batch failed without a reason"
    elif state is BatchState.EXPIRED:
        error_code, error_kind = "batch_expired", ErrorKind.TRANSIENT
        error_message = "the batch was not finished within the provider's 48 h window"
    model = meta.get("model")
    return RemoteBatch(
        remote_id=name,
        our_id=our_id_from_display_name(meta.get("displayName")),
        state=state,
        provider_state=raw_state,
        model=str(model).removeprefix("models/") if model else None,
        endpoint=endpoint,
        counts=counts,
        input_file_id=str(input_file) if input_file else None,
        output_file_id=str(output["responsesFile"]) if output.get("responsesFile") else None,
        error_code=error_code,
        error_kind=error_kind,
        error_message=error_message,
        created_at=parse_timestamp(meta.get("createTime")),
        inline=not input_file and ("requests" in input_config or "inlinedResponses" in output),
    )


def operation_from_batch_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """The SDK's typed ``BatchJob`` (``model_dump(mode="json")``, snake_case) as the Operation
    shape :func:`parse_operation` reads. The SDK keeps only these fields (§5.3)."""
    meta = {
        "name": job.get("name"),
        "displayName": job.get("display_name"),
        "state": job.get("state"),
        "model": job.get("model"),
        "createTime": job.get("create_time"),
    }
    return {"name": job.get("name"), "metadata": {k: v for k, v in meta.items() if v is not None}}


# --- results ----------------------------------------------------------------------------------


def usage_from_metadata(usage: object) -> Usage | None:
    """``usageMetadata`` -> Usage: input = prompt (which includes cached) + tool-use prompt;
    output = candidates + thoughts (both billed at the output rate); cached = cachedContent."""
    if not isinstance(usage, Mapping):
        return None
    return Usage(
        input_tokens=_int(usage.get("promptTokenCount"))
        + _int(usage.get("toolUsePromptTokenCount")),
        output_tokens=_int(usage.get("candidatesTokenCount"))
        + _int(usage.get("thoughtsTokenCount")),
        cached_input_tokens=_int(usage.get("cachedContentTokenCount")),
    )


def usage_from_response(response: Mapping[str, Any]) -> Usage | None:
    """Usage of one response: ``usageMetadata`` for generate; ``tokenCount`` (int64 string,
    §7.3) or ``usageMetadata.promptTokenCount`` for embeddings."""
    if "usageMetadata" in response:
        return usage_from_metadata(response["usageMetadata"])
    if "tokenCount" in response:
        return Usage(input_tokens=_int(response["tokenCount"]), output_tokens=0)
    return None


def line_error(error: Mapping[str, Any]) -> tuple[str, str, bool]:
    """``(code, message, retryable)`` of a ``google.rpc.Status``-like error; the code may be an
    RPC number, an HTTP status or absent, with or without a ``status`` string (§7.3)."""
    status = error.get("status")
    code = error.get("code")
    name: str
    if isinstance(status, str) and status:
        name = status
    elif isinstance(code, int) and not isinstance(code, bool) and code in RPC_CODES:
        name = RPC_CODES[code]
    elif code is not None:
        name = str(code)
    else:
        name = "UNKNOWN"
    retryable = name in RETRYABLE_STATUSES or (isinstance(code, int) and code in RETRYABLE_HTTP)
    message = str(error.get("message") or name)
    return name, message, retryable


def _result(
    key: str, endpoint: Endpoint | None, item: Mapping[str, Any], line_no: int
) -> LineResult | BadLine:
    response, error = item.get("response"), item.get("error")
    if isinstance(error, Mapping):
        code, message, retryable = line_error(error)
        return LineResult(
            key, ok=False, error_code=code, error_message=message, retryable=retryable
        )
    if isinstance(response, Mapping):
        if endpoint is Endpoint.EMBED_CONTENT and not isinstance(
            response.get("embedding"), Mapping
        ):
            return BadLine(line_no, "embedding response without 'embedding'", key)
        return LineResult(
            key, ok=True, response=dict(response), usage=usage_from_response(response)
        )
    return BadLine(line_no, "neither 'response' nor 'error' is an object", key)


def parse_results_file(
    data: bytes | IO[bytes], endpoint: Endpoint | None
) -> Iterator[LineResult | BadLine]:
    """A results file (§7.3): one ``{"key", "response"|"error"}`` per line, in any order."""
    for found in json_lines(data, "key"):
        if isinstance(found, BadLine):
            yield found
            continue
        line_no, item, size = found
        key = item.get("key")
        if not isinstance(key, str):
            yield BadLine(line_no, "no string 'key'", raw=json.dumps(item))
            continue
        result = _result(key, endpoint, item, line_no)
        if isinstance(result, LineResult):
            yield replace(result, size=size)
        else:
            yield _with_raw(result, item)


def parse_inline_responses(
    op: Mapping[str, Any], endpoint: Endpoint | None
) -> Iterator[LineResult | BadLine]:
    """Inline results (§7.4), doubly nested, joined by ``metadata.key`` (never by position)."""
    meta = op.get("metadata")
    output = meta.get("output") if isinstance(meta, Mapping) else None
    outer = output.get("inlinedResponses") if isinstance(output, Mapping) else None
    items = outer.get("inlinedResponses") if isinstance(outer, Mapping) else None
    if not isinstance(items, list):
        return
    for n, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            yield BadLine(n, "inline response is not an object", raw=json.dumps(item))
            continue
        metadata = item.get("metadata")
        key = metadata.get("key") if isinstance(metadata, Mapping) else None
        if not isinstance(key, str):
            yield BadLine(n, "inline response without metadata.key", raw=json.dumps(item))
            continue
        yield _with_raw(_result(key, endpoint, item, n), item)


def _with_raw(found: LineResult | BadLine, item: Mapping[str, Any]) -> LineResult | BadLine:
    """A line whose shape was wrong keeps its text, for the dead-letter line."""
    return replace(found, raw=json.dumps(item)) if isinstance(found, BadLine) else found


# --- errors -----------------------------------------------------------------------------------


def retry_delay_seconds(body: object) -> float | None:
    """``RetryInfo.retryDelay`` (a protobuf duration like ``"45.8s"``) from an error body."""
    for detail in _details(body):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION_RE.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def is_daily_quota(body: object) -> bool:
    """True when a ``QuotaFailure`` names a per-day quota (waiting minutes will not lift it)."""
    for detail in _details(body):
        if str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            for violation in detail.get("violations") or []:
                if (
                    isinstance(violation, Mapping)
                    and "perday" in str(violation.get("quotaId", "")).lower()
                ):
                    return True
    return False


def _details(body: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    error = body.get("error") if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    if isinstance(details, list):
        yield from (d for d in details if isinstance(d, Mapping))


# --- interactive ------------------------------------------------------------------------------


def interactive_body(line: BatchLine, *, flex: bool) -> dict[str, Any]:
    """The synchronous request body; flex sets ``serviceTier: "flex"`` (generate only — the
    SDK's ``ServiceTier.FLEX`` is a ``GenerateContentConfig`` field, §5.4)."""
    check_body(line.endpoint, line.body, where=f"request {line.key!r}")
    body = dict(line.body)
    if flex:
        if line.endpoint is not Endpoint.GENERATE_CONTENT:
            raise ValueError("Gemini offers the flex tier for generateContent only")
        body["serviceTier"] = "flex"
    return body


def interactive_result(line: BatchLine, response: Mapping[str, Any]) -> LineResult:
    found = _result(line.key, line.endpoint, {"response": response}, 1)
    if isinstance(found, BadLine):
        return LineResult(
            line.key,
            ok=False,
            error_code=MALFORMED,
            error_message=found.reason,
            raw=found.raw or json.dumps(response),
        )  # not retryable: the call was answered, so it was billed
    meta = response.get("usageMetadata")
    tier = service_tier(meta.get("serviceTier")) if isinstance(meta, Mapping) else None
    return replace(found, tier=tier)  # the tier that answered, not the one asked for
