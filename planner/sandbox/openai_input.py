"""Validation of a batch input file, the way the OpenAI Batch API reports it.

OpenAI accepts ``batches.create`` for any existing file and checks the lines while the batch is
``validating``; problems turn the batch ``failed`` with ``errors.data[]`` entries
``{code, message, param, line}`` (``line`` 1-based, null for whole-file problems) —
specs/openai-batch-api.md §6.4. This module only decides; the caller builds the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from planner.sandbox import usage, wire_json
from planner.sandbox.kernel import Blob, JobLine, LineSource
from planner.sandbox.openai_common import OpenAISettings

MAX_REPORTED_ERRORS = 100


@dataclass
class ParsedInput:
    lines: list[JobLine] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    embedding_inputs: int = 0

    def error(self, code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


def parse_input(
    blob: Blob,
    endpoint: str,
    settings: OpenAISettings,
    count: Callable[[dict[str, Any]], int] | None = None,
) -> ParsedInput:
    """Every line checked, read from the stored file a block at a time; ``errors`` empty
    means the batch may run. Each line keeps where its request is in ``blob``, not the
    request (``kernel.LineSource``), and ``count`` of it (its prompt tokens), counted here
    while it is decoded."""
    parsed = ParsedInput()
    if blob.size > settings.max_batch_input_bytes:
        parsed.error(
            "file_too_large",
            f"The input file is {blob.size:,} bytes; the maximum for a batch is "
            f"{settings.max_batch_input_bytes:,} bytes.",
            None,
        )
        return parsed
    seen: set[str] = set()
    requests = 0
    offset = 0  # of the line in ``blob``: the pieces of ``lines`` are split at each b"\n"
    for number, raw in enumerate(blob.lines(), start=1):
        at, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        requests += 1
        if requests <= settings.max_batch_lines:
            checked = _parse_line(parsed, number, raw, endpoint, seen)
            if checked is not None:
                key, body = checked
                tokens = count(body) if count is not None else None
                source = LineSource(blob, at, len(raw), "body")
                parsed.lines.append(JobLine(key, prompt_tokens=tokens, source=source))
    if not requests:
        parsed.error("empty_file", "The input file is empty.", None)
        return parsed
    if requests > settings.max_batch_lines:  # this alone is reported, as it was checked first
        parsed = ParsedInput()
        parsed.error(
            "too_many_tasks",
            f"The input file has {requests:,} requests; a batch may have at most "
            f"{settings.max_batch_lines:,}.",
            None,
        )
        return parsed
    if endpoint == "/v1/embeddings" and parsed.embedding_inputs > settings.max_embedding_inputs:
        parsed.error(
            "too_many_tasks",
            f"The batch has {parsed.embedding_inputs:,} embedding inputs; at most "
            f"{settings.max_embedding_inputs:,} are allowed per batch.",
            None,
        )
    return parsed


def _parse_line(
    parsed: ParsedInput, number: int, raw: bytes, endpoint: str, seen: set[str]
) -> tuple[str, dict[str, Any]] | None:
    """The key and body of a line the batch may run (``None``: its error is recorded)."""
    try:
        item = wire_json.loads(raw)
    except ValueError:
        item = None
    if not isinstance(item, dict):
        parsed.error("invalid_json_line", "This line is not parseable as valid JSON.", number)
        return None
    custom_id = item.get("custom_id")
    body = item.get("body")
    for name, ok in (
        ("custom_id", isinstance(custom_id, str) and custom_id != ""),
        ("method", "method" in item),
        ("url", "url" in item),
        ("body", isinstance(body, dict)),
    ):
        if not ok:
            parsed.error(
                "missing_required_parameter",
                f"Missing required parameter: '{name}' (a non-empty value of the right type).",
                number,
                name,
            )
            return None
    assert isinstance(custom_id, str) and isinstance(body, dict)
    if item["method"] != "POST":
        parsed.error(
            "invalid_method", f"Invalid method {item['method']!r}; only 'POST'.", number, "method"
        )
        return None
    if item["url"] != endpoint:
        parsed.error(
            "url_mismatch",
            f"The url {item['url']!r} of this line does not match the batch endpoint {endpoint!r}.",
            number,
            "url",
        )
        return None
    if custom_id in seen:
        parsed.error(
            "duplicate_custom_id",
            f"The custom_id {custom_id!r} is used by more than one line; it must be unique.",
            number,
            "custom_id",
        )
        return None
    seen.add(custom_id)
    model = body.get("model")
    if isinstance(model, str) and model:
        if not parsed.model:
            parsed.model = model
        elif model != parsed.model:
            parsed.error(
                "model_mismatch",
                f"The model {model!r} of this line differs from {parsed.model!r}; every line "
                "of a batch must use the same model.",
                number,
                "body.model",
            )
            return None
    if endpoint == "/v1/embeddings":
        parsed.embedding_inputs += len(usage.embedding_texts(body))
    return custom_id, body
