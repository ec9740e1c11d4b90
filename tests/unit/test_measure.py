"""Measured once at intake equals measured the slow way: line bytes, tokens, fingerprints."""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.config.prices import shipped_catalog
from planner.core.estimate import estimate
from planner.core.model import BODY_NOT_LOADED, Endpoint, Request
from planner.pipeline.measure import (
    canonical_json,
    fingerprint,
    measure,
    measured_line_bytes,
    utf8_length,
)
from planner.pipeline.repeats import digest_of
from planner.providers import gemini_wire, openai_wire
from planner.providers.base import BatchLine
from planner.store.requests import body_json as store_body_json
from planner.tokenizers import TiktokenCounter

NOW = datetime(2026, 12, 6, tzinfo=UTC)
CATALOG = shipped_catalog()
COUNTER = TiktokenCounter(CATALOG, download=False)

texts = st.text(max_size=40)  # any Unicode but lone surrogates (intake refuses those)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
models = st.sampled_from(["gpt-4o-mini", "text-embedding-3-small", "gemini-3.5-flash-lite"])


def _request(key: str, model: str, endpoint: Endpoint, body: dict[str, Any]) -> Request:
    return Request("spool", key, model, endpoint, body, NOW)


def _written_line_bytes(request: Request) -> int:
    """What the providers' ``build_payload`` writes for this one request."""
    line = BatchLine(request.key, request.model, request.endpoint, request.body)
    if request.endpoint.wire.value == "gemini":
        return len(gemini_wire.encode_jsonl([gemini_wire.input_line(line.key, line.body)]))
    return openai_wire.build_payload("b", [line]).size_bytes


@settings(max_examples=300, deadline=None)
@given(
    key=st.text(min_size=1, max_size=20),
    endpoint=st.sampled_from([Endpoint.CHAT_COMPLETIONS, Endpoint.GENERATE_CONTENT]),
    extra=st.dictionaries(texts.filter(lambda k: k not in ("model", "stream")), json_values),
    with_model=st.booleans(),
)
def test_line_bytes_equal_the_written_line(
    key: str, endpoint: Endpoint, extra: dict[str, Any], with_model: bool
) -> None:
    body: dict[str, Any] = {**extra}
    if endpoint is Endpoint.CHAT_COMPLETIONS:
        body["messages"] = [{"role": "user", "content": key}]
        if with_model:
            body["model"] = "gpt-4o-mini"
        model = "gpt-4o-mini"
    else:
        body["contents"] = [{"parts": [{"text": key}]}]
        model = "gemini-3.5-flash-lite"
    request = _request(key, model, endpoint, body)
    measured = measure(request, CATALOG, COUNTER)
    assert measured.measured is not None
    assert measured.measured.line_bytes == _written_line_bytes(request)
    assert measured_line_bytes(request, "any") == _written_line_bytes(request)
    stored = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert measured.measured.body_bytes == len(stored)


@settings(max_examples=100, deadline=None)
@given(contents=st.lists(texts, min_size=1, max_size=4), model=models)
def test_measured_estimate_equals_the_counted_one(contents: list[str], model: str) -> None:
    if model.startswith("gemini"):
        endpoint, body = Endpoint.GENERATE_CONTENT, {"contents": [{"parts": [{"text": "x"}]}]}
        body["contents"] = [{"parts": [{"text": t}]} for t in contents]
    elif model.startswith("text-embedding"):
        endpoint, body = Endpoint.EMBEDDINGS, {"input": contents}
    else:
        endpoint = Endpoint.CHAT_COMPLETIONS
        body = {"messages": [{"role": "user", "content": t} for t in contents]}
    request = _request("k", model, endpoint, body)
    measured = measure(request, CATALOG, COUNTER)
    entry = CATALOG.get(model)
    slow = estimate(request, entry, COUNTER, default_output_tokens=7)
    fast = estimate(measured, entry, COUNTER, default_output_tokens=7)
    assert fast == slow
    assert measured == request  # measuring adds facts, never changes the request


def test_a_measured_count_for_another_encoding_is_not_used() -> None:
    body = {"messages": [{"role": "user", "content": "hello there, how are you?"}]}
    request = measure(
        _request("k", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, body), CATALOG, COUNTER
    )
    assert request.measured is not None and request.measured.encoding == "o200k_base"
    entry = CATALOG.get("gpt-4o-mini")
    assert entry is not None
    other = replace(entry, encoding="cl100k_base")
    found = estimate(request, other, COUNTER, default_output_tokens=1)
    assert found.method.startswith("tiktoken:cl100k_base")


