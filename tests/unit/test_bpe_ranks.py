"""The BPE ranks cache: a copy of the parsed ranks, used only when whole and made for the same
BPE file and Python; anything else costs a parse, never a wrong count."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from planner import bpe_ranks
from planner.bpe_ranks import cache_dir, cache_file, parse_ranks, ranks_of
from planner.tokenizers import TiktokenCounter
from tests.conftest import SHARED_TIKTOKEN

DATA = b"YQ== 0\nYg== 1\nYWI= 2\n"  # "a" 0, "b" 1, "ab" 2
DIGEST = hashlib.sha256(DATA).hexdigest()


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(data: bytes) -> dict[bytes, int]:
        raise AssertionError("parsed although the cache holds the ranks")

    monkeypatch.setattr(bpe_ranks, "parse_ranks", refuse)


def _tiktoken_only() -> TiktokenCounter:
    return TiktokenCounter(cache_dir=SHARED_TIKTOKEN, download=False, fast=False)


def test_the_first_run_keeps_the_ranks_and_the_next_loads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranks = ranks_of("tiny", DATA, DIGEST, tmp_path)
    assert ranks == {b"a": 0, b"b": 1, b"ab": 2} == parse_ranks(DATA)
    path = cache_file(tmp_path, "tiny", DIGEST)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]
    _no_parsing(monkeypatch)
    assert ranks_of("tiny", DATA, DIGEST, tmp_path) == ranks


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "not marshal"])
def test_a_damaged_cache_is_parsed_again_and_replaced(tmp_path: Path, damage: str) -> None:
    ranks_of("tiny", DATA, DIGEST, tmp_path)
    path = cache_file(tmp_path, "tiny", DIGEST)
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[:-3])
    elif damage == "flip":
        path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a whole file whose payload is not marshal's
        payload = b"\xff\xfe not marshal"
        path.write_bytes(hashlib.sha256(payload).digest() + payload)
    assert ranks_of("tiny", DATA, DIGEST, tmp_path) == parse_ranks(DATA)
    assert path.read_bytes() == blob  # made again from the BPE file


def test_another_bpe_file_or_python_gets_a_cache_of_its_own(tmp_path: Path) -> None:
    other = b"YQ== 1\n"
    ranks_of("tiny", DATA, DIGEST, tmp_path)
    digest = hashlib.sha256(other).hexdigest()
    assert ranks_of("tiny", other, digest, tmp_path) == {b"a": 1}
    assert cache_file(tmp_path, "tiny", digest) != cache_file(tmp_path, "tiny", DIGEST)
    assert ranks_of("tiny", DATA, DIGEST, tmp_path) == {b"a": 0, b"b": 1, b"ab": 2}


def test_a_cache_that_cannot_be_written_costs_only_time(tmp_path: Path) -> None:
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    assert ranks_of("tiny", DATA, DIGEST, blocked / "planner") == parse_ranks(DATA)
    assert list(tmp_path.iterdir()) == [blocked]  # no partial file left behind


def test_where_the_cache_is() -> None:
    home = {"HOME": "/home/op"}
    assert cache_dir(home) == Path("/home/op/.cache/planner")
    assert cache_dir({**home, "XDG_CACHE_HOME": "/x"}) == Path("/x/planner")
    systemd = {**home, "XDG_CACHE_HOME": "/x", "CACHE_DIRECTORY": "/var/cache/planner:/other"}
    assert cache_dir(systemd) == Path("/var/cache/planner")
    assert cache_dir({**systemd, "PLANNER_CACHE_DIR": "/mine"}) == Path("/mine")
    assert cache_dir({**systemd, "PLANNER_CACHE_DIR": ""}) is None  # off
    assert cache_dir({}) is None


def test_counts_are_the_same_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path))
    text = "Counting tokens from cached ranks, " * 20
    first = _tiktoken_only().count(text, "cl100k_base")
    assert len(list(tmp_path.glob("bpe-ranks-cl100k_base-*.marshal"))) == 1
    _no_parsing(monkeypatch)
    again = _tiktoken_only().count(text, "cl100k_base")
    assert again == first and first is not None and first > 100
