"""toktok counts for planner only where it counts exactly as tiktoken does (planner/fast_bpe.py):
its table of disputed characters is complete for the installed versions, every other text has
tiktoken's count, a disputed text is counted by tiktoken, and toktok steps aside where it is
switched off, missing or another version."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from planner import fast_bpe
from planner.fast_bpe import DISPUTED, FastBpe, as_ranges, derive_disputed
from planner.tokenizers import Bpe, TiktokenCounter
from tests.conftest import SHARED_TIKTOKEN

ENCODINGS = sorted(fast_bpe.ENCODINGS)
NEW_LETTER = "\U000325e5"  # CJK Extension J (Unicode 17.0): a letter to toktok only
SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|endofprompt|>", "<|im_start|>"]


@pytest.fixture(scope="module")
def theirs() -> dict[str, tiktoken.Encoding]:
    return {name: tiktoken.get_encoding(name) for name in ENCODINGS}


@pytest.fixture(scope="module")
def ours() -> dict[str, FastBpe]:
    counter = TiktokenCounter(cache_dir=SHARED_TIKTOKEN, download=False)
    loaded = {name: counter._load(name) for name in ENCODINGS}
    assert all(isinstance(x, FastBpe) for x in loaded.values()), loaded
    return loaded  # type: ignore[return-value]


def test_toktok_is_used_here() -> None:
    """The installed versions are the checked ones: a bump of either fails here, not silently
    slower in production (derive the table again, below, and update ``CHECKED_WITH``)."""
    assert not isinstance(fast_bpe.toktok_class(), str), fast_bpe.toktok_class()


def _disputed_between(name: str, start: int, stop: int) -> list[int]:
    """In a worker process: ``derive_disputed`` for code points ``start`` to ``stop``."""
    from toktok import _toktok

    encode = tiktoken.get_encoding(name).encode_ordinary
    core = _toktok.Tokenizer(name, "")
    return list(derive_disputed(lambda text: len(encode(text)), core.count, range(start, stop)))


def test_the_disputed_table_is_complete_for_the_installed_versions() -> None:
    """Every code point, in every probe context, with both libraries (a minute of CPU, on
    both cores)."""
    step = 0x110000 // 4
    slices = [
        (name, lo, min(lo + step, 0x110000))
        for name in ENCODINGS
        for lo in range(0, 0x110000, step)
    ]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        found = [
            cp for part in pool.map(_disputed_between, *zip(*slices, strict=True)) for cp in part
        ]
    ranges = as_ranges(found)
    shown = ", ".join(f"(0x{a:X}, 0x{b:X})" for a, b in ranges)
    assert ranges == list(DISPUTED), f"DISPUTED for the installed versions: {shown}"


def _texts() -> st.SearchStrategy[str]:
    disputed = st.sampled_from([chr(a) for a, _ in DISPUTED] + [chr(b) for _, b in DISPUTED])
    pieces = st.one_of(
        st.text(max_size=40),  # any character but a lone surrogate
        st.text(st.characters(categories=("Cs", "Ll", "Lu", "Nd", "Zs", "Po", "Mn")), max_size=20),
        st.sampled_from([*SPECIALS, "'s", "'LL", "\r\n", "   ", "1234567", "ǅ", "\u0300"]),
        disputed,
    )
    return st.lists(pieces, max_size=12).map("".join)


@settings(max_examples=1500, deadline=None)
@given(text=_texts())
def test_every_count_is_tiktokens(
    text: str, ours: dict[str, FastBpe], theirs: dict[str, tiktoken.Encoding]
) -> None:
    for name in ENCODINGS:
        expected = len(theirs[name].encode_ordinary(text))
        assert ours[name].count(text) == expected, (name, text)


def _edges() -> st.SearchStrategy[str]:
    """Texts of any plane around the edges of every disputed range (and of the planes)."""
    edges = sorted(
        {cp + d for a, b in DISPUTED for cp in (a, b) for d in (-1, 0, 1)}
        | {0xFFFF, 0x10000, 0x10FFFF}
    )
    near = st.sampled_from([chr(cp) for cp in edges if not 0xD800 <= cp <= 0xDFFF])
    plane = st.sampled_from(["", "a", "é", "Ж", "漢", "😀", "\U000325e4"])
    return st.lists(st.one_of(near, plane, st.text(max_size=8)), max_size=10).map("".join)


@settings(max_examples=3000, deadline=None)
@given(text=_edges())
def test_disputed_is_one_class_of_every_range(text: str) -> None:
    """The split look-up (within the Basic Multilingual Plane, then past it) finds what one
    class of every range finds."""
    every = fast_bpe._char_class(DISPUTED)
    assert fast_bpe.disputed(text) is (every.search(text) is not None), ascii(text)


def test_disputed_finds_each_range_in_each_plane() -> None:
    for a, b in DISPUTED:
        for cp in (a, b):
            for around in ("{}", "a{}b", "漢{}漢", "😀{}😀"):
                assert fast_bpe.disputed(around.format(chr(cp))), hex(cp)
        assert not fast_bpe.disputed(f"😀{chr(a - 1)}漢")  # below each range: none of it


def test_a_disputed_text_is_counted_by_tiktoken(
    ours: dict[str, FastBpe], theirs: dict[str, tiktoken.Encoding]
) -> None:
    from toktok import _toktok

    text = f"{NEW_LETTER}#axt"
    tiktokens = len(theirs["o200k_base"].encode_ordinary(text))
    assert _toktok.Tokenizer("o200k_base", "").count(text) != tiktokens  # toktok alone differs
    assert ours["o200k_base"].count(text) == tiktokens == 7
    lone = f"a\ud800b{NEW_LETTER}#a"  # a lone surrogate and a disputed character
    assert ours["o200k_base"].count(lone) == len(theirs["o200k_base"].encode_ordinary(lone))


def test_without_bpe_files_toktok_counts_and_nothing_falls_back_to_chars4(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, theirs: dict[str, tiktoken.Encoding]
) -> None:
    """No BPE file and no download: every text still has its count (no chars/4 estimate); a
    disputed one is counted by toktok, said once."""
    from toktok import _toktok

    toktoks = _toktok.Tokenizer("o200k_base", "").count
    counter = TiktokenCounter(cache_dir=tmp_path, download=False)
    text = "Counting without tiktoken's files"
    with caplog.at_level(logging.INFO):
        assert counter.count(text, "o200k_base") == len(theirs["o200k_base"].encode_ordinary(text))
        for disputed in (f"{NEW_LETTER}#axt", f"{NEW_LETTER}#bxt"):
            assert counter.count(disputed, "o200k_base") == toktoks(disputed)
    assert toktoks(f"{NEW_LETTER}#axt") == 6  # tiktoken's is 7
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("tokenizer_exact_unavailable") == 1
    assert "tokenizer_unavailable" not in events
    assert list(tmp_path.iterdir()) == []  # nothing fetched or written


@pytest.fixture
def fresh_check() -> Iterator[None]:
    fast_bpe.toktok_class.cache_clear()
    yield
    fast_bpe.toktok_class.cache_clear()


def test_other_versions_leave_counting_to_tiktoken(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_check: None
) -> None:
    monkeypatch.setitem(fast_bpe.CHECKED_WITH, "toktok-rs", "0.0.1")  # type: ignore[index]
    counter = TiktokenCounter(cache_dir=SHARED_TIKTOKEN, download=False)
    with caplog.at_level(logging.INFO):
        assert counter.count("hello world", "cl100k_base") == 2
        assert counter.count("hello world", "o200k_base") == 2
    assert isinstance(counter._load("cl100k_base"), Bpe)
    said = [r for r in caplog.records if getattr(r, "event", None) == "tokenizer_fast_off"]
    assert len(said) == 1 and "0.0.1" in said[0].getMessage()


def test_switched_off_by_the_config(tmp_path: Path) -> None:
    from planner.config import load_config
    from planner.runtime.wiring import catalog_for, token_counter

    for fast, kind in ((False, Bpe), (True, FastBpe)):
        path = tmp_path / "planner.yaml"
        path.write_text(f"tokenizer: {{cache_dir: {SHARED_TIKTOKEN}, fast: {str(fast).lower()}}}\n")
        cfg = load_config(path)
        counter = token_counter(cfg, catalog_for(cfg))
        assert counter.count("hello world", "o200k_base") == 2
        assert isinstance(counter._load("o200k_base"), kind)


def test_an_encoding_outside_the_table_is_tiktokens() -> None:
    assert fast_bpe.load("p50k_base", exact=lambda: None) is None
    assert as_ranges([5, 3, 4, 9, 9]) == [(3, 5), (9, 9)]


def test_a_counter_is_freed_as_it_is_dropped() -> None:
    """No reference cycle through toktok's tiktoken loader: ``release`` and the end of a
    counter free its encodings without a collection of the whole heap."""
    import gc
    import weakref

    gc.disable()
    try:
        counter = TiktokenCounter(cache_dir=SHARED_TIKTOKEN, download=False)
        assert counter.count(f"{NEW_LETTER}#axt", "o200k_base") == 7  # tiktoken loaded too
        dropped = weakref.ref(counter)
        del counter
        assert dropped() is None
    finally:
        gc.enable()
