"""What every wire format shares: reason codes, the error value, the defaults, field rules.

A format module judges one decoded JSON object and either returns a ``Request`` or raises
``Invalid`` (internal) through ``fail``; ``planner.sources.formats.parse_record`` turns that into
a ``RecordError`` value. Nothing here knows about files, lines, rows or HTTP bodies: the caller
adds where the record came from.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn

from planner.core.catalog import ModelEntry, ModelKind
from planner.core.model import Endpoint, ProviderKind

MAX_KEY_CHARS = 64
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_DEPTH = 64  # nesting levels; deeper JSON is refused before anything recurses over it
MAX_INT = 2**63 - 1  # no provider field takes more; the store's integer columns stop here
MAX_TOKENS = 2**31 - 1  # the store's max_output_tokens column; the catalog's limit is lower
MAX_DEADLINE = timedelta(days=3650)  # a deadline this far off (either way) is a typo


class Reason(StrEnum):
    """Stable codes for why a record was refused (quarantine files and metrics use them)."""

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
    TOO_DEEP = "too_deep"
    NUMBER = "number_out_of_range"
    MODEL_KIND = "model_kind"
    DIMENSIONS = "dimensions"
    INTERNAL = "internal_error"  # a bug of ours met this record; it is kept, not lost


@dataclass(frozen=True, slots=True)
class RecordError:
    """Why one record cannot become a request, independent of where the record came from.

    ``reason`` is a ``Reason`` value; ``field`` the dotted path of the offending field
    (``body.messages[0].role``) or ``None`` when the record as a whole is wrong; ``message``
    says what was expected and what was found. ``str()`` gives ``field 'x': message``.
    """

    reason: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return f"field '{self.field}': {self.message}" if self.field else self.message


@dataclass(frozen=True, slots=True)
class Defaults:
    """What a source knows that a record may leave out.

    ``source`` becomes ``Request.source``; ``family_of`` maps a model id to its provider (None:
    unknown model); ``default_model`` / ``default_embedding_model`` serve records naming no
    model; ``default_deadline`` is added to ``now`` for records without a deadline.
    """

    source: str
    family_of: Callable[[str], ProviderKind | None]
    default_model: str | None = None
    default_embedding_model: str | None = None
    default_deadline: timedelta | None = None
    default_models: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Per-format models for records naming none, keyed ``openai_chat``, ``openai_embeddings``,
    ``gemini_generate``, ``gemini_embed``; each wins over the two defaults above."""
    facts_of: Callable[[str], ModelEntry | None] | None = None
    """The catalog entry of a model (``Catalog.get``): its kind, output-token maximum and
    embedding sizes are checked before anything is spent. ``None``: the family only."""


OPENAI_CHAT, OPENAI_EMBEDDINGS = "openai_chat", "openai_embeddings"
GEMINI_GENERATE, GEMINI_EMBED = "gemini_generate", "gemini_embed"
DEFAULT_SLOTS = (OPENAI_CHAT, OPENAI_EMBEDDINGS, GEMINI_GENERATE, GEMINI_EMBED)


def default_model(defaults: Defaults, slot: str) -> str | None:
    """The source's model for a batch-format record of ``slot`` that names none."""
    if slot in defaults.default_models:
        return defaults.default_models[slot]
    embedding = slot in (OPENAI_EMBEDDINGS, GEMINI_EMBED)
    return defaults.default_embedding_model if embedding else defaults.default_model


