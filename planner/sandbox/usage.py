"""The sandbox's token rule and its deterministic fake model output.

The rule is deliberately simple, documented, and *not* what the planner's estimator uses
(not tiktoken, not characters / 4), so that estimate-versus-actual code is exercised for real:

``count_tokens(text)``
    Split the text into *pieces*: runs of word characters (``\\w+``) and runs of other
    non-space characters (``[^\\w\\s]+``). Tokens = ceil(1.3 × pieces). Empty text → 0.
    Example: ``"Hello, world!"`` → pieces ``Hello`` ``,`` ``world`` ``!`` = 4 → ceil(5.2) = 6.

Prompt tokens of a generation request = Σ over its messages of (count_tokens(message text) + 3),
where the messages are, in order:
    Gemini   ``systemInstruction`` (if any) and each item of ``contents`` (texts of its parts
             joined by a space; a plain-string ``contents`` is one message);
    OpenAI   each item of ``messages`` (chat; string content or the ``text`` of its parts),
             or ``instructions`` and ``input`` (responses; a string is one message).
    Example: one user message "Hello, world!" → 6 + 3 = 9 prompt tokens.
Embedding input tokens = count_tokens of each input text (no overhead), summed; Gemini
``content`` parts are joined by a space.

Output: ``fake_completion`` writes a reply whose length is seeded by the SHA-256 of the model
and the request's canonical JSON: 4 + (seed mod 37) words from a fixed vocabulary, ending with
".", then trimmed until count_tokens(reply) ≤ the request's max output tokens (Gemini
``generationConfig.maxOutputTokens``, OpenAI ``max_completion_tokens`` / ``max_tokens`` /
``max_output_tokens``). Output tokens = count_tokens(reply). The same model and request always
give the same reply and usage.

Thinking: Gemini 2.5 Pro/Flash (not Flash-Lite) and Gemini 3 models also report
``thoughts_tokens(model, request)`` = 16 + (seed mod 48), capped by a positive
``thinkingConfig.thinkingBudget`` and 0 when the budget is 0; billed as output.

Embeddings: ``fake_embedding`` returns a unit vector of ``dims`` floats (default 8, or the
request's ``outputDimensionality`` / ``dimensions``) derived from SHA-256 of model and text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from planner.sandbox import wire_json

MESSAGE_OVERHEAD = 3
DEFAULT_EMBEDDING_DIMS = 8
MAX_EMBEDDING_DIMS = 3072
_PIECE = re.compile(r"\w+|[^\w\s]+")
# The same rule for ASCII text, four times faster than the regex: each character mapped to its
# class (a = word, b = other non-space, space = space, as the regex's \w and \s judge it), and
# pieces counted as the places where a run of a or b starts.
_ASCII_CLASSES = bytes.maketrans(
    bytes(range(128)),
    bytes(
        ord("a") if re.match(r"\w", chr(i)) else ord(" ") if re.match(r"\s", chr(i)) else ord("b")
        for i in range(128)
    ),
)
_VOCABULARY = (
    *("the", "batch", "answer", "is", "ready", "and", "every", "token", "was", "counted"),
    *("by", "the", "sandbox", "model", "which", "writes", "short", "deterministic"),
    *("replies", "for", "tests", "of", "cost", "aware", "planning", "so", "nothing"),
    *("here", "means", "anything", "beyond", "its", "length"),
)


def count_tokens(text: str) -> int:
    """ceil(1.3 × pieces), pieces = runs of word characters or of other non-space characters."""
    if text.isascii():
        classes = b" " + text.encode().translate(_ASCII_CLASSES)
        pieces = (
            classes.count(b" a")
            + classes.count(b"ba")
            + classes.count(b" b")
            + classes.count(b"ab")
        )
    else:
        pieces = len(_PIECE.findall(text))
    return math.ceil(pieces * 13 / 10)


def request_digest(model: str, request: Any) -> bytes:
    """SHA-256 of the model and the request's canonical JSON: it seeds the fake reply, and the
    surfaces name their responses after it (one hash for both)."""
    return hashlib.sha256(model.encode() + b"\n" + wire_json.canonical(request)).digest()


def _seed(model: str, request: Any, digest: bytes | None = None) -> int:
    return int.from_bytes((digest or request_digest(model, request))[:8], "big")


def _part_texts(parts: Any) -> list[str]:
    texts: list[str] = []
    if isinstance(parts, str):
        return [parts]
    if isinstance(parts, dict):
        parts = [parts]
    if isinstance(parts, list):
        for part in parts:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return texts


def _content_text(content: Any) -> str:
    """Text of one Gemini Content / OpenAI message content (string, parts or {"parts": ...})."""
    if isinstance(content, dict) and "parts" in content:
        return " ".join(_part_texts(content["parts"]))
    if isinstance(content, dict) and "content" in content:
        return _content_text(content["content"])
    return " ".join(_part_texts(content))


def _get(request: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in request:
            return request[name]
    return None


def prompt_messages(request: dict[str, Any]) -> list[str]:
    """The message texts the prompt-token rule counts (see module docstring)."""
    messages: list[str] = []
    system = _get(request, "systemInstruction", "system_instruction")
    if system is not None:
        messages.append(_content_text(system))
    contents = request.get("contents")
    if isinstance(contents, str):
        messages.append(contents)
    elif isinstance(contents, list):
        messages.extend(_content_text(item) for item in contents)
    chat = request.get("messages")
    if isinstance(chat, list):
        messages.extend(_content_text(item) for item in chat)
    instructions = request.get("instructions")
    if isinstance(instructions, str):
        messages.append(instructions)
    given = request.get("input")
    if contents is None and chat is None and given is not None:
        if isinstance(given, str):
            messages.append(given)
        elif isinstance(given, list):
            messages.extend(_content_text(item) for item in given)
    return messages


def prompt_tokens(request: dict[str, Any]) -> int:
    return sum(count_tokens(m) + MESSAGE_OVERHEAD for m in prompt_messages(request))


def embedding_texts(request: dict[str, Any]) -> list[str]:
    """Texts of an embedding request: Gemini ``content`` (or ``contents``), OpenAI ``input``."""
    if "content" in request:
        return [_content_text(request["content"])]
    contents = request.get("contents")
    if isinstance(contents, list):
        return [_content_text(c) for c in contents]
    given = request.get("input")
    if isinstance(given, str):
        return [given]
    if isinstance(given, list):
        return [g if isinstance(g, str) else json.dumps(g) for g in given]
    return []


def embedding_tokens(texts: Iterable[str]) -> int:
    return sum(count_tokens(t) for t in texts)


def max_output_tokens(request: dict[str, Any]) -> int | None:
    config = _get(request, "generationConfig", "generation_config")
    candidates: list[Any] = []
    if isinstance(config, dict):
        candidates.append(_get(config, "maxOutputTokens", "max_output_tokens"))
    candidates.append(
        _get(request, "max_completion_tokens", "max_tokens", "max_output_tokens", "maxOutputTokens")
    )
    for value in candidates:
        if isinstance(value, int | float | str) and str(value).strip().isdigit():
            return int(value)
    return None


def fake_completion(
    model: str, request: dict[str, Any], *, digest: bytes | None = None, prompt: int | None = None
) -> tuple[str, int, int]:
    """(reply text, prompt tokens, output tokens), deterministic in (model, request).
    ``digest`` (``request_digest``) and ``prompt`` (``prompt_tokens``), when the caller has
    them already, are not computed again."""
    seed = _seed(model, request, digest)
    words = [_VOCABULARY[(seed >> (i % 48)) % len(_VOCABULARY)] for i in range(4 + seed % 37)]
    cap = max_output_tokens(request)
    text = " ".join(words) + "."
    while cap is not None and words and count_tokens(text) > cap:
        words.pop()
        text = " ".join(words) + ("." if words else "")
    if cap is not None and count_tokens(text) > cap:
        text = ""
    text = text[:1].upper() + text[1:]
    return text, prompt_tokens(request) if prompt is None else prompt, count_tokens(text)


def _is_thinking_model(model: str) -> bool:
    bare = model.rsplit("/", 1)[-1]
    if "lite" in bare or "image" in bare or "embedding" in bare:
        return False
    return bare.startswith(("gemini-2.5-pro", "gemini-2.5-flash", "gemini-3"))


def thoughts_tokens(model: str, request: dict[str, Any]) -> int:
    """Thinking tokens a Gemini thinking model reports (0 for others or a zero budget)."""
    if not _is_thinking_model(model):
        return 0
    config = _get(request, "generationConfig", "generation_config")
    budget: int | None = None
    if isinstance(config, dict):
        thinking = _get(config, "thinkingConfig", "thinking_config")
        if isinstance(thinking, dict):
            raw = _get(thinking, "thinkingBudget", "thinking_budget")
            if isinstance(raw, int) and raw >= 0:
                budget = raw
    value = 16 + _seed(model, request) % 48
    return value if budget is None else min(value, budget)


def fake_embedding(model: str, text: str, dims: int | None = None) -> list[float]:
    """A deterministic unit vector for (model, text)."""
    size = DEFAULT_EMBEDDING_DIMS if not dims else max(1, min(int(dims), MAX_EMBEDDING_DIMS))
    raw: list[float] = []
    counter = 0
    while len(raw) < size:
        block = hashlib.sha256(f"{model}\n{text}\n{counter}".encode()).digest()
        raw.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    vector = raw[:size]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]
