"""A key stored again: the same request is an idempotent repeat, another one a conflict.

On SQLite and PostgreSQL (the ``factory`` fixture). The stored request always stands.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session, sessionmaker

from planner.core.model import Endpoint
from planner.store import requests
from tests.contract.test_store import NOW, make_request


def test_same_key_same_request_is_a_repeat_other_content_a_conflict(
    factory: sessionmaker[Session],
) -> None:
    original = [make_request(k) for k in ("a", "b", "c", "d")]
    with factory() as s, s.begin():
        requests.ingest(s, original, NOW)
    later = NOW.replace(hour=NOW.hour + 1)
    again = [
        replace(original[0], received_at=later, origin="other.jsonl:7"),  # same line, new file
        replace(original[1], body={**original[1].body, "temperature": 0}),  # other body
        replace(original[2], model="gpt-4o", body={**original[2].body, "model": "gpt-4o"}),
        replace(original[3], endpoint=Endpoint.RESPONSES),
        make_request("e"),
    ]
    with factory() as s, s.begin():
        outcome = requests.ingest(s, again, NOW)
    assert (outcome.inserted, outcome.duplicates) == (1, 1)
    assert [r.key for r in outcome.conflicts] == ["b", "c", "d"]
    with factory() as s:
        stored = requests.get(s, "spool", "b")
    assert stored is not None and stored.request == original[1]  # the first one stands


def test_reordered_keys_in_the_body_are_the_same_request(factory: sessionmaker[Session]) -> None:
    first = make_request("k")
    body = dict(reversed(list(first.body.items())))
    with factory() as s, s.begin():
        requests.ingest(s, [first], NOW)
        outcome = requests.ingest(s, [replace(first, body=body)], NOW)
    assert (outcome.inserted, outcome.duplicates, outcome.conflicts) == (0, 1, ())
