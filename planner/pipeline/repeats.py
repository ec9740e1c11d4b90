"""Keys that come again, judged for ``planner plan`` as intake will judge them.

Intake stores each unit (a spool file) in turn, and the store's unique ``(source, key)`` decides
what a key seen before becomes (``store.requests.ingest``): the same request again is an
idempotent no-op counted as a duplicate; another request under that key is quarantined as
``duplicate_id`` and the stored one stands. The dry run stores nothing, so it keeps what the
sources have shown so far (``SeenContents``: a fingerprint per key) next to the store, read
only: a repeat of a stored key is judged by the store's own ``same_content`` (or, for a request
read without its body, by the fingerprint of the stored body), a repeat of a key read earlier in
this run by its fingerprint. Repeats inside one file are the parser's job already.

Memory stays bounded: the fingerprints spill from a dict into a temporary on-disk SQLite
database past ``memory_bytes``, and the store is asked once per chunk of requests.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.core.model import BODY_NOT_LOADED, Request
from planner.pipeline.measure import canonical_json, fingerprint
from planner.sources.base import LineError, ParsedLine
from planner.sources.formats import Reason

if TYPE_CHECKING:  # the store's own comparison is imported where a stored key is judged:
    # a dry run without a store needs neither it nor SQLAlchemy
    from planner.store.requests import StoredContent

DUPLICATE_ID = Reason.DUPLICATE_ID.value
CHUNK = 1000  # lines held back per look-up in the store
DEFAULT_MEMORY_BYTES = 16 << 20  # fingerprints kept in a dict before spilling to disk
# bytes an entry costs besides its key's and digest's lengths: its slot in the source's dict
# (~38 measured), the key's and the digest's object headers (~49 and ~33). Keyed by source,
# then key: a dict of (source, key) tuples cost 70 bytes an entry more, and spilled at 84,000
ENTRY_OVERHEAD = 120
_KEYS_PER_QUERY = 500  # under SQLite's oldest limit of 999 parameters a statement

StoreLookup = Callable[[str, Sequence[str]], "dict[str, StoredContent]"]
"""``(source, keys)`` -> the stored content of those keys the store already holds."""


def conflict_message(key: str) -> str:
    """Why a request whose key is stored with other content is quarantined."""
    return (
        f"key {key!r} is already stored with a different request "
        "(model, endpoint or body); the stored one stands and this one is not sent"
    )


def digest_of(request: Request) -> bytes:
    """The fingerprint of ``request``'s content: measured at intake, else computed now."""
    if request.measured is not None:
        return request.measured.digest
    return fingerprint(request.model, request.endpoint.value, canonical_json(request.body))


