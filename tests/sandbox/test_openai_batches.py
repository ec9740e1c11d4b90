"""The sandbox's OpenAI Batches API and interactive endpoints through the unmodified ``openai``
SDK: life cycle on the manual clock, result files, validation failures, the enqueued-token
limit and ledger billing (specs/openai-batch-api.md §3, §5, §6, §7)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Final

import httpx
import openai
import pytest

from planner.sandbox import RunningSandbox, kernel, usage
from planner.sandbox.openai_common import reset_settings, settings_for

CHAT: Final = "/v1/chat/completions"
MODEL = "gpt-4o-mini"


@pytest.fixture(autouse=True)
def _defaults(sandbox: RunningSandbox) -> None:
    reset_settings(sandbox.state)


@pytest.fixture
def client(sandbox: RunningSandbox) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=sandbox.url + "/v1", max_retries=0)


def _chat_row(i: int, model: str = MODEL, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": f"question {i}"}], **extra}
    return {"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": body}


def _upload(client: openai.OpenAI, rows: list[Any]) -> str:
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    return client.files.create(file=("in.jsonl", data, "application/jsonl"), purpose="batch").id


def _create(client: openai.OpenAI, rows: list[Any], endpoint: str = CHAT, **kw: Any) -> Any:
    return client.batches.create(
        input_file_id=_upload(client, rows),
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        **kw,
    )


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line]


def _ledger(sandbox: RunningSandbox) -> dict[str, Any]:
    return httpx.get(sandbox.url + "/_sandbox/ledger").json()  # type: ignore[no-any-return]


def _billed(sandbox: RunningSandbox) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in _ledger(sandbox)["requests"]}


def test_life_cycle_on_the_clock(sandbox: RunningSandbox, client: openai.OpenAI) -> None:
    sandbox.state.clock.seconds_per_state = 10
    batch = _create(client, [_chat_row(i) for i in range(4)], metadata={"planner_batch_id": "pb-1"})
    assert batch.status == "validating"
    assert batch.metadata == {"planner_batch_id": "pb-1"}
    assert batch.expires_at == batch.created_at + 86400
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 0, "completed": 0, "failed": 0}
    assert batch.in_progress_at is None and batch.output_file_id is None and batch.errors is None
    raw = client.batches.with_raw_response.retrieve(batch.id).http_response.json()
    for field in ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at"):
        assert raw[field] is None  # present, null until reached (§6.1)
    assert {"cancelling_at", "cancelled_at", "usage", "model", "error_file_id"} <= set(raw)

    sandbox.state.clock.advance(15)
    running = client.batches.retrieve(batch.id)
    assert running.status == "in_progress"
    assert running.in_progress_at == batch.created_at + 10
    assert running.request_counts is not None
    assert running.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 0}

    sandbox.state.clock.advance(10)
    assert client.batches.retrieve(batch.id).status == "finalizing"
    sandbox.state.clock.advance(10)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.completed_at == batch.created_at + 30
    assert done.error_file_id is None
    assert done.request_counts is not None
    assert done.request_counts.model_dump() == {"total": 4, "completed": 4, "failed": 0}

    lines = _lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == ["r0", "r1", "r2", "r3"]
    first = next(line for line in lines if line["custom_id"] == "r0")
    assert first["error"] is None and first["response"]["status_code"] == 200
    text, prompt, output = usage.fake_completion(MODEL, _chat_row(0)["body"])
    body = first["response"]["body"]
    assert body["choices"][0]["message"]["content"] == text
    assert body["usage"]["prompt_tokens"] == prompt
    assert body["usage"]["completion_tokens"] == output
    assert done.usage is not None
    assert done.usage.total_tokens == sum(
        x["response"]["body"]["usage"]["total_tokens"] for x in lines
    )
    assert client.files.retrieve(done.output_file_id or "").purpose == "batch_output"

    client.batches.retrieve(batch.id)  # polling again bills nothing more
    billed = _billed(sandbox)
    assert {k: (v["lane"], v["times_billed"]) for k, v in billed.items()} == {
        f"r{i}": ("batch", 1) for i in range(4)
    }
    assert billed["r0"]["usage"]["input_tokens"] == prompt
    [recorded] = _ledger(sandbox)["batches"]
    assert (recorded["name"], recorded["our_id"], recorded["model"]) == (batch.id, "pb-1", MODEL)


def test_embeddings_and_responses_batches(client: openai.OpenAI) -> None:
    rows = [
        {
            "custom_id": "e0",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": ["one two", "three"]},
        }
    ]
    emb = _create(client, rows, endpoint="/v1/embeddings")
    [line] = _lines(client, client.batches.retrieve(emb.id).output_file_id)
    body = line["response"]["body"]
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 5}  # ceil(2.6) + ceil(1.3)

    rows = [
        {
            "custom_id": "p0",
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": MODEL, "input": "Hello, world!", "max_output_tokens": 5},
        }
    ]
    resp = _create(client, rows, endpoint="/v1/responses")
    [line] = _lines(client, client.batches.retrieve(resp.id).output_file_id)
    answer = line["response"]["body"]
    assert answer["object"] == "response"
    assert answer["usage"]["input_tokens"] == 9  # 6 tokens + 3 per-message overhead
    assert answer["usage"]["output_tokens"] <= 5


def test_list_pages_newest_first(client: openai.OpenAI) -> None:
    file_id = _upload(client, [_chat_row(0)])
    ids = [
        client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h").id
        for _ in range(23)
    ]
    page = client.batches.list(limit=10)
    assert [b.id for b in page.data] == ids[::-1][:10]
    assert page.has_more is True
    raw = client.batches.with_raw_response.list(limit=10).http_response.json()
    assert (raw["first_id"], raw["last_id"]) == (ids[22], ids[13])
    assert [b.id for b in client.batches.list(limit=10)] == ids[::-1]  # three pages
    last = client.batches.list(limit=10, after=ids[3])
    assert [b.id for b in last.data] == ids[2::-1] and last.has_more is False
    assert len(client.batches.list().data) == 20  # default limit


def test_cancel_keeps_partial_results(sandbox: RunningSandbox, client: openai.OpenAI) -> None:
    sandbox.state.clock.seconds_per_state = 10
    batch = _create(client, [_chat_row(i) for i in range(4)])
    sandbox.state.clock.advance(15)  # half of the lines have run
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at == batch.created_at + 15
    sandbox.state.clock.advance(10)
    cancelled = client.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at == batch.created_at + 25
    assert cancelled.request_counts is not None
    assert cancelled.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 0}
    done = {line["custom_id"] for line in _lines(client, cancelled.output_file_id)}
    never = _lines(client, cancelled.error_file_id)
    assert done == {"r0", "r1"}
    assert {(x["custom_id"], x["error"]["code"], x["response"]) for x in never} == {
        ("r2", "batch_cancelled", None),
        ("r3", "batch_cancelled", None),
    }
    assert set(_billed(sandbox)) == {"r0", "r1"}
    with pytest.raises(openai.ConflictError) as caught:
        client.batches.cancel(batch.id)
    assert caught.value.message.endswith("Cannot cancel a batch with status 'cancelled'.")


def test_cancel_while_validating_runs_nothing(
    sandbox: RunningSandbox, client: openai.OpenAI
) -> None:
    sandbox.state.clock.seconds_per_state = 10
    batch = _create(client, [_chat_row(i) for i in range(2)])
    client.batches.cancel(batch.id)
    sandbox.state.clock.advance(10)
    cancelled = client.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.in_progress_at is None
    assert cancelled.output_file_id is None
    assert len(_lines(client, cancelled.error_file_id)) == 2
    assert _billed(sandbox) == {}


@pytest.mark.parametrize(
    ("rows", "code", "line"),
    [
        ([_chat_row(0), "{not json", _chat_row(2)], "invalid_json_line", 2),
        ([_chat_row(0), _chat_row(0)], "duplicate_custom_id", 2),
        ([_chat_row(0), {**_chat_row(1), "url": "/v1/embeddings"}], "url_mismatch", 2),
        ([_chat_row(0), _chat_row(1, model="gpt-4o")], "model_mismatch", 2),
        ([{"method": "POST", "url": CHAT, "body": {}}], "missing_required_parameter", 1),
        ([], "empty_file", None),
    ],
)
def test_validation_failures(
    sandbox: RunningSandbox, client: openai.OpenAI, rows: list[Any], code: str, line: int | None
) -> None:
    sandbox.state.clock.seconds_per_state = 5
    batch = _create(client, rows)
    assert batch.status == "validating"  # create itself succeeds (pitfall 4)
    sandbox.state.clock.advance(5)
    failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed"
    assert failed.failed_at == batch.created_at + 5
    assert failed.in_progress_at is None
    assert (failed.output_file_id, failed.error_file_id) == (None, None)
    assert failed.errors is not None and failed.errors.data is not None
    assert [(e.code, e.line) for e in failed.errors.data] == [(code, line)]
    assert _billed(sandbox) == {}


def test_an_instant_batch_is_answered_validating_and_settled_behind_the_client(
    sandbox: RunningSandbox, client: openai.OpenAI
) -> None:
    """At speed 0 a batch is over as soon as it exists, yet ``create`` answers ``validating``
    as the real service does, and the answers are made on a thread of their own while the
    client goes on; the first read finds them, billed once."""
    batch = _create(client, [_chat_row(i) for i in range(5)])
    assert batch.status == "validating" and batch.output_file_id is None
    job = sandbox.state.jobs[batch.id]
    for settler in threading.enumerate():  # started before create answered; maybe done
        if settler.name == f"settle-{batch.id}":
            settler.join(timeout=30)
    assert job.settled  # before any read of the batch
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert sorted(line["custom_id"] for line in _lines(client, done.output_file_id)) == [
        f"r{i}" for i in range(5)
    ]
    client.batches.retrieve(batch.id)
    billed = _billed(sandbox)
    assert sorted(billed) == [f"r{i}" for i in range(5)]
    assert {r["times_billed"] for r in billed.values()} == {1}


def test_files_past_the_spill_size_live_on_disk_and_read_back_whole(
    sandbox: RunningSandbox, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Input and results files larger than ``SPILL_BYTES`` are kept in temporary files, not
    in memory, and every reader (the batch, a download) gets them byte for byte; a settled
    batch keeps its counts, not its lines (its answers are written)."""
    monkeypatch.setattr(kernel, "SPILL_BYTES", 64)
    rows = [_chat_row(i) for i in range(6)]
    batch = _create(client, rows)
    stored = sandbox.state.files[batch.input_file_id]
    assert stored.blob.on_disk
    sent = "".join(json.dumps(r) + "\n" for r in rows).encode()
    assert client.files.content(batch.input_file_id).content == sent
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id is not None
    lines = _lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == [f"r{i}" for i in range(6)]
    assert sandbox.state.files[done.output_file_id].blob.on_disk
    job = sandbox.state.jobs[batch.id]
    assert (job.lines, job.executed, job.size, job.ran) == ([], [], 6, 6)
    again = client.batches.retrieve(batch.id)
    assert again.request_counts == done.request_counts and again.usage == done.usage


