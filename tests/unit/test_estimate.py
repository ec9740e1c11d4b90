"""Token estimates: the OpenAI Cookbook vectors exactly (real tiktoken, shared BPE files), the
Gemini chars/4 rule, output budgets, and the offline fallback that warns once and never crashes."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from planner.config.prices import shipped_catalog
from planner.core.catalog import ModelEntry
from planner.core.estimate import chars4, embedding_inputs, estimate, output_tokens
from planner.core.model import Endpoint, Request
from planner.tokenizers import (
    EVENT_TOKENIZER_UNAVAILABLE,
    CountCache,
    TiktokenCounter,
    expected_cache_file,
)
from tests.conftest import SHARED_TIKTOKEN

SHARED = SHARED_TIKTOKEN
NOW = datetime(2026, 11, 28, tzinfo=UTC)

SIX_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]
WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]


def _request(
    model: str,
    endpoint: Endpoint,
    body: Mapping[str, Any],
    max_output_tokens: int | None = None,
) -> Request:
    return Request("src", "k1", model, endpoint, body, NOW, max_output_tokens=max_output_tokens)


class _Counter:
    """A real, tiny counter: one token per whitespace-separated word, for rule arithmetic."""

    def __init__(self, encoding: str | None = "words") -> None:
        self._encoding = encoding

    def encoding_for(self, model: str) -> str | None:
        return self._encoding

    def count(self, text: str, encoding: str) -> int | None:
        return len(text.split())


class _Unavailable(_Counter):
    def count(self, text: str, encoding: str) -> int | None:
        return None


@pytest.fixture(autouse=True)
def _restore_tiktoken_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter writes TIKTOKEN_CACHE_DIR when given a cache dir; undo it after each test."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(SHARED))


@pytest.fixture
def counter() -> TiktokenCounter:
    return TiktokenCounter(shipped_catalog(), cache_dir=SHARED)


def _entry(model: str) -> ModelEntry | None:
    return shipped_catalog().get(model)


# --- the cookbook vectors, exactly (OC, reproduced with js-tiktoken; spec §5.1) --------------


@pytest.mark.parametrize(
    ("model", "messages", "tools", "expected"),
    [
        ("gpt-4", SIX_MESSAGES, None, 129),  # cl100k_base, messages only
        ("gpt-4o", SIX_MESSAGES, None, 124),  # o200k_base
        ("gpt-4o-mini", SIX_MESSAGES, None, 124),
        ("gpt-4", WEATHER_MESSAGES, WEATHER_TOOLS, 105),  # 10 tokens per function
        ("gpt-4o", WEATHER_MESSAGES, WEATHER_TOOLS, 101),  # 7 tokens per function
    ],
)
def test_cookbook_chat_vectors(
    counter: TiktokenCounter,
    model: str,
    messages: list[dict[str, str]],
    tools: list[dict[str, Any]] | None,
    expected: int,
) -> None:
    body: dict[str, Any] = {"messages": messages}
    if tools:
        body["tools"] = tools
    result = estimate(
        _request(model, Endpoint.CHAT_COMPLETIONS, body),
        _entry(model),
        counter,
        default_output_tokens=0,
    )
    assert result.input_tokens == expected
    assert result.method.startswith("tiktoken:")


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("tiktoken is great!", "cl100k_base", 6),  # [83, 1609, 5963, 374, 2294, 0]
        ("tiktoken is great!", "o200k_base", 6),  # [83, 8251, 2488, 382, 2212, 0]
        ("antidisestablishmentarianism", "cl100k_base", 6),
        ("antidisestablishmentarianism", "o200k_base", 6),
        ("2 + 2 = 4", "cl100k_base", 7),
        ("2 + 2 = 4", "o200k_base", 7),
        ("お誕生日おめでとう", "cl100k_base", 9),
        ("お誕生日おめでとう", "o200k_base", 8),
    ],
)
def test_cookbook_string_vectors(
    counter: TiktokenCounter, text: str, encoding: str, expected: int
) -> None:
    assert counter.count(text, encoding) == expected


def test_encoding_for_prefers_catalog_then_tiktoken(counter: TiktokenCounter) -> None:
    assert counter.encoding_for("text-embedding-3-small") == "cl100k_base"  # catalog
    assert counter.encoding_for("gpt-4") == "cl100k_base"  # tiktoken's model table
    assert counter.encoding_for("gemini-2.5-flash") is None
    assert TiktokenCounter().encoding_for("gpt-4o") == "o200k_base"


def test_special_token_text_is_counted_not_rejected(counter: TiktokenCounter) -> None:
    assert counter.count("<|endoftext|>", "cl100k_base") == 7  # ordinary text, no ValueError


@pytest.mark.parametrize("fast", [True, False])
def test_repeated_texts_are_counted_once_and_alike(fast: bool) -> None:
    counter = TiktokenCounter(shipped_catalog(), cache_dir=SHARED, fast=fast)
    prompt = "お誕生日おめでとう、" * 26  # 260 characters: cached by either
    first = counter.count(prompt, "o200k_base")
    again = counter.count("".join(list(prompt)), "o200k_base")  # an equal, distinct string
    assert first == again
    in_cl100k = counter.count(prompt, "cl100k_base")
    assert in_cl100k is not None and first is not None and in_cl100k > first
    assert counter.count(prompt, "o200k_base") == first
    assert counter._cache.get(prompt, "o200k_base") == first  # cached per encoding
    assert counter._cache.get(prompt, "cl100k_base") == in_cl100k
    assert counter._cache.get(prompt, "p50k_base") is None
    short = "お誕生日おめでとう、" * 4  # 40 characters: toktok counts it sooner than a look-up
    assert counter.count(short, "o200k_base") == 33
    assert (counter._cache.get(short, "o200k_base") is None) is fast


def test_count_cache_is_bounded_by_characters() -> None:
    cache = CountCache(max_chars=1000)
    texts = [f"{i:04d}" + "x" * 96 for i in range(30)]  # 100 characters each
    for i, text in enumerate(texts):
        cache.put(text, "e", i)
        assert cache.chars <= 1000
    assert cache.chars == 1000 and len(cache.counts) == 10
    assert cache.get(texts[0], "e") is None  # the oldest left first
    assert cache.get(texts[29], "e") == 29
    assert cache.get(texts[20], "e") == 20  # used: now the most recent
    cache.put("y" * 100, "e", 99)
    assert cache.get(texts[21], "e") is None  # the least recently used left
    assert cache.get(texts[20], "e") == 20
    cache.put("user", "e", 1)  # roles and names repeat most of all
    assert cache.get("user", "e") == 1
    cache.put("z" * 251, "e", 1)
    assert cache.get("z" * 251, "e") is None  # over a quarter of the cache: not remembered


# --- rule arithmetic with a one-token-per-word counter ---------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "expected", "rule"),
    [
        # 2 messages: 3+3 + priming 3 + words: "user"1 "a b"2 "assistant"1 "c"1 + name 1+"n"1 = 16
        (
            Endpoint.CHAT_COMPLETIONS,
            {
                "messages": [
                    {"role": "user", "content": "a b"},
                    {"role": "assistant", "content": "c", "name": "n"},
                ]
            },
            16,
            "openai-chat",
        ),
        # parts: text parts counted, image skipped; null content counts nothing;
        # tool_calls as compact JSON (one "word"): 3+3+3 + user 1 + "x y"2 + assistant 1 + 1 = 14
        (
            Endpoint.CHAT_COMPLETIONS,
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "x y"},
                            {"type": "image_url", "image_url": {"url": "data:..."}},
                        ],
                    },
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
                ]
            },
            14,
            "openai-chat",
        ),
        # legacy functions, no description, no properties: priming 3 + end 12 + function 7
        # + "f:" 1 = 23
        (
            Endpoint.CHAT_COMPLETIONS,
            {"messages": [], "functions": [{"name": "f"}]},
            23,
            "openai-chat",
        ),
        # non-function tools are ignored: priming 3 only
        (Endpoint.CHAT_COMPLETIONS, {"tools": [{"type": "web_search"}, "junk"]}, 3, "openai-chat"),
        # Responses: instructions as system (3 + "system" 1 + "be brief" 2) + input string as
        # user (3 + 1 + "hi there" 2) + priming 3 = 15
        (
            Endpoint.RESPONSES,
            {"instructions": "be brief", "input": "hi there"},
            15,
            "openai-responses",
        ),
        # Responses: input list of messages, a flat function tool with an enum property:
        # priming 3 + message 3 + "user" 1 + "q" 1 = 8; tools: end 12 + fn 7 + "g:d" 1
        # + properties 3 + property 3 + enum -3 + 2 items (3+1 each) 8 + "u:string:" 1 = 32
        (
            Endpoint.RESPONSES,
            {
                "input": [
                    {
                        "type": "message",  # framing: not counted
                        "role": "user",
                        "content": [{"type": "input_text", "text": "q"}],
                    }
                ],
                "tools": [
                    {
                        "type": "function",
                        "name": "g",
                        "description": "d.",
                        "parameters": {"properties": {"u": {"type": "string", "enum": ["a", "b"]}}},
                    }
                ],
            },
            40,
            "openai-responses",
        ),
        # embeddings: strings summed, no overhead: "a b" 2 + "c" 1 = 3
        (Endpoint.EMBEDDINGS, {"input": ["a b", "c"]}, 3, "openai-embeddings"),
        (Endpoint.EMBEDDINGS, {"input": "a b c"}, 3, "openai-embeddings"),
        # token arrays count their length: [1,2,3] = 3; [[1,2],[3]] = 3
        (Endpoint.EMBEDDINGS, {"input": [1, 2, 3]}, 3, "openai-embeddings"),
        (Endpoint.EMBEDDINGS, {"input": [[1, 2], [3]]}, 3, "openai-embeddings"),
        (Endpoint.EMBEDDINGS, {}, 0, "openai-embeddings"),
    ],
)
def test_openai_rules(endpoint: Endpoint, body: dict[str, Any], expected: int, rule: str) -> None:
    result = estimate(_request("m", endpoint, body), None, _Counter(), default_output_tokens=0)
    assert (result.input_tokens, result.method) == (expected, f"tiktoken:words/{rule}")


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        # systemInstruction "abcd" 1 + contents "abcdefghi" ceil(9/4)=3 + "é" (2 bytes) 1 = 5
        (
            Endpoint.GENERATE_CONTENT,
            {
                "systemInstruction": {"parts": [{"text": "abcd"}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "abcdefghi"}, {"inlineData": {}}]},
                    {"role": "model", "parts": [{"text": "é"}]},
                ],
            },
            5,
        ),
        # snake_case system instruction; functionCall as JSON {"name":"f"} (12 bytes) 3;
        # tools JSON [{"x":1}] (9 bytes) 3 => 1 + 3 + 3 = 7
        (
            Endpoint.GENERATE_CONTENT,
            {
                "system_instruction": {"parts": [{"text": "abc"}]},
                "contents": [{"parts": [{"functionCall": {"name": "f"}}]}],
                "tools": [{"x": 1}],
            },
            7,
        ),
        # embedContent: title "ab" 1 + text "abcde" 2 = 3
        (Endpoint.EMBED_CONTENT, {"title": "ab", "content": {"parts": [{"text": "abcde"}]}}, 3),
        # batchEmbedContents-style requests list: 1 + 1 = 2
        (
            Endpoint.EMBED_CONTENT,
            {"requests": [{"content": {"parts": [{"text": "a"}]}}] * 2},
            2,
        ),
    ],
)
def test_gemini_rules_chars4(endpoint: Endpoint, body: dict[str, Any], expected: int) -> None:
    result = estimate(
        _request("gemini-2.5-flash", endpoint, body),
        _entry("gemini-2.5-flash"),
        _Counter(None),
        default_output_tokens=0,
    )
    assert result.input_tokens == expected
    assert result.method.startswith("chars4/gemini-")


def test_chars4_rule() -> None:
    assert [chars4(""), chars4("abcd"), chars4("abcde"), chars4("お")] == [0, 1, 2, 1]


def test_catalog_encoding_wins_over_counter() -> None:
    entry = _entry("gpt-4o")
    result = estimate(
        _request("gpt-4o", Endpoint.EMBEDDINGS, {"input": "a"}),
        entry,
        _Counter("other"),
        default_output_tokens=0,
    )
    assert result.method == "tiktoken:o200k_base/openai-embeddings"


def test_unavailable_counter_falls_back_to_chars4() -> None:
    # "abcdefgh" 8 bytes -> 2 tokens by chars/4
    result = estimate(
        _request("m", Endpoint.EMBEDDINGS, {"input": ["abcdefgh"]}),
        None,
        _Unavailable(),
        default_output_tokens=0,
    )
    assert (result.input_tokens, result.method) == (2, "chars4-fallback:words/openai-embeddings")


# --- output budget ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "own", "expected"),
    [
        (Endpoint.CHAT_COMPLETIONS, {"max_tokens": 50}, 7, 7),  # the request's own wins
        (Endpoint.CHAT_COMPLETIONS, {"max_tokens": 50}, None, 50),
        (Endpoint.CHAT_COMPLETIONS, {"max_completion_tokens": 60, "max_tokens": 50}, None, 60),
        (Endpoint.RESPONSES, {"max_output_tokens": 70}, None, 70),
        (Endpoint.GENERATE_CONTENT, {"generationConfig": {"maxOutputTokens": 80}}, None, 80),
        (Endpoint.GENERATE_CONTENT, {"generation_config": {"max_output_tokens": 90}}, None, 90),
        (Endpoint.CHAT_COMPLETIONS, {"max_tokens": True}, None, 1000),  # not a count: default
        (Endpoint.CHAT_COMPLETIONS, {"max_tokens": -1}, None, 1000),
        (Endpoint.CHAT_COMPLETIONS, {}, None, 1000),
        (Endpoint.EMBEDDINGS, {"max_tokens": 50}, 7, 0),  # embeddings never output tokens
        (Endpoint.EMBED_CONTENT, {}, None, 0),
    ],
)
def test_output_tokens(
    endpoint: Endpoint, body: dict[str, Any], own: int | None, expected: int
) -> None:
    assert output_tokens(_request("m", endpoint, body, own), 1000) == expected


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        (Endpoint.EMBEDDINGS, {"input": "a"}, 1),
        (Endpoint.EMBEDDINGS, {"input": ["a", "b", "c"]}, 3),
        (Endpoint.EMBEDDINGS, {"input": [1, 2, 3]}, 1),  # one token array
        (Endpoint.EMBEDDINGS, {"input": [[1], [2]]}, 2),
        (Endpoint.EMBEDDINGS, {"input": []}, 0),
        (Endpoint.EMBEDDINGS, {}, 0),
        (Endpoint.EMBED_CONTENT, {"content": {}}, 1),
        (Endpoint.EMBED_CONTENT, {"requests": [{}, {}]}, 2),
        (Endpoint.CHAT_COMPLETIONS, {"input": "a"}, 0),
    ],
)
def test_embedding_inputs(endpoint: Endpoint, body: dict[str, Any], expected: int) -> None:
    assert embedding_inputs(_request("m", endpoint, body)) == expected


# --- offline fallback of the real adapter ---------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record (and refuse) any connection attempt, to prove none is made."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == EVENT_TOKENIZER_UNAVAILABLE]


def test_missing_bpe_file_warns_once_and_falls_back(
    tmp_path: Path, no_network: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    counter = TiktokenCounter(shipped_catalog(), cache_dir=tmp_path, fast=False)
    request = _request("gpt-5-mini", Endpoint.CHAT_COMPLETIONS, {"messages": SIX_MESSAGES})
    with caplog.at_level(logging.WARNING, logger="planner.tokenizers"):
        first = estimate(request, _entry("gpt-5-mini"), counter, default_output_tokens=10)
        second = estimate(request, _entry("gpt-5-mini"), counter, default_output_tokens=10)
    assert first == second
    assert first.method == "chars4-fallback:o200k_base/openai-chat"
    assert first.input_tokens > 0
    records = _warnings(caplog)
    assert len(records) == 1
    assert records[0].__dict__["encoding"] == "o200k_base"
    assert records[0].__dict__["fallback"] == "chars/4"
    assert no_network == []


def test_corrupt_bpe_file_is_not_used(
    tmp_path: Path, no_network: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    path = expected_cache_file("cl100k_base", tmp_path)
    assert path is not None
    path.write_bytes(b"not a bpe file\n")
    counter = TiktokenCounter(cache_dir=tmp_path, fast=False)
    with caplog.at_level(logging.WARNING, logger="planner.tokenizers"):
        assert counter.count("hello", "cl100k_base") is None
    assert "SHA-256" in _warnings(caplog)[0].getMessage()
    assert path.read_bytes() == b"not a bpe file\n"  # tiktoken never got to delete and refetch
    assert no_network == []


@pytest.mark.parametrize(
    ("encoding", "env", "problem"),
    [
        ("gpt2", None, "no known BPE file"),  # tiktoken would download two files: refused
        ("no_such_encoding", None, "no known BPE file"),
        ("o200k_base", "", "caching disabled"),  # TIKTOKEN_CACHE_DIR="" means always download
    ],
)
def test_unloadable_encodings(
    monkeypatch: pytest.MonkeyPatch,
    no_network: list[object],
    caplog: pytest.LogCaptureFixture,
    encoding: str,
    env: str | None,
    problem: str,
) -> None:
    if env is not None:
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", env)
    with caplog.at_level(logging.WARNING, logger="planner.tokenizers"):
        assert TiktokenCounter(fast=False).count("hello", encoding) is None
    assert problem in _warnings(caplog)[0].getMessage()
    assert no_network == []


def test_default_cache_dir_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from planner import tokenizers

    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))
    assert tokenizers._cache_dir() == tmp_path
    monkeypatch.delenv("DATA_GYM_CACHE_DIR")
    assert tokenizers._cache_dir() is not None
    assert tokenizers._cache_dir().name == "data-gym-cache"  # type: ignore[union-attr]


def test_tiktoken_error_is_caught(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A present, valid file that tiktoken still refuses (here: an unregistered name) warns."""
    from planner import tokenizers

    monkeypatch.setitem(tokenizers._FILES, "cl100k_copy", tokenizers._FILES["cl100k_base"])
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(SHARED))
    with caplog.at_level(logging.WARNING, logger="planner.tokenizers"):
        assert TiktokenCounter().count("hello", "cl100k_copy") is None
    assert "ValueError" in _warnings(caplog)[0].getMessage()


def test_operator_cache_dir_wins_over_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[object]
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: would fail
    counter = TiktokenCounter(cache_dir=SHARED, fast=False)
    assert counter.count("hello", "o200k_base") == 1
    # planner reads the operator's file itself: the process environment is left alone
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path)
    assert no_network == []