class SeenContents:
    """``(source, key)`` -> the fingerprint of the first content seen under it
    (``pipeline.measure.fingerprint``: equal requests, equal fingerprints), spilling to disk
    when large. A fingerprint is 16 bytes where the body was kilobytes: a million keys fit."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self._limit = memory_bytes
        self._size = 0
        self._seen: dict[str, dict[str, bytes]] = {}  # source -> key -> digest
        self._db: sqlite3.Connection | None = None

    def put(self, source: str, key: str, digest: bytes) -> None:
        if self._db is not None:
            self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)", (source, key, digest))
            return
        keys = self._seen.get(source)
        if keys is None:
            keys = self._seen[source] = {}
        keys[key] = digest
        self._size += len(key) + len(digest) + ENTRY_OVERHEAD
        if self._size > self._limit:
            self._spill()

    def first_seen(self, items: Sequence[tuple[str, str, bytes]]) -> list[bytes | None]:
        """For each ``(source, key, digest)`` in turn, the fingerprint first seen under its key,
        earlier or earlier in ``items`` (``None``: this is the first, now remembered). Once
        spilled, one query per few hundred keys, not one per key."""
        spilled = self._spilled(items) if self._db is not None else None
        firsts: dict[tuple[str, str], bytes] = {}
        found: list[bytes | None] = []
        no_keys: dict[str, bytes] = {}
        for source, key, digest in items:
            pair = (source, key)
            first = firsts.get(pair)
            if first is None:
                if spilled is not None:
                    first = spilled.get(pair)
                else:
                    first = self._seen.get(source, no_keys).get(key)
            if first is None:
                firsts[pair] = digest
            found.append(first)
        if self._db is not None:
            self._db.executemany(
                "INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                ((s, k, d) for (s, k), d in firsts.items()),
            )
        else:
            for (source, key), digest in firsts.items():
                self.put(source, key, digest)
        return found

    def _spilled(self, items: Sequence[tuple[str, str, bytes]]) -> dict[tuple[str, str], bytes]:
        assert self._db is not None
        by_source: dict[str, list[str]] = {}
        for source, key, _ in items:
            by_source.setdefault(source, []).append(key)
        found: dict[tuple[str, str], bytes] = {}
        for source, keys in by_source.items():
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                part = keys[start : start + _KEYS_PER_QUERY]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT k, digest FROM seen WHERE source = ? AND k IN ({marks})",
                    (source, *part),
                )
                found.update(((source, k), bytes(d)) for k, d in rows)
        return found

    def _spill(self) -> None:
        db = sqlite3.connect("")  # a temporary on-disk database, deleted when closed
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(
            "CREATE TABLE seen (source TEXT, k TEXT, digest BLOB, PRIMARY KEY (source, k))"
            " WITHOUT ROWID"
        )
        rows = sorted((s, k, d) for s, keys in self._seen.items() for k, d in keys.items())
        db.executemany(  # in key order: appended to the B-tree, twice as fast as in read order
            "INSERT INTO seen VALUES (?, ?, ?)", rows
        )
        self._seen = {}
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._seen = {}


@dataclass(slots=True)
class Repeats:
    """Judges requests whose key came before; ``duplicates`` counts the no-ops."""

    lookup: StoreLookup | None
    seen: SeenContents
    duplicates: int = 0

    def judge(self, lines: Iterable[ParsedLine]) -> Iterator[ParsedLine]:
        """``lines`` minus the no-op repeats, with conflicting repeats as ``duplicate_id``
        errors, in order."""
        chunk: list[ParsedLine] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= CHUNK:
                yield from self._judge_chunk(chunk)
                chunk = []
        yield from self._judge_chunk(chunk)

    def _judge_chunk(self, chunk: list[ParsedLine]) -> Iterator[ParsedLine]:
        stored = self._stored([x for x in chunk if isinstance(x, Request)])
        unstored = [
            (x.source, x.key, digest_of(x))
            for x in chunk
            if isinstance(x, Request) and (x.source, x.key) not in stored
        ]
        earlier = iter(self.seen.first_seen(unstored))
        digests = iter(unstored)
        for line in chunk:
            if isinstance(line, LineError):
                yield line
                continue
            in_store = stored.get((line.source, line.key))
            if in_store is not None:
                same = _same_as_stored(in_store, line)
            else:
                first, (_, _, digest) = next(earlier), next(digests)
                if first is None:
                    yield line
                    continue
                same = first == digest
            if same:
                self.duplicates += 1
            else:
                yield _conflict(line)

    def _stored(self, requests: list[Request]) -> dict[tuple[str, str], StoredContent]:
        if self.lookup is None or not requests:
            return {}
        by_source: dict[str, list[str]] = {}
        for r in requests:
            by_source.setdefault(r.source, []).append(r.key)
        return {
            (source, key): content
            for source, keys in by_source.items()
            for key, content in self.lookup(source, keys).items()
        }


def _same_as_stored(row: StoredContent, request: Request) -> bool:
    """``same_content``; for a request read without its body (``plan``'s read workers send
    the measured fingerprint instead), by the fingerprint of the stored body."""
    from planner.store.requests import same_content

    measured = request.measured
    if request.body is not BODY_NOT_LOADED or measured is None:
        return same_content(row, request)

    def same_body(body_json: str) -> bool:
        stored = canonical_json(json.loads(body_json))
        return fingerprint(row.model, row.endpoint, stored) == measured.digest

    return same_content(row, request, same_body)


def _conflict(request: Request) -> LineError:
    from planner.store.requests import content_of

    file, _, number = request.origin.rpartition(":")
    line = int(number) if number.isdigit() else 0
    return LineError(
        file=file or request.origin,
        line=line,
        reason=DUPLICATE_ID,
        message=f"{request.origin}: {conflict_message(request.key)}",
        # a dry run quarantines nothing: a body left with the read worker is not missed
        raw="" if request.body is BODY_NOT_LOADED else content_of(request).body_json,
    )
