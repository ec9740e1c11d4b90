"""Input record formats: one module per wire format behind ``parse_record``.

Every intake (the spool folder, a SQL table, the HTTP intake) turns one decoded JSON object into
a ``Request`` with the same code, so a record means the same thing whichever way it arrived.
The format is told apart by its keys, in this order:

* ``openai`` — an OpenAI Batch API line ``{"custom_id", "method", "url", "body"}``;
* ``gemini`` — a Gemini batch line ``{"key", "request"}``;
* ``simple`` — our simple line ``{"id", "prompt" | "messages" | "text", ...}``.

Nothing here reads files or knows line numbers: the caller wraps a ``RecordError`` with where
the record came from (the spool source makes it a ``LineError`` with file and line).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

import msgspec

from planner.core.json_values import every_scalar
from planner.core.model import Request
from planner.sources.formats import gemini, openai, simple
from planner.sources.formats.common import (
    MAX_DEPTH,
    MAX_INT,
    Defaults,
    Invalid,
    Reason,
    RecordError,
    check_value,
    fail,
    json_type,
    parse_deadline,
)

_Parser = Callable[..., Request]
FORMATS: tuple[tuple[str, frozenset[str], _Parser], ...] = (
    ("openai", openai.MARKERS, openai.parse),
    ("gemini", gemini.MARKERS, gemini.parse),
    ("simple", simple.MARKERS, simple.parse),
)
"""(name, marker keys, parser) in the order a record is matched against them."""


def parse_record(
    obj: object,
    defaults: Defaults,
    *,
    now: datetime,
    origin: str | None = None,
    checked: bool = False,
) -> Request | RecordError:
    """Judge one decoded JSON value as an input record; never raises for any JSON value.

    ``obj`` is what ``json`` (or ``decode_json``) produced for one record. ``defaults`` carries
    the source's name, the model catalog lookup and the source's default models and deadline.
    ``now`` is the ingestion time: it becomes ``Request.received_at`` and the base of relative
    deadlines. ``origin`` is a human pointer to the record (``file:line``, ``table#id``) kept in
    ``Request.origin``; it is never put into an error.

    Returns the ``Request`` (the provider body kept verbatim for the batch formats, built for
    the simple one), or a ``RecordError``: ``reason`` a stable ``Reason`` code, ``field`` the
    dotted path of the offending field (or ``None``), ``message`` what was expected and what
    was found. Checks that need more than one record (a key used twice) are the caller's.
    ``checked``: the caller proved from the JSON text that ``check_value`` has nothing to
    refuse (``json_text_is_plain``), so the walk over every value is skipped.
    """
    if not isinstance(obj, dict):
        kind = type(obj).__name__ if obj is not None else "null"
        return RecordError(
            Reason.NOT_OBJECT.value, f"expected a JSON object, got {json_type(kind)}"
        )
    try:
        if not checked:
            check_value(obj)
        parser = _format_of(obj)
        return parser(obj, now=now, defaults=defaults, origin=origin or "")
    except Invalid as bad:
        return bad.error


def _format_of(obj: dict[str, Any]) -> _Parser:
    for _name, markers, parser in FORMATS:
        if not markers.isdisjoint(obj):
            return parser
    fail(
        Reason.UNKNOWN_FORMAT,
        None,
        "unrecognised line format: expected an OpenAI batch line (custom_id, method, url, body), "
        "a Gemini batch line (key, request) or a simple line (id and prompt|messages|text)",
    )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_INT_DIGITS = "for integer string conversion"  # in CPython's ValueError for huge integers
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: loads(**kw) rebuilds


class _OutOfRange(Exception):  # a signal, not an error: decode again and walk
    """A number ``check_value`` may refuse was met while decoding on the fast path."""


def _int(text: str) -> int:
    """``parse_int`` of the fast path: every integer beyond 64 bits has 19 digits or more."""
    if len(text) >= 19:
        raise _OutOfRange
    return int(text)


def _float(text: str) -> float:
    """``parse_float`` of the fast path: ``1e400`` reads as infinity."""
    value = float(text)
    if math.isinf(value):  # the literals NaN and Infinity are refused by parse_constant
        raise _OutOfRange
    return value


# The numbers of a line are few (max_tokens, temperature): checking each as it is decoded costs
# less than scanning the whole text for long digit runs, which prompts are full of.
_FAST = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_int, parse_float=_float)


def json_text_is_plain(text: str) -> bool:
    """Whether the valid JSON ``text`` (valid UTF-8, no raw NUL) provably holds no text and no
    nesting that ``check_value`` refuses, judged from the text alone and at C speed: no ``\\u``
    escape (the only way to write a lone surrogate or a NUL) and fewer brackets than
    ``MAX_DEPTH``. Numbers are ``decode_json_plain``'s part.

    The escapes are found from backslash to backslash (``find`` of one character runs at
    memory speed; ``"\\u" in text`` took 1.4 us of a 1.7 kB line): in valid JSON every
    backslash starts an escape, so the character after it tells a ``\\u`` from the others,
    and an escaped backslash followed by a ``u`` is rightly not one."""
    if text.count("{") + text.count("[") >= MAX_DEPTH:
        return False
    escape = text.find("\\")
    while escape >= 0:
        if text.startswith("u", escape + 1):
            return False
        escape = text.find("\\", escape + 2)
    return True


_MSGSPEC = msgspec.json.Decoder()


def decode_json_plain(text: str) -> tuple[object, bool]:
    """``decode_json`` of ``text``, and whether the value provably holds nothing that
    ``check_value`` refuses (judged from the text and the numbers as decoded). False only
    means: walk the value to be sure.

    msgspec decodes a line in about half the time ``json`` takes with its number checks (5.6 us
    against 11 us for a chat line of 1.7 kB, the largest part of judging it), to the same value
    wherever both accept the text, and they accept the same texts (a fuzz test holds both).
    Every text it refuses, and every value with an integer beyond 64 bits, is decoded again by
    ``json``, so an error is worded, and a number refused, exactly as before.

    What msgspec decodes is plain with less looking than ``json_text_is_plain`` does: it
    refuses an unpaired surrogate escape and a number beyond a float's range (fuzzed), so of
    what ``check_value`` refuses only a NUL (written ``\\u0000``: a raw one is not valid JSON) and
    nesting are left to rule out from the text, at C speed (0.4 us against 2.2 us)."""
    try:
        value = _MSGSPEC.decode(text)
    except (msgspec.MsgspecError, RecursionError):  # invalid, 1e400, nested too deep
        return _decode_json_plain(text)
    if not _integers_in_range(value):
        return _decode_json_plain(text)
    shallow = text.count("{") + text.count("[") < MAX_DEPTH
    return value, shallow and "\\u0000" not in text


def _integers_in_range(value: object) -> bool:
    """Whether every integer in ``value`` is one ``check_value`` takes (within 64 bits)."""
    return every_scalar(value, _in_range)


def _in_range(leaf: Any) -> bool:
    return type(leaf) is not int or -MAX_INT <= leaf <= MAX_INT


def _decode_json_plain(text: str) -> tuple[object, bool]:
    """``decode_json_plain`` by ``json``: numbers checked as they are decoded."""
    try:
        return _FAST.decode(text), json_text_is_plain(text)
    except _OutOfRange:
        return decode_json(text), False
    except (ValueError, RecursionError):
        return decode_json(text), False  # the same error, worded by the one decoder


def decode_json(text: str) -> object:
    """The JSON value of ``text``, or a ``RecordError`` (``invalid_json``) saying why not."""
    try:
        return _DECODER.decode(text)
    except ValueError as exc:  # JSONDecodeError, and our NaN/Infinity refusal
        if _INT_DIGITS in str(exc):  # CPython's guard; its advice (set_int_max_str_digits) is
            return RecordError(  # for programmers, and no provider takes such a number anyway
                Reason.NUMBER.value, "number out of range: an integer of more than 4300 digits"
            )
        return RecordError(Reason.INVALID_JSON.value, f"not valid JSON: {exc}")
    except RecursionError:
        return RecordError(
            Reason.TOO_DEEP.value, f"nested too deeply to read (at most {MAX_DEPTH} levels)"
        )


__all__ = [
    "FORMATS",
    "Defaults",
    "Reason",
    "RecordError",
    "decode_json",
    "decode_json_plain",
    "json_text_is_plain",
    "parse_deadline",
    "parse_record",
]
