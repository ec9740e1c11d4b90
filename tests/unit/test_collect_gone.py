"""A result file that disappears while it is read (the provider answers ``NotFound``): every
request not read yet is dead-lettered as ``missing_result``, none is left waiting or read twice."""

from __future__ import annotations

from collections.abc import Iterator

from planner.errors import NotFound
from planner.pipeline.collect import _until_gone
from planner.providers.base import MISSING, LineResult


def _results(keys: list[str], gone_after: int | None) -> Iterator[LineResult]:
    for n, key in enumerate(keys):
        if gone_after is not None and n == gone_after:
            raise NotFound("file-1 is unknown")
        yield LineResult(key=key, ok=True, response={"n": n})


def test_the_keys_not_read_when_the_file_went_are_unreadable() -> None:
    keys = ["a", "b", "c", "d"]
    got = list(_until_gone(_results(keys, gone_after=2), keys, "gone"))
    assert [(r.key, r.ok, r.error_code) for r in got] == [
        ("a", True, None),
        ("b", True, None),
        ("c", False, MISSING),
        ("d", False, MISSING),
    ]
    assert all(not r.retryable and r.error_message == "gone" for r in got[2:])


def test_a_file_read_to_its_end_is_as_it_was() -> None:
    keys = ["a", "b"]
    got = list(_until_gone(_results(keys, gone_after=None), keys, "gone"))
    assert [(r.key, r.ok) for r in got] == [("a", True), ("b", True)]
