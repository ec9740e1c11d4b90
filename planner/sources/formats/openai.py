"""The OpenAI Batch API input line: ``{"custom_id", "method": "POST", "url", "body"}``.

The body is kept verbatim and sent as is; the model is ``body.model``. Our extension: an
optional top-level ``metadata`` object whose values win over ``body.metadata``; either may carry
``deadline``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from planner.core.model import Endpoint, Request
from planner.sources.formats.common import (
    OPENAI_CHAT,
    OPENAI_EMBEDDINGS,
    Defaults,
    Reason,
    check_keys,
    check_model,
    deadline,
    fail,
    first_tokens,
    known_model,
    metadata,
    nonempty_str,
    record_key,
    show,
)

KEYS = frozenset({"custom_id", "method", "url", "body", "metadata"})
MARKERS = frozenset({"custom_id", "method", "url", "body"})
"""Any of these keys makes a record an OpenAI batch line."""

_URLS = {
    Endpoint.CHAT_COMPLETIONS.value: Endpoint.CHAT_COMPLETIONS,
    Endpoint.EMBEDDINGS.value: Endpoint.EMBEDDINGS,
    Endpoint.RESPONSES.value: Endpoint.RESPONSES,
}
_NOT_BATCHED = {  # OpenAI Batch API endpoints planner does not send, and what to do instead
    "/v1/completions": "the legacy completions endpoint has no model in the catalog and no "
    "cost estimate; send /v1/chat/completions",
    "/v1/moderations": "moderations are free, so batching saves nothing; call the API directly",
}
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def parse(obj: dict[str, Any], *, now: datetime, defaults: Defaults, origin: str) -> Request:
    check_keys(obj, KEYS, "an OpenAI batch line")
    key = record_key(obj, "custom_id")
    method = obj.get("method")
    if method != "POST":
        fail(Reason.BAD_ENDPOINT, "method", f"expected 'POST', got {show(method)}")
    url = obj.get("url")
    endpoint = _URLS.get(url) if isinstance(url, str) else None
    if endpoint is None:
        why = _NOT_BATCHED.get(url) if isinstance(url, str) else None
        fail(
            Reason.BAD_ENDPOINT,
            "url",
            f"{url} is not supported: {why}"
            if why
            else f"expected one of {', '.join(repr(u) for u in _URLS)}, got {show(url)}",
        )
    body = obj.get("body")
    if not isinstance(body, dict):
        fail(Reason.SCHEMA, "body", f"expected an object, got {show(body)}")
    if "model" in body:
        model = nonempty_str(body["model"], "body.model")
    else:  # only a per-format default serves: OpenAI requires body.model in its own files
        slot = OPENAI_EMBEDDINGS if endpoint is Endpoint.EMBEDDINGS else OPENAI_CHAT
        default = defaults.default_models.get(slot)
        if default is None:
            fail(
                Reason.SCHEMA,
                "body.model",
                f"expected a non-empty string, got nothing (or set default_models.{slot})",
            )
        model = default
    known_model(model, defaults)  # any family: Gemini models also speak OpenAI's format
    if body.get("stream") is True:
        fail(Reason.SCHEMA, "body.stream", "streaming is not allowed in a batch; remove it")
    _check_body(body, endpoint)
    token_names = ("max_completion_tokens", "max_tokens", "max_output_tokens")
    max_tokens = first_tokens(body, token_names, "body")
    tokens_name = next((n for n in token_names if body.get(n) is not None), "")
    check_model(
        model,
        endpoint,
        defaults,
        model_field="body.model",
        max_tokens=(max_tokens, f"body.{tokens_name}"),
        dimensions=(body.get("dimensions"), "body.dimensions"),
    )
    body_meta = metadata(body.get("metadata"), "body.metadata")
    line_meta = metadata(obj.get("metadata"), "metadata")
    merged = {**body_meta, **line_meta}
    deadline_field = "metadata.deadline" if "deadline" in line_meta else "body.metadata.deadline"
    return Request(
        source=defaults.source,
        key=key,
        model=model,
        endpoint=endpoint,
        body=body,
        received_at=now,
        deadline=deadline(merged.get("deadline"), deadline_field, now, defaults),
        max_output_tokens=max_tokens,
        metadata=merged,
        origin=origin,
    )


def _check_body(body: Mapping[str, Any], endpoint: Endpoint) -> None:
    if endpoint is Endpoint.CHAT_COMPLETIONS:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            fail(Reason.SCHEMA, "body.messages", f"expected a non-empty list, got {show(messages)}")
        for i, message in enumerate(messages):
            where = f"body.messages[{i}]"
            if not isinstance(message, dict):
                fail(Reason.SCHEMA, where, f"expected an object, got {show(message)}")
            role = message.get("role")
            if role not in _ROLES:
                allowed = ", ".join(sorted(_ROLES))
                fail(Reason.SCHEMA, f"{where}.role", f"expected one of {allowed}, got {show(role)}")
            content = message.get("content")
            if role in ("system", "developer", "user") and (
                not isinstance(content, str | list) or not content
            ):
                fail(
                    Reason.SCHEMA,
                    f"{where}.content",
                    f"expected a non-empty string or list, got {show(content)}",
                )
    else:  # embeddings and responses both carry their payload in ``input``
        value = body.get("input")
        if not isinstance(value, str | list) or not value:
            fail(
                Reason.SCHEMA,
                "body.input",
                f"expected a non-empty string or list, got {show(value)}",
            )
