"""A stored file read a block at a time gives the lines reading it whole gave.

The emulator parses a batch's input from its ``Blob`` line by line (``Blob.lines``, and for
Gemini's files ``gemini_routes._text_lines``) instead of reading the file whole and splitting
it: the line numbers in its error messages and the lines it answers must not move. Blocks and
the spill size are made tiny here so that lines, ``\\r\\n`` pairs and UTF-8 characters fall
across block boundaries.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.sandbox import kernel
from planner.sandbox.gemini_routes import _text_lines

# bytes that make line breaks interesting: newlines, carriage returns, the other breaks
# str.splitlines knows (\x0b, \x0c, \x1c, NEL and LINE SEPARATOR in UTF-8), a multi-byte
# character and bytes that are not UTF-8 at all
_PIECES = st.sampled_from(
    [
        *(b"\n", b"\r", b"\r\n", b"a", b"{}", b" ", b"\x0b", b"\x0c", b"\x1c", b"\xc2\x85"),
        *(b"\xe2\x80\xa8", "é".encode(), b"\xff", b"\xe2\x80"),
    ]
)
_DATA = st.lists(_PIECES, max_size=60).map(b"".join)


def _blob(data: bytes, spill: int) -> kernel.Blob:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel, "SPILL_BYTES", spill)
        return kernel.Blob(data)


@settings(max_examples=400, deadline=None)
@given(data=_DATA, block=st.integers(1, 9), spill=st.sampled_from([0, 4, 1 << 20]))
def test_lines_split_as_the_whole_file_splits(data: bytes, block: int, spill: int) -> None:
    blob = _blob(data, spill)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel, "BLOCK_BYTES", block)
        assert list(blob.lines()) == data.split(b"\n")
        assert b"".join(blob.blocks()) == data
        assert blob.sha256 == hashlib.sha256(data).hexdigest()


@settings(max_examples=400, deadline=None)
@given(data=_DATA, block=st.integers(1, 9))
def test_text_lines_are_the_decoded_files_splitlines(data: bytes, block: int) -> None:
    blob = _blob(data, spill=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel, "BLOCK_BYTES", block)
        assert list(_text_lines(blob)) == data.decode("utf-8", "replace").splitlines()


def test_a_large_file_is_read_in_blocks_not_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """No block handed out is larger than ``BLOCK_BYTES``: the file is never read whole."""
    monkeypatch.setattr(kernel, "SPILL_BYTES", 16)
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 10)
    data = b"".join(b'{"line": %d}\n' % i for i in range(50))
    blob = kernel.Blob(data)
    assert blob.on_disk
    assert max(len(b) for b in blob.blocks()) == 10
    assert list(blob.lines()) == data.split(b"\n")


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(max_size=12), max_size=20), spill=st.sampled_from([0, 5, 1 << 20]))
def test_a_written_file_is_its_lines_joined(lines: list[str], spill: int) -> None:
    """``BlobWriter`` stores what ``"\\n".join(lines) + "\\n"`` encoded stored (nothing for no
    line), in memory or, past the spill size, on disk."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel, "SPILL_BYTES", spill)
        writer = kernel.BlobWriter()
        for line in lines:
            writer.add(line)
        blob = writer.blob()
    expected = ("\n".join(lines) + "\n").encode() if lines else b""
    assert blob.read() == expected and blob.size == len(expected) and len(writer) == len(lines)
    assert blob.on_disk == (len(expected) > spill)


@settings(max_examples=200, deadline=None)
@given(data=_DATA, block=st.integers(1, 9), spill=st.sampled_from([0, 4, 1 << 20]))
def test_an_upload_is_copied_a_block_at_a_time(data: bytes, block: int, spill: int) -> None:
    """``Blob.copied_from`` stores what an uploaded file holds, read in blocks (an upload was
    read whole into memory before it was stored); past the spill size it is on disk."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel, "SPILL_BYTES", spill)
        patch.setattr(kernel, "BLOCK_BYTES", block)
        blob = kernel.Blob.copied_from(io.BytesIO(data))
        assert blob.read() == data and blob.size == len(data)
        assert blob.on_disk == (len(data) > spill)


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(_DATA, max_size=8), spill=st.sampled_from([0, 4, 1 << 20]))
def test_a_resumable_upload_is_written_piece_by_piece(pieces: list[bytes], spill: int) -> None:
    """A Gemini resumable upload's chunks go to a ``BlobWriter`` as they come (they were
    gathered in a bytearray, then copied whole when stored): the file is their concatenation,
    its size counted as they come, on disk past the spill size."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel, "SPILL_BYTES", spill)
        writer = kernel.BlobWriter()
        for piece in pieces:
            writer.write(piece)
        data = b"".join(pieces)
        assert writer.size == len(data) and len(writer) == 0
        blob = writer.blob()
        assert blob.read() == data and blob.on_disk == (len(data) > spill)
