"""Line parsing: each format into the exact Request, every corpus line into its exact error."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.core.model import Endpoint, ProviderKind, Request
from planner.sources.base import LineError
from planner.sources.formats import Defaults, Reason, parse_deadline
from planner.sources.jsonl_dir import SpillingKeySet
from planner.sources.lines import (
    LineFinder,
    LineParser,
    RawLine,
    decode_line,
    parse_line,
    read_lines,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "spool"
FAMILIES = {
    "gpt-4o-mini": ProviderKind.OPENAI,
    "text-embedding-3-small": ProviderKind.OPENAI,
    "gemini-2.5-flash": ProviderKind.GEMINI,
    "gemini-embedding-001": ProviderKind.GEMINI,
}
SETTINGS = Defaults(
    source="spool",
    family_of=FAMILIES.get,
    default_model="gpt-4o-mini",
    default_embedding_model="text-embedding-3-small",
)
GEMINI_DEFAULTS = Defaults(
    source="spool",
    family_of=FAMILIES.get,
    default_model="gemini-2.5-flash",
    default_embedding_model="gemini-embedding-001",
)


def parse(obj: Any, settings: Defaults = SETTINGS, line: int = 3) -> Request | LineError:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return parse_line(text, file="a.jsonl", line=line, now=NOW, settings=settings)


def ok(obj: Any, settings: Defaults = SETTINGS) -> Request:
    item = parse(obj, settings)
    assert isinstance(item, Request), item
    return item


def err(obj: Any, settings: Defaults = SETTINGS) -> LineError:
    item = parse(obj, settings)
    assert isinstance(item, LineError), item
    return item


# --------------------------------------------------------------------------- OpenAI lines


def test_openai_chat_line_is_kept_verbatim() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 20,
        "metadata": {"deadline": "2026-11-29T00:00:00Z", "team": "ml"},
    }
    line = {"custom_id": "req-0001", "method": "POST", "url": "/v1/chat/completions", "body": body}
    assert ok(line) == Request(
        source="spool",
        key="req-0001",
        model="gpt-4o-mini",
        endpoint=Endpoint.CHAT_COMPLETIONS,
        body=body,
        received_at=NOW,
        deadline=datetime(2026, 11, 29, tzinfo=UTC),
        max_output_tokens=20,
        metadata={"deadline": "2026-11-29T00:00:00Z", "team": "ml"},
        origin="a.jsonl:3",
    )


def test_openai_embeddings_line_with_top_level_metadata_extension() -> None:
    body = {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 256}
    line = {
        "custom_id": "emb-1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": body,
        "metadata": {"deadline": "2h"},
    }
    assert ok(line) == Request(
        source="spool",
        key="emb-1",
        model="text-embedding-3-small",
        endpoint=Endpoint.EMBEDDINGS,
        body=body,
        received_at=NOW,
        deadline=NOW + timedelta(hours=2),
        metadata={"deadline": "2h"},
        origin="a.jsonl:3",
    )


def test_openai_top_level_deadline_wins_over_body_metadata() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "x"}],
        "metadata": {"deadline": "1h"},
    }
    line = {
        "custom_id": "c",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": body,
        "metadata": {"deadline": "3h"},
    }
    assert ok(line).deadline == NOW + timedelta(hours=3)


@pytest.mark.parametrize(
    ("field", "expected"),
    [("max_completion_tokens", 7), ("max_tokens", 8), ("max_output_tokens", 9)],
)
def test_openai_output_limit_fields(field: str, expected: int) -> None:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "input": "hi", field: expected}
    line = {"custom_id": "r", "method": "POST", "url": "/v1/responses", "body": body}
    request = ok(line)
    assert request.endpoint is Endpoint.RESPONSES
    assert request.max_output_tokens == expected


def test_openai_line_with_gemini_model_is_the_compat_layer() -> None:
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}]}
    line = {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": body}
    request = ok(line)
    assert (request.model, request.endpoint) == ("gemini-2.5-flash", Endpoint.CHAT_COMPLETIONS)


# --------------------------------------------------------------------------- Gemini lines


def test_gemini_generate_line_snake_case_kept_as_given() -> None:
    request = {
        "contents": [{"parts": [{"text": "Describe photosynthesis."}]}],
        "generation_config": {"temperature": 0.7, "max_output_tokens": 300},
    }
    line = {"key": "request-1", "request": request, "model": "models/gemini-2.5-flash"}
    assert ok(line) == Request(
        source="spool",
        key="request-1",
        model="gemini-2.5-flash",
        endpoint=Endpoint.GENERATE_CONTENT,
        body=request,
        received_at=NOW,
        max_output_tokens=300,
        origin="a.jsonl:3",
    )


def test_gemini_generate_line_camel_case_uses_default_model() -> None:
    request = {
        "contents": [{"role": "user", "parts": [{"text": "Margherita?"}]}],
        "systemInstruction": {"parts": [{"text": "One line."}]},
        "generationConfig": {"maxOutputTokens": 64},
    }
    line = {"key": "request-2", "request": request, "metadata": {"deadline": "30m", "a": "b"}}
    assert ok(line, GEMINI_DEFAULTS) == Request(
        source="spool",
        key="request-2",
        model="gemini-2.5-flash",
        endpoint=Endpoint.GENERATE_CONTENT,
        body=request,
        received_at=NOW,
        deadline=NOW + timedelta(minutes=30),
        max_output_tokens=64,
        metadata={"deadline": "30m", "a": "b"},
        origin="a.jsonl:3",
    )


def test_gemini_embed_line_uses_request_model_then_embedding_default() -> None:
    request = {
        "model": "models/gemini-embedding-001",
        "task_type": "RETRIEVAL_DOCUMENT",
        "content": {"parts": [{"text": "Explain quantum computing"}]},
    }
    assert ok({"key": "request_2", "request": request}) == Request(
        source="spool",
        key="request_2",
        model="gemini-embedding-001",
        endpoint=Endpoint.EMBED_CONTENT,
        body=request,
        received_at=NOW,
        origin="a.jsonl:3",
    )
    bare = {"output_dimensionality": 512, "content": {"parts": [{"text": "Explain GenAI"}]}}
    assert ok({"key": "k", "request": bare}, GEMINI_DEFAULTS).model == "gemini-embedding-001"


def test_gemini_key_may_come_from_metadata() -> None:
    line = {"metadata": {"key": "m-1"}, "request": {"contents": [{"parts": [{"text": "x"}]}]}}
    assert ok(line, GEMINI_DEFAULTS).key == "m-1"


# --------------------------------------------------------------------------- simple lines


def test_simple_prompt_openai() -> None:
    line = {
        "id": "s1",
        "prompt": "Say hi",
        "system": "Be terse.",
        "max_output_tokens": 50,
        "deadline": "2026-11-28T18:00:00+02:00",
        "metadata": {"user": "42"},
    }
    assert ok(line) == Request(
        source="spool",
        key="s1",
        model="gpt-4o-mini",
        endpoint=Endpoint.CHAT_COMPLETIONS,
        body={
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Say hi"},
            ],
            "max_tokens": 50,
        },
        received_at=NOW,
        deadline=datetime(2026, 11, 28, 16, 0, tzinfo=UTC),
        max_output_tokens=50,
        metadata={"user": "42"},
        origin="a.jsonl:3",
    )


def test_simple_prompt_without_max_tokens_has_no_max_tokens_key() -> None:
    assert ok({"id": "s", "prompt": "x"}).body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "x"}],
    }


def test_simple_messages_gemini() -> None:
    line = {
        "id": "s2",
        "model": "gemini-2.5-flash",
        "system": "Be kind.",
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "How are you?"},
        ],
        "max_output_tokens": 100,
    }
    assert ok(line) == Request(
        source="spool",
        key="s2",
        model="gemini-2.5-flash",
        endpoint=Endpoint.GENERATE_CONTENT,
        body={
            "contents": [
                {"role": "user", "parts": [{"text": "Hello"}]},
                {"role": "model", "parts": [{"text": "Bonjour"}]},
                {"role": "user", "parts": [{"text": "How are you?"}]},
            ],
            "systemInstruction": {"parts": [{"text": "Be kind."}, {"text": "Answer in French."}]},
            "generationConfig": {"maxOutputTokens": 100},
        },
        received_at=NOW,
        max_output_tokens=100,
        origin="a.jsonl:3",
    )


def test_simple_prompt_gemini_minimal_body() -> None:
    assert ok({"id": "g", "prompt": "Hi"}, GEMINI_DEFAULTS).body == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}]
    }


def test_simple_text_openai_keeps_list() -> None:
    assert ok({"id": "e", "text": ["a", "b"]}) == Request(
        source="spool",
        key="e",
        model="text-embedding-3-small",
        endpoint=Endpoint.EMBEDDINGS,
        body={"model": "text-embedding-3-small", "input": ["a", "b"]},
        received_at=NOW,
        origin="a.jsonl:3",
    )


def test_simple_text_gemini_single() -> None:
    assert ok({"id": "e", "text": "one"}, GEMINI_DEFAULTS) == Request(
        source="spool",
        key="e",
        model="gemini-embedding-001",
        endpoint=Endpoint.EMBED_CONTENT,
        body={"content": {"parts": [{"text": "one"}]}},
        received_at=NOW,
        origin="a.jsonl:3",
    )


def test_default_deadline_counts_from_now() -> None:
    settings = Defaults(
        source="spool",
        family_of=FAMILIES.get,
        default_model="gpt-4o-mini",
        default_deadline=timedelta(hours=24),
    )
    assert ok({"id": "d", "prompt": "x"}, settings).deadline == NOW + timedelta(hours=24)
    assert ok({"id": "d", "prompt": "x", "deadline": "5m"}, settings).deadline == NOW + timedelta(
        minutes=5
    )


def test_simple_without_model_and_without_default_is_an_error() -> None:
    settings = Defaults(source="spool", family_of=FAMILIES.get)
    error = err({"id": "x", "prompt": "hi"}, settings)
    assert error.reason == Reason.SCHEMA
    assert error.message == (
        "a.jsonl:3: field 'model': required: the source has no default model for this line"
    )


def test_error_message_format_is_exact() -> None:
    error = err({"custom_id": 5, "method": "POST", "url": "/v1/embeddings", "body": {}})
    assert error == LineError(
        file="a.jsonl",
        line=3,
        reason="missing_id",
        message="a.jsonl:3: field 'custom_id': expected a non-empty string, got 5",
        raw=json.dumps({"custom_id": 5, "method": "POST", "url": "/v1/embeddings", "body": {}}),
    )
    assert str(error) == error.message
    assert error.origin == "a.jsonl:3"


# --------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW + timedelta(seconds=90)),
        ("15m", NOW + timedelta(minutes=15)),
        ("12h", NOW + timedelta(hours=12)),
        ("2d", NOW + timedelta(days=2)),
        ("1h30m", NOW + timedelta(minutes=90)),
        ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01t10:00:00.5-01:00", datetime(2026, 12, 1, 11, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_parse_deadline(text: str, expected: datetime) -> None:
    got = parse_deadline(text, NOW)
    assert got == expected
    assert got.tzinfo is UTC


@pytest.mark.parametrize("text", ["", "tomorrow", "2026-12-01", "2026-12-01T10:00:00", "-5m", "0s"])
def test_parse_deadline_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_deadline(text, NOW)


# --------------------------------------------------------------------------- bytes and files


def test_decode_line_bom_crlf_blank() -> None:
    assert decode_line(b'\xef\xbb\xbf{"a": 1}\r\n', file="f", line=1) == '{"a": 1}'
    assert decode_line(b"\xef\xbb\xbfx", file="f", line=2) == "\ufeffx"  # BOM only at file start
    assert decode_line(b"   \t\r\n", file="f", line=4) is None
    assert decode_line(b"", file="f", line=4) is None


def test_read_lines_last_line_without_newline_and_oversize() -> None:
    data = b"a\n" + b"x" * 50 + b"\n" + b"bb\r\n" + b"y" * 30 + b"z" * 30 + b"\n" + b"tail"
    lines = list(read_lines(io.BytesIO(data), max_line_bytes=40))
    assert lines == [
        RawLine(1, b"a\n"),
        RawLine(2, b"x" * 42, oversize=50),
        RawLine(3, b"bb\r\n"),
        RawLine(4, b"y" * 30 + b"z" * 12, oversize=60),
        RawLine(5, b"tail"),
    ]


def test_read_lines_exact_limit_is_fine() -> None:
    lines = list(read_lines(io.BytesIO(b"x" * 10 + b"\r\n" + b"y" * 10), max_line_bytes=10))
    assert lines == [RawLine(1, b"x" * 10 + b"\r\n"), RawLine(2, b"y" * 10)]


def _corpus_cases() -> list[str]:
    return sorted(json.loads((CORPUS / "expected.json").read_text()))


def test_corpus_is_big_enough() -> None:
    assert len(_corpus_cases()) >= 15


@pytest.mark.parametrize("name", _corpus_cases())
def test_corpus_line_gives_its_error_and_good_lines_go_on(name: str) -> None:
    expected = json.loads((CORPUS / "expected.json").read_text())[name]
    good = json.dumps({"id": "good-after", "prompt": "still here"}).encode() + b"\n"
    data = (CORPUS / f"{name}.jsonl").read_bytes() + good
    parser = LineParser(file=f"{name}.jsonl", now=NOW, settings=SETTINGS, max_line_bytes=4096)
    items = list(parser.parse(read_lines(io.BytesIO(data), 4096)))
    errors = [i for i in items if isinstance(i, LineError)]
    assert len(errors) == 1, items
    (error,) = errors
    assert error.reason == expected["reason"]
    assert error.line == expected["line"]
    assert error.message.startswith(f"{name}.jsonl:{expected['line']}: ")
    assert expected["fragment"] in error.message
    assert [i.key for i in items if isinstance(i, Request)][-1] == "good-after"


def test_duplicate_keeps_the_first() -> None:
    lines = [
        RawLine(1, b'{"id": "k", "prompt": "first"}\n'),
        RawLine(2, b"\n"),
        RawLine(3, b'{"id": "k", "prompt": "second"}\n'),
    ]
    parser = LineParser(file="f.jsonl", now=NOW, settings=SETTINGS, max_line_bytes=100)
    first, second = parser.parse(lines)
    assert isinstance(first, Request)
    assert first.body["messages"][0]["content"] == "first"
    assert isinstance(second, LineError)
    assert second.origin == "f.jsonl:3"
    assert second.reason == Reason.DUPLICATE_ID


@given(st.lists(st.text(min_size=1, max_size=8), max_size=60), st.integers(0, 10))
def test_spilling_key_set_behaves_like_a_set(keys: list[str], memory: int) -> None:
    spilling = SpillingKeySet(memory_keys=memory)
    plain: set[str] = set()
    try:
        for key in keys:
            assert spilling.add(key) == (key not in plain)
            plain.add(key)
    finally:
        spilling.close()


@given(
    st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        ["id", "prompt", "custom_id", "key", "request", "body", "text"]
                    ),
                    children,
                    max_size=4,
                )
            ),
            max_leaves=8,
        ).map(json.dumps),
    )
)
def test_any_text_gives_a_request_or_a_located_error(text: str) -> None:
    item = parse_line(text, file="h.jsonl", line=9, now=NOW, settings=SETTINGS)
    if isinstance(item, LineError):
        assert item.message.startswith("h.jsonl:9: ")
        assert item.reason in {r.value for r in Reason}
        assert item.raw == text
    else:
        assert item.origin == "h.jsonl:9"


def test_line_finder_gives_back_a_line_as_written_in_any_order() -> None:
    rows = [f'{{"id": "k{i}", "prompt": "caf\u00e9 {i}"}}' for i in range(1, 11)]
    data = b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\n" + b"x" * 50 + b"\n"
    finder = LineFinder(every=3)
    stream = io.BytesIO(data)
    assert [r.number for r in finder.mark(read_lines(stream, 40))] == list(range(1, 12))
    assert len(finder.marks) == 4  # lines 1, 4, 7, 10: one offset per three lines
    opened: list[int] = []

    def reopen() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(data)

    for number in (2, 5, 6, 10, 1, 9, 3):
        assert finder.text(reopen, number, 40, "f.jsonl") == rows[number - 1], number
    assert finder.text(reopen, 11, 40, "f.jsonl") is None  # over the limit: not text
    assert finder.text(reopen, 12, 40, "f.jsonl") is None  # no such line
    assert len(opened) == 1
    finder.close()