def test_size_and_count_limits_fail_the_batch(
    sandbox: RunningSandbox, client: openai.OpenAI
) -> None:
    settings = settings_for(sandbox.state)
    settings.max_batch_lines = 2
    created = _create(client, [_chat_row(i) for i in range(3)])
    assert created.status == "validating" and created.errors is None  # found after validation
    too_many = client.batches.retrieve(created.id)
    assert too_many.status == "failed"
    assert too_many.errors is not None and too_many.errors.data is not None
    assert [e.code for e in too_many.errors.data] == ["too_many_tasks"]
    settings.max_batch_input_bytes = 50
    too_big = client.batches.retrieve(_create(client, [_chat_row(0)]).id)
    assert too_big.errors is not None and too_big.errors.data is not None
    assert [(e.code, e.line) for e in too_big.errors.data] == [("file_too_large", None)]


def test_synchronous_refusals(client: openai.OpenAI) -> None:
    file_id = _upload(client, [_chat_row(0)])
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id="", endpoint=CHAT, completion_window="24h")
    assert (caught.value.code, caught.value.param) == (
        "missing_required_parameter",
        "input_file_id",
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/moderations", completion_window="24h"
        )
    assert caught.value.param == "endpoint"
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="1h")  # type: ignore[arg-type]
    assert caught.value.param == "completion_window"
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=file_id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={f"k{i}": "v" for i in range(17)},
        )
    assert caught.value.param == "metadata"
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-missing", endpoint=CHAT, completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")


