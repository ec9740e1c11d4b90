"""planner builds tiktoken's encodings from the verified BPE files with its own faster parse of
the ranks; the result must be tiktoken's encoding exactly (ranks, pattern, special tokens and
so every count)."""

from __future__ import annotations

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.tokenizers import TiktokenCounter, _ranks, expected_cache_file
from tests.conftest import SHARED_TIKTOKEN

ENCODINGS = ("o200k_base", "cl100k_base", "p50k_base", "r50k_base")


def _available(name: str) -> bool:
    path = expected_cache_file(name, SHARED_TIKTOKEN)
    return path is not None and path.is_file()


@pytest.fixture(scope="module")
def loaded() -> dict[str, tuple[object, tiktoken.Encoding]]:
    """Each shipped encoding as planner builds it and as tiktoken builds it."""
    counter = TiktokenCounter(cache_dir=SHARED_TIKTOKEN, download=False)
    pairs: dict[str, tuple[object, tiktoken.Encoding]] = {}
    for name in ("o200k_base", "cl100k_base"):  # the two planner counts with
        ours = counter._load(name)
        assert ours is not None, name
        pairs[name] = (ours, tiktoken.get_encoding(name))
    return pairs


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_the_encoding_is_tiktokens_own(
    name: str, loaded: dict[str, tuple[object, tiktoken.Encoding]]
) -> None:
    ours, theirs = loaded[name]
    assert isinstance(ours, tiktoken.Encoding)
    assert ours is not theirs  # built by planner, not taken from tiktoken's registry
    assert ours.name == theirs.name
    assert ours._pat_str == theirs._pat_str
    assert ours._special_tokens == theirs._special_tokens
    assert ours._mergeable_ranks == theirs._mergeable_ranks
    assert ours.n_vocab == theirs.n_vocab


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_counts_equal_tiktokens_on_any_text(
    text: str, loaded: dict[str, tuple[object, tiktoken.Encoding]]
) -> None:
    for ours, theirs in loaded.values():
        assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", [n for n in ENCODINGS if _available(n)])
def test_ranks_parse_as_tiktoken_reads_them(name: str) -> None:
    from tiktoken.load import load_tiktoken_bpe

    path = expected_cache_file(name, SHARED_TIKTOKEN)
    assert path is not None
    assert _ranks(path.read_bytes()) == load_tiktoken_bpe(str(path))


def test_a_file_with_a_token_and_no_rank_is_refused() -> None:
    with pytest.raises(ValueError, match="without its rank"):
        _ranks(b"IQ== 0\nIg==\n")
