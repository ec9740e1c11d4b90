"""``core/json_text``: msgspec's speed with ``json``'s values, for every value and every text.

Collect decodes results files and encodes every result for its sink with these two functions;
the money and the answers users get pass through them, so they must give what ``json`` gives,
or raise what it raises, whatever a provider sends.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.core import json_text

ODD = ["\ud800", "\udfff", "\ud83d\ude00", "\x00", "\u2028", "\x7f", "é", '"', "\\", "\n"]
odd_text = st.lists(st.sampled_from(ODD) | st.text(max_size=4), max_size=4).map("".join)
edge_floats = st.sampled_from(
    [1e-05, 2.5e-05, 1e16, 1e308, -0.0, 5e-324, 1.7976931348623157e308, 0.1, 1e22]
)
numbers = (
    st.integers()
    | st.sampled_from([2**63, 2**64, 10**30, -(10**400)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | edge_floats
)
scalars = st.none() | st.booleans() | numbers | odd_text
keys = odd_text | st.sampled_from([1, 1.5, 1e16, True, None, float("nan")])
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, NaN equal to NaN and -0.0 told from 0.0 (``==`` says neither)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def outcome(call: Any, arg: Any) -> tuple[str, Any]:
    try:
        return "value", call(arg)
    except Exception as exc:  # the type of what json raises is part of the contract
        return "error", type(exc)


@settings(max_examples=600, deadline=None)
@given(values)
def test_dumps_reads_back_as_what_json_writes(value: Any) -> None:
    ours, theirs = outcome(json_text.dumps, value), outcome(_JSON.encode, value)
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "value":
        assert same(json.loads(ours[1]), json.loads(theirs[1])), (ours[1], theirs[1])


@settings(max_examples=600, deadline=None)
@given(values, st.booleans())
def test_loads_gives_what_json_gives(value: Any, ascii_only: bool) -> None:
    try:
        text = json.dumps(value, ensure_ascii=ascii_only)
    except (ValueError, TypeError):  # a key json cannot write: nothing to read
        return
    for given_text in (text, text.encode("utf-8", "surrogatepass")):
        ours, theirs = outcome(json_text.loads, given_text), outcome(json.loads, given_text)
        assert ours[0] == theirs[0], (given_text, ours, theirs)
        if ours[0] == "value":
            assert same(ours[1], theirs[1]), given_text
        else:
            assert ours[1] is theirs[1]


JSON_BITS = [*'{}[],:"\\ 0123456789.eE+-truefalsnNaIiy', "\\u", "\\ud800", "\ud800", "1e400", "é"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(JSON_BITS), max_size=24).map("".join))
def test_loads_accepts_and_refuses_what_json_does(text: str) -> None:
    ours, theirs = outcome(json_text.loads, text), outcome(json.loads, text)
    assert ours[0] == theirs[0], (text, ours, theirs)
    if ours[0] == "value":
        assert same(ours[1], theirs[1]), text


def test_an_embedding_is_written_by_msgspec_and_reads_back_exactly() -> None:
    rng = random.Random(7)
    vector = [rng.gauss(0, 0.03) for _ in range(1536)] + [1e-05, -0.0]
    record = {"id": "k", "response": {"data": [{"embedding": vector}]}}
    text = json_text.dumps(record)
    assert "0.00001" in text  # msgspec's spelling: json writes 1e-05
    assert same(json.loads(text), record)
    assert same(json_text.loads(text), record)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([float("nan")], "[NaN]"),  # msgspec would write null: a different value
        ({"x": [1.0, float("inf")]}, '{"x":[1.0,Infinity]}'),
        ({1e16: 1}, '{"1e+16":1}'),  # msgspec would name the key "1e16"
        ({True: 1}, '{"true":1}'),
    ],
)
def test_what_msgspec_would_change_is_written_by_json(value: Any, expected: str) -> None:
    assert json_text.dumps(value) == expected


@pytest.mark.parametrize(
    "numbers",
    [[1e308, 1e308], [2**2000, 1.0], [1, "a", 2.0], [[1.0], 2.0]],
)
def test_a_list_whose_sum_fails_is_walked_item_by_item(numbers: list[Any]) -> None:
    text = json_text.dumps({"n": numbers})
    assert same(json.loads(text), {"n": numbers})