def test_refused_lines_go_to_the_error_file(sandbox: RunningSandbox, client: openai.OpenAI) -> None:
    bad = {
        "custom_id": "bad",
        "method": "POST",
        "url": CHAT,
        "body": {"model": MODEL, "messages": []},
    }
    batch = client.batches.retrieve(_create(client, [_chat_row(0), bad]).id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 2, "completed": 1, "failed": 1}
    [error_line] = _lines(client, batch.error_file_id)
    assert error_line["custom_id"] == "bad" and error_line["error"] is None
    assert error_line["response"]["status_code"] == 400
    assert error_line["response"]["body"]["error"]["param"] == "messages"
    assert set(_billed(sandbox)) == {"r0"}

    only_bad = client.batches.retrieve(_create(client, [bad]).id)
    assert only_bad.status == "completed" and only_bad.output_file_id is None  # §6.1


def test_enqueued_token_limit_fails_after_create(
    sandbox: RunningSandbox, client: openai.OpenAI
) -> None:
    sandbox.state.clock.seconds_per_state = 10
    sandbox.state.limits.enqueued_tokens[MODEL] = 20  # each row is ceil(1.3*2)+3 = 6 tokens
    fits = _create(client, [_chat_row(i) for i in range(3)])
    over = _create(client, [_chat_row(i) for i in range(3)])
    assert over.status == "validating"
    sandbox.state.clock.advance(10)
    failed = client.batches.retrieve(over.id)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data is not None
    [error] = failed.errors.data
    assert error.code == "token_limit_exceeded" and error.line is None
    assert error.message is not None
    assert error.message.startswith(f"Enqueued token limit reached for {MODEL} in organization")
    assert client.batches.retrieve(fits.id).status == "in_progress"
    sandbox.state.clock.advance(20)  # the first batch finishes and frees the queue
    assert client.batches.retrieve(fits.id).status == "completed"
    assert _create(client, [_chat_row(i) for i in range(3)]).status == "validating"


