"""planner builds tiktoken's encodings from the verified BPE files with its own faster parse of
the ranks; the result must be tiktoken's encoding exactly (ranks, pattern, special tokens and
so every count)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.bpe_ranks import parse_ranks
from planner.tokenizers import Bpe, TiktokenCounter, expected_cache_file
from tests.conftest import SHARED_TIKTOKEN

SURROGATES_AND_WORDS = st.characters(categories=("Cs", "Ll", "Zs"))
ENCODINGS = ("o200k_base", "cl100k_base", "p50k_base", "r50k_base")


def _available(name: str) -> bool:
    path = expected_cache_file(name, SHARED_TIKTOKEN)
    return path is not None and path.is_file()


@pytest.fixture(scope="module")
def loaded() -> dict[str, tuple[Bpe, tiktoken.Encoding]]:
    """Each shipped encoding as planner builds it and as tiktoken builds it."""
    counter = TiktokenCounter(cache_dir=SHARED_TIKTOKEN, download=False, fast=False)
    pairs: dict[str, tuple[Bpe, tiktoken.Encoding]] = {}
    for name in ("o200k_base", "cl100k_base"):  # the two planner counts with
        ours = counter._load(name)
        assert isinstance(ours, Bpe), name
        pairs[name] = (ours, tiktoken.get_encoding(name))
    return pairs


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_the_encoding_is_tiktokens_own(
    name: str, loaded: dict[str, tuple[Bpe, tiktoken.Encoding]]
) -> None:
    ours, theirs = loaded[name]
    assert isinstance(ours, Bpe) and ours.name == theirs.name
    # every token's bytes, in rank order: the whole merge table
    assert ours._core.token_byte_values() == theirs.token_byte_values()
    for special in theirs.special_tokens_set:  # counted as ordinary text, as tiktoken does
        assert ours.encode_ordinary(special) == theirs.encode_ordinary(special)
        assert ours.count(f"a {special}b") == len(theirs.encode_ordinary(f"a {special}b")) > 2
    lone = "a\ud800b"  # a lone surrogate is replaced, as tiktoken replaces it
    assert ours.encode_ordinary(lone) == theirs.encode_ordinary(lone)
    assert ours.count(lone) == len(theirs.encode_ordinary(lone))


def test_no_second_copy_of_the_ranks_is_kept() -> None:
    """The Python dict of ranks (tens of MiB) is dropped once tiktoken's core holds them."""
    counter = TiktokenCounter(cache_dir=SHARED_TIKTOKEN, download=False, fast=False)
    assert counter.count("hello", "cl100k_base") == 1
    ours = counter._load("cl100k_base")
    assert isinstance(ours, Bpe)
    assert not any(isinstance(r, dict) for r in gc.get_referents(ours))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300) | st.text(SURROGATES_AND_WORDS, max_size=30))
def test_counts_equal_tiktokens_on_any_text(
    text: str, loaded: dict[str, tuple[Bpe, tiktoken.Encoding]]
) -> None:
    for ours, theirs in loaded.values():
        assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
        assert ours.count(text) == len(theirs.encode_ordinary(text))


def test_a_count_without_the_token_buffer_is_the_same(
    loaded: dict[str, tuple[Bpe, tiktoken.Encoding]],
) -> None:
    """A tiktoken without ``encode_to_tiktoken_buffer``: the count comes from the list."""
    ours, theirs = loaded["o200k_base"]
    plain = Bpe(ours.name, ours._core)
    plain._to_buffer = None
    text = "Counting tokens of a long text, " * 40 + "<|endoftext|>"
    assert plain.count(text) == ours.count(text) == len(theirs.encode_ordinary(text)) > 200


@pytest.mark.parametrize("name", [n for n in ENCODINGS if _available(n)])
def test_ranks_parse_as_tiktoken_reads_them(name: str) -> None:
    from tiktoken.load import load_tiktoken_bpe

    path = expected_cache_file(name, SHARED_TIKTOKEN)
    assert path is not None
    assert parse_ranks(path.read_bytes()) == load_tiktoken_bpe(str(path))


def test_a_file_with_a_token_and_no_rank_is_refused() -> None:
    with pytest.raises(ValueError, match="without its rank"):
        parse_ranks(b"IQ== 0\nIg==\n")


def test_released_encodings_load_again_when_asked() -> None:
    counter = TiktokenCounter(cache_dir=SHARED_TIKTOKEN, download=False, fast=False)
    assert counter.count("tiktoken is great!", "o200k_base") == 6
    counter.release()
    assert counter._encodings == {} and counter._cache.counts == {}
    assert counter.count("tiktoken is great!", "o200k_base") == 6
    assert set(counter._encodings) == {"o200k_base"}


RELEASE_IN_A_FRESH_PROCESS = """
import sys
from pathlib import Path
from planner.tokenizers import TiktokenCounter

def rss_mib():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

counter = TiktokenCounter(cache_dir=Path(sys.argv[1]), download=False, fast=False)
before = rss_mib()
counter.count("x", "o200k_base"), counter.count("x", "cl100k_base")
loaded = rss_mib()
counter.release()
print(before, loaded, rss_mib())
"""


def test_released_encodings_give_their_memory_back() -> None:
    """``release`` frees the two encodings (tens of MiB) and returns the pages to the system,
    without a collection of the whole heap (nothing of theirs is held in a cycle)."""
    got = subprocess.run(
        [sys.executable, "-c", RELEASE_IN_A_FRESH_PROCESS, str(SHARED_TIKTOKEN)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    before, loaded, released = map(float, got.stdout.split())
    assert loaded - before > 50  # o200k_base and cl100k_base: ~74 MiB
    assert released - before < 0.2 * (loaded - before)


def test_tiktokens_own_loader_serves_when_the_fast_one_cannot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another tiktoken without ``CoreBPE`` where planner looks: counts stay exact."""
    from planner import tokenizers

    def broken(*_args: object) -> None:
        raise AttributeError("module 'tiktoken._tiktoken' has no attribute 'CoreBPE'")

    monkeypatch.setattr(tokenizers, "_encoding_from", broken)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # the operator's dir must win
    counter = TiktokenCounter(cache_dir=SHARED_TIKTOKEN, download=False, fast=False)
    assert counter.count("tiktoken is great!", "o200k_base") == 6
    assert isinstance(counter._load("o200k_base"), tokenizers._Encoded)
