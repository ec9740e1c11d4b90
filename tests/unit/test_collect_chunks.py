"""Collect settles a batch's results in chunks bounded by count and by the bytes of their lines.

A chunk closes at ``COLLECT_CHUNK`` results or as soon as its lines reach
``COLLECT_CHUNK_BYTES``: a thousand embeddings of 1,536 floats are 30 MB of lines, decoded and
written again in the same chunk. The cut depends only on the results, in order, so a chunk
delivered again after a crash holds the same results as before.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from planner.pipeline.collect import _chunks
from planner.providers.base import LineResult


@given(
    sizes=st.lists(st.integers(0, 50), max_size=40),
    count=st.integers(1, 8),
    max_bytes=st.integers(1, 120),
)
def test_chunks_close_at_the_count_or_the_bytes_and_lose_nothing(
    sizes: list[int], count: int, max_bytes: int
) -> None:
    results = [LineResult(key=f"k{i}", ok=True, size=n) for i, n in enumerate(sizes)]
    chunks = list(_chunks(iter(results), count, max_bytes))
    assert [r for chunk in chunks for r in chunk] == results  # all, in order, once
    assert all(chunks)
    for chunk in chunks[:-1]:  # each closed at its first result past either bound
        held = sum(r.size for r in chunk)
        assert len(chunk) == count or held >= max_bytes
        assert len(chunk[:-1]) < count and sum(r.size for r in chunk[:-1]) < max_bytes
    assert chunks == list(_chunks(iter(results), count, max_bytes))  # the same cut again


def test_results_compare_equal_whatever_lines_they_were_read_from() -> None:
    assert LineResult(key="a", ok=True, size=10) == LineResult(key="a", ok=True)