def test_interactive_endpoints_bill_by_key(sandbox: RunningSandbox, client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Hello, world!"}]
    chat = client.chat.completions.create(
        model=MODEL, messages=messages, metadata={"planner_key": "k-chat"}
    )
    text, prompt, output = usage.fake_completion(
        MODEL, {"model": MODEL, "messages": messages, "metadata": {"planner_key": "k-chat"}}
    )
    assert chat.choices[0].message.content == text
    assert chat.usage is not None
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (prompt, output)

    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="a b")
    request_id = raw.headers["x-request-id"]
    floats = raw.parse().data[0].embedding  # the SDK asked for base64 and decoded it
    plain = client.embeddings.create(
        model="text-embedding-3-small",
        input="a b",
        encoding_format="float",
        extra_headers={"x-planner-key": "k-emb"},
    )
    assert floats == pytest.approx(plain.data[0].embedding, abs=1e-6)
    assert len(floats) == 8

    response = client.responses.create(model=MODEL, input="Say hi")
    assert response.output_text

    billed = _billed(sandbox)
    assert billed["k-chat"]["lane"] == "interactive"
    assert billed["k-chat"]["usage"]["input_tokens"] == prompt == 9
    assert billed[request_id]["usage"] == {"input_tokens": 3, "output_tokens": 0, "total_tokens": 3}
    assert billed["k-emb"]["times_billed"] == 1
    assert len(billed) == 4


def test_interactive_refusals(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope-1", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input="x")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])


def test_async_client_batch_flow(sandbox: RunningSandbox) -> None:
    async def scenario() -> tuple[str, int]:
        client = openai.AsyncOpenAI(api_key="test", base_url=sandbox.url + "/v1", max_retries=0)
        async with client:
            data = "".join(json.dumps(_chat_row(i)) + "\n" for i in range(3)).encode()
            file = await client.files.create(
                file=("in.jsonl", data, "application/jsonl"), purpose="batch"
            )
            batch = await client.batches.create(
                input_file_id=file.id, endpoint=CHAT, completion_window="24h"
            )
            batch = await client.batches.retrieve(batch.id)
            listed = [b.id async for b in client.batches.list()]
            assert listed == [batch.id]
            content = await client.files.content(batch.output_file_id or "")
            return batch.status, len(content.text.splitlines())

    assert asyncio.run(scenario()) == ("completed", 3)
