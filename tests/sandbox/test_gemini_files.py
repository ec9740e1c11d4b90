"""The Gemini Files API of the sandbox, driven only through the unmodified google-genai SDK."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from planner.sandbox import RunningSandbox

CHUNK = 8 * 1024 * 1024


def _jsonl(n: int) -> bytes:
    rows = [
        {"key": f"k{i}", "request": {"contents": [{"parts": [{"text": f"hello {i}"}]}]}}
        for i in range(n)
    ]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def test_multi_chunk_upload_over_8_mib_keeps_every_byte(
    gemini: Any, sandbox: RunningSandbox
) -> None:
    data = bytes(range(256)) * ((2 * CHUNK + 1_049_153) // 256 + 1)
    assert len(data) > 2 * CHUNK  # three chunks: two "upload", one "upload, finalize"
    uploaded = gemini.files.upload(
        file=io.BytesIO(data), config={"mime_type": "application/octet-stream"}
    )
    assert uploaded.size_bytes == len(data)
    stored = sandbox.state.files[uploaded.name.removeprefix("files/")]
    assert hashlib.sha256(stored.blob.read()).digest() == hashlib.sha256(data).digest()


def test_zero_byte_upload_from_a_path(gemini: Any, tmp_path: Any) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    uploaded = gemini.files.upload(file=str(empty), config={"mime_type": "jsonl"})
    assert uploaded.size_bytes == 0
    assert uploaded.mime_type == "jsonl"
    assert uploaded.state == types.FileState.ACTIVE


def test_get_echoes_metadata_and_requested_name(gemini: Any) -> None:
    uploaded = gemini.files.upload(
        file=io.BytesIO(_jsonl(2)),
        config={"mime_type": "jsonl", "display_name": "input-a", "name": "files/my-input-1"},
    )
    assert uploaded.name == "files/my-input-1"
    got = gemini.files.get(name="files/my-input-1")
    assert got.display_name == "input-a"
    assert got.size_bytes == len(_jsonl(2))
    assert got.source == types.FileSource.UPLOADED
    assert got.expiration_time is not None and got.create_time is not None
    assert (got.expiration_time - got.create_time).total_seconds() == 48 * 3600


def test_list_pages_and_delete(gemini: Any) -> None:
    names = [
        gemini.files.upload(file=io.BytesIO(b"x" * i), config={"mime_type": "jsonl"}).name
        for i in range(5)
    ]
    first = gemini.files.list(config={"page_size": 2})
    assert len(first.page) == 2
    listed = [f.name for f in gemini.files.list(config={"page_size": 2})]
    assert sorted(listed) == sorted(names)  # the pager followed nextPageToken over 3 pages
    assert listed == list(reversed(names))  # newest first
    gemini.files.delete(name=names[0])
    with pytest.raises(errors.ClientError) as caught:
        gemini.files.get(name=names[0])
    assert caught.value.code == 404
    assert names[0] not in [f.name for f in gemini.files.list()]


def test_uploaded_files_cannot_be_downloaded(gemini: Any) -> None:
    uploaded = gemini.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "jsonl"})
    with pytest.raises(errors.ClientError) as caught:
        gemini.files.download(file=uploaded.name)
    assert caught.value.code == 400


def test_results_file_downloads_but_get_and_delete_reject_the_42_char_id(
    gemini: Any, sandbox: RunningSandbox
) -> None:
    src = gemini.files.upload(file=io.BytesIO(_jsonl(3)), config={"mime_type": "jsonl"})
    job = gemini.batches.create(model="gemini-2.5-flash", src=src.name)
    done = gemini.batches.get(name=job.name)
    results = done.dest.file_name
    assert results == "files/batch-" + job.name.removeprefix("batches/")
    assert len(results.removeprefix("files/")) == 42
    body = gemini.files.download(file=results)
    assert {json.loads(line)["key"] for line in body.decode().splitlines()} == {"k0", "k1", "k2"}
    for call in (gemini.files.get, gemini.files.delete):
        with pytest.raises(errors.ClientError) as caught:
            call(name=results)
        assert caught.value.code == 400
        assert caught.value.status == "INVALID_ARGUMENT"
    # Google's REST samples use the /download prefix; it serves the same bytes.
    raw = httpx.get(
        f"{sandbox.url}/download/v1beta/{results}:download",
        params={"alt": "media"},
        headers={"x-goog-api-key": "test"},
    )
    assert raw.status_code == 200 and raw.content == body


def test_default_v1_paths_and_async_client(sandbox: RunningSandbox) -> None:
    client = genai.Client(api_key="test", http_options={"base_url": sandbox.url})  # v1 default

    async def flow() -> tuple[str, int, list[str]]:
        uploaded = await client.aio.files.upload(
            file=io.BytesIO(b"y" * (CHUNK + 10)), config={"mime_type": "jsonl"}
        )
        got = await client.aio.files.get(name=uploaded.name)
        listed = [f.name async for f in await client.aio.files.list(config={"page_size": 1})]
        await client.aio.files.delete(name=uploaded.name)
        return got.name, got.size_bytes, listed

    name, size, listed = asyncio.run(flow())
    assert size == CHUNK + 10
    assert listed == [name]
    assert sandbox.state.files == {}


def test_upload_chunk_with_a_wrong_offset_is_refused_with_an_upload_status(
    sandbox: RunningSandbox,
) -> None:
    start = httpx.post(
        f"{sandbox.url}/upload/v1beta/files",
        headers={
            "x-goog-api-key": "test",
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "4",
            "X-Goog-Upload-Header-Content-Type": "jsonl",
        },
        json={"file": {"display_name": "x"}},
    )
    assert start.status_code == 200
    url = start.headers["x-goog-upload-url"]
    assert url.startswith(sandbox.url + "/upload/v1beta/files?upload_id=")
    bad = httpx.post(
        url,
        headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "2"},
        content=b"abcd",
    )
    assert bad.status_code == 400
    assert bad.headers["x-goog-upload-status"] == "final"


def test_missing_api_key_is_refused(sandbox: RunningSandbox) -> None:
    response = httpx.get(f"{sandbox.url}/v1beta/files")
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_environment_only_configuration(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", sandbox.url)
    monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", "v1beta")
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    client = genai.Client()
    uploaded = client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "jsonl"})
    assert client.files.get(name=uploaded.name).size_bytes == 3
