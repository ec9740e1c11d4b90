"""A spool file's lines in chunks, read a megabyte at a time.

``chunked(read_lines(stream))`` reads a line per ``readline`` call and makes a ``RawLine`` of
each, in the process that reads the spool (the one that also stores or plans what the read
workers judged): ~2.5 us a line of its time, and each ``RawLine`` pickled to a worker and
back out again. ``read_chunks`` gives the same lines in the same chunks from one ``read`` per
``CHUNK_BYTES``, kept as a ``LineChunk``: the lines' bytes in a list, a ``Sequence[RawLine]``
that makes a ``RawLine`` only for the line asked for, and pickles as its list. A worker walks it
with ``LineChunk.parts`` and no ``RawLine`` at all.

What each line is stays exactly ``read_lines``'s (a property test holds the two equal on any
bytes): its number, its bytes with their terminator, its offset in the stream, and for a line
over ``max_line_bytes`` only its head and its size, never more than one such line in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import BinaryIO, overload

from planner.sources.lines import CHUNK_BYTES, CHUNK_LINES, RAW_PREVIEW_CHARS, SKIP_CHUNK, RawLine


class LineChunk(Sequence[RawLine]):
    """Consecutive lines of one stream: ``datas[i]`` is line ``first + i`` as ``read_lines``
    gives it; ``oversize`` and ``lengths`` hold the few over-long lines (their sizes, and the
    bytes they took in the stream, since only their head is kept)."""

    __slots__ = ("datas", "first", "lengths", "offset", "oversize")

    def __init__(
        self,
        first: int,
        offset: int,
        datas: list[bytes],
        oversize: dict[int, int] | None = None,
        lengths: dict[int, int] | None = None,
    ) -> None:
        self.first = first  # the number of its first line
        self.offset = offset  # where its first line starts in the stream
        self.datas = datas
        self.oversize = oversize or {}  # index -> the line's size (``RawLine.oversize``)
        self.lengths = lengths or {}  # index -> bytes the over-long line took in the stream

    def __reduce__(
        self,
    ) -> tuple[type[LineChunk], tuple[int, int, list[bytes], dict[int, int], dict[int, int]]]:
        return LineChunk, (self.first, self.offset, self.datas, self.oversize, self.lengths)

    def __len__(self) -> int:
        return len(self.datas)

    @overload
    def __getitem__(self, index: int) -> RawLine: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RawLine]: ...
    def __getitem__(self, index: int | slice) -> RawLine | Sequence[RawLine]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += len(self.datas)
        data = self.datas[index]  # IndexError as a list raises it
        offset = self.offset + sum(self._length(i) for i in range(index))
        return RawLine(self.first + index, data, self.oversize.get(index, 0), offset)

    def __iter__(self) -> Iterator[RawLine]:
        offset = self.offset
        for index, data in enumerate(self.datas):
            yield RawLine(self.first + index, data, self.oversize.get(index, 0), offset)
            offset += self._length(index)

    def parts(self) -> Iterator[tuple[int, bytes, int]]:
        """``(number, data, oversize)`` of each line, without a ``RawLine`` each."""
        oversize = self.oversize
        if not oversize:
            numbers = range(self.first, self.first + len(self.datas))
            return zip(numbers, self.datas, repeat(0), strict=False)
        return ((self.first + i, data, oversize.get(i, 0)) for i, data in enumerate(self.datas))

    def _length(self, index: int) -> int:
        length = self.lengths.get(index)
        return len(self.datas[index]) if length is None else length

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LineChunk | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as the list it stands for

    def __repr__(self) -> str:
        return f"LineChunk(first={self.first}, lines={len(self.datas)}, offset={self.offset})"


def read_chunks(
    stream: BinaryIO,
    max_line_bytes: int,
    *,
    number: int = 0,
    max_lines: int = CHUNK_LINES,
    max_bytes: int = CHUNK_BYTES,
) -> Iterator[LineChunk]:
    """``chunked(read_lines(stream, max_line_bytes, number=number))`` as ``LineChunk``\\ s: the
    same lines, in chunks that end where ``chunked`` ends them (``max_lines`` lines, or once
    their bytes reach ``max_bytes``). Reads ``max_bytes`` at a time; an unfinished line is
    carried to the next read while it could still fit ``max_line_bytes``, then only its head
    is kept and the rest skipped."""
    chunks = _Chunker(number, stream.tell(), max_line_bytes, max_lines, max_bytes)
    pending = b""  # read, not yet cut into lines: the start of an unfinished line
    ended = False
    while not ended:
        block = stream.read(max_bytes)
        ended = not block
        data = pending + block if pending else block
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            if (done := chunks.add(data[start : newline + 1], terminated=True)) is not None:
                yield done
            start = newline + 1
        pending = data[start:]  # after the last newline (b"" when the block ended with one)
        if len(pending) > chunks.limit:  # unfinished and already over the limit: skip the rest
            taken, terminated, pending = _skip_line(stream)
            if (done := chunks.add_skipped(data[start:], taken, terminated)) is not None:
                yield done
    if pending and (done := chunks.add(pending, terminated=False)) is not None:
        yield done  # the last line, without a newline
    if (done := chunks.cut()) is not None:
        yield done


def _skip_line(stream: BinaryIO) -> tuple[int, bool, bytes]:
    """Read on to the end of the current line without keeping it: the bytes it still took
    (its newline included), whether it ended (else the stream did), and what was read after
    it (the start of the next lines)."""
    taken = 0
    while True:
        more = stream.read(SKIP_CHUNK)
        if not more:
            return taken, False, b""
        newline = more.find(b"\n")
        if newline >= 0:
            return taken + newline + 1, True, more[newline + 1 :]
        taken += len(more)


class _Chunker:
    """Groups lines into ``LineChunk``\\ s as ``chunked`` groups ``RawLine``\\ s."""

    def __init__(
        self, number: int, offset: int, max_line_bytes: int, max_lines: int, max_bytes: int
    ) -> None:
        self.number = number  # of the last line added
        self.offset = offset  # where the next line starts
        self.max_line_bytes = max_line_bytes
        self.limit = max_line_bytes + 2  # as read_lines: room for "\r\n"
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._new()

    def _new(self) -> None:
        self.datas: list[bytes] = []
        self.oversize: dict[int, int] = {}
        self.lengths: dict[int, int] = {}
        self.first = self.number + 1
        self.start = self.offset
        self.size = 0

    def add(self, whole: bytes, *, terminated: bool) -> LineChunk | None:
        """One whole line (its newline included when ``terminated``), as read_lines sees it:
        kept whole when its content fits, else its head and its size. A chunk when this line
        completed one."""
        taken = len(whole)
        content = taken - (2 if whole.endswith(b"\r\n") else 1 if terminated else 0)
        if content <= self.max_line_bytes and taken <= self.limit:
            return self._append(whole, taken)
        # read_lines keeps the head of what its first readline(limit) read
        size = taken - (1 if terminated else 0) if taken > self.limit else content
        return self._append(whole[: min(self.limit, RAW_PREVIEW_CHARS)], taken, size)

    def add_skipped(self, head: bytes, more: int, terminated: bool) -> LineChunk | None:
        """An over-long line read as far as ``head``, then ``more`` bytes skipped (its newline
        included when ``terminated``)."""
        taken = len(head) + more
        kept = head[: min(self.limit, RAW_PREVIEW_CHARS)]
        return self._append(kept, taken, taken - (1 if terminated else 0))

    def _append(self, kept: bytes, taken: int, oversize: int = 0) -> LineChunk | None:
        self.number += 1
        if oversize:
            self.oversize[len(self.datas)] = oversize
            self.lengths[len(self.datas)] = taken
        self.datas.append(kept)
        self.offset += taken
        self.size += len(kept)
        if len(self.datas) >= self.max_lines or self.size >= self.max_bytes:
            return self.cut()
        return None

    def cut(self) -> LineChunk | None:
        """The chunk so far (``None`` if empty), and a new one begun."""
        done = None
        if self.datas:
            done = LineChunk(self.first, self.start, self.datas, self.oversize, self.lengths)
        self._new()
        return done


def parts(chunk: Sequence[RawLine]) -> Iterator[tuple[int, bytes, int]]:
    """``(number, data, oversize)`` of each line of ``chunk``: a ``LineChunk``'s without a
    ``RawLine`` each, any other sequence's from its ``RawLine``\\ s."""
    if isinstance(chunk, LineChunk):
        return chunk.parts()
    return ((raw.number, raw.data, raw.oversize) for raw in chunk)
