"""Gemini-format lines translated for Gemini's OpenAI compatibility layer, field by field; a
field with no equivalent is refused by name, never dropped."""

from __future__ import annotations

from typing import Any

import pytest

from planner.core.model import Endpoint
from planner.providers.base import BatchLine
from planner.providers.compat_wire import endpoint_for, to_openai

MODEL = "gemini-3.5-flash-lite"


def _line(endpoint: Endpoint, body: dict[str, Any], model: str = MODEL) -> BatchLine:
    return BatchLine(key="k1", model=model, endpoint=endpoint, body=body)


TRANSLATIONS = [
    (
        Endpoint.GENERATE_CONTENT,
        {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi "}, {"text": "there"}]},
                {"role": "model", "parts": [{"text": "Hello."}]},
                {"parts": [{"text": "Bye?"}]},
            ],
            "generationConfig": {
                "maxOutputTokens": 64,
                "temperature": 0.2,
                "topP": 0.9,
                "stopSequences": ["END"],
                "responseMimeType": "application/json",
            },
        },
        Endpoint.CHAT_COMPLETIONS,
        {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye?"},
            ],
            "max_tokens": 64,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": ["END"],
            "response_format": {"type": "json_object"},
        },
    ),
    (
        Endpoint.GENERATE_CONTENT,
        {"contents": [{"parts": [{"text": "x"}]}], "generation_config": {"max_output_tokens": 5}},
        Endpoint.CHAT_COMPLETIONS,
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 5},
    ),
    (
        Endpoint.EMBED_CONTENT,
        {"content": {"parts": [{"text": "doc"}]}, "outputDimensionality": 256},
        Endpoint.EMBEDDINGS,
        {"model": MODEL, "input": "doc", "dimensions": 256},
    ),
]


@pytest.mark.parametrize(("endpoint", "body", "to", "expected"), TRANSLATIONS)
def test_translation(
    endpoint: Endpoint, body: dict[str, Any], to: Endpoint, expected: dict[str, Any]
) -> None:
    translated = to_openai(_line(endpoint, body))
    assert translated.endpoint is to is endpoint_for(endpoint)
    assert translated.key == "k1" and translated.model == MODEL
    assert translated.body == expected


def test_openai_lines_pass_unchanged() -> None:
    line = _line(Endpoint.CHAT_COMPLETIONS, {"messages": [{"role": "user", "content": "x"}]})
    assert to_openai(line) is line


REFUSALS = [
    (
        Endpoint.GENERATE_CONTENT,
        {"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]},
        "request 'k1' (generateContent): 'tools': has no equivalent",
    ),
    (
        Endpoint.GENERATE_CONTENT,
        {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}]},
        "contents[0].parts[0]: only text parts can be sent",
    ),
    (
        Endpoint.GENERATE_CONTENT,
        {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"thinkingConfig": {}}},
        "generationConfig.thinkingConfig: has no equivalent",
    ),
    (
        Endpoint.EMBED_CONTENT,
        {"content": {"parts": [{"text": "x"}]}, "taskType": "RETRIEVAL_DOCUMENT"},
        "request 'k1' (embedContent): 'taskType': has no equivalent",
    ),
    (Endpoint.GENERATE_CONTENT, {"contents": []}, "needs a non-empty 'contents' list"),
]


@pytest.mark.parametrize(("endpoint", "body", "message"), REFUSALS)
def test_untranslatable_fields_are_refused_by_name(
    endpoint: Endpoint, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        to_openai(_line(endpoint, body))
    assert message in str(raised.value)
