"""No input breaks the parser: random bytes and hostile JSON give a request or a located error.

Every request that comes out must also survive what happens to it next (encoded as UTF-8 JSON
for the store and the provider, its token cap in the store's integer column, its deadline
moved by a day either way) — the crashes of issue 12 were all past the parser.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.core.model import ProviderKind, Request
from planner.sources.base import LineError
from planner.sources.formats import Defaults, Reason, decode_json, decode_json_plain
from planner.sources.formats.common import check_value
from planner.sources.lines import LineParser, read_lines

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FAMILIES = {
    "gpt-4o-mini": ProviderKind.OPENAI,
    "text-embedding-3-small": ProviderKind.OPENAI,
    "gemini-2.5-flash": ProviderKind.GEMINI,
    "gemini-embedding-001": ProviderKind.GEMINI,
}
DEFAULTS = Defaults(
    source="spool",
    family_of=FAMILIES.get,
    default_model="gpt-4o-mini",
    default_embedding_model="text-embedding-3-small",
    default_deadline=timedelta(hours=48),
)
ODD = ["\ud800", "\udfff", "\ud83d\ude00", "\x00", "\u202e", "\ufeff", "\uffff", "é", "\n", "\\"]
odd_text = st.lists(st.sampled_from(ODD) | st.text(max_size=4), max_size=4).map("".join)
huge = st.sampled_from([2**31, 2**63, 10**30, -(10**30), 1e30, 1e308, 2**64 - 1, 0, -3])
numbers = st.integers() | st.floats(allow_nan=True, allow_infinity=True) | huge
deadlines = st.sampled_from(
    ["99999999999d", "0s", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "12h"]
)
scalars = st.none() | st.booleans() | numbers | odd_text | deadlines
FIELDS = [
    "id", "prompt", "messages", "text", "model", "deadline", "max_output_tokens", "metadata",
    "custom_id", "method", "url", "body", "key", "request", "role", "content", "max_tokens",
    "contents", "parts", "generationConfig", "maxOutputTokens", "input", "dimensions",
]  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | odd_text, inner, max_size=5)
    ),
    max_leaves=12,
)
GOOD = [
    {"id": "g", "prompt": "hi", "deadline": "2d", "max_output_tokens": 5},
    {"custom_id": "o", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}},
    {"key": "k", "request": {"content": {"parts": [{"text": "x"}]}}},
]  # fmt: skip


def _mutate(base: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """``base`` with ``value`` put at ``path`` (valid lines with one hostile field)."""
    out = json.loads(json.dumps(base))
    node = out
    for step in path[:-1]:
        child = node.get(step)
        if not isinstance(child, dict):
            child = node[step] = {}
        node = child
    node[path[-1]] = value
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)  # surrogates travel as \\ud800 escapes


def _nested(depth: int) -> str:
    return '{"id": "d", "prompt": "x", "metadata": ' + "[" * depth + "]" * depth + "}"


lines = st.one_of(
    st.binary(max_size=60),
    values.map(_dumps).map(str.encode),
    st.builds(
        _mutate,
        st.sampled_from(GOOD),
        st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3),
        values,
    )
    .map(_dumps)
    .map(str.encode),
    st.integers(1, 200_000).map(_nested).map(str.encode),
)


def _survives_what_comes_next(item: Request) -> None:
    body = json.dumps(item.body, ensure_ascii=False, allow_nan=False)
    assert "\x00" not in body + json.dumps(item.metadata, ensure_ascii=False)  # PostgreSQL text
    body.encode("utf-8")
    json.dumps(item.metadata, ensure_ascii=False).encode("utf-8")
    (item.key + item.model + (item.origin or "")).encode("utf-8")
    assert item.max_output_tokens is None or 1 <= item.max_output_tokens < 2**31
    if item.deadline is not None:
        assert item.deadline - timedelta(days=2) < item.deadline + timedelta(days=2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, min_size=1, max_size=8))
def test_no_line_escapes_as_an_exception(raw_lines: list[bytes]) -> None:
    data = b"\n".join(line.replace(b"\n", b" ") for line in raw_lines) + b"\n"
    parser = LineParser(file="f.jsonl", now=NOW, settings=DEFAULTS, max_line_bytes=1 << 20)
    items = list(parser.parse(read_lines(io.BytesIO(data), 1 << 20)))
    nonblank = [n for n, line in enumerate(data.split(b"\n")[:-1], 1) if line.strip(b" \r\t")]
    assert len(items) <= len(nonblank)
    for item in items:
        if isinstance(item, LineError):
            assert item.reason in {r.value for r in Reason} - {Reason.INTERNAL.value}, item
            assert item.message.startswith(f"f.jsonl:{item.line}: ")
            item.message.encode("utf-8")
        else:
            _survives_what_comes_next(item)


def test_the_known_crashes_are_refused_with_their_reason() -> None:
    cases = {
        '{"id": "a", "prompt": "x\\ud800y"}': ("encoding", "field 'prompt': lone surrogate"),
        '{"id": "a", "prompt": "x", "metadata": {"k": "a\\u0000b"}}': (
            "encoding",
            "field 'metadata.k': NUL character \\u0000 in a string",
        ),
        _nested(100_000): ("too_deep", "nested too deeply"),
        _nested(70): ("too_deep", "field 'metadata[0][0]"),
        '{"id": "b", "prompt": "x", "max_output_tokens": 1000000000000000000000000000000}': (
            "number_out_of_range",
            "field 'max_output_tokens': number out of range",
        ),
        '{"id": "c", "prompt": "x", "max_output_tokens": 3000000000}': (
            "max_output_tokens",
            "at most 2,147,483,647",
        ),
        '{"id": "d", "prompt": "x", "deadline": "99999999999d"}': (
            "deadline",
            "a duration must be at most 3650d",
        ),
        '{"id": "e", "prompt": "x", "deadline": "9999-12-31T23:59:59-01:00"}': (
            "deadline",
            "within 3650 days",
        ),
        '{"custom_id": "f", "method": "POST", "url": "/v1/embeddings", '
        '"body": {"model": "text-embedding-3-small", "input": "x", "dimensions": 1e400}}': (
            "number_out_of_range",
            "field 'body.dimensions': number out of range: not a finite number",
        ),
    }
    for text, (reason, fragment) in cases.items():
        parser = LineParser(file="p.jsonl", now=NOW, settings=DEFAULTS, max_line_bytes=1 << 20)
        (item,) = parser.parse(read_lines(io.BytesIO(text.encode()), 1 << 20))
        assert isinstance(item, LineError), text[:60]
        assert (item.reason, item.line) == (reason, 1), item
        assert fragment in item.message, item.message


def test_a_bug_in_a_format_costs_one_line_not_the_file() -> None:
    def broken(model: str) -> ProviderKind | None:
        raise RuntimeError("catalog exploded")

    defaults = Defaults(source="s", family_of=broken, default_model="gpt-4o-mini")
    data = b'{"id": "a", "prompt": "x"}\n{"key": "b", "request": 3}\n'
    parser = LineParser(file="b.jsonl", now=NOW, settings=defaults, max_line_bytes=1000)
    first, second = parser.parse(read_lines(io.BytesIO(data), 1000))
    assert isinstance(first, LineError) and first.reason == "internal_error"
    assert first.message == "b.jsonl:1: could not be judged (RuntimeError); please report this line"
    assert isinstance(second, LineError) and second.reason == "schema"


def test_finite_floats_and_64_bit_integers_are_kept() -> None:
    parser = LineParser(file="k.jsonl", now=NOW, settings=DEFAULTS, max_line_bytes=1000)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    body |= {"temperature": 1.5e-300, "seed": 2**63 - 1, "logit_bias": {"1": -100}}
    text = json.dumps(
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": body}
    )
    (item,) = parser.parse(read_lines(io.BytesIO(text.encode()), 1000))
    assert isinstance(item, Request) and item.body["seed"] == 2**63 - 1
    assert math.isfinite(item.body["temperature"])


deep = st.integers(min_value=1, max_value=80).map(lambda n: json.loads("[" * n + "]" * n))


@settings(max_examples=500, deadline=None)
@given(value=values | deep, ascii_only=st.booleans())
def test_a_plain_json_text_holds_nothing_the_walk_refuses(value: Any, ascii_only: bool) -> None:
    """``decode_json_plain`` lets a line skip ``check_value``: never wrongly, and it decodes
    every text to what ``decode_json`` gives."""
    try:
        text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=False)  # as decode_json
        text.encode("utf-8")  # a spool line is UTF-8: a raw lone surrogate cannot be in it
    except (ValueError, UnicodeEncodeError):
        return
    decoded, plain = decode_json_plain(text)
    assert decoded == decode_json(text) == json.loads(text)
    if plain:
        check_value(decoded)  # raises Invalid if the text was not plain after all


@settings(max_examples=300, deadline=None)
@given(
    number=st.sampled_from(["1e400", "-1E+999", "9" * 19, "-" + "9" * 30, "1e308", "0.5e-400"]),
    spaces=st.text(" ", max_size=2),
)
def test_numbers_written_out_of_range_are_never_plain(number: str, spaces: str) -> None:
    text = f'{{"a":{spaces}[{number}]}}'
    value, plain = decode_json_plain(text)
    assert value == json.loads(text)
    if not plain:
        return
    check_value(value)


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ('{"a": "no escape at all"}', True),
        ('{"a": "quote \\" and newline \\n"}', True),
        ('{"a": "an escaped backslash, then a u: \\\\u"}', True),
        ('{"\\u00e9": 1}', True),  # an escape of a character the walk takes
        ('{"a": "\\ud83d\\ude00"}', True),  # a surrogate pair: one character
        ('{"a": "\\ud800"}', False),
        ('{"a": "\\\\\\ud800"}', False),  # an escaped backslash, then a real \u escape
        ('{"a": "\\n\\u0000"}', False),
        ('{"\\u0000": 1}', False),
        ("[" * 64 + "]" * 64, False),
    ],
)
def test_only_a_nul_an_unpaired_surrogate_or_nesting_makes_a_text_not_plain(
    text: str, plain: bool
) -> None:
    value, found = decode_json_plain(text)
    assert value == json.loads(text)
    assert found is plain


JSONISH = '{}[]",:\\ 0123456789.eE+-tfnrulsx\t\n\x00\x1f\u00e9\u2028'
base_lines = st.sampled_from(
    [
        json.dumps(
            {
                "custom_id": "k1",
                "body": {"messages": [{"content": 'h\u00e9 12.5 \\ "'}], "n": [1, -2, 3.5e10]},
                "x": [True, None, 2**63 - 1, 1e-7],
            },
            ensure_ascii=ascii_only,
        )
        for ascii_only in (True, False)
    ]
)


@st.composite
def mutated_json(draw: st.DrawFn) -> str:
    """A JSON line with a few characters deleted, inserted or replaced: mostly invalid."""
    text = list(draw(base_lines))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["delete", "insert", "replace"]))
        if op == "insert" or not text:
            text.insert(at, draw(st.sampled_from(JSONISH)))
        elif op == "delete":
            del text[min(at, len(text) - 1)]
        else:
            text[min(at, len(text) - 1)] = draw(st.sampled_from(JSONISH))
    return "".join(text)


def _json_path(text: str) -> object:
    """What ``json`` alone makes of ``text`` (``decode_json``'s error, else the value)."""
    return decode_json(text)


@settings(max_examples=3000, deadline=None)
@given(text=mutated_json() | st.text(alphabet=JSONISH, max_size=12))
def test_msgspec_and_json_take_the_same_texts_to_the_same_values(text: str) -> None:
    """``decode_json_plain`` decodes with msgspec, and falls back to ``json`` where msgspec
    refuses: a text json refuses must not pass, and a value must be json's to the bit."""
    value, plain = decode_json_plain(text)
    expected = _json_path(text)
    assert repr(value) == repr(expected)  # repr: -0.0 and 0.0, 1 and 1.0 and True differ
    if plain:
        check_value(value)


@pytest.mark.parametrize(
    "text",
    ['{"a": 99999999999999999999}', '{"a": [-9223372036854775808]}', '{"a": 1' + "0" * 5000 + "}"],
)
def test_an_integer_beyond_64_bits_is_refused_as_json_refuses_it(text: str) -> None:
    value, plain = decode_json_plain(text)
    assert repr(value) == repr(decode_json(text)) and not plain


ESCAPES = ["\\ud800", "\\udbff", "\\udc00", "\\udfff", "\\ud83d", "\\ude00", "\\u0041", "a", "\\\\"]


@settings(max_examples=2000, deadline=None)
@given(pieces=st.lists(st.sampled_from(ESCAPES), min_size=1, max_size=5), as_key=st.booleans())
def test_no_unpaired_surrogate_escape_passes_as_plain(pieces: list[str], as_key: bool) -> None:
    """msgspec refuses unpaired surrogate escapes, which is why its texts need no look for
    them: anything that decodes as plain holds nothing ``check_value`` refuses."""
    escaped = "".join(pieces)
    text = f'{{"{escaped}": 1}}' if as_key else f'{{"a": "{escaped}"}}'
    value, plain = decode_json_plain(text)
    assert repr(value) == repr(decode_json(text))
    if plain:
        check_value(value)
