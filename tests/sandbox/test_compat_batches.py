"""Gemini's OpenAI-compatibility surface (``/v1beta/openai/``): batches through the ``openai``
SDK with the input uploaded — and the results downloaded — through google-genai's native Files
API, Google error envelopes, and the documented lack of a Files API on the compat path
(specs/openai-batch-api.md §8, §11; specs/gemini-batch-api.md §10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import httpx
import openai
import pytest
from google.genai import types

from planner.sandbox import FaultPlan, RunningSandbox
from planner.sandbox.openai_common import reset_settings, settings_for

CHAT: Final = "/v1/chat/completions"
MODEL = "gemini-2.5-flash"
EMBED = "gemini-embedding-001"


@pytest.fixture(autouse=True)
def _defaults(sandbox: RunningSandbox) -> None:
    reset_settings(sandbox.state)


@pytest.fixture
def compat(sandbox: RunningSandbox) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=sandbox.url + "/v1beta/openai/", max_retries=0)


def _upload(gemini: Any, tmp_path: Path, rows: list[dict[str, Any]]) -> str:
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    uploaded = gemini.files.upload(
        file=str(path), config=types.UploadFileConfig(display_name="in", mime_type="jsonl")
    )
    assert uploaded.name.startswith("files/")
    return str(uploaded.name)


def _chat_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": CHAT,
            "body": {"model": MODEL, "messages": [{"role": "user", "content": f"q{i}"}]},
        }
        for i in range(n)
    ]


def test_chat_batch_round_trip(
    sandbox: RunningSandbox, gemini: Any, compat: openai.OpenAI, tmp_path: Path
) -> None:
    sandbox.state.clock.seconds_per_state = 10
    file_name = _upload(gemini, tmp_path, _chat_rows(3))
    batch = compat.batches.create(
        input_file_id=file_name,
        endpoint=CHAT,
        completion_window="24h",
        metadata={"planner_batch_id": "pb-c"},
    )
    assert batch.id.startswith("batches/")
    assert batch.status == "validating" and batch.input_file_id == file_name
    sandbox.state.clock.advance(30)
    done = compat.batches.retrieve(batch.id)  # the SDK sends batches%2F<id>
    assert done.status == "completed"
    assert done.output_file_id and done.output_file_id.startswith("files/")
    assert [b.id for b in compat.batches.list()] == [batch.id]

    content = gemini.files.download(file=done.output_file_id)
    lines = [json.loads(line) for line in content.decode().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["c0", "c1", "c2"]
    assert all(line["response"]["body"]["model"] == MODEL for line in lines)

    ledger = httpx.get(sandbox.url + "/_sandbox/ledger").json()
    assert [(b["name"], b["our_id"], b["surface"]) for b in ledger["batches"]] == [
        (batch.id, "pb-c", "compat")
    ]
    assert {r["key"]: r["times_billed"] for r in ledger["requests"]} == {
        "c0": 1,
        "c1": 1,
        "c2": 1,
    }


def test_embeddings_batch(gemini: Any, compat: openai.OpenAI, tmp_path: Path) -> None:
    rows = [
        {
            "custom_id": "e0",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": EMBED, "input": "The food was delicious"},
        }
    ]
    name = _upload(gemini, tmp_path, rows)
    batch = compat.batches.create(
        input_file_id=name, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = compat.batches.retrieve(batch.id)
    [line] = gemini.files.download(file=done.output_file_id).decode().splitlines()
    body = json.loads(line)["response"]["body"]
    assert body["object"] == "list" and len(body["data"][0]["embedding"]) == 8


def test_cancel_and_terminal_cancel(
    sandbox: RunningSandbox, gemini: Any, compat: openai.OpenAI, tmp_path: Path
) -> None:
    sandbox.state.clock.seconds_per_state = 10
    batch = compat.batches.create(
        input_file_id=_upload(gemini, tmp_path, _chat_rows(2)),
        endpoint=CHAT,
        completion_window="24h",
    )
    assert compat.batches.cancel(batch.id).status == "cancelling"
    sandbox.state.clock.advance(10)
    assert compat.batches.retrieve(batch.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError) as caught:
        compat.batches.cancel(batch.id)
    assert caught.value.body == [
        {
            "error": {
                "code": 400,
                "message": "Cannot cancel a batch with status 'cancelled'.",
                "status": "FAILED_PRECONDITION",
            }
        }
    ]


def test_files_are_not_served_on_the_compat_path(
    sandbox: RunningSandbox, compat: openai.OpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        compat.files.create(file=("a.jsonl", b"{}\n", "application/jsonl"), purpose="batch")
    assert caught.value.code is None  # an array body carries no code for the SDK (§8)
    assert isinstance(caught.value.body, list)
    assert caught.value.body[0]["error"]["status"] == "NOT_FOUND"
    with pytest.raises(openai.NotFoundError):
        compat.files.content("files/anything")

    settings_for(sandbox.state).compat_files = True
    created = compat.files.create(file=("a.jsonl", b"{}\n", "application/jsonl"), purpose="batch")
    assert created.id.startswith("files/")
    assert compat.files.content(created.id).content == b"{}\n"
    assert [f.id for f in compat.files.list()] == [created.id]


def test_errors_use_google_envelopes(sandbox: RunningSandbox, compat: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        compat.batches.create(input_file_id="files/nope", endpoint=CHAT, completion_window="24h")
    assert caught.value.body[0]["error"]["code"] == 404  # type: ignore[index]
    settings_for(sandbox.state).compat_error_array = False
    with pytest.raises(openai.BadRequestError) as refused:
        compat.batches.create(
            input_file_id="files/nope", endpoint="/v1/responses", completion_window="24h"
        )
    assert refused.value.body == {
        "code": 400,
        "message": refused.value.body["message"],  # type: ignore[index]
        "status": "INVALID_ARGUMENT",
    }
    assert refused.value.type is None


def test_queue_limit_is_refused_at_create(
    sandbox: RunningSandbox, gemini: Any, compat: openai.OpenAI, tmp_path: Path
) -> None:
    sandbox.state.limits.enqueued_tokens[MODEL] = 1
    name = _upload(gemini, tmp_path, _chat_rows(2))
    with pytest.raises(openai.RateLimitError) as caught:
        compat.batches.create(input_file_id=name, endpoint=CHAT, completion_window="24h")
    assert caught.value.body[0]["error"]["status"] == "RESOURCE_EXHAUSTED"  # type: ignore[index]


def test_validation_failure(gemini: Any, compat: openai.OpenAI, tmp_path: Path) -> None:
    rows = _chat_rows(2)
    rows[1]["body"]["model"] = "gemini-2.5-pro"
    batch = compat.batches.create(
        input_file_id=_upload(gemini, tmp_path, rows), endpoint=CHAT, completion_window="24h"
    )
    failed = compat.batches.retrieve(batch.id)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data
    assert (failed.errors.data[0].code, failed.errors.data[0].line) == ("model_mismatch", 2)


def test_interactive_calls_and_faults(sandbox: RunningSandbox, compat: openai.OpenAI) -> None:
    chat = compat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello, world!"}]
    )
    assert chat.usage is not None and chat.usage.prompt_tokens == 9
    embedded = compat.embeddings.create(model=EMBED, input=["a", "b c"])
    assert [len(d.embedding) for d in embedded.data] == [8, 8]
    ledger = httpx.get(sandbox.url + "/_sandbox/ledger").json()
    assert [r["lane"] for r in ledger["requests"]] == ["interactive", "interactive"]

    sandbox.state.faults = FaultPlan.from_spec("rate_limit=1,rate_limit_on=compat,retry_after=0.01")
    with pytest.raises(openai.RateLimitError) as caught:
        compat.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body[0]["error"]["code"] == 429  # type: ignore[index]
    native = openai.OpenAI(api_key="test", base_url=sandbox.url + "/v1", max_retries=0)
    assert native.files.list().data == []  # the OpenAI surface is not targeted
