"""Gemini wire shapes for the sandbox: File, Operation, responses and the results renderer.

Shapes follow specs/gemini-batch-api.md §4–§7 (camelCase, int64 counters as strings, zero
counters omitted, ``BATCH_STATE_*`` states, doubly nested ``inlinedResponses``).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import msgspec

from planner.sandbox import usage, wire_json
from planner.sandbox.kernel import (
    Blob,
    BlobWriter,
    Job,
    LineOutcome,
    SandboxState,
    StoredFile,
    bare_model,
)

TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1main."
FILE_RETENTION_SECONDS = 48 * 3600
EMBED_KINDS = frozenset({"embed"})

WIRE_STATE = {
    "pending": "BATCH_STATE_PENDING",
    "running": "BATCH_STATE_RUNNING",
    "finalizing": "BATCH_STATE_RUNNING",
    "cancelling": "BATCH_STATE_RUNNING",
    "succeeded": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "cancelled": "BATCH_STATE_CANCELLED",
    "expired": "BATCH_STATE_EXPIRED",
}

# gRPC canonical codes by HTTP status, for error envelopes.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def timestamp(seconds: float) -> str:
    """RFC 3339 with microseconds and ``Z``."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_body(code: int, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def rate_limit_details(retry_after: float, *, per_day: bool, model: str | None) -> list[Any]:
    """google.rpc details of a 429: QuotaFailure (+ per-day quota id), Help, RetryInfo."""
    quota_id = (
        "GenerateRequestsPerDayPerProjectPerModel"
        if per_day
        else "GenerateRequestsPerMinutePerProjectPerModel"
    )
    metric = "generate_requests_per_model_per_day" if per_day else "generate_requests_per_model"
    violation: dict[str, Any] = {
        "quotaMetric": f"generativelanguage.googleapis.com/{metric}",
        "quotaId": quota_id,
    }
    if model:
        violation["quotaDimensions"] = {"location": "global", "model": bare_model(model)}
    return [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"},
    ]


# -- files ------------------------------------------------------------------------------------
def file_resource(stored: StoredFile, base_url: str, version: str) -> dict[str, Any]:
    hex_digest = stored.blob.sha256
    body: dict[str, Any] = {
        "name": f"files/{stored.id}",
        "mimeType": stored.mime_type,
        "sizeBytes": str(stored.size),
        "createTime": timestamp(stored.created_at),
        "updateTime": timestamp(stored.created_at),
        "sha256Hash": base64.b64encode(hex_digest.encode()).decode(),
        "uri": f"{base_url}/{version}/files/{stored.id}",
        "state": stored.state,
        "source": "GENERATED" if stored.generated else "UPLOADED",
    }
    if stored.display_name:
        body["displayName"] = stored.display_name
    if stored.expires_at is not None:
        body["expirationTime"] = timestamp(stored.expires_at)
    if stored.generated:
        body["downloadUri"] = f"{base_url}/{version}/files/{stored.id}:download?alt=media"
    return body


# -- interactive responses --------------------------------------------------------------------
def response_id(model: str, request: dict[str, Any]) -> str:
    blob = wire_json.canonical(request)
    return hashlib.sha256(f"rid:{model}:".encode() + blob).hexdigest()[:22]


def generate_response(model: str, request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """A GenerateContentResponse and the usage to bill (input/output/thoughts/total)."""
    text, prompt, output = usage.fake_completion(model, request)
    thoughts = usage.thoughts_tokens(model, request)
    cap = usage.max_output_tokens(request)
    finish = "MAX_TOKENS" if cap is not None and output >= cap else "STOP"
    metadata: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    body = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": finish,
                "index": 0,
            }
        ],
        "usageMetadata": metadata,
        "modelVersion": bare_model(model),
        "responseId": response_id(model, request),
    }
    billed = {
        "input_tokens": prompt,
        "output_tokens": output + thoughts,
        "thoughts_tokens": thoughts,
        "total_tokens": prompt + output + thoughts,
    }
    return body, billed


def embedding_dims(request: dict[str, Any]) -> int | None:
    value = request.get("outputDimensionality", request.get("output_dimensionality"))
    return int(value) if isinstance(value, int) and value > 0 else None


