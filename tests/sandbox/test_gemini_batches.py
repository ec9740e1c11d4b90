"""Gemini batch jobs in the sandbox, driven only through the unmodified google-genai SDK."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from planner.sandbox import RunningSandbox, kernel
from planner.sandbox.usage import count_tokens

pytestmark = pytest.mark.filterwarnings("ignore::google.genai._common.ExperimentalWarning")

MODEL = "gemini-2.5-flash"
EMBED = "gemini-embedding-001"


def _upload(client: Any, rows: list[dict[str, Any]]) -> str:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    name: str = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"}).name
    return name


def _gen_rows(n: int, prefix: str = "k") -> list[dict[str, Any]]:
    return [
        {"key": f"{prefix}{i}", "request": {"contents": [{"parts": [{"text": f"say {i}"}]}]}}
        for i in range(n)
    ]


def _raw(sandbox: RunningSandbox, path: str) -> dict[str, Any]:
    response = httpx.get(f"{sandbox.url}/v1beta/{path}", headers={"x-goog-api-key": "t"})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_file_batch_moves_through_states_on_the_clock(gemini: Any, sandbox: RunningSandbox) -> None:
    sandbox.state.clock.seconds_per_state = 10
    src = _upload(gemini, _gen_rows(4))
    job = gemini.batches.create(model=MODEL, src=src, config={"display_name": "planner:plb_0001"})
    assert job.name.startswith("batches/") and len(job.name) == len("batches/") + 36
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert job.display_name == "planner:plb_0001"
    assert job.model == f"models/{MODEL}"
    seen = [gemini.batches.get(name=job.name).state]
    for _ in range(3):
        sandbox.state.clock.advance(10)
        seen.append(gemini.batches.get(name=job.name).state)
    assert seen == [
        types.JobState.JOB_STATE_PENDING,
        types.JobState.JOB_STATE_RUNNING,
        types.JobState.JOB_STATE_RUNNING,
        types.JobState.JOB_STATE_SUCCEEDED,
    ]
    done = gemini.batches.get(name=job.name)
    assert done.done and done.end_time is not None
    lines = [json.loads(x) for x in gemini.files.download(file=done.dest.file_name).splitlines()]
    assert sorted(line["key"] for line in lines) == ["k0", "k1", "k2", "k3"]
    usage = lines[0]["response"]["usageMetadata"]
    # the documented rule: "say N" = 2 pieces -> ceil(2.6) = 3, plus 3 per message
    assert usage["promptTokenCount"] == 6
    text = lines[0]["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert usage["candidatesTokenCount"] == count_tokens(text)
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )
    raw = _raw(sandbox, job.name)
    assert raw["done"] is True
    assert raw["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert raw["metadata"]["batchStats"] == {"requestCount": "4", "successfulRequestCount": "4"}
    assert raw["response"]["responsesFile"] == done.dest.file_name
    ledger = httpx.get(f"{sandbox.url}/_sandbox/ledger").json()
    assert ledger["batches"][0]["our_id"] == "plb_0001"
    assert ledger["batches"][0]["state"] == "succeeded"
    assert {r["key"]: r["times_billed"] for r in ledger["requests"]} == {
        "k0": 1,
        "k1": 1,
        "k2": 1,
        "k3": 1,
    }


def test_results_are_deterministic_across_sandboxes(gemini: Any, sandbox: RunningSandbox) -> None:
    src = _upload(gemini, _gen_rows(3))
    job = gemini.batches.create(model=MODEL, src=src)
    first = gemini.files.download(file=gemini.batches.get(name=job.name).dest.file_name)
    from planner.sandbox import serve

    with serve(speed=0, manual_clock=True) as other:
        client = genai.Client(
            api_key="t", http_options={"base_url": other.url, "api_version": "v1beta"}
        )
        job2 = client.batches.create(model=MODEL, src=_upload(client, _gen_rows(3)))
        second = client.files.download(file=client.batches.get(name=job2.name).dest.file_name)
    assert first == second


def test_a_settled_batch_keeps_no_decoded_request_and_an_inline_one_its_json(
    gemini: Any, sandbox: RunningSandbox
) -> None:
    """A file job's answers are in its results file, so it drops its lines (reading it again
    changes nothing); an inline job echoes its requests and answers on every read, from the
    JSON it wrote when it settled, not from objects held per request."""
    job = gemini.batches.create(model=MODEL, src=_upload(gemini, _gen_rows(3)))
    done = gemini.batches.get(name=job.name)
    first = gemini.files.download(file=done.dest.file_name)
    kept = sandbox.state.jobs[job.name]
    assert kept.settled and (kept.lines, kept.size, kept.echo) == ([], 3, None)
    again = gemini.batches.get(name=job.name)
    assert again.state == done.state and again.dest.file_name == done.dest.file_name
    assert gemini.files.download(file=again.dest.file_name) == first
    sent = [{"contents": "hello there"}, {"contents": "and again"}]
    inline = gemini.batches.create(model=MODEL, src=sent)
    answered = gemini.batches.get(name=inline.name).dest.inlined_responses
    assert len(answered) == 2 and all(r.response.text for r in answered)
    held = sandbox.state.jobs[inline.name]
    assert held.settled and held.lines == [] and isinstance(held.echo, kernel.Blob)
    assert isinstance(held.output["inlinedResponses"], kernel.Blob)
    echoed = _raw(sandbox, inline.name)["metadata"]["inputConfig"]["requests"]["requests"]
    texts = [item["request"]["contents"][0]["parts"][0]["text"] for item in echoed]
    assert texts == ["hello there", "and again"]
    again_inline = gemini.batches.get(name=inline.name).dest.inlined_responses
    assert [r.response.text for r in again_inline] == [r.response.text for r in answered]


def test_inline_batch_returns_inline_responses_with_metadata(gemini: Any) -> None:
    job = gemini.batches.create(
        model=MODEL,
        src=[
            {"contents": "hello there", "metadata": {"key": "in-1"}},
            {
                "contents": [{"parts": [{"text": "be brief"}], "role": "user"}],
                "config": {"max_output_tokens": 3, "system_instruction": "short"},
                "metadata": {"key": "in-2"},
            },
        ],
        config={"display_name": "inline-job"},
    )
    done = gemini.batches.get(name=job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    by_key = {r.metadata["key"]: r for r in done.dest.inlined_responses}
    assert set(by_key) == {"in-1", "in-2"}
    capped = by_key["in-2"].response
    assert capped.usage_metadata.candidates_token_count <= 3
    # system instruction + one message: ("short" 1 piece -> 2) + 3 + ("be brief" -> 3) + 3
    assert capped.usage_metadata.prompt_token_count == 11
    assert by_key["in-1"].response.text


def test_embedding_batches_file_and_inline(gemini: Any, sandbox: RunningSandbox) -> None:
    rows = [
        {"key": "e1", "request": {"content": {"parts": [{"text": "alpha beta"}]}}},
        {
            "key": "e2",
            "request": {"content": {"parts": [{"text": "gamma"}]}, "output_dimensionality": 3},
        },
    ]
    src = _upload(gemini, rows)
    job = gemini.batches.create_embeddings(model=EMBED, src={"file_name": src})
    done = gemini.batches.get(name=job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    lines = {
        json.loads(x)["key"]: json.loads(x)
        for x in gemini.files.download(file=done.dest.file_name).splitlines()
    }
    assert lines["e1"]["response"]["tokenCount"] == str(count_tokens("alpha beta"))
    assert len(lines["e2"]["response"]["embedding"]["values"]) == 3
    raw = _raw(sandbox, job.name)
    assert raw["metadata"]["@type"].endswith("EmbedContentBatch")

    inline = gemini.batches.create_embeddings(
        model=EMBED,
        src={
            "inlined_requests": {
                "contents": ["one", "two words"],
                "config": {"task_type": "CLUSTERING"},
            }
        },
    )
    got = gemini.batches.get(name=inline.name)
    responses = got.dest.inlined_embed_content_responses
    assert [r.response.embedding.values is not None for r in responses] == [True, True]
    assert len(responses[0].response.embedding.values) == 8


def test_list_pages_over_more_than_one_page_and_omits_inline_results(
    gemini: Any, sandbox: RunningSandbox
) -> None:
    names = [gemini.batches.create(model=MODEL, src=[{"contents": f"q{i}"}]).name for i in range(5)]
    pager = gemini.batches.list(config={"page_size": 2})
    assert len(pager.page) == 2
    listed = [job.name for job in gemini.batches.list(config={"page_size": 2})]
    assert listed == list(reversed(names))
    raw = httpx.get(
        f"{sandbox.url}/v1beta/batches",
        params={"pageSize": 2},
        headers={"x-goog-api-key": "t"},
    ).json()
    assert len(raw["operations"]) == 2 and raw["nextPageToken"]
    assert all("output" not in op["metadata"] for op in raw["operations"])


def test_cancel_and_delete(gemini: Any, sandbox: RunningSandbox) -> None:
    sandbox.state.clock.seconds_per_state = 10
    job = gemini.batches.create(model=MODEL, src=_upload(gemini, _gen_rows(2)))
    sandbox.state.clock.advance(12)
    assert gemini.batches.get(name=job.name).state == types.JobState.JOB_STATE_RUNNING
    assert gemini.batches.cancel(name=job.name) is None
    cancelled = gemini.batches.get(name=job.name)
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED
    assert cancelled.dest is None or cancelled.dest.file_name is None
    gemini.batches.delete(name=job.name)
    with pytest.raises(errors.ClientError) as caught:
        gemini.batches.get(name=job.name)
    assert caught.value.code == 404
    assert job.name not in [j.name for j in gemini.batches.list()]
    ledger = httpx.get(f"{sandbox.url}/_sandbox/ledger").json()
    assert ledger["batches"][0]["deleted"] is True
    assert ledger["requests"] == []  # a cancelled Gemini batch returns and bills nothing


def test_unknown_batch_is_404(gemini: Any) -> None:
    for call in (gemini.batches.get, gemini.batches.cancel, gemini.batches.delete):
        with pytest.raises(errors.ClientError) as caught:
            call(name="batches/doesnotexist")
        assert caught.value.code == 404
        assert caught.value.status == "NOT_FOUND"


def test_one_model_per_batch_and_bad_lines_are_refused_precisely(gemini: Any) -> None:
    rows = _gen_rows(2)
    rows[1]["request"]["model"] = "models/gemini-2.5-pro"
    with pytest.raises(errors.ClientError) as caught:
        gemini.batches.create(model=MODEL, src=_upload(gemini, rows))
    assert caught.value.code == 400 and "line 2" in caught.value.message
    bad = gemini.files.upload(file=io.BytesIO(b'{"key": "a"}\n'), config={"mime_type": "jsonl"})
    with pytest.raises(errors.ClientError) as caught:
        gemini.batches.create(model=MODEL, src=bad.name)
    assert "line 1" in caught.value.message and "request" in caught.value.message


def test_files_on_disk_are_read_and_downloaded_a_block_at_a_time(
    gemini: Any, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An input file past the spill size is read a block at a time and its lines keep their
    numbers (CRLF pairs and blank lines across block boundaries); a results file written past
    it is downloaded whole, byte for byte."""
    monkeypatch.setattr(kernel, "SPILL_BYTES", 64)
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 16)
    rows = [json.dumps(r).encode() for r in _gen_rows(5)]
    rows[3] = rows[3].replace(b'{"contents"', b'{"model": "models/gemini-2.5-pro", "contents"')
    data = rows[0] + b"\r\n" + rows[1] + b"\r\n\r\n" + b"\n".join(rows[2:]) + b"\n"
    bad = gemini.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    uploaded = sandbox.state.files[bad.name.removeprefix("files/")]  # written as it came
    assert uploaded.blob.on_disk and uploaded.blob.read() == data
    with pytest.raises(errors.ClientError) as caught:  # its 4th request is on line 5
        gemini.batches.create(model=MODEL, src=bad.name)
    assert "line 5:" in caught.value.message and "gemini-2.5-pro" in caught.value.message
    job = gemini.batches.create(model=MODEL, src=_upload(gemini, _gen_rows(40)))
    done = gemini.batches.get(name=job.name)
    stored = sandbox.state.files[done.dest.file_name.removeprefix("files/")]
    assert stored.blob.on_disk
    body = gemini.files.download(file=done.dest.file_name)
    assert body == stored.blob.read()
    assert [json.loads(x)["key"] for x in body.splitlines()] == [f"k{i}" for i in range(40)]


