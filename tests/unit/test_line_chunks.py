"""``read_chunks`` is ``chunked(read_lines(...))`` read a block at a time: the same lines, with
the same numbers, bytes, offsets and sizes, in the same chunks, whatever the bytes."""

from __future__ import annotations

import io
import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.sources.line_chunks import LineChunk, parts, read_chunks
from planner.sources.lines import LineFinder, RawLine, read_lines

# lines around a limit of 1, 5 or 40 bytes, with and without "\r\n", blank, and a last line
# without a newline; bytes that are not UTF-8 are the judge's business, not the reader's
LINE = st.builds(
    lambda body, end: body + end,
    st.binary(max_size=90).filter(lambda b: b"\n" not in b)
    | st.sampled_from([b"x" * n for n in (0, 1, 5, 6, 7, 38, 39, 40, 41, 42, 43)]),
    st.sampled_from([b"\n", b"\r\n", b"\r", b""]),
)


def _fields(lines: list[RawLine]) -> list[tuple[int, bytes, int, int]]:
    return [(r.number, r.data, r.oversize, r.offset) for r in lines]


def _expected(data: bytes, limit: int, start: int, max_lines: int, max_bytes: int) -> list[Any]:
    """``lines.chunked`` with other bounds: lines up to ``max_lines`` or ``max_bytes``."""
    chunks: list[list[RawLine]] = []
    chunk: list[RawLine] = []
    size = 0
    for raw in read_lines(io.BytesIO(data), limit, number=start):
        chunk.append(raw)
        size += len(raw.data)
        if len(chunk) >= max_lines or size >= max_bytes:
            chunks.append(chunk)
            chunk, size = [], 0
    if chunk:
        chunks.append(chunk)
    return [_fields(c) for c in chunks]


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(LINE, max_size=40),
    limit=st.sampled_from([1, 5, 40, 1 << 20]),
    start=st.integers(0, 5),
    max_lines=st.sampled_from([1, 2, 3, 256]),
    max_bytes=st.sampled_from([1, 7, 50, 1 << 20]),
)
def test_chunks_are_chunked_read_lines(
    lines: list[bytes], limit: int, start: int, max_lines: int, max_bytes: int
) -> None:
    data = b"".join(lines)
    stream = io.BytesIO(data)
    got = list(read_chunks(stream, limit, number=start, max_lines=max_lines, max_bytes=max_bytes))
    assert [_fields(list(c)) for c in got] == _expected(data, limit, start, max_lines, max_bytes)
    assert stream.tell() == len(data)
    for chunk in got:  # every way of reading a chunk gives the same lines
        assert _fields([chunk[i] for i in range(len(chunk))]) == _fields(list(chunk))
        assert list(parts(chunk)) == [(r.number, r.data, r.oversize) for r in chunk]
        assert list(parts(list(chunk))) == list(parts(chunk))
        again = pickle.loads(pickle.dumps(chunk))
        assert isinstance(again, LineChunk)
        assert _fields(list(again)) == _fields(list(chunk))


def test_an_over_long_line_is_skipped_without_being_held() -> None:
    """A line of 5 MB under a 1 KB limit: its head and size, then the lines after it."""
    data = b'{"id": "a"}\n' + b"x" * 5_000_000 + b"\r\n" + b'{"id": "b"}'
    chunks = list(read_chunks(io.BytesIO(data), 1024, max_bytes=64 * 1024))
    lines = [raw for chunk in chunks for raw in chunk]
    assert [(r.number, r.oversize, r.offset) for r in lines] == [
        (1, 0, 0),
        (2, 5_000_001, 12),
        (3, 0, 5_000_014),
    ]
    assert lines[1].data == b"x" * 1024  # the head read_lines keeps (RAW_PREVIEW_CHARS)
    assert lines[2].data == b'{"id": "b"}'
    assert max(len(d) for chunk in chunks for d in chunk.datas) <= 64 * 1024


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(LINE, max_size=60), every=st.integers(1, 7), max_lines=st.integers(1, 9))
def test_chunks_mark_the_lines_that_lines_mark(
    lines: list[bytes], every: int, max_lines: int
) -> None:
    data = b"".join(lines)
    by_line, by_chunk = LineFinder(every), LineFinder(every)
    list(by_line.mark(read_lines(io.BytesIO(data), 40)))
    list(by_chunk.mark_chunks(read_chunks(io.BytesIO(data), 40, max_lines=max_lines)))
    assert by_chunk.marks == by_line.marks