def embed_values(model: str, request: dict[str, Any]) -> tuple[list[float], int]:
    texts = usage.embedding_texts(request)
    joined = " ".join(texts)
    return usage.fake_embedding(model, joined, embedding_dims(request)), usage.embedding_tokens(
        texts
    )


# -- batches ----------------------------------------------------------------------------------
def _batch_type(job: Job) -> str:
    return "EmbedContentBatch" if job.kind in EMBED_KINDS else "GenerateContentBatch"


def batch_stats(job: Job, now: float) -> dict[str, str]:
    total = job.size
    stats: dict[str, int] = {"requestCount": total}
    phase = job.phase(now)
    if job.settled:
        stats["successfulRequestCount"] = job.ran - job.failed_lines
        stats["failedRequestCount"] = job.failed_lines
        if phase not in ("succeeded",):
            stats["pendingRequestCount"] = total - job.ran
    else:
        done = int(total * job.done_fraction(now)) if phase != "pending" else 0
        stats["successfulRequestCount"] = done
        stats["pendingRequestCount"] = total - done
    return {k: str(v) for k, v in stats.items() if v}


def _operation_error(job: Job, phase: str) -> dict[str, Any] | None:
    if phase == "failed":
        message = job.fault.message if job.fault and job.fault.message else "Batch job failed."
        return {"code": 13, "message": message}
    if phase == "cancelled":
        return {"code": 1, "message": "Batch job was cancelled."}
    if phase == "expired":
        return {"code": 4, "message": "Batch job expired: it did not finish within 48 hours."}
    return None


def operation(job: Job, now: float, *, include_inline: bool = True) -> dict[str, Any]:
    """The google.longrunning.Operation the SDK parses for get, list items and create."""
    phase = job.phase(now)
    kind = _batch_type(job)
    metadata: dict[str, Any] = {
        "@type": TYPE_PREFIX + kind,
        "name": job.id,
        "model": job.model,
    }
    if job.display_name is not None:
        metadata["displayName"] = job.display_name
    if job.input_file_id is not None:
        key = "fileName"
        metadata["inputConfig"] = {key: f"files/{job.input_file_id}"}
    elif include_inline:  # the batch resource's inputConfig (§5.2); list items omit it (§4.8)
        echoed = _json_array(job.echo) if job.echo is not None else _echoed(job)
        metadata["inputConfig"] = {"requests": {"requests": echoed}}
    metadata["createTime"] = timestamp(job.created_at)
    metadata["updateTime"] = timestamp(job.phase_started_at(now))
    if phase in ("succeeded", "failed", "cancelled", "expired"):
        metadata["endTime"] = timestamp(job.phase_started_at(now))
    metadata["batchStats"] = batch_stats(job, now)
    metadata["state"] = WIRE_STATE[phase]
    if "priority" in job.extra:
        metadata["priority"] = str(job.extra["priority"])
    body: dict[str, Any] = {"name": job.id, "metadata": metadata}
    output = job.output if phase == "succeeded" else {}
    if "responsesFile" in output:
        metadata["output"] = {"responsesFile": output["responsesFile"]}
    elif "inlinedResponses" in output and include_inline:
        answers = _json_array(output["inlinedResponses"])
        metadata["output"] = {"inlinedResponses": {"inlinedResponses": answers}}
    if phase in WIRE_STATE and WIRE_STATE[phase] in (
        "BATCH_STATE_SUCCEEDED",
        "BATCH_STATE_FAILED",
        "BATCH_STATE_CANCELLED",
        "BATCH_STATE_EXPIRED",
    ):
        body["done"] = True
        error = _operation_error(job, phase)
        if error is not None:
            body["error"] = error
        elif "output" in metadata:
            body["response"] = {"@type": TYPE_PREFIX + kind + "Output", **metadata["output"]}
    return body


def _echoed(job: Job) -> list[dict[str, Any]]:
    """An inline job's requests as its resource echoes them, each with its metadata."""
    meta = job.extra.get("inline_metadata", {})
    return [
        {"request": line.request, **({"metadata": meta[i]} if i in meta else {})}
        for i, line in enumerate(job.lines)
    ]


