"""Interactive Gemini calls against the sandbox through the unmodified SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from planner.sandbox import RunningSandbox
from planner.sandbox.usage import count_tokens


def test_generate_content_reports_usage_by_the_documented_rule(gemini: Any) -> None:
    response = gemini.models.generate_content(
        model="gemini-2.5-flash-lite", contents="Hello, world!"
    )
    usage = response.usage_metadata
    assert usage.prompt_token_count == 9  # 4 pieces -> ceil(5.2) = 6, + 3 per message
    assert usage.candidates_token_count == count_tokens(response.text)
    assert usage.thoughts_token_count is None  # Flash-Lite does not think
    assert usage.total_token_count == 9 + usage.candidates_token_count
    again = gemini.models.generate_content(model="gemini-2.5-flash-lite", contents="Hello, world!")
    assert again.text == response.text


def test_thinking_models_report_thoughts_and_honour_a_zero_budget(gemini: Any) -> None:
    thinking = gemini.models.generate_content(model="gemini-2.5-pro", contents="why?")
    assert thinking.usage_metadata.thoughts_token_count > 0
    off = gemini.models.generate_content(
        model="gemini-2.5-flash",
        contents="why?",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_budget=0), max_output_tokens=2
        ),
    )
    assert off.usage_metadata.thoughts_token_count is None
    assert off.usage_metadata.candidates_token_count <= 2


def test_embed_content_and_count_tokens(gemini: Any) -> None:
    result = gemini.models.embed_content(
        model="gemini-embedding-001",
        contents=["alpha beta", "gamma"],
        config={"output_dimensionality": 16},
    )
    assert [len(e.values) for e in result.embeddings] == [16, 16]
    assert result.embeddings[0].values != result.embeddings[1].values
    counted = gemini.models.count_tokens(model="gemini-2.5-flash", contents="one two three")
    assert counted.total_tokens == count_tokens("one two three") + 3


def test_interactive_calls_are_billed_by_key_header(gemini: Any, sandbox: RunningSandbox) -> None:
    for _ in range(2):
        gemini.models.generate_content(
            model="gemini-2.5-flash",
            contents="hi",
            config={"http_options": {"headers": {"x-planner-key": "req-7"}}},
        )
    gemini.models.count_tokens(model="gemini-2.5-flash", contents="not billed")
    ledger = httpx.get(f"{sandbox.url}/_sandbox/ledger").json()
    assert [(r["key"], r["lane"], r["times_billed"]) for r in ledger["requests"]] == [
        ("req-7", "interactive", 2)
    ]


def test_unknown_model_and_wrong_model_type_are_refused(gemini: Any) -> None:
    with pytest.raises(errors.ClientError) as caught:
        gemini.models.generate_content(model="no-such-model", contents="x")
    assert caught.value.code == 404
    with pytest.raises(errors.ClientError) as caught:
        gemini.models.embed_content(model="gemini-2.5-flash", contents="x")
    assert caught.value.code == 400


def test_async_interactive_calls(sandbox: RunningSandbox) -> None:
    client = genai.Client(api_key="t", http_options={"base_url": sandbox.url})  # v1

    async def flow() -> tuple[str | None, int, int | None]:
        generated = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="a")
        embedded = await client.aio.models.embed_content(model="gemini-embedding-001", contents="a")
        counted = await client.aio.models.count_tokens(model="gemini-2.5-flash", contents="a")
        assert embedded.embeddings is not None and embedded.embeddings[0].values is not None
        return generated.text, len(embedded.embeddings[0].values), counted.total_tokens

    text, dims, total = asyncio.run(flow())
    assert text and dims == 8 and total == 5
