"""OpenAI Batch API wire shapes, pure: JSONL lines, batch/state parsing, result lines, usage.

Dict in, dict/bytes out, following ``specs/openai-batch-api.md`` (section numbers below refer to
it). Used unchanged for OpenAI itself, Gemini's OpenAI-compatibility layer and self-hosted
servers speaking the same surface.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
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

METADATA_KEY = "planner_batch_id"
FILE_PREFIX = FILE_NAME_PREFIX
COMPLETION_WINDOW = "24h"
ENDPOINTS = (Endpoint.CHAT_COMPLETIONS, Endpoint.EMBEDDINGS, Endpoint.RESPONSES)

_B = BatchState
STATES: dict[str, BatchState] = {
    "validating": _B.SUBMITTED,
    "in_progress": _B.RUNNING,
    "finalizing": _B.RUNNING,
    "cancelling": _B.RUNNING,  # not finished: in-flight requests still complete (§3.10)
    "completed": _B.SUCCEEDED,
    "failed": _B.FAILED,
    "expired": _B.EXPIRED,
    "cancelled": _B.CANCELLED,
}

QUOTA_CODES = frozenset({"token_limit_exceeded", "insufficient_quota"})
RETRYABLE_LINE_CODES = frozenset(
    {
        "batch_expired",
        "batch_cancelled",
        "rate_limit_exceeded",
        "server_error",
        "timeout",
        "internal_error",
        "service_unavailable",
    }
)
RETRYABLE_HTTP = frozenset({408, 409, 429, 500, 502, 503, 504})


# --- our id at the provider (reliability spec §1.2-1.3) ---------------------------------------


def batch_metadata(batch_id: str) -> dict[str, str]:
    return {METADATA_KEY: batch_id}


def our_id_from_metadata(metadata: object) -> str | None:
    if isinstance(metadata, Mapping):
        value = metadata.get(METADATA_KEY)
        if isinstance(value, str) and value:
            return value
    return None


def input_filename(batch_id: str) -> str:
    """The multipart filename; OpenAI rejects batch files not ending in ``.jsonl`` (pitfall 3)."""
    return f"{FILE_PREFIX}{batch_id}.jsonl"


def parse_file(file: Mapping[str, Any]) -> OurFile | None:
    """A file object (§3.2) -> ours when it is a batch input named for one of our batches."""
    file_id = file.get("id")
    if file.get("purpose") != "batch" or not isinstance(file_id, str) or not file_id:
        return None
    batch_id = batch_id_from_file_name(file.get("filename"))
    if batch_id is None:
        return None
    return OurFile(file_id, batch_id, _timestamp(file.get("created_at")))


def endpoint_path(endpoint: Endpoint) -> str:
    """The SDK-relative path of an endpoint (the base URL already ends in ``/v1``, pitfall 1)."""
    _check_endpoint(endpoint)
    return endpoint.value.removeprefix("/v1")


def _check_endpoint(endpoint: Endpoint) -> None:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint {endpoint.value!r} is not an OpenAI-compatible endpoint")


# --- building the payload ---------------------------------------------------------------------


def request_body(line: BatchLine, *, where: str) -> dict[str, Any]:
    """The line's body with ``model`` set; refuses streaming and a conflicting model (§5.1)."""
    body = dict(line.body)
    model = body.setdefault("model", line.model)
    if model != line.model:
        raise ValueError(f"{where}: body model {model!r} differs from the request's {line.model!r}")
    if body.get("stream"):
        raise ValueError(f"{where}: 'stream: true' is not allowed in a batch")
    if line.endpoint is Endpoint.EMBEDDINGS and "input" not in body:
        raise ValueError(f"{where}: an embeddings body needs 'input'")
    if line.endpoint is Endpoint.CHAT_COMPLETIONS and not isinstance(body.get("messages"), list):
        raise ValueError(f"{where}: a chat completions body needs a 'messages' list")
    if line.endpoint is Endpoint.RESPONSES and "input" not in body:
        raise ValueError(f"{where}: a responses body needs 'input'")
    return body