def _json_array(lines: Blob) -> msgspec.Raw:
    """JSON lines kept in a blob (inline requests or answers, written once when the job
    settled) as the JSON array a read answers with, written into it as they are: kept as
    objects, a job's requests and answers were ~3.5 KB a request, held for as long as the job
    was not deleted (only ``WireJSONResponse`` writes a ``Raw``)."""
    return msgspec.Raw(b"[" + b",".join(line for line in lines.lines() if line) + b"]")


def _line_error(outcome: LineOutcome) -> dict[str, Any]:
    return {
        "code": 3,
        "message": f"Request {outcome.key} contains an invalid argument (injected line error).",
        "status": "INVALID_ARGUMENT",
    }


def _answer(job: Job, outcome: LineOutcome) -> tuple[dict[str, Any], dict[str, int]]:
    if job.kind in EMBED_KINDS:
        values, tokens = embed_values(job.model, outcome.request)
        body = {"embedding": {"values": values}, "tokenCount": str(tokens)}
        return body, {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens}
    return generate_response(job.model, outcome.request)


def _answer_inline(job: Job) -> list[tuple[str, dict[str, Any]]]:
    """A succeeded job answered inline, its answers written as JSON lines (``_json_array``);
    what to bill."""
    billed: list[tuple[str, dict[str, Any]]] = []
    items = BlobWriter()
    for outcome in job.executed:
        meta = job.extra.get("inline_metadata", {}).get(outcome.index)
        if not job.inline:
            meta = {"key": outcome.key}
        if outcome.fault == "error":
            item: dict[str, Any] = {"error": _line_error(outcome)}
        else:
            response, bill = _answer(job, outcome)
            billed.append((outcome.key, bill))
            if outcome.fault == "missing":
                continue
            item = {"response": response}
        if meta is not None and outcome.fault != "malformed":
            item["metadata"] = meta
        items.add(wire_json.dumps(item))
    job.output = {"inlinedResponses": items.blob()}
    return billed


def settle_hook(state: SandboxState, job: Job) -> list[tuple[str, dict[str, Any]]]:
    """Render a finished Gemini job's results (file or inline) and return what to bill.

    Only a succeeded job returns results; FAILED, CANCELLED and EXPIRED return none and bill
    nothing (the spec: EXPIRED produces no results). Error lines are not billed; malformed and
    missing lines are (the service did the work; the answer was lost on the way).
    """
    settled_at = job.settled_at if job.settled_at is not None else state.clock.now()
    if job.inline:  # its resource echoes its requests whatever its end: kept as written
        echo = BlobWriter()
        for item in _echoed(job):
            echo.add(wire_json.dumps(item))
        job.echo = echo.blob()
    if job.phase(settled_at) != "succeeded":
        job.executed = []
        return []
    # the other_shape fault answers a file job inline and an inline job with a file
    if job.inline != state.faults.other_shape(job.id):
        return _answer_inline(job)
    billed: list[tuple[str, dict[str, Any]]] = []
    lines = BlobWriter()
    for outcome in job.executed:
        if outcome.fault == "error":
            lines.add(wire_json.dumps({"key": outcome.key, "error": _line_error(outcome)}))
            continue
        response, bill = _answer(job, outcome)
        billed.append((outcome.key, bill))
        if outcome.fault == "missing":
            continue
        line = wire_json.dumps({"key": outcome.key, "response": response})
        if outcome.fault == "malformed":
            line = line[: max(1, len(line) // 2)]
        lines.add(line)
    batch_id = job.id.split("/", 1)[1]
    stored = state.add_file(
        surface="gemini",
        data=lines.blob(),
        filename=f"batch-{batch_id}.jsonl",
        purpose="batch_output",
        mime_type="application/jsonl",
        display_name=f"batch-{batch_id}",
        file_id=f"batch-{batch_id}",
        expires_at=settled_at + FILE_RETENTION_SECONDS,
        generated=True,
    )
    job.output = {"responsesFile": f"files/{stored.id}"}
    return billed
