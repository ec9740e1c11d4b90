"""Walks over decoded JSON values (dicts, lists and scalars), for the checks that decide whether
a fast encoder or decoder may be trusted with a value.

Its callers run on every request (``sources/formats.decode_json_plain`` and
``pipeline/measure.canonical_json``) and every result (``core/json_text.dumps``), so the walk is
a loop over a stack, not recursion, and skips strings (most of a prompt's leaves) without
calling the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def every_scalar(
    value: object,
    test: Callable[[Any], bool],
    *,
    container: Callable[[Any], bool | None] | None = None,
) -> bool:
    """Whether ``test`` holds for every leaf of ``value`` that is not a string: the values of
    dicts and the items of lists, to any depth (a value that is neither is itself the leaf).
    ``container``, when given, is asked first of each dict and list: ``False`` fails the walk,
    ``True`` vouches for the whole container (its items are not walked), ``None`` walks it."""
    stack: list[Any] = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            continue
        if kind is dict or kind is list:
            if container is not None:
                verdict = container(item)
                if verdict is not None:
                    if not verdict:
                        return False
                    continue
            extend(item.values() if kind is dict else item)
        elif not test(item):
            return False
    return True
