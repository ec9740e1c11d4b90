"""Token estimates of one request before it is sent, for cost comparison and packing.

Every rule is a pure function of the request body; the BPE tokenizer arrives through the
``TokenCounter`` protocol (``planner.tokenizers`` implements it with tiktoken).

Rules (``specs/pricing-and-limits.md`` §5):

- OpenAI chat completions: the OpenAI Cookbook rule (OC) — 3 tokens per message plus the
  encoded length of every value in it, 1 more per ``name``, 3 tokens priming the reply; tools
  per the cookbook's ``num_tokens_for_tools`` (7 tokens per function, or 10 for the cl100k_base
  models gpt-3.5-turbo/gpt-4; 3 per property list, 3 per property, -3 per enum then 3 per enum
  item, 12 closing the list). Non-text content parts (images, audio) are not counted.
- OpenAI Responses: ``instructions`` as a system message, then ``input`` (a string is one user
  message) with the chat rule; OC never verified its constants for this API (Q4).
- OpenAI embeddings: the tokens of every input, no overhead; token arrays count their length.
- Gemini ``generateContent`` / ``embedContent``: Gemini's tokenizer is SentencePiece and cannot
  be loaded offline (§5.2), so the rule is Google's own rule of thumb, about 4 characters per
  token (GTOK): ``ceil(UTF-8 bytes / 4)`` per text part. UTF-8 bytes equal characters for
  English and over-count only where one character is several tokens anyway (CJK). Text parts,
  ``systemInstruction`` and the JSON of tools, function calls and responses are counted;
  inline or file data is not. If the catalog names an ``encoding`` for a Gemini model, that
  encoding is used instead.

Whenever an encoding is known but its BPE file cannot be loaded, the same chars/4 rule is used
and ``method`` says so (``chars4-fallback:<encoding>/<rule>``). Otherwise ``method`` is
``tiktoken:<encoding>/<rule>`` or ``chars4/<rule>`` (no encoding known for the model).
An estimate never fails on an unexpected body shape: it counts what it recognises (validating
bodies is intake's job).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from planner.core.catalog import ModelEntry
from planner.core.model import Endpoint, Request, TokenEstimate

# OpenAI Cookbook constants (OC, gpt-3.5-turbo-0125 / gpt-4-0613 / gpt-4o / gpt-4o-mini).
MESSAGE_TOKENS = 3
NAME_TOKENS = 1
REPLY_PRIMING_TOKENS = 3
FUNCTION_TOKENS = 7  # gpt-4o family
FUNCTION_TOKENS_CL100K = 10  # gpt-3.5-turbo, gpt-4
PROPERTIES_TOKENS = 3
PROPERTY_TOKENS = 3
ENUM_TOKENS = -3
ENUM_ITEM_TOKENS = 3
TOOLS_END_TOKENS = 12

CHARS_PER_TOKEN = 4  # GTOK / VCT rule of thumb

RULE_OPENAI_CHAT = "openai-chat"
RULE_OPENAI_RESPONSES = "openai-responses"
RULE_OPENAI_EMBEDDINGS = "openai-embeddings"
RULE_GEMINI_GENERATE = "gemini-generate"
RULE_GEMINI_EMBED = "gemini-embed"

_OUTPUT_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


class TokenCounter(Protocol):
    """Counts tokens with a BPE encoding; ``None`` when that encoding cannot be loaded."""

    def encoding_for(self, model: str) -> str | None: ...

    def count(self, text: str, encoding: str) -> int | None: ...


@dataclass(slots=True)
class _Shape:
    """A body reduced to the texts to count plus tokens fixed by the rule itself."""

    rule: str
    texts: list[str] = field(default_factory=list)
    fixed: int = 0


# --- small readers that never fail on an unexpected shape -----------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in _list(value) if isinstance(item, Mapping)]


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _no_period(text: str) -> str:
    return text.removesuffix(".")


# --- OpenAI chat and Responses ----------------------------------------------------------------


def _value_texts(key: str, value: Any) -> list[str]:
    """The texts of one message field: strings as is, content parts' text, JSON otherwise."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if key == "content" and isinstance(value, list):
        return [p["text"] for p in _dicts(value) if isinstance(p.get("text"), str)]
    return [_json(value)]


