"""The dry run's judgement of repeated keys (pipeline/repeats.py), with and without spilling the
contents seen to disk: the same answers either way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.core.model import Endpoint, Request
from planner.pipeline.repeats import Repeats, SeenContents
from planner.sources.base import LineError
from planner.store.requests import StoredContent, content_of

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def req(key: str, text: str, origin: str, source: str = "spool") -> Request:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return Request(
        source, key, "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, body, received_at=NOW, origin=origin
    )


@pytest.mark.parametrize("memory_bytes", [1 << 20, 1])  # 1: spills at the first key
def test_repeats_as_intake_judges_them(memory_bytes: int) -> None:
    stored = {("spool", "s"): content_of(req("s", "stored", "old.jsonl:1"))}

    def lookup(source: str, keys: Sequence[str]) -> dict[str, StoredContent]:
        return {k: c for (s, k), c in stored.items() if s == source and k in keys}

    seen = SeenContents(memory_bytes)
    repeats = Repeats(lookup, seen)
    lines = [
        req("s", "stored", "a.jsonl:1"),  # stored, same: a no-op
        req("s", "other", "a.jsonl:2"),  # stored, another body: duplicate_id
        req("k", "first", "a.jsonl:3"),  # new
        req("k", "first", "b.jsonl:1"),  # read before, same: a no-op
        req("k", "second", "b.jsonl:2"),  # read before, another body: duplicate_id
        req("k", "second", "b.jsonl:3", source="other"),  # another source: new
    ]
    out = list(repeats.judge(lines))
    seen.close()
    assert repeats.duplicates == 2
    errors = [x for x in out if isinstance(x, LineError)]
    assert [(e.origin, e.reason) for e in errors] == [
        ("a.jsonl:2", "duplicate_id"),
        ("b.jsonl:2", "duplicate_id"),
    ]
    assert errors[0].message.startswith("a.jsonl:2: key 's' is already stored")
    assert [x.origin for x in out if isinstance(x, Request)] == ["a.jsonl:3", "b.jsonl:3"]


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(
        st.tuples(
            st.sampled_from(["spool", "other"]),
            st.sampled_from(["a", "b", "c", "d'", "é"]),
            st.sampled_from([b"1" * 16, b"2" * 16]),
        ),
        max_size=40,
    ),
    cut=st.integers(1, 7),
    memory_bytes=st.sampled_from([1 << 20, 600, 1]),
)
def test_first_seen_is_the_first_fingerprint_under_each_key(
    items: list[tuple[str, str, bytes]], cut: int, memory_bytes: int
) -> None:
    """In memory, spilled at the first key or part way through: every item gets the
    fingerprint first seen under its key, whichever chunk it came in."""
    seen = SeenContents(memory_bytes)
    got: list[bytes | None] = []
    for start in range(0, len(items), cut):
        got += seen.first_seen(items[start : start + cut])
    seen.close()
    firsts: dict[tuple[str, str], bytes] = {}
    expected: list[bytes | None] = []
    for source, key, digest in items:
        expected.append(firsts.get((source, key)))
        firsts.setdefault((source, key), digest)
    assert got == expected
