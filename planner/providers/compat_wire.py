"""Gemini-format lines on Gemini's OpenAI compatibility layer, pure: request translation.

A provider in compat mode (``openai_compat: true``) speaks the OpenAI surface only
(specs/gemini-batch-api.md §10: OpenAI-format batch lines with Gemini model ids), so a line in
Gemini's native format (``generateContent`` / ``embedContent``) is translated to the OpenAI shape
the layer takes, field by field: ``contents`` -> ``messages`` (``model`` -> ``assistant``),
``systemInstruction`` -> a ``system`` message, ``generationConfig`` -> the OpenAI sampling
fields, an ``embedContent`` ``content`` -> ``input`` (``outputDimensionality`` -> ``dimensions``).
A field with no OpenAI equivalent is refused with its name, never dropped: a translated request
must mean what its author wrote. Results come back in the layer's (OpenAI) response shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.core.model import Endpoint
from planner.providers.base import BatchLine

TRANSLATED: dict[Endpoint, Endpoint] = {
    Endpoint.GENERATE_CONTENT: Endpoint.CHAT_COMPLETIONS,
    Endpoint.EMBED_CONTENT: Endpoint.EMBEDDINGS,
}
_GENERATION: dict[str, str] = {  # generationConfig (both spellings) -> chat completions field
    "maxOutputTokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "temperature": "temperature",
    "topP": "top_p",
    "top_p": "top_p",
    "candidateCount": "n",
    "candidate_count": "n",
    "stopSequences": "stop",
    "stop_sequences": "stop",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "presence_penalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
    "frequency_penalty": "frequency_penalty",
}
_JSON_TYPES = ("responseMimeType", "response_mime_type")
_ROLES = {"user": "user", "model": "assistant", None: "user"}


def endpoint_for(endpoint: Endpoint) -> Endpoint:
    """The OpenAI endpoint a line of ``endpoint`` is sent to in compat mode."""
    return TRANSLATED.get(endpoint, endpoint)


def _text(content: Any, where: str) -> str:
    """The text of a Gemini ``Content``: its text parts, joined; any other part is refused."""
    parts = content.get("parts") if isinstance(content, Mapping) else None
    if not isinstance(parts, list) or not parts:
        raise ValueError(f"{where}: expected a Content with a non-empty 'parts' list")
    texts: list[str] = []
    for i, part in enumerate(parts):
        if not isinstance(part, Mapping) or set(part) - {"text", "thought"}:
            kind = sorted(part) if isinstance(part, Mapping) else type(part).__name__
            raise ValueError(
                f"{where}.parts[{i}]: only text parts can be sent through Gemini's OpenAI "
                f"compatibility layer, got {kind}"
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    system = body.get("systemInstruction", body.get("system_instruction"))
    if system is not None:
        messages.append({"role": "system", "content": _text(system, "systemInstruction")})
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("a generateContent body needs a non-empty 'contents' list")
    for i, content in enumerate(contents):
        role = content.get("role") if isinstance(content, Mapping) else None
        if role not in _ROLES:
            raise ValueError(f"contents[{i}].role: expected 'user' or 'model', got {role!r}")
        messages.append({"role": _ROLES[role], "content": _text(content, f"contents[{i}]")})
    return messages


def _generation(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ValueError("generationConfig: expected an object")
    fields: dict[str, Any] = {}
    for name, value in config.items():
        if name in _GENERATION:
            fields[_GENERATION[name]] = value
        elif name in _JSON_TYPES and value == "application/json":
            fields["response_format"] = {"type": "json_object"}
        elif name in _JSON_TYPES and value == "text/plain":
            continue  # the default
        else:
            raise ValueError(
                f"generationConfig.{name}: has no equivalent on Gemini's OpenAI compatibility "
                "layer; send this line to a native Gemini provider"
            )
    return fields


def _chat_body(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    known = {"contents", "systemInstruction", "system_instruction", "generationConfig"}
    known |= {"generation_config", "model"}
    for name in body:
        if name not in known:
            raise ValueError(
                f"'{name}': has no equivalent on Gemini's OpenAI compatibility layer; send this "
                "line to a native Gemini provider"
            )
    config = body.get("generationConfig", body.get("generation_config"))
    return {"model": model, "messages": _messages(body), **_generation(config)}


def _embedding_body(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    translated: dict[str, Any] = {"model": model, "input": _text(body.get("content"), "content")}
    for name, value in body.items():
        if name in ("outputDimensionality", "output_dimensionality"):
            translated["dimensions"] = value
        elif name not in ("content", "model"):
            raise ValueError(
                f"'{name}': has no equivalent on Gemini's OpenAI compatibility layer "
                "(embeddings take 'input' and 'dimensions' only); send this line to a native "
                "Gemini provider"
            )
    return translated


def to_openai(line: BatchLine) -> BatchLine:
    """``line`` as the compat layer takes it; OpenAI-format lines pass unchanged. Raises
    ``ValueError`` naming the request and the field that cannot be translated."""
    if line.endpoint not in TRANSLATED:
        return line
    try:
        if line.endpoint is Endpoint.GENERATE_CONTENT:
            body = _chat_body(line.model, line.body)
        else:
            body = _embedding_body(line.model, line.body)
    except ValueError as exc:
        raise ValueError(f"request {line.key!r} ({line.endpoint.value}): {exc}") from None
    return BatchLine(key=line.key, model=line.model, endpoint=TRANSLATED[line.endpoint], body=body)
