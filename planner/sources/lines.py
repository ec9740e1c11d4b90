"""Turn one JSON line into a ``Request`` or a precise ``LineError`` (no file I/O here).

Three line formats are accepted and told apart by their keys:

* **OpenAI batch line** ``{"custom_id", "method": "POST", "url", "body"}`` — the body is kept
  verbatim; the model is ``body.model``; the deadline is ``metadata.deadline`` from an optional
  top-level ``metadata`` object (our extension) or else from ``body.metadata``.
* **Gemini batch line** ``{"key", "request"}`` — ``request`` is kept verbatim (camelCase or
  snake_case, as given); ``contents`` makes it generateContent, ``content`` embedContent. Our
  extensions: a top-level ``model`` (``"models/x"`` or ``"x"``), ``metadata`` (string values;
  ``metadata.key`` stands in for a missing ``key``) and ``deadline``.
* **Simple line** ``{"id", "prompt" | "messages" | "text", ...}`` — converted to the native
  body of the model's family (see ``_simple_body``). A list ``text`` for a Gemini model is
  refused: embedContent returns one vector per request and a multi-part ``content`` would be
  embedded as one text, so the only faithful mapping is one line per text.

Checks that need the whole file (a key seen twice) live in ``LineParser``; ``parse_line``
judges one line alone. Objects with repeated JSON keys keep the last value, as ``json`` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn, Protocol

from planner.core.model import Endpoint, ProviderKind, Request
from planner.sources.base import LineError, ParsedLine

BOM = b"\xef\xbb\xbf"
MAX_KEY_CHARS = 64
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
RAW_PREVIEW_CHARS = 1024  # how much of an over-long line is kept for the quarantine


class Reason(StrEnum):
    """Stable codes for why a line was refused (quarantine files and metrics use them)."""

    INVALID_JSON = "invalid_json"
    ENCODING = "encoding"
    TOO_LARGE = "too_large"
    NOT_OBJECT = "not_object"
    UNKNOWN_FORMAT = "unknown_format"
    MISSING_ID = "missing_id"
    BAD_ID = "bad_id"
    DUPLICATE_ID = "duplicate_id"
    BAD_ENDPOINT = "bad_endpoint"
    UNKNOWN_MODEL = "unknown_model"
    SCHEMA = "schema"
    DEADLINE = "deadline"
    METADATA = "metadata"
    MAX_OUTPUT_TOKENS = "max_output_tokens"


@dataclass(frozen=True, slots=True)
class ParseSettings:
    """What a source knows that a line may leave out."""

    source: str
    family_of: Callable[[str], ProviderKind | None]
    default_model: str | None = None
    default_embedding_model: str | None = None
    default_deadline: timedelta | None = None


class _Bad(Exception):
    """Internal: one validation failure, turned into a LineError by ``parse_line``."""

    def __init__(self, reason: Reason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.text = message
        self.field = field


def _fail(reason: Reason, field: str | None, message: str) -> NoReturn:
    raise _Bad(reason, message, field)


def _error(file: str, line: int, reason: Reason, message: str, raw: str) -> LineError:
    return LineError(
        file=file, line=line, reason=reason.value, message=f"{file}:{line}: {message}", raw=raw
    )


# --------------------------------------------------------------------------- entry points


def parse_line(
    text: str, *, file: str, line: int, now: datetime, settings: ParseSettings
) -> Request | LineError:
    """Judge one decoded, non-blank line. ``now`` is the ingestion time."""
    try:
        obj = _DECODER.decode(text)
    except ValueError as exc:  # JSONDecodeError, and our NaN/Infinity refusal
        return _error(file, line, Reason.INVALID_JSON, f"not valid JSON: {exc}", text)
    if not isinstance(obj, dict):
        kind = type(obj).__name__ if obj is not None else "null"
        return _error(
            file, line, Reason.NOT_OBJECT, f"expected a JSON object, got {_json_type(kind)}", text
        )
    try:
        return _parse_object(obj, file=file, line=line, now=now, settings=settings)
    except _Bad as bad:
        where = f"field '{bad.field}': " if bad.field else ""
        return _error(file, line, bad.reason, where + bad.text, text)


def decode_line(data: bytes, *, file: str, line: int) -> str | LineError | None:
    """Bytes of one line (terminator included or not) -> text, an encoding error, or None if blank.

    Strips ``\\n``/``\\r\\n`` and, on line 1, a UTF-8 byte-order mark.
    """
    if line == 1 and data.startswith(BOM):
        data = data[len(BOM) :]
    data = data.rstrip(b"\r\n")
    if b"\x00" in data:
        raw = data.decode("utf-8", errors="backslashreplace")
        return _error(file, line, Reason.ENCODING, "NUL byte in line", raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = data.decode("utf-8", errors="backslashreplace")
        return _error(
            file,
            line,
            Reason.ENCODING,
            f"invalid UTF-8 at byte offset {exc.start}: {exc.reason}",
            raw,
        )
    if not text.strip():
        return None
    return text


def too_large(*, file: str, line: int, size: int, limit: int, head: bytes) -> LineError:
    """The error for a line longer than ``limit`` bytes; only its head was read."""
    raw = head[:RAW_PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")
    return _error(
        file,
        line,
        Reason.TOO_LARGE,
        f"line is {size} bytes or more, over the {limit}-byte limit (first {len(raw)} chars kept)",
        raw,
    )


class KeySet(Protocol):
    """Remembers keys seen in one file; ``add`` returns False when the key was already there."""

    def add(self, key: str) -> bool: ...


class MemoryKeySet:
    """A ``KeySet`` in a plain set: fine for small inputs and tests."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def add(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


