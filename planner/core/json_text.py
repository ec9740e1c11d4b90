"""Results read and written as JSON at msgspec's speed, with exactly ``json``'s values.

Collecting is JSON work: every line of a provider's results file is decoded, and every result
is encoded again for its sink (a file line, a webhook body, a table row, the outbox). An
embedding is 1,536 or 3,072 floats, and ``json`` spends ~0.5 ms decoding one such line and
~0.7 ms encoding it (measured: a 1,536-float OpenAI result line), over 40 minutes of CPU for two
million of them; msgspec does each in ~0.05 ms. Both functions answer with ``json``'s values:

* :func:`loads` gives the value ``json.loads`` gives, or raises its ``ValueError``: every text
  msgspec refuses (``NaN``, ``1e400``, an unpaired surrogate escape, too deep) is decoded again
  by ``json``, which then decides;
* :func:`dumps` writes text that ``json.loads`` reads back to the value
  ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` would have written, but not
  always its bytes: msgspec writes ``1e-05`` as ``0.00001`` and ``1e16`` where ``json`` writes
  ``1e+16`` (both the same float). A value holding what msgspec would write otherwise (a float
  that is not finite, which it writes as ``null``; a key that is not a string, since a float key
  becomes another string; a type JSON does not have) is written by ``json``, as before.

Where the exact bytes matter (a fingerprint, an identity) use ``json`` or
``pipeline/measure.canonical_json``, not this module.
"""

from __future__ import annotations

import json
from math import isfinite
from typing import Any

import msgspec

from planner.core.json_values import every_scalar

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_SCALARS = (int, bool, type(None))  # and str, which the walk skips


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``: the same value, or the same error (module docstring)."""
    try:
        return _DECODER.decode(text)
    except (msgspec.MsgspecError, RecursionError, ValueError):  # NaN, 1e400, too deep, a
        return json.loads(text)  # text (not bytes) holding an unpaired surrogate


def dumps(value: Any) -> str:
    """``value`` as compact JSON, non-ASCII characters as they are (module docstring)."""
    if _msgspec_writes_its_value(value):
        try:
            return _ENCODER.encode(value).decode()
        except (TypeError, ValueError, OverflowError):  # a key msgspec refuses, a surrogate
            pass
    return _JSON.encode(value)


def _msgspec_writes_its_value(value: object) -> bool:
    """Whether ``value`` holds only dicts with string keys, lists, strings, integers, booleans,
    ``None`` and finite floats."""
    return every_scalar(value, _plain_leaf, container=_plain_container)


def _plain_leaf(leaf: Any) -> bool:
    kind = type(leaf)
    if kind is float:
        return isfinite(leaf)
    return kind in _SCALARS


def _plain_container(item: dict[Any, Any] | list[Any]) -> bool | None:
    """A dict with a key that is not a string fails (msgspec writes ``1e16`` as ``"1e16"``).
    A list of numbers is vouched for by its sum, in C instead of a walk: a finite sum means
    every item is a finite number (``NaN`` and infinities carry through a sum); a sum that is
    not finite or not possible (a string, a dict, an int past a float) walks the list."""
    if type(item) is dict:
        return None if all(type(key) is str for key in item) else False
    try:
        return True if isfinite(sum(item, 0.0)) else None
    except (TypeError, OverflowError):
        return None
