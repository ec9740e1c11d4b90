"""parse_record: the one entry point every intake shares; errors carry a field, never a place."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from planner.config.prices import shipped_catalog
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
    huge = decode_json('{"max_tokens": ' + "9" * 5000 + "}")
    assert isinstance(huge, RecordError) and huge.reason == "number_out_of_range"
    assert huge.message == "number out of range: an integer of more than 4300 digits"


# --------------------------------------------------------------------------- against the model

CATALOG = shipped_catalog()
CHECKED = Defaults(
    source="api",
    family_of=CATALOG.family_of,
    facts_of=CATALOG.get,
    default_model="gpt-4o-mini",
    default_embedding_model="text-embedding-3-small",
)


def _openai(url: str, **body: object) -> dict[str, object]:
    return {"custom_id": "c", "method": "POST", "url": url, "body": body}


CHAT = [{"role": "user", "content": "hi"}]
TOO_MANY = "at most 16,384 for gpt-4o-mini, got 99,999,999"
HUGE = {"maxOutputTokens": 99_999_999}
GEMINI_TEXT = {"parts": [{"text": "Explain GenAI"}]}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            _openai("/v1/embeddings", model="gpt-4o-mini", input="x"),
            RecordError(
                "model_kind",
                "'gpt-4o-mini' is a chat model; /v1/embeddings needs an embedding model",
                "body.model",
            ),
        ),
        (
            _openai("/v1/chat/completions", model="text-embedding-3-small", messages=CHAT),
            RecordError(
                "model_kind",
                "'text-embedding-3-small' is an embedding model; /v1/chat/completions needs a "
                "chat model",
                "body.model",
            ),
        ),
        (
            _openai("/v1/responses", model="text-embedding-3-large", input="x"),
            RecordError(
                "model_kind",
                "'text-embedding-3-large' is an embedding model; /v1/responses needs a chat model",
                "body.model",
            ),
        ),
        (
            {"key": "g", "model": "gemini-2.5-flash", "request": {"content": GEMINI_TEXT}},
            RecordError(
                "model_kind",
                "'gemini-2.5-flash' is a chat model; embedContent needs an embedding model",
                "model",
            ),
        ),
        (
            {"id": "s", "text": "x", "model": "gpt-4o-mini"},
            RecordError(
                "model_kind",
                "'gpt-4o-mini' is a chat model; /v1/embeddings needs an embedding model",
                "model",
            ),
        ),
        (
            _openai(
                "/v1/chat/completions", model="gpt-4o-mini", messages=CHAT, max_tokens=99999999
            ),
            RecordError("max_output_tokens", TOO_MANY, "body.max_tokens"),
        ),
        (
            {"id": "s", "prompt": "x", "max_output_tokens": 99_999_999},
            RecordError("max_output_tokens", TOO_MANY, "max_output_tokens"),
        ),
        (
            {
                "key": "g",
                "model": "gemini-2.5-flash",
                "request": {"contents": [GEMINI_TEXT], "generationConfig": HUGE},
            },
            RecordError(
                "max_output_tokens",
                "at most 65,536 for gemini-2.5-flash, got 99,999,999",
                "request.generationConfig.maxOutputTokens",
            ),
        ),
        (
            _openai("/v1/embeddings", model="text-embedding-3-small", input="x", dimensions=0),
            RecordError("dimensions", "expected a positive integer, got 0", "body.dimensions"),
        ),
        (
            _openai("/v1/embeddings", model="text-embedding-3-small", input="x", dimensions=-3),
            RecordError("dimensions", "expected a positive integer, got -3", "body.dimensions"),
        ),
        (
            _openai("/v1/embeddings", model="text-embedding-3-small", input="x", dimensions=100000),
            RecordError(
                "dimensions",
                "text-embedding-3-small makes vectors of 1 to 1536 dimensions, got 100000",
                "body.dimensions",
            ),
        ),
        (
            {
                "key": "g",
                "model": "gemini-embedding-001",
                "request": {"content": GEMINI_TEXT, "output_dimensionality": 100000},
            },
            RecordError(
                "dimensions",
                "gemini-embedding-001 makes vectors of 128 to 3072 dimensions, got 100000",
                "request.output_dimensionality",
            ),
        ),
        (
            {
                "key": "g",
                "model": "gemini-embedding-001",
                "request": {"content": GEMINI_TEXT, "outputDimensionality": 64},
            },
            RecordError(
                "dimensions",
                "gemini-embedding-001 makes vectors of 128 to 3072 dimensions, got 64",
                "request.outputDimensionality",
            ),
        ),
    ],
)
def test_refused_before_a_cent_is_spent(record: object, expected: RecordError) -> None:
    assert parse_record(record, CHECKED, now=NOW) == expected


@pytest.mark.parametrize(
    "record",
    [
        _openai("/v1/embeddings", model="text-embedding-3-small", input="x", dimensions=1536),
        _openai("/v1/embeddings", model="text-embedding-3-large", input="x", dimensions=3072),
        _openai("/v1/chat/completions", model="gpt-4o-mini", messages=CHAT, max_tokens=16384),
        {
            "key": "g",
            "model": "gemini-embedding-001",
            "request": {"content": GEMINI_TEXT, "output_dimensionality": 512},
        },
        {  # no published sizes: not checked
            "key": "g",
            "model": "gemini-embedding-2",
            "request": {"content": GEMINI_TEXT, "outputDimensionality": 99999},
        },
    ],
)
def test_within_the_model_limits_is_accepted(record: object) -> None:
    assert isinstance(parse_record(record, CHECKED, now=NOW), Request)


# --------------------------------------------------------------------------- provider files as is

PER_FORMAT = Defaults(
    source="spool",
    family_of=CATALOG.family_of,
    facts_of=CATALOG.get,
    default_models={
        "openai_chat": "gpt-4o-mini",
        "openai_embeddings": "text-embedding-3-small",
        "gemini_generate": "gemini-2.5-flash",
        "gemini_embed": "gemini-embedding-001",
    },
)
SEED = {  # the Gemini announcement's embeddings file, one line, unchanged
    "key": "request_1",
    "request": {"output_dimensionality": 512, "content": {"parts": [{"text": "Explain GenAI"}]}},
}


@pytest.mark.parametrize(
    ("record", "model", "endpoint"),
    [
        (SEED, "gemini-embedding-001", Endpoint.EMBED_CONTENT),
        (
            {"key": "g", "request": {"contents": [GEMINI_TEXT]}},
            "gemini-2.5-flash",
            Endpoint.GENERATE_CONTENT,
        ),
        (
            {**_openai("/v1/chat/completions", messages=CHAT)},
            "gpt-4o-mini",
            Endpoint.CHAT_COMPLETIONS,
        ),
        (_openai("/v1/embeddings", input="x"), "text-embedding-3-small", Endpoint.EMBEDDINGS),
        ({"id": "s", "prompt": "x"}, "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS),
        ({"id": "s", "text": "x"}, "text-embedding-3-small", Endpoint.EMBEDDINGS),
    ],
)
def test_each_format_takes_its_own_default_model(
    record: dict[str, object], model: str, endpoint: Endpoint
) -> None:
    item = parse_record(record, PER_FORMAT, now=NOW)
    assert isinstance(item, Request), item
    assert (item.model, item.endpoint) == (model, endpoint)
    if "request" in record:
        assert item.body == record["request"]  # kept verbatim
    if "body" in record:
        assert item.body == record["body"]  # the model is added on the wire, not here


def test_the_seed_file_fails_without_a_gemini_embedding_default() -> None:
    single = Defaults(
        source="spool",
        family_of=CATALOG.family_of,
        default_model="gpt-4o-mini",
        default_embedding_model="text-embedding-3-small",
    )
    assert parse_record(SEED, single, now=NOW) == RecordError(
        "unknown_model",
        "the source's default model 'text-embedding-3-small' is not a Gemini model; "
        "a Gemini batch line needs one",
        "model",
    )


def test_openai_multi_part_content_is_accepted() -> None:
    content = [{"type": "text", "text": "Describe"}, {"type": "text", "text": "this ticket."}]
    record = _openai(
        "/v1/chat/completions", model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
    )
    item = parse_record(record, PER_FORMAT, now=NOW)
    assert isinstance(item, Request)
    assert item.body["messages"][0]["content"] == content


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("/v1/completions", "/v1/completions is not supported: the legacy completions endpoint"),
        ("/v1/moderations", "/v1/moderations is not supported: moderations are free"),
    ],
)
def test_other_openai_batch_endpoints_are_refused_with_a_reason(url: str, why: str) -> None:
    item = parse_record(_openai(url, model="gpt-4o-mini", input="x"), PER_FORMAT, now=NOW)
    assert isinstance(item, RecordError)
    assert (item.reason, item.field) == ("bad_endpoint", "url")
    assert item.message.startswith(why)
