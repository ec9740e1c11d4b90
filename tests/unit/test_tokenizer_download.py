"""A missing BPE file is fetched once (with a timeout, SHA-256 checked) or the estimate falls
back; served by a real local HTTP server standing in for tiktoken's host."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from planner.tokenizers import TiktokenCounter, expected_cache_file
from tests.conftest import SHARED_TIKTOKEN


@pytest.fixture()
def bpe_server(tmp_path: Path) -> Iterator[str]:
    served = tmp_path / "served"
    served.mkdir()
    source = expected_cache_file("o200k_base", SHARED_TIKTOKEN)
    assert source is not None and source.is_file()
    shutil.copy(source, served / "o200k_base.tiktoken")
    (served / "cl100k_base.tiktoken").write_bytes(b"not the real file\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_missing_file_is_downloaded_verified_and_cached(bpe_server: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    counter = TiktokenCounter(fast=False, cache_dir=cache, download_base=bpe_server)
    assert counter.count("tiktoken is great!", "o200k_base") == 6
    cached = expected_cache_file("o200k_base", cache)
    assert cached is not None and cached.is_file()


def test_a_corrupt_download_is_refused_and_estimates_fall_back(
    bpe_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    counter = TiktokenCounter(fast=False, cache_dir=cache, download_base=bpe_server)
    assert counter.count("hello", "cl100k_base") is None
    assert "wrong SHA-256" in caplog.text
    cached = expected_cache_file("cl100k_base", cache)
    assert cached is not None and not cached.exists()


def test_unreachable_host_warns_and_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counter = TiktokenCounter(
        fast=False, cache_dir=tmp_path, download_base="http://127.0.0.1:9/", download_timeout=2.0
    )
    assert counter.count("hello", "o200k_base") is None
    assert "download from http://127.0.0.1:9/o200k_base.tiktoken failed" in caplog.text


def test_download_can_be_switched_off(bpe_server: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    counter = TiktokenCounter(fast=False, cache_dir=cache, download=False, download_base=bpe_server)
    assert counter.count("hello", "o200k_base") is None
    assert not any(cache.iterdir())