def input_line(key: str, endpoint: Endpoint, body: Mapping[str, Any]) -> dict[str, Any]:
    """One input line (§5.1): ``{"custom_id", "method": "POST", "url", "body"}``."""
    return {"custom_id": key, "method": "POST", "url": endpoint.value, "body": dict(body)}


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # as the file is written
_FRAME = ('{"custom_id":', ',"method":"POST","url":', ',"body":', "}\n")  # input_line, encoded


def _json_bytes(value: object) -> int:
    return len(_COMPACT.encode(value).encode())


def input_line_bytes(
    key: str, endpoint: Endpoint, model: str, body: Mapping[str, Any], body_bytes: int
) -> int:
    """Bytes of the line ``build_payload`` writes for this request, newline included, from
    ``body_bytes`` (the UTF-8 length of the body as compact JSON) without encoding the body
    again: ``request_body`` adds ``model`` when the body has none."""
    if "model" not in body:
        body_bytes += len('"model":') + _json_bytes(model) + (1 if body else 0)
    frame = sum(map(len, _FRAME)) + _json_bytes(key) + _json_bytes(endpoint.value)
    return frame + body_bytes


def build_payload(
    batch_id: str, lines: Iterable[BatchLine], out: IO[bytes] | None = None
) -> BatchPayload:
    """A JSONL file of ``lines``: one model, one endpoint, unique keys (pitfall 21), written
    to ``out`` (a binary file positioned at its start; default: in memory) and handed over
    with the payload, rewound.

    ``lines`` is read once, in order, and each line is encoded as it comes: a batch of 50,000
    requests streamed from the store never has all its bodies decoded at once (they took
    several times the file's size in memory). The provider passes a file that goes to disk
    past a few megabytes (a batch file may be 200 MB), which the upload then streams."""
    out = io.BytesIO() if out is None else out
    model, endpoint, keys = _write_lines(batch_id, lines, out)
    size = out.tell()
    out.seek(0)
    return BatchPayload(batch_id, model, endpoint, keys, size, jsonl=out)


def _write_lines(
    batch_id: str, lines: Iterable[BatchLine], out: IO[bytes]
) -> tuple[str, Endpoint, tuple[str, ...]]:
    keys: list[str] = []
    seen: set[str] = set()
    model, endpoint = "", Endpoint.CHAT_COMPLETIONS
    for n, line in enumerate(lines, start=1):
        if n == 1:
            model, endpoint = line.model, line.endpoint
            _check_endpoint(endpoint)
        where = f"batch {batch_id} line {n} (key {line.key!r})"
        if line.model != model or line.endpoint is not endpoint:
            raise ValueError(f"{where}: one model and endpoint per batch, expected {model}")
        if line.key in seen:
            raise ValueError(f"{where}: duplicate custom_id")
        seen.add(line.key)
        keys.append(line.key)
        body = request_body(line, where=where)
        if line.body_json is not None and len(body) == len(line.body):  # sent as stored
            key, url = _COMPACT.encode(line.key), _COMPACT.encode(endpoint.value)
            text = f"{_FRAME[0]}{key}{_FRAME[1]}{url}{_FRAME[2]}{line.body_json}{_FRAME[3]}"
            out.write(text.encode())
            continue
        out.write(_COMPACT.encode(input_line(line.key, endpoint, body)).encode())
        out.write(b"\n")
    if not keys:
        raise ValueError(f"batch {batch_id}: no lines")
    return model, endpoint, tuple(keys)


# --- reading batches --------------------------------------------------------------------------


def map_state(status: object) -> BatchState | None:
    return STATES.get(status) if isinstance(status, str) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    return None


def _file_id(value: object) -> str | None:
    """Any falsy file id means "no file" (§6.1: one server sends ``""``)."""
    return str(value) if value else None