class Invalid(Exception):
    """Internal: one validation failure, turned into a ``RecordError`` by ``parse_record``."""

    def __init__(self, reason: Reason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        where = None if field is None else printable(field)
        self.error = RecordError(reason.value, printable(message), where)


def printable(text: str) -> str:
    """``text`` safe to write as UTF-8: a lone surrogate from the input becomes ``\\udXXX``."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def fail(reason: Reason, field: str | None, message: str) -> NoReturn:
    raise Invalid(reason, message, field)


def check_keys(obj: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    if obj.keys() <= allowed:
        return
    unknown = sorted(k for k in obj if k not in allowed)
    fail(
        Reason.SCHEMA, unknown[0], f"unknown field in {what}; allowed: {', '.join(sorted(allowed))}"
    )


# --------------------------------------------------------------------------- field rules

_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f/]|\.\.")


def record_key(obj: Mapping[str, Any], name: str, *, field: str | None = None) -> str:
    field = field or name
    if name not in obj:
        fail(Reason.MISSING_ID, field, "required: every line needs a unique id")
    value = obj[name]
    if not isinstance(value, str) or not value:
        fail(Reason.MISSING_ID, field, f"expected a non-empty string, got {show(value)}")
    if len(value) > MAX_KEY_CHARS:
        fail(Reason.BAD_ID, field, f"at most {MAX_KEY_CHARS} characters, got {len(value)}")
    if _BAD_ID_CHARS.search(value):
        fail(
            Reason.BAD_ID, field, f"must not contain '/', '..' or control characters, got {value!r}"
        )
    return value


def nonempty_str(value: Any, field: str, *, blank: bool = True) -> str:
    if not isinstance(value, str) or not value or (not blank and not value.strip()):
        fail(Reason.SCHEMA, field, f"expected a non-empty string, got {show(value)}")
    return value


def known_model(model: str, defaults: Defaults) -> ProviderKind:
    family = defaults.family_of(model)
    if family is None:
        fail(Reason.UNKNOWN_MODEL, None, f"unknown model {model!r}")
    return family


def check_model(
    model: str,
    endpoint: Endpoint,
    defaults: Defaults,
    *,
    model_field: str,
    max_tokens: tuple[int | None, str] = (None, ""),
    dimensions: tuple[Any, str] = (None, ""),
) -> None:
    """What the provider would refuse after the money is committed, refused now: a chat model
    on an embedding endpoint (or the reverse), more output tokens than the model can write,
    and embedding sizes outside the model's range. ``max_tokens`` and ``dimensions`` are
    (value, field path) pairs; a fact the catalog does not have is not checked."""
    dims, dims_field = dimensions
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        fail(Reason.DIMENSIONS, dims_field, f"expected a positive integer, got {show(dims)}")
    facts = defaults.facts_of(model) if defaults.facts_of is not None else None
    if facts is None:
        return
    wanted = ModelKind.EMBEDDING if endpoint.is_embedding else ModelKind.CHAT
    if facts.kind is not wanted:
        fail(
            Reason.MODEL_KIND,
            model_field,
            f"{model!r} is {_a(facts.kind)} model; {endpoint.value} needs {_a(wanted)} model",
        )
    limit, tokens_field = max_tokens
    if (
        limit is not None
        and facts.max_output_tokens is not None
        and limit > facts.max_output_tokens
    ):
        fail(
            Reason.MAX_OUTPUT_TOKENS,
            tokens_field,
            f"at most {facts.max_output_tokens:,} for {model}, got {limit:,}",
        )
    low, high = facts.min_dimensions, facts.max_dimensions
    if dims is not None and (
        (low is not None and dims < low) or (high is not None and dims > high)
    ):
        fail(
            Reason.DIMENSIONS,
            dims_field,
            f"{model} makes vectors of {low or 1} to {high or 'any number of'} dimensions, "
            f"got {dims}",
        )


def _a(kind: ModelKind) -> str:
    return "an embedding" if kind is ModelKind.EMBEDDING else "a chat"


def tokens(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(Reason.MAX_OUTPUT_TOKENS, field, f"expected a positive integer, got {show(value)}")
    if value > MAX_TOKENS:
        fail(Reason.MAX_OUTPUT_TOKENS, field, f"at most {MAX_TOKENS:,}, got {show(value)}")
    return value


def first_tokens(obj: Mapping[str, Any], names: Iterable[str], where: str) -> int | None:
    for name in names:
        if obj.get(name) is not None:
            return tokens(obj[name], f"{where}.{name}")
    return None


def metadata(value: Any, field: str) -> dict[str, str]:
    """Metadata follows OpenAI's rule so it can be forwarded anywhere: ≤16 string pairs."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(Reason.METADATA, field, f"expected an object of strings, got {show(value)}")
    if len(value) > MAX_METADATA_PAIRS:
        fail(Reason.METADATA, field, f"at most {MAX_METADATA_PAIRS} pairs, got {len(value)}")
    for k, v in value.items():
        if len(k) > MAX_METADATA_KEY_CHARS:
            fail(
                Reason.METADATA,
                field,
                f"key {k[:20]!r}… is over {MAX_METADATA_KEY_CHARS} characters",
            )
        if not isinstance(v, str):
            fail(Reason.METADATA, f"{field}.{k}", f"expected a string value, got {show(v)}")
        if len(v) > MAX_METADATA_VALUE_CHARS:
            fail(Reason.METADATA, f"{field}.{k}", f"at most {MAX_METADATA_VALUE_CHARS} characters")
    return value


_DURATION = re.compile(r"(?:\d+[smhd])+")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DEADLINE_SHAPE = "expected an RFC 3339 timestamp or a duration like '90s', '15m', '12h', '2d'"


def parse_deadline(value: str, now: datetime) -> datetime:
    """An RFC 3339 timestamp (with offset or ``Z``) or a duration from ``now`` like ``90s``,
    ``15m``, ``12h``, ``2d`` or ``1h30m``. Returns an aware UTC datetime; raises ValueError."""
    text = value.strip()
    if _DURATION.fullmatch(text):
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
        if seconds <= 0:
            raise ValueError("a duration must be positive")
        if seconds > MAX_DEADLINE.total_seconds():
            raise ValueError(f"a duration must be at most {MAX_DEADLINE.days}d")
        return now + timedelta(seconds=seconds)
    if len(text) < 11 or text[10] not in "Tt ":
        raise ValueError(_DEADLINE_SHAPE)
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError("timestamp has no timezone; add 'Z' or an offset such as '+02:00'")
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = None  # beyond year 9999 once moved to UTC
    except ValueError as exc:
        if "timezone" in str(exc):
            raise
        raise ValueError(_DEADLINE_SHAPE) from None
    if moment is None or abs(moment - now) > MAX_DEADLINE:
        raise ValueError(f"a timestamp must be within {MAX_DEADLINE.days} days of now")
    return moment


def deadline(value: Any, field: str, now: datetime, defaults: Defaults) -> datetime | None:
    if value is None:
        return now + defaults.default_deadline if defaults.default_deadline is not None else None
    if not isinstance(value, str):
        fail(
            Reason.DEADLINE, field, f"expected a string (RFC 3339 or a duration), got {show(value)}"
        )
    try:
        return parse_deadline(value, now)
    except ValueError as exc:
        fail(Reason.DEADLINE, field, f"{exc}; got {value!r}")


# --------------------------------------------------------------------------- any JSON value

_SURROGATE = re.compile("[\ud800-\udfff]")


class _Found(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message
        self.path: list[str | int] = []


def check_value(value: Any) -> None:
    """Refuse what no provider takes and what would break our own storage, wherever it sits:
    nesting over ``MAX_DEPTH``, lone surrogates (not encodable as UTF-8), NUL characters (not
    storable in PostgreSQL text), non-finite numbers (``1e400`` reads as infinity) and integers
    outside 64 bits. Fails with the field's path. One pass, one call per container: it runs on
    every record, so plain ASCII strings and small numbers cost a type test and a comparison."""
    if not isinstance(value, dict | list):
        return
    try:
        _walk(value, 0)
    except _Found as found:
        fail(found.reason, _path(reversed(found.path)) or None, found.message)


def _walk(value: dict[Any, Any] | list[Any], depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise _Found(Reason.TOO_DEEP, f"nested more than {MAX_DEPTH} levels deep")
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        try:
            if isinstance(k, str) and ("\x00" in k or not k.isascii()):
                _check_text(k)
            if isinstance(v, str):
                if "\x00" in v or not v.isascii():
                    _check_text(v)
            elif isinstance(v, dict | list):
                _walk(v, depth + 1)
            elif isinstance(v, float):
                if not math.isfinite(v):
                    raise _Found(Reason.NUMBER, "number out of range: not a finite number")
            elif isinstance(v, int) and not -MAX_INT <= v <= MAX_INT:
                raise _Found(Reason.NUMBER, f"number out of range: {show(v)} is beyond 64 bits")
        except _Found as found:
            found.path.append(k)
            raise


def _check_text(text: str) -> None:
    if bad := _SURROGATE.search(text):
        code = f"\\u{ord(bad.group()):04x}"
        raise _Found(Reason.ENCODING, f"lone surrogate {code} (not valid Unicode text)")
    if "\x00" in text:  # PostgreSQL text cannot hold it, and no model needs it
        raise _Found(Reason.ENCODING, "NUL character \\u0000 in a string")


def _path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --------------------------------------------------------------------------- messages


def json_type(py_name: str) -> str:
    return {
        "list": "an array",
        "str": "a string",
        "int": "a number",
        "float": "a number",
        "bool": "a boolean",
        "null": "null",
    }.get(py_name, py_name)


def show(value: Any) -> str:
    """A short description of a wrong value for an error message (never the whole thing)."""
    if value is None:
        return "nothing"  # missing and JSON null read the same to the user: no value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
    if isinstance(value, int) and abs(value) > MAX_INT:
        digits = str(abs(value)) if abs(value) < 10**4000 else "9" * 4000
        return f"{'-' if value < 0 else ''}{digits[:12]}… ({len(digits)} digits)"
    if isinstance(value, int | float):
        return repr(value)
    return json_type(type(value).__name__)