@settings(max_examples=200, deadline=None)
@given(a=st.dictionaries(texts, json_values, max_size=4), b=st.dictionaries(texts, json_values))
def test_fingerprints_are_equal_exactly_for_equal_requests(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    reordered = dict(reversed(list(a.items())))
    first = _request("k", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, a)
    again = _request("k", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, reordered)
    other = _request("k", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, b)
    assert digest_of(first) == digest_of(again)
    assert digest_of(measure(first, CATALOG, COUNTER)) == digest_of(first)
    if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
        assert digest_of(first) != digest_of(other)
    other_model = _request("k", "gpt-4o", Endpoint.CHAT_COMPLETIONS, a)
    assert digest_of(other_model) != digest_of(first)


# texts that take both of canonical_json's ways: ASCII, beyond ASCII, DEL, control
# characters and a literal backslash-u (which the ASCII encoding also writes with a "\u")
tricky_texts = st.text(
    alphabet=st.sampled_from(["a", " ", '"', "\\", "u", "\x7f", "\x01", "\n", "é", "€", "𝄞"]),
    max_size=12,
)
# floats on both sides of where msgspec stops writing them as Python does (1e-4 and 1e16)
tricky_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1e-4, 9.999e-5, 2.5e-5, 1e16, 9999999999999998.0, 1e22, 0.7, -1.5, 1e-300]
)
tricky_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | tricky_texts
    | texts
    | tricky_floats,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_texts, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(body=st.dictionaries(tricky_texts, tricky_values, max_size=4))
def test_canonical_json_is_the_sorted_compact_utf8_text(body: dict[str, Any]) -> None:
    expected = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert canonical_json(body) == expected.encode()


@pytest.mark.parametrize(
    "body",
    [
        {"temperature": 1e16, "n": [1e-05, 1e-7]},  # json writes 1e+16, 1e-05, 1e-07
        {"x": float("nan"), "y": float("inf")},  # json writes NaN and Infinity
        {"t": (1, "a")},  # a tuple: written as a list by both
        {1: "a", "b": {2: 3}},  # keys that are not strings
        {"big": 2**70, "neg": -(2**64)},
        {"s": MappingProxyType({"b": 1, "a": 2})},
    ],
)
def test_canonical_json_of_what_msgspec_writes_otherwise_is_json_text(body: Any) -> None:
    try:
        expected = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    except TypeError:  # neither writes a mapping proxy
        with pytest.raises(TypeError):
            canonical_json(body)
        return
    assert canonical_json(body) == expected.encode()


def test_utf8_length_is_the_length_of_the_encoded_text() -> None:
    for text in ["", "abc", "héllo", "€𝄞", "\x7f"]:
        assert utf8_length(text) == len(text.encode())


def test_fingerprint_is_the_digest_stored_rows_hold() -> None:
    """Stored rows keep digests made by earlier versions: the bytes hashed never change."""
    body = {"messages": [{"role": "user", "content": "héllo"}], "model": "gpt-4o-mini"}
    data = "gpt-4o-mini\x00/v1/chat/completions\x00" + json.dumps(
        body, ensure_ascii=False, separators=(",", ":"), sort_keys=True
    )
    expected = hashlib.blake2b(data.encode(), digest_size=16).digest()
    got = fingerprint("gpt-4o-mini", "/v1/chat/completions", canonical_json(body))
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(contents=st.lists(texts, min_size=1, max_size=3), model=models)
def test_measured_without_body_has_the_same_facts(contents: list[str], model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": c} for c in contents]}
    request = _request("k", model, Endpoint.CHAT_COMPLETIONS, body)
    whole = measure(request, CATALOG, COUNTER)
    bodiless = measure(request, CATALOG, COUNTER, keep_body=False)
    assert bodiless.body is BODY_NOT_LOADED and whole.body == body
    assert bodiless.measured == whole.measured
    assert replace(bodiless, body=body) == whole
    assert measure(whole, CATALOG, COUNTER, keep_body=False).body is BODY_NOT_LOADED


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(tricky_texts, tricky_values, max_size=4))
def test_the_store_keeps_the_measured_text_of_a_kept_body(body: dict[str, Any]) -> None:
    """A body kept for the store travels with its measured text (compact JSON, keys sorted),
    across the read workers' pipe too, and the store writes that text, which decodes to the
    body: intake encodes no body again. A body not kept carries none."""
    request = _request("k", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, body)
    kept = pickle.loads(pickle.dumps(measure(request, CATALOG, COUNTER)))
    assert kept.measured is not None
    assert kept.measured.body_json == canonical_json(body).decode()
    assert store_body_json(kept) == kept.measured.body_json
    assert json.loads(store_body_json(kept)) == body
    assert len(store_body_json(kept).encode()) == kept.measured.body_bytes
    bodiless = measure(request, CATALOG, COUNTER, keep_body=False)
    assert bodiless.measured is not None and bodiless.measured.body_json is None
    unmeasured = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    assert store_body_json(request) == unmeasured  # as given, when intake did not measure it
