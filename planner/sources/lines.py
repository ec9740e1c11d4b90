"""JSON Lines framing for the spool: bytes of one line -> a ``Request`` or a ``LineError``.

This is the file-shaped layer around ``planner.sources.formats.parse_record``: it decodes a
line's bytes (UTF-8, an optional byte-order mark on line 1, no NUL), parses the JSON, hands the
value to ``parse_record`` and prefixes any error with ``file:line:``. Checks that need the whole
file (a key seen twice) live in ``LineParser``. Objects with repeated JSON keys keep the last
value, as ``json`` does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol

from planner.core.model import Request
from planner.sources.base import LineError, ParsedLine
from planner.sources.formats import (
    Defaults,
    Reason,
    RecordError,
    decode_json_plain,
    parse_record,
)

BOM = b"\xef\xbb\xbf"
RAW_PREVIEW_CHARS = 1024  # how much of an over-long line is kept for the quarantine
MARK_EVERY = 1000  # lines between two offsets a LineFinder keeps
SKIP_CHUNK = 1 << 16  # bytes read at a time while skipping the rest of an over-long line
MAX_NAME_BYTES = 200  # leaves room for ".errors.pending" and ".recovered-N" under NAME_MAX 255

log = logging.getLogger(__name__)
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f\udc80-\udcff]")


def safe_name(name: str) -> str:
    """The name a spool file is claimed, reported and quarantined under.

    A name from ``os.scandir`` carries bytes that are not UTF-8 as lone surrogates
    (``surrogateescape``); those and control characters become ``%XX``, and a name over
    ``MAX_NAME_BYTES`` is cut and given a hash of the whole, so every later file name
    (``x.jsonl.errors.jsonl``) is valid UTF-8 and fits the file system. Good names are kept.
    """
    safe = _UNSAFE_NAME_CHARS.sub(lambda m: "".join(f"%{b:02X}" for b in os.fsencode(m[0])), name)
    data = safe.encode()
    if len(data) <= MAX_NAME_BYTES:
        return safe
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    head = data[: MAX_NAME_BYTES - len(digest) - 8].decode(errors="ignore")
    return f"{head}~{digest}.jsonl"


def _error(file: str, line: int, reason: Reason | str, message: str, raw: str) -> LineError:
    return LineError(
        file=file, line=line, reason=str(reason), message=f"{file}:{line}: {message}", raw=raw
    )


def line_error(error: RecordError, *, file: str, line: int, raw: str) -> LineError:
    """A format's ``RecordError`` placed at ``file:line``."""
    return _error(file, line, error.reason, str(error), raw)


def parse_line(
    text: str, *, file: str, line: int, now: datetime, settings: Defaults
) -> Request | LineError:
    """Judge one decoded, non-blank line. ``now`` is the ingestion time."""
    obj, plain = decode_json_plain(text)
    if isinstance(obj, RecordError):
        return line_error(obj, file=file, line=line, raw=text)
    item = parse_record(obj, settings, now=now, origin=f"{file}:{line}", checked=plain)
    if isinstance(item, RecordError):
        return line_error(item, file=file, line=line, raw=text)
    return item


