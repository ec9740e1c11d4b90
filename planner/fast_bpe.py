"""toktok's byte-pair encoder behind tiktoken's counts: the same numbers, about 9x sooner.

Counting tokens is most of what planning a spool costs (the issue's floor is a plain tiktoken
loop). toktok (``toktok-rs`` on PyPI, MIT, a Rust core with the vocabularies compiled in)
counts cl100k_base and o200k_base texts without building the tokens: 0.10 s where tiktoken
took 0.92 s for the 38,434 o200k_base texts of the benchmark's corpus, and 0.12 us against
0.78 us for a short embedding text. It needs no BPE file, so it also counts where tiktoken's
files are missing.

Its counts equal tiktoken's except where the two split a text differently before merging:
toktok classes characters by Unicode 17.0, tiktoken's regular expressions by an older table,
so a character new in 17.0 (a CJK Extension J ideograph, say) is a letter to one and not to the
other, and a text holding one can count one token apart. ``DISPUTED`` lists every such code
point of the checked pair of versions (``CHECKED_WITH``), found by ``derive_disputed``, which
counts each code point in contexts that exercise every class the two encodings' patterns use
(letters of each case, digits, spaces, marks, punctuation, contractions) with both libraries.
A text holding one is counted by tiktoken (``FastBpe``'s ``exact``). With other versions
installed the table may be incomplete, so toktok is not used at all (``load`` answers
``None``): a version bump shows as a failing test (``tests/unit/test_fast_bpe.py``, which
derives the table again for the installed versions and prints it where it changed).

``tokenizer.fast: false`` in the config turns toktok off (tiktoken counts every text).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from importlib import metadata
from typing import Any, Protocol

_log = logging.getLogger(__name__)

CHECKED_WITH: Mapping[str, str] = {"tiktoken": "0.14.0", "toktok-rs": "0.3.0"}
ENCODINGS = frozenset({"cl100k_base", "o200k_base"})  # what the table was derived for

# code points toktok and tiktoken class differently (inclusive ranges), for CHECKED_WITH:
# the characters Unicode 17.0 added to the letter and mark classes
DISPUTED: tuple[tuple[int, int], ...] = (
    (0x88F, 0x88F), (0xC5C, 0xC5C), (0xCDC, 0xCDC), (0x1ACF, 0x1ADD), (0x1AE0, 0x1AEB),
    (0xA7CE, 0xA7CF), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4), (0xA7F1, 0xA7F1),
    (0x10940, 0x10959), (0x10EC5, 0x10EC7), (0x10EFA, 0x10EFB), (0x11B60, 0x11B67),
    (0x11DB0, 0x11DDB), (0x11DE0, 0x11DE9), (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3),
    (0x16FF2, 0x16FF6), (0x187F8, 0x187FF), (0x18D09, 0x18D1E), (0x18D80, 0x18DF2),
    (0x1E6C0, 0x1E6DE), (0x1E6E0, 0x1E6F5), (0x1E6FE, 0x1E6FF), (0x2B73A, 0x2B73F),
    (0x2CEA2, 0x2CEAD), (0x323B0, 0x33479),
)  # fmt: skip

# each code point is counted in these contexts ({c}: the code point) by both libraries
PROBES = (
    "{c}", "a{c}", "{c}a", "A{c}a", "a{c}A", " {c}", "#{c}", "{c}#", "{c}#a", "1{c}1", "12{c}",
    "{c}12", "{c}'s", "{c}{c}{c}", " {c} ", "\n{c}", "{c}\n", "{c} a", "a {c}", "{c}ab", "#a{c}",
)  # fmt: skip


def _char_class(ranges: Iterable[tuple[int, int]]) -> re.Pattern[str]:
    parts = (re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b != a else "") for a, b in ranges)
    return re.compile(f"[{''.join(parts)}]")


def _split_at(ranges: Iterable[tuple[int, int]], first: int) -> tuple[list[tuple[int, int]], ...]:
    """``ranges`` cut in two: the parts below ``first``, and those from it on."""
    below = [(a, min(b, first - 1)) for a, b in ranges if a < first]
    above = [(max(a, first), b) for a, b in ranges if b >= first]
    return below, above


_ASTRAL_FROM = 0x10000
_BMP, _ASTRAL_DISPUTED = (_char_class(part) for part in _split_at(DISPUTED, _ASTRAL_FROM))
_ASTRAL = _char_class([(_ASTRAL_FROM, 0x10FFFF)])


def disputed(text: str) -> bool:
    """Whether ``text`` holds a code point of ``DISPUTED``.

    One class of all 27 ranges walked a text of the Basic Multilingual Plane (CJK, Cyrillic,
    Arabic ...) at ~30 ns a character, a class of the ranges within the plane alone at ~3 ns
    (measured, CPython 3.11's ``re``): 0.48 s against 0.05 s for the 70,256 texts in other
    scripts of a 100,000-request spool, where toktok took ~1.8 s to count them. So the ranges
    within the plane are looked for in one class, and those past it only in a text that holds
    a character past U+FFFF at all (an emoji, say)."""
    if _BMP.search(text) is not None:
        return True
    return _ASTRAL.search(text) is not None and _ASTRAL_DISPUTED.search(text) is not None


class Counts(Protocol):
    """What counts a text: tiktoken's ``Bpe`` (``planner.tokenizers``) or this module's."""

    def count(self, text: str) -> int: ...


class FastBpe:
    """One encoding's counts by toktok, by tiktoken (``exact``, made when first needed) for a
    text holding a disputed character. Without tiktoken's encoding (its BPE file missing)
    such a text is counted by toktok, at most a token or so from tiktoken's count."""

    __slots__ = ("_asked", "_count", "_exact", "_make_exact", "name")

    def __init__(self, name: str, core: Any, exact: Callable[[], Counts | None]) -> None:
        self.name = name
        self._count: Callable[[str], int] = core.count
        self._make_exact = exact
        self._exact: Counts | None = None
        self._asked = False  # whether ``exact`` was made (or found unavailable)

    def count(self, text: str) -> int:
        """``len(tiktoken encode_ordinary(text))``: special-token text counted as ordinary
        text, lone surrogates replaced as tiktoken replaces them."""
        if text.isascii() or not disputed(text):
            try:
                return self._count(text)
            except UnicodeEncodeError:  # a lone surrogate: tiktoken counts it as U+FFFD
                text = replaced(text)
                if not disputed(text):
                    return self._count(text)
        exact = self._exact_counts()
        return exact.count(text) if exact is not None else self._count(replaced(text))

    def _exact_counts(self) -> Counts | None:
        if not self._asked:
            self._asked = True
            self._exact = self._make_exact()
            if self._exact is None:
                _log.info(
                    "tiktoken's %s is unavailable: a text with a character new in Unicode "
                    "17.0 is counted by toktok, which may differ from it by a token",
                    self.name,
                    extra={"event": "tokenizer_exact_unavailable", "encoding": self.name},
                )
        return self._exact


def replaced(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, as tiktoken replaces them."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@cache
def toktok_class() -> Any:
    """toktok's tokenizer class, or why it is not used (logged once per process)."""
    versions = {name: _installed(name) for name in CHECKED_WITH}
    if versions != dict(CHECKED_WITH):
        why = f"versions {versions} are not the checked {dict(CHECKED_WITH)}"
    else:
        try:
            from toktok import _toktok
        except ImportError as exc:
            why = f"cannot import toktok ({exc})"
        else:
            return _toktok.Tokenizer
    _log.info("counting tokens with tiktoken only: %s", why, extra={"event": "tokenizer_fast_off"})
    return why


def load(encoding: str, exact: Callable[[], Counts | None]) -> FastBpe | None:
    """``encoding`` counted by toktok, or ``None`` (tiktoken counts): an encoding the table
    was not derived for, toktok not installed, or another version of it or of tiktoken."""
    if encoding not in ENCODINGS:
        return None
    found = toktok_class()
    if isinstance(found, str):
        return None
    try:
        core = found(encoding, "")
    except Exception as exc:  # never lose counting to it: tiktoken is still there
        _log.warning("toktok could not load %s (%s)", encoding, exc)
        return None
    return FastBpe(encoding, core, exact)


def derive_disputed(
    tiktoken_count: Callable[[str], int],
    toktok_count: Callable[[str], int],
    code_points: Iterable[int] = range(0x80, 0x110000),
) -> Iterator[int]:
    """Code points whose count differs between the two in any of ``PROBES`` (surrogates,
    which no text holds as such, are skipped)."""
    for cp in code_points:
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if any(
            tiktoken_count(p.replace("{c}", c)) != toktok_count(p.replace("{c}", c)) for p in PROBES
        ):
            yield cp


def as_ranges(code_points: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted code points as inclusive ranges."""
    ranges: list[tuple[int, int]] = []
    for cp in sorted(set(code_points)):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges
