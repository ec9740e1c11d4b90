"""The sandbox's OpenAI Files API, driven through the unmodified ``openai`` SDK
(specs/openai-batch-api.md §3.2–§3.6, §4, §11)."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from planner.sandbox import RunningSandbox
from planner.sandbox.openai_common import reset_settings, settings_for


@pytest.fixture(autouse=True)
def _defaults(sandbox: RunningSandbox) -> None:
    reset_settings(sandbox.state)


@pytest.fixture
def client(sandbox: RunningSandbox) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=sandbox.url + "/v1", max_retries=0)


def _jsonl(n: int) -> bytes:
    rows = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]},
        }
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_upload_retrieve_content_delete(client: openai.OpenAI) -> None:
    data = _jsonl(3)
    created = client.files.create(file=("in.jsonl", data, "application/jsonl"), purpose="batch")
    assert created.id.startswith("file-")
    assert created.object == "file"
    assert created.bytes == len(data)
    assert created.filename == "in.jsonl"
    assert created.purpose == "batch"
    assert created.status == "processed"
    assert isinstance(created.created_at, int)
    assert created.expires_at == created.created_at + 30 * 86400  # batch files: 30 days

    again = client.files.retrieve(created.id)
    assert again.model_dump() == created.model_dump()
    assert client.files.content(created.id).content == data

    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve(created.id)
    assert created.id in caught.value.message
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


def test_upload_from_a_path_with_expiry(client: openai.OpenAI, tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "batch.jsonl"
    path.write_bytes(_jsonl(1))
    created = client.files.create(
        file=path, purpose="batch", expires_after={"anchor": "created_at", "seconds": 7200}
    )
    assert created.filename == "batch.jsonl"
    assert created.expires_at == created.created_at + 7200


def test_batch_files_must_be_named_jsonl(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=_jsonl(1), purpose="batch")  # raw bytes are named "upload"
    assert "Must be .jsonl" in caught.value.message


def test_bad_expiry_and_purpose_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(
            file=("a.jsonl", b"{}", "application/jsonl"),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 60},
        )
    assert caught.value.param == "expires_after.seconds"
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("a.jsonl", b"{}", "application/jsonl"), purpose="nonsense")  # type: ignore[arg-type]
    assert caught.value.code == "invalid_value"


def test_upload_over_the_size_limit_is_refused(
    sandbox: RunningSandbox, client: openai.OpenAI
) -> None:
    settings_for(sandbox.state).max_upload_bytes = 10
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("a.jsonl", _jsonl(1), "application/jsonl"), purpose="batch")
    assert caught.value.code == "file_too_large"


def test_list_pages_newest_first_and_survives_deleted_cursor(client: openai.OpenAI) -> None:
    ids = [
        client.files.create(
            file=(f"f{i}.jsonl", _jsonl(1), "application/jsonl"), purpose="batch"
        ).id
        for i in range(5)
    ]
    first = client.files.list(limit=2)
    assert [f.id for f in first.data] == [ids[4], ids[3]]
    assert first.has_more is True
    assert [f.id for f in client.files.list(limit=2)] == ids[::-1]  # auto-paging
    client.files.delete(ids[3])
    after_deleted = client.files.list(limit=2, after=ids[3])
    assert [f.id for f in after_deleted.data] == [ids[2], ids[1]]
    ascending = client.files.list(order="asc", purpose="batch")
    assert [f.id for f in ascending.data] == [ids[0], ids[1], ids[2], ids[4]]
    assert ascending.has_more is False
    assert client.files.list(purpose="batch_output").data == []


def test_raw_http_shapes(sandbox: RunningSandbox) -> None:
    """Envelope, x-request-id and the missing-key 401 as plain HTTP."""
    response = httpx.get(sandbox.url + "/v1/files/file-nope", headers={"authorization": "Bearer x"})
    assert response.status_code == 404
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    unauthenticated = httpx.get(sandbox.url + "/v1/files")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "missing_api_key"
    listing = httpx.get(sandbox.url + "/v1/files", headers={"authorization": "Bearer x"}).json()
    assert listing == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_async_client_uploads_and_lists(sandbox: RunningSandbox) -> None:
    async def scenario() -> list[str]:
        client = openai.AsyncOpenAI(api_key="test", base_url=sandbox.url + "/v1", max_retries=0)
        async with client:
            created = await client.files.create(
                file=("a.jsonl", _jsonl(2), "application/jsonl"), purpose="batch"
            )
            content = await client.files.content(created.id)
            assert content.content == _jsonl(2)
            return [f.id async for f in client.files.list()]

    ids = asyncio.run(scenario())
    assert len(ids) == 1