def decode_line(data: bytes, *, file: str, line: int) -> str | LineError | None:
    """Bytes of one line (terminator included or not) -> text, an encoding error, or None if blank.

    Strips ``\\n``/``\\r\\n`` and, on line 1, a UTF-8 byte-order mark.
    """
    if line == 1 and data.startswith(BOM):
        data = data[len(BOM) :]
    data = data.rstrip(b"\r\n")
    if b"\x00" in data:
        raw = data.decode("utf-8", errors="backslashreplace")
        return _error(file, line, Reason.ENCODING, "NUL byte in line", raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = data.decode("utf-8", errors="backslashreplace")
        return _error(
            file,
            line,
            Reason.ENCODING,
            f"invalid UTF-8 at byte offset {exc.start}: {exc.reason}",
            raw,
        )
    if not text.strip():
        return None
    return text


def too_large(*, file: str, line: int, size: int, limit: int, head: bytes) -> LineError:
    """The error for a line longer than ``limit`` bytes; only its head was read."""
    raw = head[:RAW_PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")
    return _error(
        file,
        line,
        Reason.TOO_LARGE,
        f"line is {size} bytes or more, over the {limit}-byte limit (first {len(raw)} chars kept)",
        raw,
    )


class KeySet(Protocol):
    """Remembers keys seen in one file; ``add`` returns False when the key was already there."""

    def add(self, key: str) -> bool: ...


class MemoryKeySet:
    """A ``KeySet`` in a plain set: fine for small inputs and tests."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def add(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


@dataclass(frozen=True, slots=True)
class RawLine:
    """One physical line as read: its 1-based number and bytes, or how long it was if too long."""

    number: int
    data: bytes
    oversize: int = 0  # > 0: the line was this many bytes (at least) and ``data`` is its head
    offset: int = field(default=0, compare=False)  # where the line starts in its stream

    def __reduce__(self) -> tuple[type[RawLine], tuple[int, bytes, int, int]]:
        """Pickled as its fields (chunks of lines go to read workers; the default for a frozen
        dataclass with slots sets a state dict field by field, several times slower)."""
        return RawLine, (self.number, self.data, self.oversize, self.offset)


def read_lines(stream: BinaryIO, max_line_bytes: int, *, number: int = 0) -> Iterator[RawLine]:
    """Physical lines of ``stream`` from where it stands (numbered after ``number``), never
    holding more than one line of at most ``max_line_bytes`` (+ terminator) in memory. A longer
    line comes back as its head with ``oversize`` set to its length; a last line without a
    newline is returned as is."""
    limit = max_line_bytes + 2  # room for "\r\n"
    offset = stream.tell()
    while True:
        data = stream.readline(limit)
        if not data:
            return
        number += 1
        start, offset = offset, offset + len(data)
        content = len(data) - (2 if data.endswith(b"\r\n") else 1 if data.endswith(b"\n") else 0)
        if content <= max_line_bytes:
            yield RawLine(number, data, offset=start)
            continue
        size = content
        head = data[:RAW_PREVIEW_CHARS]
        ended = data.endswith(b"\n")
        while not ended:
            chunk = stream.readline(SKIP_CHUNK)
            if not chunk:
                break
            offset += len(chunk)
            ended = chunk.endswith(b"\n")
            size += len(chunk) - (1 if ended else 0)
        yield RawLine(number, head, oversize=size, offset=start)


class LineFinder:
    """Finds a line of a file read earlier again by its number, to quarantine it as written.

    While the file is read (``mark``) it keeps the offset of every ``every``-th line; ``text``
    seeks to the nearest mark and reads forward, going on from where it stopped when asked for
    a later line (the usual order), so memory is one offset per ``every`` lines and one line.
    """

    def __init__(self, every: int = MARK_EVERY) -> None:
        self.every = every
        self.marks: list[int] = []
        self._stream: BinaryIO | None = None
        self._lines: Iterator[RawLine] | None = None
        self._next = 0  # number of the line ``_lines`` yields next

    def mark(self, lines: Iterable[RawLine]) -> Iterator[RawLine]:
        self.close()
        self.marks = []
        for raw in lines:
            if (raw.number - 1) % self.every == 0:
                self.marks.append(raw.offset)
            yield raw

    def mark_chunks(self, chunks: Iterable[Sequence[RawLine]]) -> Iterator[Sequence[RawLine]]:
        """``mark`` of lines in chunks: only the marked lines are looked at."""
        self.close()
        self.marks = []
        every = self.every
        for chunk in chunks:
            if chunk:
                first = chunk[0].number
                index = -(first - 1) % every  # of the first line numbered 1 + k * every
                while index < len(chunk):
                    self.marks.append(chunk[index].offset)
                    index += every
            yield chunk

    def text(
        self, open_file: Callable[[], BinaryIO], number: int, max_line_bytes: int, file: str
    ) -> str | None:
        """Line ``number`` as decoded when it was read; None if it is gone or was not text."""
        index = (number - 1) // self.every
        if number < 1 or index >= len(self.marks):
            return None
        first = index * self.every + 1
        if self._stream is None:
            self._stream = open_file()
        if self._lines is None or not first <= self._next <= number:
            self._stream.seek(self.marks[index])
            self._lines = read_lines(self._stream, max_line_bytes, number=first - 1)
        for raw in self._lines:
            self._next = raw.number + 1
            if raw.number == number:
                text = None if raw.oversize else decode_line(raw.data, file=file, line=number)
                return text if isinstance(text, str) else None
        self._lines = None
        return None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = self._lines = None


@dataclass(frozen=True, slots=True)
class LineContext:
    """What judging a line of one file needs besides its bytes."""

    file: str
    now: datetime
    settings: Defaults
    max_line_bytes: int


def judge_line(raw: RawLine, ctx: LineContext) -> ParsedLine | None:
    """One physical line -> a ``Request``, a ``LineError``, or None (blank). Never raises: a
    bug of ours costs this line (``internal_error``), never the file. Keys seen twice are the
    ``LineParser``'s (they need the lines before)."""
    return judge_parts(raw.number, raw.data, raw.oversize, ctx)


def judge_parts(number: int, data: bytes, oversize: int, ctx: LineContext) -> ParsedLine | None:
    """``judge_line`` of a line given as its parts (``LineChunk.parts``: no ``RawLine``)."""
    file = ctx.file
    if oversize:
        return too_large(file=file, line=number, size=oversize, limit=ctx.max_line_bytes, head=data)
    text = decode_line(data, file=file, line=number)
    if text is None or isinstance(text, LineError):
        return text
    try:
        return parse_line(text, file=file, line=number, now=ctx.now, settings=ctx.settings)
    except Exception as exc:  # a bug of ours must cost one line, never the whole file
        log.exception(
            "line could not be judged",
            extra={"event": "line_parser_failed", "file": file, "line": number},
        )
        message = f"could not be judged ({type(exc).__name__}); please report this line"
        return _error(file, number, Reason.INTERNAL, message, text)


FileChunks = tuple[LineContext, Iterable[Sequence[RawLine]]]
"""One file's lines in chunks, with what judging them needs (its name, the source's rules)."""
Judged = tuple[LineContext, Sequence[RawLine], list[ParsedLine | None]]
"""A chunk with its file and what each of its lines is (``judge_line``)."""
LineJudge = Callable[[Iterable[FileChunks]], Iterator[Judged]]
"""Files of chunked lines -> every chunk judged, in order. One call can take every file of a
scan: a judge on several cores then reads the next files while the last lines of one are
judged (a spool of small files was read a chunk at a time, one core idle: 100 files of 200
lines took 1.5x as long as the same lines in 4 files). The default judges in this process;
``pipeline/read_pool.py`` judges on every core."""

CHUNK_LINES = 256  # lines per chunk handed to a judge
CHUNK_BYTES = 1 << 20  # or fewer, when the lines are long


def judge_here(files: Iterable[FileChunks]) -> Iterator[Judged]:
    """The ``LineJudge`` of one process: every line in turn."""
    for ctx, chunks in files:
        for chunk in chunks:
            yield ctx, chunk, [judge_line(raw, ctx) for raw in chunk]


def chunked(lines: Iterable[RawLine]) -> Iterator[list[RawLine]]:
    """``lines`` in chunks of at most ``CHUNK_LINES`` lines or about ``CHUNK_BYTES`` bytes."""
    chunk: list[RawLine] = []
    size = 0
    for raw in lines:
        chunk.append(raw)
        size += len(raw.data)
        if len(chunk) >= CHUNK_LINES or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class LineParser:
    """Parses the lines of one file in order, refusing a key the file already used.

    The first line with a key keeps it; a later one is a ``duplicate_id`` error naming the
    first line. Duplicates across files are the store's job (unique ``(source, key)``).
    ``judge`` turns the lines into requests and errors (``judge_here`` by default).
    """

    def __init__(
        self,
        *,
        file: str,
        now: datetime,
        settings: Defaults,
        keys: KeySet | None = None,
        max_line_bytes: int,
        judge: LineJudge = judge_here,
    ) -> None:
        self.context = LineContext(file, now, settings, max_line_bytes)
        self.keys: KeySet = keys if keys is not None else MemoryKeySet()
        self.judge = judge

    def parse(self, lines: Iterable[RawLine]) -> Iterator[ParsedLine]:
        yield from self.parse_chunks(chunked(lines))

    def parse_chunks(self, chunks: Iterable[Sequence[RawLine]]) -> Iterator[ParsedLine]:
        """``parse`` of lines already in chunks (``line_chunks.read_chunks``)."""
        for _, chunk, judged in self.judge([(self.context, chunks)]):
            yield from self.accept(chunk, judged)

    def accept(
        self, chunk: Sequence[RawLine], judged: Sequence[ParsedLine | None]
    ) -> Iterator[ParsedLine]:
        """What one judged chunk of this file is, in order: its requests and errors, a key this
        file used before refused (blank lines are nothing). For a caller that judges several
        files at once (``JsonlDirSource.scan``) and hands each its chunks in turn."""
        file = self.context.file
        if len(chunk) != len(judged):
            raise ValueError(f"{len(judged)} judged for a chunk of {len(chunk)} lines")
        for index, item in enumerate(judged):  # the line itself only for a key used twice
            if item is None:
                continue
            if isinstance(item, Request) and not self.keys.add(item.key):
                raw = chunk[index]
                text = decode_line(raw.data, file=file, line=raw.number)
                item = _error(
                    file,
                    raw.number,
                    Reason.DUPLICATE_ID,
                    f"key {item.key!r} already used earlier in this file; the first one is kept",
                    text if isinstance(text, str) else "",
                )
            yield item