def batch_error(errors: object) -> tuple[str, str] | None:
    """The first ``errors.data[]`` entry of a failed batch (§6.4) as ``(code, message)``."""
    data = errors.get("data") if isinstance(errors, Mapping) else None
    if isinstance(data, list):
        for entry in data:
            if isinstance(entry, Mapping):
                code = str(entry.get("code") or "batch_failed")
                message = str(entry.get("message") or code)
                if entry.get("line") is not None:
                    message = f"{message} (input line {entry.get('line')})"
                return code, message
    return None


def parse_batch(batch: Mapping[str, Any]) -> RemoteBatch:
    """A Batch object (§6.1, as a dict) -> RemoteBatch. Unknown statuses read as SUBMITTED."""
    status = str(batch.get("status") or "")
    state = map_state(status) or BatchState.SUBMITTED
    counts_raw = batch.get("request_counts")
    counts = RequestCounts()
    if isinstance(counts_raw, Mapping):
        counts = RequestCounts(
            total=_int(counts_raw.get("total")),
            completed=_int(counts_raw.get("completed")),
            failed=_int(counts_raw.get("failed")),
        )
    error_code = error_message = None
    error_kind = None
    if state is BatchState.FAILED:
        found = batch_error(batch.get("errors"))
        error_code, error_message = found or ("batch_failed", "the batch failed without a reason")
        error_kind = ErrorKind.QUOTA_EXCEEDED if error_code in QUOTA_CODES else ErrorKind.PERMANENT
    elif state is BatchState.EXPIRED:
        error_code, error_kind = "batch_expired", ErrorKind.TRANSIENT
        error_message = "the batch did not finish within its 24 h completion window"
    endpoint_raw = batch.get("endpoint")
    endpoint = Endpoint(endpoint_raw) if endpoint_raw in {e.value for e in ENDPOINTS} else None
    return RemoteBatch(
        remote_id=str(batch.get("id") or ""),
        our_id=our_id_from_metadata(batch.get("metadata")),
        state=state,
        provider_state=status,
        model=str(batch["model"]) if batch.get("model") else None,
        endpoint=endpoint,
        counts=counts,
        input_file_id=_file_id(batch.get("input_file_id")),
        output_file_id=_file_id(batch.get("output_file_id")),
        error_file_id=_file_id(batch.get("error_file_id")),
        error_code=error_code,
        error_kind=error_kind,
        error_message=error_message,
        created_at=_timestamp(batch.get("created_at")),
    )


# --- results ----------------------------------------------------------------------------------


