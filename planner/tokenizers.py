"""tiktoken's counts behind ``planner.core.estimate.TokenCounter``: exact, offline-safe.

A counter asks ``planner.fast_bpe`` first: toktok counts cl100k_base and o200k_base texts as
tiktoken does, about 9x sooner and without a BPE file, and hands a text it could count
differently to tiktoken, loaded as below when first needed (``fast=False``: tiktoken for all).

tiktoken downloads a BPE file on first use and caches it under ``TIKTOKEN_CACHE_DIR`` with the
SHA-1 of the download URL as the file name; its download has no timeout. planner runs on
machines without internet, so this adapter never lets tiktoken reach for the network itself.
When the cached file is missing it fetches it once, with a timeout (``download_timeout``; off
with ``download=False``), checks its SHA-256 and writes it into the cache atomically. If that
fails too, it logs one ``tokenizer_unavailable`` warning per encoding and answers ``None``, so
the estimate falls back to the chars/4 rule. Operators can also put the files in a cache
directory of their own (``cache_dir``) — see ``expected_cache_file``.

Counts of repeated texts are remembered (``CountCache``): real traffic repeats its system
prompts, instructions and tool definitions on every request, and a dictionary look-up costs a
hash of the text (once per string object) where the BPE costs a regular-expression pass and the
merges. The cache is bounded by the characters it holds, so memory stays flat whatever the spool.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import types
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken import _tiktoken  # type: ignore[attr-defined]
from tiktoken_ext import openai_public

from planner import fast_bpe, heap
from planner.bpe_ranks import ranks_of
from planner.core.catalog import Catalog
from planner.fast_bpe import Counts

_log = logging.getLogger(__name__)

EVENT_TOKENIZER_UNAVAILABLE = "tokenizer_unavailable"
FALLBACK = "chars/4"

_BASE = "https://openaipublic.blob.core.windows.net/encodings/"
# encoding -> (URL tiktoken downloads, SHA-256 tiktoken expects); from tiktoken_ext.openai_public
_FILES: dict[str, tuple[str, str]] = {
    "o200k_base": (
        _BASE + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        _BASE + "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "p50k_base": (
        _BASE + "p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    ),
    "r50k_base": (
        _BASE + "r50k_base.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    ),
}


def _cache_dir() -> Path | None:
    """Where tiktoken looks, by its own rules; ``None`` when caching is disabled."""
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if name in os.environ:
            return Path(os.environ[name]) if os.environ[name] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def expected_cache_file(encoding: str, cache_dir: Path) -> Path | None:
    """The file tiktoken reads for ``encoding`` in ``cache_dir`` (``None``: unknown encoding)."""
    known = _FILES.get(encoding)
    if known is None:
        return None
    return cache_dir / hashlib.sha1(known[0].encode()).hexdigest()


def _read_verified(encoding: str, cache_dir: Path | None) -> bytes | str:
    """The BPE file of ``encoding`` in ``cache_dir``, read and checked against its SHA-256, or
    why it cannot be had without the network."""
    if cache_dir is None:
        return "TIKTOKEN_CACHE_DIR is empty (caching disabled)"
    path = expected_cache_file(encoding, cache_dir)
    if path is None:
        return "no known BPE file for this encoding"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"BPE file missing: {path}"
    except OSError as exc:
        return f"BPE file unreadable: {path} ({exc.strerror})"
    if hashlib.sha256(data).hexdigest() != _FILES[encoding][1]:
        return f"BPE file corrupt (SHA-256 mismatch): {path}"
    return data


_NONE_ALLOWED: frozenset[str] = frozenset()  # special tokens allowed to count as special
_RANK_BYTES = 4  # tiktoken's ``Rank`` is a u32
BUFFER_FROM_CHARS = 200  # texts this long or longer are counted from tiktoken's buffer


class Bpe:
    """One encoding's byte-pair encoder: tiktoken's own ``CoreBPE``, without the
    ``tiktoken.Encoding`` around it, which keeps the merge ranks a second time as a Python dict
    (36 MiB for o200k_base and cl100k_base together, in every process) only to pickle itself.
    planner never pickles an encoding: read workers are forked with it or build their own."""

    __slots__ = ("_core", "_to_buffer", "name")

    def __init__(self, name: str, core: Any) -> None:
        self.name = name
        self._core = core
        # the tokens as one buffer of 4-byte ranks, the way tiktoken's ``encode_to_numpy``
        # asks for them: no Python ``int`` and no list per token (18% of counting a text of
        # 2,000 characters; ``count`` says where it does not pay). With no special token
        # allowed it encodes special-token text as ordinary text, exactly as
        # ``encode_ordinary`` (a test holds the two equal)
        self._to_buffer = getattr(core, "encode_to_tiktoken_buffer", None)

    def encode_ordinary(self, text: str) -> list[int]:
        """Tokens of ``text``, special-token text counted as ordinary text (tiktoken's
        ``Encoding.encode_ordinary``, lone surrogates replaced as it replaces them)."""
        try:
            return self._core.encode_ordinary(text)  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            text = fast_bpe.replaced(text)
            return self._core.encode_ordinary(text)  # type: ignore[no-any-return]

    def count(self, text: str) -> int:
        """``len(self.encode_ordinary(text))``, without building the list of tokens where that
        pays: the buffer's fixed cost (it also looks for special tokens to allow) is more than
        a short text's list of tokens (a 30-character text: 1.6 us, 1.2 us by the list; 2,000
        characters: 65 us, 79 us by the list)."""
        to_buffer = self._to_buffer
        if to_buffer is None or len(text) < BUFFER_FROM_CHARS:
            return len(self.encode_ordinary(text))
        try:
            tokens = to_buffer(text, _NONE_ALLOWED)
        except UnicodeEncodeError:
            text = fast_bpe.replaced(text)
            tokens = to_buffer(text, _NONE_ALLOWED)
        # bytes over the rank's 4: tiktoken 0.14's buffer states its length in bytes right
        # (its ``shape`` counts bytes as items, so ``len`` of a view would be 4x too many)
        return memoryview(tokens).nbytes // _RANK_BYTES


class _Encoded:
    """tiktoken's own ``Encoding`` as ``Counts`` (where planner's own load of it failed)."""

    __slots__ = ("_encode",)

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encode = encoding.encode_ordinary

    def count(self, text: str) -> int:
        return len(self._encode(text))


def _encoding_from(encoding: str, data: bytes) -> Bpe | None:
    """tiktoken's ``encoding`` built from the verified file ``data``, its ranks parsed once
    per machine (``bpe_ranks.ranks_of``).

    The pattern and special tokens are tiktoken's own: its constructor for ``encoding`` runs
    as written, in a copy of its module's namespace whose ``load_tiktoken_bpe`` answers with
    the ranks already read, so nothing of tiktoken is copied here or changed for others.
    ``None`` when tiktoken has no such constructor (the caller then asks tiktoken itself).
    """
    constructor = openai_public.ENCODING_CONSTRUCTORS.get(encoding)
    if constructor is None:
        return None
    ranks = ranks_of(encoding, data, _FILES[encoding][1])
    namespace = {**constructor.__globals__, "load_tiktoken_bpe": lambda *_a, **_k: ranks}
    spec = types.FunctionType(constructor.__code__, namespace, constructor.__name__)()
    core = _tiktoken.CoreBPE(spec["mergeable_ranks"], spec["special_tokens"], spec["pat_str"])
    return Bpe(spec["name"], core)


def _fetch(encoding: str, cache_dir: Path, base: str, timeout: float) -> str | None:
    """Download one BPE file into the cache; ``None`` on success, else why it failed."""
    import httpx

    known = _FILES.get(encoding)
    target = expected_cache_file(encoding, cache_dir)
    if known is None or target is None:
        return "no known BPE file for this encoding"
    url = base + known[0].removeprefix(_BASE)
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return f"download from {url} failed ({type(exc).__name__})"
    if hashlib.sha256(response.content).hexdigest() != known[1]:
        return f"download from {url} has the wrong SHA-256"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(response.content)
        partial.replace(target)
    except OSError as exc:
        return f"cannot write {target} ({exc.strerror})"
    return None


MODELS_REMEMBERED = 1024  # models whose encoding is remembered (a hostile spool names many)
CACHE_CHARS = 4_000_000  # characters of text the count cache may hold (~4-16 MB)
# toktok counts a text shorter than this sooner than the cache finds it: measured on the
# benchmark's texts, caching only longer ones took 0.094 s where caching all took 0.127 s
# (20,000 requests in English) and 1.56 s against 1.62 s (100,000, 40% in other scripts);
# tiktoken, ~9x slower, still caches every text (a short system prompt repeats most of all)
FAST_CACHED_FROM_CHARS = 256


class CountCache:
    """Token counts of texts already counted, per encoding; the least recently used leave first
    once the cached texts exceed ``max_chars`` characters in all. An ``OrderedDict`` keeps the
    order: moving a hit to the end and dropping the oldest are O(1) (a plain dict popped from
    the front leaves holes that every later ``next(iter(...))`` walks over)."""

    def __init__(self, max_chars: int = CACHE_CHARS) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self.counts: OrderedDict[tuple[str, str], int] = OrderedDict()

    def get(self, text: str, encoding: str) -> int | None:
        key = (text, encoding)
        count = self.counts.get(key)
        if count is not None:
            self.counts.move_to_end(key)  # most recently used last
        return count

    def put(self, text: str, encoding: str, count: int) -> None:
        size = len(text)
        if size > self.max_chars // 4:  # one text never crowds out the rest
            return
        counts = self.counts
        while counts and self.chars + size > self.max_chars:
            (oldest, _), _ = counts.popitem(last=False)
            self.chars -= len(oldest)
        counts[(text, encoding)] = count
        self.chars += size


@dataclass(frozen=True, slots=True)
class BpeFiles:
    """Where tiktoken's BPE files come from: ``cache_dir`` (the operator's, else
    ``TIKTOKEN_CACHE_DIR``) and a download when missing. Apart from the counter, so toktok's
    ``exact`` loader holds no reference back to it (no cycle: a released counter's encodings
    are freed as they are dropped)."""

    cache_dir: Path | None
    download: bool
    timeout: float
    base: str

    def load(self, encoding: str, warn: bool = True) -> Counts | None:
        """tiktoken's ``encoding`` from its verified BPE file, or ``None`` (logged as the
        fallback to chars/4 when ``warn``: not for the texts toktok counts otherwise)."""
        cache_dir = self.cache_dir if self.cache_dir is not None else _cache_dir()
        found = _read_verified(encoding, cache_dir)
        if isinstance(found, str) and self.download and cache_dir is not None:
            fetched = _fetch(encoding, cache_dir, self.base, self.timeout)
            if fetched is None:
                found = _read_verified(encoding, cache_dir)
            else:
                found = f"{found}; {fetched}"
        problem = found if isinstance(found, str) else None
        if isinstance(found, bytes):
            try:
                loaded = _encoding_from(encoding, found)
                if loaded is not None:
                    return loaded
            except Exception:  # another tiktoken inside: its own loader still works
                _log.debug("fast BPE load failed for %s", encoding, exc_info=True)
            try:
                if self.cache_dir is not None:  # tiktoken reads it from the environment
                    os.environ["TIKTOKEN_CACHE_DIR"] = str(self.cache_dir)
                return _Encoded(tiktoken.get_encoding(encoding))
            except Exception as exc:  # tiktoken raises ValueError, OSError, ...; never crash
                problem = f"{type(exc).__name__}: {exc}"
        if not warn:
            return None
        _log.warning(
            "tokenizer unavailable: encoding %s (%s); estimating with %s",
            encoding,
            problem,
            FALLBACK,
            extra={
                "event": EVENT_TOKENIZER_UNAVAILABLE,
                "encoding": encoding,
                "fallback": FALLBACK,
            },
        )
        return None


class TiktokenCounter:
    """Counts tokens as tiktoken does (by toktok where it may); encodings are loaded once and
    cached (also the failures)."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        cache_dir: Path | None = None,
        download: bool = True,
        download_timeout: float = 10.0,
        download_base: str = _BASE,
        fast: bool = True,
    ) -> None:
        """``cache_dir`` (the operator's) replaces ``TIKTOKEN_CACHE_DIR`` when loading.
        ``fast=False``: tiktoken counts every text (``planner.fast_bpe`` is not asked)."""
        self._catalog = catalog
        self._files = BpeFiles(cache_dir, download, download_timeout, download_base)
        self._fast = fast
        self._encodings: dict[str, Counts | None] = {}
        self._cache = CountCache()
        self._encoding_of: dict[str, str | None] = {}

    def encoding_for(self, model: str) -> str | None:
        """The catalog entry's ``encoding``, else tiktoken's own model table, else ``None``
        (remembered per model: tiktoken tries its prefixes in turn on every call)."""
        known = self._encoding_of
        if model in known:
            return known[model]
        entry = self._catalog.get(model) if self._catalog is not None else None
        if entry is not None and entry.encoding is not None:
            found: str | None = entry.encoding
        else:
            try:
                found = str(tiktoken.encoding_name_for_model(model))
            except KeyError:
                found = None
        if len(known) < MODELS_REMEMBERED:
            known[model] = found
        return found

    def count(self, text: str, encoding: str) -> int | None:
        """Tokens of ``text`` (special-token text counted as ordinary text), or ``None``."""
        loaded = self._load(encoding)
        if loaded is None:
            return None
        if len(text) < FAST_CACHED_FROM_CHARS and type(loaded) is fast_bpe.FastBpe:
            return loaded.count(text)
        cached = self._cache.get(text, encoding)
        if cached is not None:
            return cached
        counted = loaded.count(text)
        self._cache.put(text, encoding, counted)
        return counted

    def load(self, encoding: str) -> bool:
        """Load ``encoding`` without counting anything (``pipeline.read_pool.Loads``);
        whether it could be."""
        return self._load(encoding) is not None

    def release(self) -> None:
        """Drop the loaded encodings (~75 MiB for o200k_base and cl100k_base) and the counts
        cache, and hand the freed memory back to the system: for a single pass once its
        intake measured every request (``run --once``), whose later stages count nothing
        more. A count asked for later loads its encoding again. Neither holds a reference
        cycle, so both are freed as they are dropped: no collection of the whole heap (0.1 s
        after an intake of 20,000 requests) is needed before the trim."""
        self._encodings.clear()
        self._cache = CountCache(self._cache.max_chars)
        heap.trim()

    def _load(self, encoding: str) -> Counts | None:
        if encoding not in self._encodings:
            self._encodings[encoding] = self._try_load(encoding)
        return self._encodings[encoding]

    def _try_load(self, encoding: str) -> Counts | None:
        """toktok where it counts as tiktoken does (``planner.fast_bpe``), else tiktoken."""
        if self._fast:
            fast = fast_bpe.load(encoding, exact=partial(self._files.load, encoding, False))
            if fast is not None:
                return fast
        return self._files.load(encoding)