@dataclass(frozen=True, slots=True)
class RawLine:
    """One physical line as read: its 1-based number and bytes, or how long it was if too long."""

    number: int
    data: bytes
    oversize: int = 0  # > 0: the line was this many bytes (at least) and ``data`` is its head


class LineParser:
    """Parses the lines of one file in order, refusing a key the file already used.

    The first line with a key keeps it; a later one is a ``duplicate_id`` error naming the
    first line. Duplicates across files are the store's job (unique ``(source, key)``).
    """

    def __init__(
        self,
        *,
        file: str,
        now: datetime,
        settings: ParseSettings,
        keys: KeySet | None = None,
        max_line_bytes: int,
    ) -> None:
        self.file = file
        self.now = now
        self.settings = settings
        self.keys: KeySet = keys if keys is not None else MemoryKeySet()
        self.max_line_bytes = max_line_bytes

    def parse(self, lines: Iterable[RawLine]) -> Iterator[ParsedLine]:
        for raw in lines:
            if raw.oversize:
                yield too_large(
                    file=self.file,
                    line=raw.number,
                    size=raw.oversize,
                    limit=self.max_line_bytes,
                    head=raw.data,
                )
                continue
            text = decode_line(raw.data, file=self.file, line=raw.number)
            if text is None:
                continue
            if isinstance(text, LineError):
                yield text
                continue
            item = parse_line(
                text, file=self.file, line=raw.number, now=self.now, settings=self.settings
            )
            if isinstance(item, Request) and not self.keys.add(item.key):
                item = _error(
                    self.file,
                    raw.number,
                    Reason.DUPLICATE_ID,
                    f"key {item.key!r} already used earlier in this file; the first one is kept",
                    text,
                )
            yield item


# --------------------------------------------------------------------------- formats