def usage_from_body(usage: object) -> Usage | None:
    """Per-line usage (§5.3): chat/completions/embeddings use ``prompt_tokens`` and
    ``completion_tokens`` (reasoning included); responses use ``input_tokens``/``output_tokens``.
    Cached tokens come from the ``*_tokens_details.cached_tokens`` of either shape."""
    if not isinstance(usage, Mapping):
        return None
    if "input_tokens" in usage or "output_tokens" in usage:
        details = usage.get("input_tokens_details")
        return Usage(
            input_tokens=_int(usage.get("input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cached_input_tokens=_int(details.get("cached_tokens"))
            if isinstance(details, Mapping)
            else 0,
        )
    details = usage.get("prompt_tokens_details")
    return Usage(
        input_tokens=_int(usage.get("prompt_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        cached_input_tokens=_int(details.get("cached_tokens"))
        if isinstance(details, Mapping)
        else 0,
    )


def error_from_body(status: int, body: object) -> tuple[str, str, bool]:
    error: object = body
    if isinstance(body, list) and len(body) == 1:
        error = body[0]
    if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
        error = error["error"]
    code = message = None
    if isinstance(error, Mapping):
        code = error.get("code") or error.get("type") or error.get("status")
        message = error.get("message")
    code_text = str(code) if code else f"http_{status}"
    retryable = status in RETRYABLE_HTTP or code_text in RETRYABLE_LINE_CODES
    return code_text, str(message or code_text), retryable


def classify_line(item: Mapping[str, Any], line_no: int) -> LineResult | BadLine:
    """One output/error-file line (§5.2, §5.4). Success only when ``error`` is null AND the
    response status is 2xx; both failure shapes are read."""
    key = item.get("custom_id")
    if not isinstance(key, str):
        return BadLine(line_no, "no string 'custom_id'")
    error, response = item.get("error"), item.get("response")
    if isinstance(error, Mapping):
        code = str(error.get("code") or "batch_error")
        retryable = code in RETRYABLE_LINE_CODES
        return LineResult(
            key,
            ok=False,
            error_code=code,
            error_message=str(error.get("message") or code),
            retryable=retryable,
        )
    if error is not None:
        return BadLine(line_no, "'error' is neither null nor an object", key)
    if not isinstance(response, Mapping):
        return BadLine(line_no, "neither 'response' nor 'error' is an object", key)
    status = response.get("status_code")
    body = response.get("body")
    if not isinstance(status, int) or isinstance(status, bool):
        return BadLine(line_no, "response without an integer status_code", key)
    if 200 <= status < 300:
        if not isinstance(body, Mapping):
            return BadLine(line_no, "2xx response without a JSON object body", key)
        return LineResult(
            key, ok=True, response=dict(body), usage=usage_from_body(body.get("usage"))
        )
    code, message, retryable = error_from_body(status, body)
    usage = usage_from_body(body.get("usage")) if isinstance(body, Mapping) else None
    return LineResult(
        key, ok=False, usage=usage, error_code=code, error_message=message, retryable=retryable
    )


def parse_results_file(data: bytes | IO[bytes]) -> Iterator[LineResult | BadLine]:
    """An output or error file: one JSON object per line, in any order (pitfall 7); a file
    is read a line at a time and closed when read."""
    for found in json_lines(data, "custom_id"):
        if isinstance(found, BadLine):
            yield found
            continue
        line_no, item, size = found
        classified = classify_line(item, line_no)
        if isinstance(classified, BadLine):  # keep its text for the dead-letter line
            yield replace(classified, raw=json.dumps(item))
        else:
            yield replace(classified, size=size)


# --- errors -----------------------------------------------------------------------------------


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The server's hint: ``retry-after-ms`` (preferred), else ``retry-after`` in seconds or as
    an HTTP date (needs ``now``). None when absent, unusable or not positive (§9)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = 0.0
        if value > 0:
            return value
    text = lowered.get("retry-after")
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        if now is None:
            return None
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = (when - now).total_seconds()
    return seconds if seconds > 0 else None


def is_quota_error(code: object, message: object) -> bool:
    """An over-quota answer that waiting seconds will not lift (queue full, credit exhausted)."""
    text = str(message or "").lower()
    return str(code or "") in QUOTA_CODES or "enqueued token limit" in text


# --- interactive ------------------------------------------------------------------------------


def interactive_body(line: BatchLine, *, flex: bool) -> dict[str, Any]:
    """The synchronous request body; flex sets ``service_tier: "flex"``."""
    body = request_body(line, where=f"request {line.key!r}")
    if flex:
        body["service_tier"] = "flex"
    return body


def interactive_result(line: BatchLine, body: object) -> LineResult:
    if not isinstance(body, Mapping):
        return LineResult(
            line.key,
            ok=False,
            error_code=MALFORMED,
            error_message="response is not a JSON object",
            raw=json.dumps(body),
        )  # not retryable: the call was answered, so it was billed
    return LineResult(
        line.key,
        ok=True,
        response=dict(body),
        usage=usage_from_body(body.get("usage")),
        tier=service_tier(body.get("service_tier")),  # the tier that answered, not the asked
    )
