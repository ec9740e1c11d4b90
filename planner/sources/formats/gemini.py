"""The Gemini batch input line: ``{"key", "request"}``, exactly as the Batch API file takes it.

``request`` is kept verbatim (camelCase or snake_case, as given); ``contents`` makes it
generateContent, ``content`` embedContent. A Gemini file names no model per line (the model is
named when the batch is created), so the source's default for that endpoint serves. Our
extensions: a top-level ``model`` (``"models/x"`` or ``"x"``), ``metadata`` (string values;
``metadata.key`` stands in for a missing ``key``) and ``deadline``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from planner.core.model import Endpoint, ProviderKind, Request
from planner.sources.formats.common import (
    GEMINI_EMBED,
    GEMINI_GENERATE,
    Defaults,
    Reason,
    check_keys,
    check_model,
    deadline,
    default_model,
    fail,
    known_model,
    metadata,
    nonempty_str,
    record_key,
    show,
    tokens,
)

KEYS = frozenset({"key", "request", "model", "metadata", "deadline"})
MARKERS = frozenset({"key", "request"})
"""Any of these keys (and none of OpenAI's) makes a record a Gemini batch line."""


def parse(obj: dict[str, Any], *, now: datetime, defaults: Defaults, origin: str) -> Request:
    check_keys(obj, KEYS, "a Gemini batch line")
    meta = metadata(obj.get("metadata"), "metadata")
    if "key" in obj or "key" not in meta:
        key = record_key(obj, "key")
    else:
        key = record_key(meta, "key", field="metadata.key")
    request = obj.get("request")
    if not isinstance(request, dict):
        fail(Reason.SCHEMA, "request", f"expected an object, got {show(request)}")
    has_contents, has_content = "contents" in request, "content" in request
    if has_contents == has_content:
        fail(
            Reason.SCHEMA,
            "request",
            "expected exactly one of 'contents' (generateContent) or 'content' (embedContent)",
        )
    if has_contents:
        endpoint = Endpoint.GENERATE_CONTENT
        _check_contents(request["contents"], "request.contents")
        default = default_model(defaults, GEMINI_GENERATE)
    else:
        endpoint = Endpoint.EMBED_CONTENT
        check_content(request["content"], "request.content")
        default = default_model(defaults, GEMINI_EMBED)
    if "model" in obj:
        model = _strip_models(nonempty_str(obj["model"], "model"))
    elif "model" in request:
        model = _strip_models(nonempty_str(request["model"], "request.model"))
    elif default is not None:
        model = default
    else:
        fail(
            Reason.SCHEMA,
            "model",
            "required: the line names no model and the source has no default",
        )
    family = known_model(model, defaults)
    if family is not ProviderKind.GEMINI:
        whose = "" if "model" in obj or "model" in request else "the source's default model "
        fail(
            Reason.UNKNOWN_MODEL,
            "model",
            f"{whose}{model!r} is not a Gemini model; a Gemini batch line needs one",
        )
    deadline_raw = obj["deadline"] if "deadline" in obj else meta.get("deadline")
    max_tokens: int | None = None
    tokens_field = ""
    for name in ("generationConfig", "generation_config"):
        config = request.get(name)
        if config is None:
            continue
        if not isinstance(config, dict):
            fail(Reason.SCHEMA, f"request.{name}", f"expected an object, got {show(config)}")
        for field in ("maxOutputTokens", "max_output_tokens"):
            if max_tokens is None and config.get(field) is not None:
                tokens_field = f"request.{name}.{field}"
                max_tokens = tokens(config[field], tokens_field)
    dims_name = next(
        (n for n in ("outputDimensionality", "output_dimensionality") if n in request),
        "outputDimensionality",
    )
    check_model(
        model,
        endpoint,
        defaults,
        model_field="request.model" if "model" in request and "model" not in obj else "model",
        max_tokens=(max_tokens, tokens_field),
        dimensions=(request.get(dims_name), f"request.{dims_name}"),
    )
    return Request(
        source=defaults.source,
        key=key,
        model=model,
        endpoint=endpoint,
        body=request,
        received_at=now,
        deadline=deadline(deadline_raw, "deadline", now, defaults),
        max_output_tokens=max_tokens if endpoint is Endpoint.GENERATE_CONTENT else None,
        metadata=meta,
        origin=origin,
    )


def _check_contents(contents: Any, where: str) -> None:
    if not isinstance(contents, list) or not contents:
        fail(Reason.SCHEMA, where, f"expected a non-empty list, got {show(contents)}")
    for i, content in enumerate(contents):
        check_content(content, f"{where}[{i}]")
        role = content.get("role")
        if role is not None and role not in ("user", "model"):
            fail(
                Reason.SCHEMA, f"{where}[{i}].role", f"expected 'user' or 'model', got {show(role)}"
            )


def check_content(content: Any, where: str) -> None:
    if not isinstance(content, dict):
        fail(Reason.SCHEMA, where, f"expected an object, got {show(content)}")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        fail(Reason.SCHEMA, f"{where}.parts", f"expected a non-empty list, got {show(parts)}")


def _strip_models(model: str) -> str:
    stripped = model.removeprefix("models/")
    if not stripped:
        fail(Reason.SCHEMA, "model", f"expected a model name, got {model!r}")
    return stripped