_OPENAI_KEYS = frozenset({"custom_id", "method", "url", "body", "metadata"})
_GEMINI_KEYS = frozenset({"key", "request", "model", "metadata", "deadline"})
_SIMPLE_KEYS = frozenset(
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
_SIMPLE_INPUTS = ("prompt", "messages", "text")
_OPENAI_URLS = {
    Endpoint.CHAT_COMPLETIONS.value: Endpoint.CHAT_COMPLETIONS,
    Endpoint.EMBEDDINGS.value: Endpoint.EMBEDDINGS,
    Endpoint.RESPONSES.value: Endpoint.RESPONSES,
}


def _parse_object(
    obj: dict[str, Any], *, file: str, line: int, now: datetime, settings: ParseSettings
) -> Request:
    origin = f"{file}:{line}"
    if "custom_id" in obj or "body" in obj or "url" in obj or "method" in obj:
        return _parse_openai(obj, origin=origin, now=now, settings=settings)
    if "request" in obj or "key" in obj:
        return _parse_gemini(obj, origin=origin, now=now, settings=settings)
    if "id" in obj or "prompt" in obj or "messages" in obj or "text" in obj:
        return _parse_simple(obj, origin=origin, now=now, settings=settings)
    _fail(
        Reason.UNKNOWN_FORMAT,
        None,
        "unrecognised line format: expected an OpenAI batch line (custom_id, method, url, body), "
        "a Gemini batch line (key, request) or a simple line (id and prompt|messages|text)",
    )


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    if obj.keys() <= allowed:
        return
    unknown = sorted(k for k in obj if k not in allowed)
    if unknown:
        _fail(
            Reason.SCHEMA,
            unknown[0],
            f"unknown field in {what}; allowed: {', '.join(sorted(allowed))}",
        )


def _parse_openai(
    obj: dict[str, Any], *, origin: str, now: datetime, settings: ParseSettings
) -> Request:
    _check_keys(obj, _OPENAI_KEYS, "an OpenAI batch line")
    key = _key(obj, "custom_id")
    method = obj.get("method")
    if method != "POST":
        _fail(Reason.BAD_ENDPOINT, "method", f"expected 'POST', got {_show(method)}")
    url = obj.get("url")
    endpoint = _OPENAI_URLS.get(url) if isinstance(url, str) else None
    if endpoint is None:
        _fail(
            Reason.BAD_ENDPOINT,
            "url",
            f"expected one of {', '.join(repr(u) for u in _OPENAI_URLS)}, got {_show(url)}",
        )
    body = obj.get("body")
    if not isinstance(body, dict):
        _fail(Reason.SCHEMA, "body", f"expected an object, got {_show(body)}")
    model = _nonempty_str(body.get("model"), "body.model")
    _known_model(model, settings)
    if body.get("stream") is True:
        _fail(Reason.SCHEMA, "body.stream", "streaming is not allowed in a batch; remove it")
    _check_openai_body(body, endpoint)
    body_meta = _metadata(body.get("metadata"), "body.metadata")
    line_meta = _metadata(obj.get("metadata"), "metadata")
    metadata = {**body_meta, **line_meta}
    deadline_field = "metadata.deadline" if "deadline" in line_meta else "body.metadata.deadline"
    return Request(
        source=settings.source,
        key=key,
        model=model,
        endpoint=endpoint,
        body=body,
        received_at=now,
        deadline=_deadline(metadata.get("deadline"), deadline_field, now, settings),
        max_output_tokens=_first_tokens(
            body, ("max_completion_tokens", "max_tokens", "max_output_tokens"), "body"
        ),
        metadata=metadata,
        origin=origin,
    )


_OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _check_openai_body(body: Mapping[str, Any], endpoint: Endpoint) -> None:
    if endpoint is Endpoint.CHAT_COMPLETIONS:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            _fail(
                Reason.SCHEMA, "body.messages", f"expected a non-empty list, got {_show(messages)}"
            )
        for i, message in enumerate(messages):
            where = f"body.messages[{i}]"
            if not isinstance(message, dict):
                _fail(Reason.SCHEMA, where, f"expected an object, got {_show(message)}")
            role = message.get("role")
            if role not in _OPENAI_ROLES:
                allowed = ", ".join(sorted(_OPENAI_ROLES))
                _fail(
                    Reason.SCHEMA, f"{where}.role", f"expected one of {allowed}, got {_show(role)}"
                )
            content = message.get("content")
            if role in ("system", "developer", "user") and (
                not isinstance(content, str | list) or not content
            ):
                _fail(
                    Reason.SCHEMA,
                    f"{where}.content",
                    f"expected a non-empty string or list, got {_show(content)}",
                )
    else:  # embeddings and responses both carry their payload in ``input``
        value = body.get("input")
        if not isinstance(value, str | list) or not value:
            _fail(
                Reason.SCHEMA,
                "body.input",
                f"expected a non-empty string or list, got {_show(value)}",
            )


def _parse_gemini(
    obj: dict[str, Any], *, origin: str, now: datetime, settings: ParseSettings
) -> Request:
    _check_keys(obj, _GEMINI_KEYS, "a Gemini batch line")
    metadata = _metadata(obj.get("metadata"), "metadata")
    if "key" in obj or "key" not in metadata:
        key = _key(obj, "key")
    else:
        key = _key(metadata, "key", field="metadata.key")
    request = obj.get("request")
    if not isinstance(request, dict):
        _fail(Reason.SCHEMA, "request", f"expected an object, got {_show(request)}")
    has_contents, has_content = "contents" in request, "content" in request
    if has_contents == has_content:
        _fail(
            Reason.SCHEMA,
            "request",
            "expected exactly one of 'contents' (generateContent) or 'content' (embedContent)",
        )
    if has_contents:
        endpoint = Endpoint.GENERATE_CONTENT
        _check_contents(request["contents"], "request.contents")
        default = settings.default_model
    else:
        endpoint = Endpoint.EMBED_CONTENT
        _check_content(request["content"], "request.content")
        default = settings.default_embedding_model
    if "model" in obj:
        model = _strip_models(_nonempty_str(obj["model"], "model"))
    elif "model" in request:
        model = _strip_models(_nonempty_str(request["model"], "request.model"))
    elif default is not None:
        model = default
    else:
        _fail(
            Reason.SCHEMA,
            "model",
            "required: the line names no model and the source has no default",
        )
    family = _known_model(model, settings)
    if family is not ProviderKind.GEMINI:
        whose = "" if "model" in obj or "model" in request else "the source's default model "
        _fail(
            Reason.UNKNOWN_MODEL,
            "model",
            f"{whose}{model!r} is not a Gemini model; a Gemini batch line needs one",
        )
    deadline_raw = obj["deadline"] if "deadline" in obj else metadata.get("deadline")
    max_tokens: int | None = None
    for name in ("generationConfig", "generation_config"):
        config = request.get(name)
        if config is None:
            continue
        if not isinstance(config, dict):
            _fail(Reason.SCHEMA, f"request.{name}", f"expected an object, got {_show(config)}")
        max_tokens = _first_tokens(
            config, ("maxOutputTokens", "max_output_tokens"), f"request.{name}"
        )
        if max_tokens is not None:
            break
    return Request(
        source=settings.source,
        key=key,
        model=model,
        endpoint=endpoint,
        body=request,
        received_at=now,
        deadline=_deadline(deadline_raw, "deadline", now, settings),
        max_output_tokens=max_tokens if endpoint is Endpoint.GENERATE_CONTENT else None,
        metadata=metadata,
        origin=origin,
    )


def _check_contents(contents: Any, where: str) -> None:
    if not isinstance(contents, list) or not contents:
        _fail(Reason.SCHEMA, where, f"expected a non-empty list, got {_show(contents)}")
    for i, content in enumerate(contents):
        _check_content(content, f"{where}[{i}]")
        role = content.get("role")
        if role is not None and role not in ("user", "model"):
            _fail(
                Reason.SCHEMA,
                f"{where}[{i}].role",
                f"expected 'user' or 'model', got {_show(role)}",
            )


def _check_content(content: Any, where: str) -> None:
    if not isinstance(content, dict):
        _fail(Reason.SCHEMA, where, f"expected an object, got {_show(content)}")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        _fail(Reason.SCHEMA, f"{where}.parts", f"expected a non-empty list, got {_show(parts)}")


def _parse_simple(
    obj: dict[str, Any], *, origin: str, now: datetime, settings: ParseSettings
) -> Request:
    _check_keys(obj, _SIMPLE_KEYS, "a simple line")
    key = _key(obj, "id")
    given = [k for k in _SIMPLE_INPUTS if k in obj]
    if len(given) != 1:
        _fail(
            Reason.SCHEMA,
            None,
            "expected exactly one of 'prompt', 'messages' or 'text', got "
            + (", ".join(repr(k) for k in given) or "none"),
        )
    kind = given[0]
    embedding = kind == "text"
    if "model" in obj:
        model = _nonempty_str(obj["model"], "model")
    else:
        default = settings.default_embedding_model if embedding else settings.default_model
        if default is None:
            _fail(Reason.SCHEMA, "model", "required: the source has no default model for this line")
        model = default
    family = _known_model(model, settings)
    max_tokens = _tokens(obj.get("max_output_tokens"), "max_output_tokens")
    system = obj.get("system")
    if system is not None:
        system = _nonempty_str(system, "system")
    if embedding and (max_tokens is not None or system is not None):
        extra = "max_output_tokens" if max_tokens is not None else "system"
        _fail(
            Reason.SCHEMA, extra, "not allowed with 'text' (an embedding has no output or system)"
        )
    metadata = _metadata(obj.get("metadata"), "metadata")
    deadline_raw = obj["deadline"] if "deadline" in obj else metadata.get("deadline")
    endpoint, body = _simple_body(obj[kind], kind, model, family, system, max_tokens)
    return Request(
        source=settings.source,
        key=key,
        model=model,
        endpoint=endpoint,
        body=body,
        received_at=now,
        deadline=_deadline(deadline_raw, "deadline", now, settings),
        max_output_tokens=max_tokens,
        metadata=metadata,
        origin=origin,
    )


def _simple_body(
    value: Any,
    kind: str,
    model: str,
    family: ProviderKind,
    system: str | None,
    max_tokens: int | None,
) -> tuple[Endpoint, dict[str, Any]]:
    """The provider-native body for a simple line. ``metadata`` is never put into the body."""
    if kind == "text":
        texts = _texts(value)
        if family is ProviderKind.OPENAI:
            return Endpoint.EMBEDDINGS, {"model": model, "input": value}
        if isinstance(value, list):
            _fail(
                Reason.SCHEMA,
                "text",
                "Gemini embedContent takes one text per line; split the list into separate lines",
            )
        return Endpoint.EMBED_CONTENT, {"content": {"parts": [{"text": texts[0]}]}}
    if kind == "prompt":
        messages = [{"role": "user", "content": _nonempty_str(value, "prompt", blank=False)}]
    else:
        messages = _simple_messages(value)
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
        _fail(Reason.SCHEMA, "messages", "expected at least one 'user' or 'assistant' message")
    body: dict[str, Any] = {"contents": contents}
    if system_parts:
        body["systemInstruction"] = {"parts": system_parts}
    if max_tokens is not None:
        body["generationConfig"] = {"maxOutputTokens": max_tokens}
    return body


_SIMPLE_ROLES = ("system", "developer", "user", "assistant")


def _simple_messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        _fail(Reason.SCHEMA, "messages", f"expected a non-empty list, got {_show(value)}")
    out: list[dict[str, str]] = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            _fail(
                Reason.SCHEMA,
                where,
                f"expected an object with role and content, got {_show(message)}",
            )
        _check_keys(message, frozenset({"role", "content"}), where)
        role = message.get("role")
        if role not in _SIMPLE_ROLES:
            _fail(
                Reason.SCHEMA,
                f"{where}.role",
                f"expected one of {', '.join(_SIMPLE_ROLES)}, got {_show(role)}",
            )
        content = _nonempty_str(message.get("content"), f"{where}.content", blank=False)
        out.append({"role": role, "content": content})
    return out


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [_nonempty_str(value, "text", blank=False)]
    if not isinstance(value, list) or not value:
        _fail(
            Reason.SCHEMA,
            "text",
            f"expected a non-empty string or list of strings, got {_show(value)}",
        )
    return [_nonempty_str(t, f"text[{i}]", blank=False) for i, t in enumerate(value)]


# --------------------------------------------------------------------------- field rules


def _key(obj: Mapping[str, Any], name: str, *, field: str | None = None) -> str:
    field = field or name
    if name not in obj:
        _fail(Reason.MISSING_ID, field, "required: every line needs a unique id")
    value = obj[name]
    if not isinstance(value, str) or not value:
        _fail(Reason.MISSING_ID, field, f"expected a non-empty string, got {_show(value)}")
    if len(value) > MAX_KEY_CHARS:
        _fail(Reason.BAD_ID, field, f"at most {MAX_KEY_CHARS} characters, got {len(value)}")
    if _BAD_ID_CHARS.search(value):
        _fail(
            Reason.BAD_ID,
            field,
            f"must not contain '/', '..' or control characters, got {value!r}",
        )
    return value


def _nonempty_str(value: Any, field: str, *, blank: bool = True) -> str:
    if not isinstance(value, str) or not value or (not blank and not value.strip()):
        _fail(Reason.SCHEMA, field, f"expected a non-empty string, got {_show(value)}")
    return value


def _strip_models(model: str) -> str:
    stripped = model.removeprefix("models/")
    if not stripped:
        _fail(Reason.SCHEMA, "model", f"expected a model name, got {model!r}")
    return stripped


def _known_model(model: str, settings: ParseSettings) -> ProviderKind:
    family = settings.family_of(model)
    if family is None:
        _fail(Reason.UNKNOWN_MODEL, None, f"unknown model {model!r}")
    return family


def _tokens(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(Reason.MAX_OUTPUT_TOKENS, field, f"expected a positive integer, got {_show(value)}")
    return value


def _first_tokens(obj: Mapping[str, Any], names: Iterable[str], where: str) -> int | None:
    for name in names:
        if obj.get(name) is not None:
            return _tokens(obj[name], f"{where}.{name}")
    return None


def _metadata(value: Any, field: str) -> dict[str, str]:
    """Metadata follows OpenAI's rule so it can be forwarded anywhere: ≤16 string pairs."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(Reason.METADATA, field, f"expected an object of strings, got {_show(value)}")
    if len(value) > MAX_METADATA_PAIRS:
        _fail(Reason.METADATA, field, f"at most {MAX_METADATA_PAIRS} pairs, got {len(value)}")
    for k, v in value.items():
        if len(k) > MAX_METADATA_KEY_CHARS:
            _fail(
                Reason.METADATA,
                field,
                f"key {k[:20]!r}… is over {MAX_METADATA_KEY_CHARS} characters",
            )
        if not isinstance(v, str):
            _fail(Reason.METADATA, f"{field}.{k}", f"expected a string value, got {_show(v)}")
        if len(v) > MAX_METADATA_VALUE_CHARS:
            _fail(Reason.METADATA, f"{field}.{k}", f"at most {MAX_METADATA_VALUE_CHARS} characters")
    return value


_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f/]|\.\.")
_DURATION = re.compile(r"(?:\d+[smhd])+")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_deadline(value: str, now: datetime) -> datetime:
    """An RFC 3339 timestamp (with offset or ``Z``) or a duration from ``now`` like ``90s``,
    ``15m``, ``12h``, ``2d`` or ``1h30m``. Returns an aware UTC datetime; raises ValueError."""
    text = value.strip()
    if _DURATION.fullmatch(text):
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
        if seconds <= 0:
            raise ValueError("a duration must be positive")
        return now + timedelta(seconds=seconds)
    if len(text) < 11 or text[10] not in "Tt ":
        raise ValueError(
            "expected an RFC 3339 timestamp or a duration like '90s', '15m', '12h', '2d'"
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "expected an RFC 3339 timestamp or a duration like '90s', '15m', '12h', '2d'"
        ) from None
    if moment.tzinfo is None:
        raise ValueError("timestamp has no timezone; add 'Z' or an offset such as '+02:00'")
    return moment.astimezone(UTC)


def _deadline(value: Any, field: str, now: datetime, settings: ParseSettings) -> datetime | None:
    if value is None:
        return now + settings.default_deadline if settings.default_deadline is not None else None
    if not isinstance(value, str):
        _fail(
            Reason.DEADLINE,
            field,
            f"expected a string (RFC 3339 or a duration), got {_show(value)}",
        )
    try:
        return parse_deadline(value, now)
    except ValueError as exc:
        _fail(Reason.DEADLINE, field, f"{exc}; got {value!r}")


# --------------------------------------------------------------------------- helpers


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant
)  # built once: json.loads(**kw) rebuilds


def _json_type(py_name: str) -> str:
    return {
        "list": "an array",
        "str": "a string",
        "int": "a number",
        "float": "a number",
        "bool": "a boolean",
        "null": "null",
    }.get(py_name, py_name)


def _show(value: Any) -> str:
    """A short description of a wrong value for an error message (never the whole thing)."""
    if value is None:
        return "nothing"  # missing and JSON null read the same to the user: no value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
    if isinstance(value, int | float):
        return repr(value)
    return _json_type(type(value).__name__)
