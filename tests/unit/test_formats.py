"""parse_record: the one entry point every intake shares; errors carry a field, never a place."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from planner.core.model import Endpoint, ProviderKind, Request
from planner.sources.formats import (
    FORMATS,
    Defaults,
    Reason,
    RecordError,
    decode_json,
    parse_record,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FAMILIES = {"gpt-4o-mini": ProviderKind.OPENAI, "gemini-2.5-flash": ProviderKind.GEMINI}
DEFAULTS = Defaults(source="api", family_of=FAMILIES.get, default_model="gpt-4o-mini")


def test_each_format_has_its_own_module_and_markers() -> None:
    assert [name for name, _, _ in FORMATS] == ["openai", "gemini", "simple"]
    modules = {parser.__module__ for _, _, parser in FORMATS}
    assert modules == {f"planner.sources.formats.{n}" for n in ("openai", "gemini", "simple")}


def test_a_record_becomes_a_request_with_the_given_origin() -> None:
    item = parse_record({"id": "r1", "prompt": "hi"}, DEFAULTS, now=NOW, origin="jobs#17")
    assert item == Request(
        source="api",
        key="r1",
        model="gpt-4o-mini",
        endpoint=Endpoint.CHAT_COMPLETIONS,
        body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        received_at=NOW,
        origin="jobs#17",
    )


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([1], RecordError("not_object", "expected a JSON object, got an array")),
        (None, RecordError("not_object", "expected a JSON object, got null")),
        ({"x": 1}, RecordError("unknown_format", "")),  # message checked in test_lines
        (
            {"custom_id": "a", "method": "GET", "url": "/v1/chat/completions", "body": {}},
            RecordError("bad_endpoint", "expected 'POST', got 'GET'", "method"),
        ),
        (
            {"key": "g", "request": {"contents": []}},
            RecordError("schema", "expected a non-empty list, got an array", "request.contents"),
        ),
        (
            {"id": "s", "prompt": "x", "model": "nope"},
            RecordError("unknown_model", "unknown model 'nope'"),
        ),
    ],
)
def test_errors_name_the_field_and_what_was_expected_but_no_place(
    obj: object, expected: RecordError
) -> None:
    item = parse_record(obj, DEFAULTS, now=NOW, origin="somewhere.jsonl:4")
    assert isinstance(item, RecordError)
    assert item.reason == expected.reason
    if expected.reason != "unknown_format":
        assert item == expected
    assert "somewhere" not in str(item)


def test_error_text_prefixes_the_field() -> None:
    error = RecordError(Reason.SCHEMA.value, "expected an object, got 5", "body")
    assert str(error) == "field 'body': expected an object, got 5"
    assert str(RecordError(Reason.SCHEMA.value, "whole record")) == "whole record"


def test_decode_json_returns_an_error_value() -> None:
    assert decode_json('{"a": [1]}') == {"a": [1]}
    bad = decode_json("{nope")
    assert isinstance(bad, RecordError) and bad.reason == "invalid_json"
    nan = decode_json('{"a": NaN}')
    assert isinstance(nan, RecordError) and "NaN is not valid JSON" in nan.message
