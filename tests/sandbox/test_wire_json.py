"""The emulator's JSON helpers answer as ``json`` does (``sandbox/wire_json.py``).

``canonical`` seeds every fake answer: for the values a request holds it must write the bytes
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` writes (floats aside,
whose form may differ but whose value may not), and the same value must always give the same
bytes, whatever the order its keys were inserted in.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse
from hypothesis import given
from hypothesis import strategies as st

from planner.sandbox import wire_json
from planner.sandbox.responses import WireJSONResponse

_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text()
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _json_canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@given(_VALUES)
def test_canonical_writes_the_bytes_json_writes(value: Any) -> None:
    assert wire_json.canonical(value) == _json_canonical(value)


@given(st.dictionaries(st.text(), _SCALARS, max_size=6))
def test_canonical_ignores_the_order_keys_were_inserted_in(value: dict[str, Any]) -> None:
    backwards = dict(reversed(list(value.items())))
    assert wire_json.canonical(backwards) == wire_json.canonical(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_keeps_its_value(number: float) -> None:
    assert json.loads(wire_json.canonical({"t": number})) == {"t": number}


def test_what_msgspec_cannot_write_is_written_by_json() -> None:
    big = 2**70  # beyond 64 bits
    assert wire_json.canonical({"n": big}) == _json_canonical({"n": big})


@given(_VALUES)
def test_a_wire_json_response_has_starlettes_body(value: Any) -> None:
    """The body of a Gemini batch read (``WireJSONResponse``) is what ``JSONResponse`` wrote:
    compact, UTF-8, the same bytes for these values."""
    assert WireJSONResponse(value).body == JSONResponse(value).body