def _add_messages(shape: _Shape, messages: Sequence[Mapping[str, Any]]) -> None:
    shape.fixed += REPLY_PRIMING_TOKENS
    for message in messages:
        shape.fixed += MESSAGE_TOKENS
        for key, value in message.items():
            shape.texts.extend(_value_texts(key, value))
            if key == "name":
                shape.fixed += NAME_TOKENS


def _function(tool: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A tool's function definition: chat nests it under ``function``; Responses does not."""
    function = _dict(tool.get("function")) or tool
    return function if isinstance(function.get("name"), str) else None


def _add_property(shape: _Shape, key: str, prop: Mapping[str, Any]) -> None:
    shape.fixed += PROPERTY_TOKENS
    if "enum" in prop:
        shape.fixed += ENUM_TOKENS
        for item in _list(prop["enum"]):
            shape.fixed += ENUM_ITEM_TOKENS
            shape.texts.append(str(item))
    description = _no_period(str(prop.get("description", "")))
    shape.texts.append(f"{key}:{prop.get('type', '')}:{description}")


def _add_tools(shape: _Shape, tools: Any, per_function: int) -> None:
    functions = [f for f in map(_function, _dicts(tools)) if f is not None]
    if not functions:
        return
    shape.fixed += TOOLS_END_TOKENS
    for function in functions:
        shape.fixed += per_function
        description = _no_period(str(function.get("description", "")))
        shape.texts.append(f"{function['name']}:{description}")
        properties = _dict(_dict(function.get("parameters")).get("properties"))
        if properties:
            shape.fixed += PROPERTIES_TOKENS
        for key, prop in properties.items():
            _add_property(shape, str(key), _dict(prop))


def _per_function(encoding: str | None) -> int:
    return FUNCTION_TOKENS_CL100K if encoding == "cl100k_base" else FUNCTION_TOKENS


def _openai_chat(body: Mapping[str, Any], encoding: str | None) -> _Shape:
    shape = _Shape(RULE_OPENAI_CHAT)
    _add_messages(shape, _dicts(body.get("messages")))
    _add_tools(shape, body.get("tools") or body.get("functions"), _per_function(encoding))
    return shape


def _responses_messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages: list[Mapping[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    given = body.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    # an item's "type" ("message", ...) is framing, not text the model reads
    messages.extend({k: v for k, v in item.items() if k != "type"} for item in _dicts(given))
    return messages


def _openai_responses(body: Mapping[str, Any], encoding: str | None) -> _Shape:
    shape = _Shape(RULE_OPENAI_RESPONSES)
    _add_messages(shape, _responses_messages(body))
    _add_tools(shape, body.get("tools"), _per_function(encoding))
    return shape


def _add_embedding_input(shape: _Shape, item: Any) -> None:
    if isinstance(item, str):
        shape.texts.append(item)
    elif isinstance(item, int):
        shape.fixed += 1  # one token of a token array
    else:
        for token in _list(item):
            _add_embedding_input(shape, token)


def _openai_embeddings(body: Mapping[str, Any], encoding: str | None) -> _Shape:
    shape = _Shape(RULE_OPENAI_EMBEDDINGS)
    _add_embedding_input(shape, body.get("input"))
    return shape


# --- Gemini -----------------------------------------------------------------------------------


def _part_texts(content: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []
    for part in _dicts(content.get("parts")):
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        texts.extend(_json(part[k]) for k in ("functionCall", "functionResponse") if k in part)
    return texts


def _gemini_generate(body: Mapping[str, Any], encoding: str | None) -> _Shape:
    shape = _Shape(RULE_GEMINI_GENERATE)
    system = body.get("systemInstruction", body.get("system_instruction"))
    shape.texts.extend(_part_texts(_dict(system)))
    for content in _dicts(body.get("contents")):
        shape.texts.extend(_part_texts(content))
    if body.get("tools"):
        shape.texts.append(_json(body["tools"]))
    return shape


def _gemini_embed(body: Mapping[str, Any], encoding: str | None) -> _Shape:
    shape = _Shape(RULE_GEMINI_EMBED)
    for request in _dicts(body.get("requests")) or [body]:
        if isinstance(request.get("title"), str):
            shape.texts.append(request["title"])
        shape.texts.extend(_part_texts(_dict(request.get("content"))))
    return shape


_RULES = {
    Endpoint.CHAT_COMPLETIONS: _openai_chat,
    Endpoint.RESPONSES: _openai_responses,
    Endpoint.EMBEDDINGS: _openai_embeddings,
    Endpoint.GENERATE_CONTENT: _gemini_generate,
    Endpoint.EMBED_CONTENT: _gemini_embed,
}


# --- counting ---------------------------------------------------------------------------------


def chars4(text: str) -> int:
    """Google's rule of thumb: ``ceil(UTF-8 bytes / 4)``."""
    return -(-len(text.encode("utf-8")) // CHARS_PER_TOKEN)


def _count(texts: list[str], encoding: str | None, counter: TokenCounter) -> tuple[int, str]:
    """Tokens of ``texts`` and the method used; falls back to chars/4 if the BPE is missing."""
    if encoding is None:
        return sum(map(chars4, texts)), "chars4"
    total = 0
    for text in texts:
        counted = counter.count(text, encoding)
        if counted is None:
            return sum(map(chars4, texts)), f"chars4-fallback:{encoding}"
        total += counted
    return total, f"tiktoken:{encoding}"


def _encoding(model: str, entry: ModelEntry | None, counter: TokenCounter) -> str | None:
    if entry is not None and entry.encoding is not None:
        return entry.encoding
    return counter.encoding_for(model)


def _whole(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def given_max_output(request: Request) -> int | None:
    """The maximum output the request names (its own, then its body's); 0 for embeddings;
    ``None`` when it names none."""
    if request.endpoint.is_embedding:
        return 0
    if request.measured is not None:  # measured at intake: the body may not be loaded
        return request.measured.output_given
    if request.max_output_tokens is not None:
        return request.max_output_tokens
    body = request.body
    config = _dict(body.get("generationConfig", body.get("generation_config")))
    candidates = [body.get(key) for key in _OUTPUT_KEYS]
    candidates += [config.get("maxOutputTokens"), config.get("max_output_tokens")]
    for value in map(_whole, candidates):
        if value is not None:
            return value
    return None


def output_tokens(request: Request, default_output_tokens: int) -> int:
    """The output budget: the request's own, then the body's, then the default; 0 for embeddings."""
    given = given_max_output(request)
    return default_output_tokens if given is None else given


def encoding_of(request: Request, entry: ModelEntry | None, counter: TokenCounter) -> str | None:
    """The BPE encoding ``request``'s input is counted with (None: the chars/4 rule)."""
    return _encoding(request.model, entry, counter)


def count_input(request: Request, encoding: str | None, counter: TokenCounter) -> tuple[int, str]:
    """The raw input tokens of ``request`` counted with ``encoding``, and how (``method``)."""
    shape = _RULES[request.endpoint](request.body, encoding)
    counted, method = _count(shape.texts, encoding, counter)
    return counted + shape.fixed, f"{method}/{shape.rule}"


def estimate(
    request: Request,
    entry: ModelEntry | None,
    counter: TokenCounter,
    *,
    default_output_tokens: int,
) -> TokenEstimate:
    """Estimated input and output tokens of ``request`` (see the module docstring for rules).

    A request measured at intake (``Request.measured``) with the encoding its model has now is
    not counted again: the count is a pure function of the body and the encoding."""
    encoding = _encoding(request.model, entry, counter)
    measured = request.measured
    if measured is not None and measured.encoding == encoding:
        counted, method = measured.input_tokens, measured.method
    else:
        counted, method = count_input(request, encoding, counter)
    return TokenEstimate(
        input_tokens=counted,
        output_tokens=output_tokens(request, default_output_tokens),
        method=method,
    )


def embedding_inputs(request: Request) -> int:
    """How many inputs an embeddings request carries (OpenAI caps their sum per batch)."""
    if request.measured is not None:  # measured at intake: the body may not be loaded
        return request.measured.embedding_inputs
    if request.endpoint is Endpoint.EMBED_CONTENT:
        return len(_dicts(request.body.get("requests"))) or 1
    if request.endpoint is not Endpoint.EMBEDDINGS:
        return 0
    given = request.body.get("input")
    if isinstance(given, list) and given and not all(isinstance(i, int) for i in given):
        return len(given)
    return 0 if given in (None, []) else 1