def test_concurrent_job_limit_is_a_429(gemini: Any, sandbox: RunningSandbox) -> None:
    sandbox.state.clock.seconds_per_state = 10
    sandbox.state.limits.max_concurrent_jobs = 2
    for i in range(2):
        gemini.batches.create(model=MODEL, src=[{"contents": f"x{i}"}])
    with pytest.raises(errors.ClientError) as caught:
        gemini.batches.create(model=MODEL, src=[{"contents": "one too many"}])
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    sandbox.state.clock.advance(30)  # the first two finish and free their slots
    gemini.batches.create(model=MODEL, src=[{"contents": "now fits"}])


def test_enqueued_token_limit_per_model_is_a_429(gemini: Any, sandbox: RunningSandbox) -> None:
    sandbox.state.clock.seconds_per_state = 10
    sandbox.state.limits.enqueued_tokens["gemini-2.5-flash"] = 10
    gemini.batches.create(model=MODEL, src=[{"contents": "a b c"}])  # 4 + 3 = 7 tokens
    with pytest.raises(errors.ClientError) as caught:
        gemini.batches.create(model=MODEL, src=[{"contents": "d e f"}])
    assert caught.value.code == 429
    assert "Enqueued token limit" in caught.value.message
    gemini.batches.create(model="gemini-2.5-pro", src=[{"contents": "d e f"}])  # other model


def test_async_client_full_flow(sandbox: RunningSandbox) -> None:
    client = genai.Client(
        api_key="t", http_options=types.HttpOptions(base_url=sandbox.url, api_version="v1beta")
    )
    rows = b"".join(json.dumps(r).encode() + b"\n" for r in _gen_rows(2))

    async def flow() -> tuple[Any, bytes, list[str]]:
        src = await client.aio.files.upload(file=io.BytesIO(rows), config={"mime_type": "jsonl"})
        job = await client.aio.batches.create(model=MODEL, src=src.name)
        done = await client.aio.batches.get(name=job.name)
        body = await client.aio.files.download(file=done.dest.file_name)
        listed = [j.name async for j in await client.aio.batches.list(config={"page_size": 1})]
        await client.aio.batches.cancel(name=job.name)
        await client.aio.batches.delete(name=job.name)
        return done.state, body, listed

    state, body, listed = asyncio.run(flow())
    assert state == types.JobState.JOB_STATE_SUCCEEDED
    assert len(body.splitlines()) == 2
    assert len(listed) == 1
