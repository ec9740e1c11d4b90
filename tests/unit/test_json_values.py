"""``core.json_values.every_scalar`` sees every leaf that is not a string, at any depth."""

from __future__ import annotations

from typing import Any

from planner.core.json_values import every_scalar


def test_every_leaf_but_strings_is_tested_at_any_depth() -> None:
    seen: list[Any] = []
    value = {"a": [1, {"b": [None, "s", 2.5]}], "c": True, "d": "text", "e": (3, 4)}
    assert every_scalar(value, lambda leaf: seen.append(leaf) is None)
    assert sorted(map(repr, seen)) == sorted(map(repr, [1, None, 2.5, True, (3, 4)]))


def test_the_first_failing_leaf_ends_the_walk() -> None:
    deep: Any = 7
    for _ in range(10_000):  # deeper than recursion would go
        deep = [deep]
    assert not every_scalar({"x": deep}, lambda leaf: leaf != 7)
    assert every_scalar({"x": deep}, lambda leaf: leaf == 7)
    assert every_scalar("only a string", lambda leaf: False)
