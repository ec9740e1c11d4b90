"""Our simple line ``{"id", "prompt" | "messages" | "text", ...}``, for producers with no SDK.

It is converted to the native body of the model's family: ``prompt`` and ``messages`` to a chat
body (OpenAI chat completions or Gemini generateContent), ``text`` to an embedding body. A list
``text`` for a Gemini model is refused: embedContent returns one vector per request and a
multi-part ``content`` would be embedded as one text, so the only faithful mapping is one line
per text. ``metadata`` is never put into the body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from planner.core.model import Endpoint, ProviderKind, Request
from planner.sources.formats.common import (
    GEMINI_EMBED,
    GEMINI_GENERATE,
    OPENAI_CHAT,
    OPENAI_EMBEDDINGS,
    Defaults,
    Reason,
    check_keys,
    check_model,
    deadline,
    fail,
    known_model,
    metadata,
    nonempty_str,
    record_key,
    show,
    tokens,
)

KEYS = frozenset(
    {
        "id",
        "prompt",
        "messages",
        "text",
        "model",
        "deadline",
        "max_output_tokens",
        "metadata",
        "system",
    }
)
INPUTS = ("prompt", "messages", "text")
MARKERS = frozenset({"id", *INPUTS})
"""Any of these keys (and none of the batch formats') makes a record a simple line."""
_ROLES = ("system", "developer", "user", "assistant")


def parse(obj: dict[str, Any], *, now: datetime, defaults: Defaults, origin: str) -> Request:
    check_keys(obj, KEYS, "a simple line")
    key = record_key(obj, "id")
    given = [k for k in INPUTS if k in obj]
    if len(given) != 1:
        fail(
            Reason.SCHEMA,
            None,
            "expected exactly one of 'prompt', 'messages' or 'text', got "
            + (", ".join(repr(k) for k in given) or "none"),
        )
    kind = given[0]
    embedding = kind == "text"
    if "model" in obj:
        model = nonempty_str(obj["model"], "model")
    else:
        default = _default(defaults, embedding=embedding)
        if default is None:
            fail(Reason.SCHEMA, "model", "required: the source has no default model for this line")
        model = default
    family = known_model(model, defaults)
    max_tokens = tokens(obj.get("max_output_tokens"), "max_output_tokens")
    system = obj.get("system")
    if system is not None:
        system = nonempty_str(system, "system")
    if embedding and (max_tokens is not None or system is not None):
        extra = "max_output_tokens" if max_tokens is not None else "system"
        fail(Reason.SCHEMA, extra, "not allowed with 'text' (an embedding has no output or system)")
    meta = metadata(obj.get("metadata"), "metadata")
    deadline_raw = obj["deadline"] if "deadline" in obj else meta.get("deadline")
    endpoint, body = _body(obj[kind], kind, model, family, system, max_tokens)
    check_model(
        model,
        endpoint,
        defaults,
        model_field="model",
        max_tokens=(max_tokens, "max_output_tokens"),
    )
    return Request(
        source=defaults.source,
        key=key,
        model=model,
        endpoint=endpoint,
        body=body,
        received_at=now,
        deadline=deadline(deadline_raw, "deadline", now, defaults),
        max_output_tokens=max_tokens,
        metadata=meta,
        origin=origin,
    )


def _default(defaults: Defaults, *, embedding: bool) -> str | None:
    """``default_model`` (or ``default_embedding_model``), else the OpenAI, then the Gemini one."""
    single = defaults.default_embedding_model if embedding else defaults.default_model
    slots = (OPENAI_EMBEDDINGS, GEMINI_EMBED) if embedding else (OPENAI_CHAT, GEMINI_GENERATE)
    return single or next(
        (defaults.default_models[s] for s in slots if s in defaults.default_models), None
    )


def _body(
    value: Any,
    kind: str,
    model: str,
    family: ProviderKind,
    system: str | None,
    max_tokens: int | None,
) -> tuple[Endpoint, dict[str, Any]]:
    """The provider-native body for a simple line."""
    if kind == "text":
        texts = _texts(value)
        if family is ProviderKind.OPENAI:
            return Endpoint.EMBEDDINGS, {"model": model, "input": value}
        if isinstance(value, list):
            fail(
                Reason.SCHEMA,
                "text",
                "Gemini embedContent takes one text per line; split the list into separate lines",
            )
        return Endpoint.EMBED_CONTENT, {"content": {"parts": [{"text": texts[0]}]}}
    if kind == "prompt":
        messages = [{"role": "user", "content": nonempty_str(value, "prompt", blank=False)}]
    else:
        messages = _messages(value)
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    if family is ProviderKind.OPENAI:
        body: dict[str, Any] = {"model": model, "messages": messages}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return Endpoint.CHAT_COMPLETIONS, body
    return Endpoint.GENERATE_CONTENT, _gemini_generate(messages, max_tokens)


def _gemini_generate(messages: list[dict[str, str]], max_tokens: int | None) -> dict[str, Any]:
    """OpenAI-style messages -> GenerateContentRequest: system/developer -> systemInstruction."""
    system_parts = [
        {"text": m["content"]} for m in messages if m["role"] in ("system", "developer")
    ]
    contents = [
        {"role": "model" if m["role"] == "assistant" else "user", "parts": [{"text": m["content"]}]}
        for m in messages
        if m["role"] in ("user", "assistant")
    ]
    if not contents:
        fail(Reason.SCHEMA, "messages", "expected at least one 'user' or 'assistant' message")
    body: dict[str, Any] = {"contents": contents}
    if system_parts:
        body["systemInstruction"] = {"parts": system_parts}
    if max_tokens is not None:
        body["generationConfig"] = {"maxOutputTokens": max_tokens}
    return body


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        fail(Reason.SCHEMA, "messages", f"expected a non-empty list, got {show(value)}")
    out: list[dict[str, str]] = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            fail(
                Reason.SCHEMA,
                where,
                f"expected an object with role and content, got {show(message)}",
            )
        check_keys(message, frozenset({"role", "content"}), where)
        role = message.get("role")
        if role not in _ROLES:
            fail(
                Reason.SCHEMA,
                f"{where}.role",
                f"expected one of {', '.join(_ROLES)}, got {show(role)}",
            )
        content = nonempty_str(message.get("content"), f"{where}.content", blank=False)
        out.append({"role": role, "content": content})
    return out


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [nonempty_str(value, "text", blank=False)]
    if not isinstance(value, list) or not value:
        fail(
            Reason.SCHEMA,
            "text",
            f"expected a non-empty string or list of strings, got {show(value)}",
        )
    return [nonempty_str(t, f"text[{i}]", blank=False) for i, t in enumerate(value)]
