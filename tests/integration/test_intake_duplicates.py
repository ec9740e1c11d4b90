"""A key dropped again in another file: the same line is an idempotent repeat (counted), a
different request under that key goes to the quarantine as ``duplicate_id`` (never silently)."""

from __future__ import annotations

import json
from pathlib import Path

from planner.pipeline.intake import ingest_all
from planner.store import requests
from planner.store.engine import make_engine, make_session_factory, upgrade
from tests.integration.test_jsonl_dir import NOW, drop, make_source


def test_cross_file_duplicates(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'planner.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    source = make_source(spool)
    line = {"id": "q1", "prompt": "first"}
    drop(spool, "a.jsonl", json.dumps(line) + "\n", age=120)
    first = ingest_all([source], factory, NOW)
    assert (first.inserted, first.duplicates, first.quarantined) == ({"spool": 1}, {"spool": 0}, {})

    drop(spool, "b.jsonl", json.dumps(line) + "\n" + json.dumps({"id": "q2", "prompt": "x"}))
    drop(spool, "c.jsonl", "\n" + json.dumps({"id": "q1", "prompt": "changed"}) + "\n")
    second = ingest_all([source], factory, NOW)
    assert second.inserted == {"spool": 1}
    assert second.duplicates == {"spool": 1}  # b.jsonl:1, the same line again: a no-op
    assert second.quarantined == {"spool": {"duplicate_id": 1}}

    quarantine = (spool / "quarantine" / "c.jsonl.errors.jsonl").read_text()
    (record,) = [json.loads(x) for x in quarantine.splitlines()]
    assert (record["file"], record["line"], record["reason"]) == ("c.jsonl", 2, "duplicate_id")
    assert record["message"] == (
        "c.jsonl:2: key 'q1' is already stored with a different request (model, endpoint or "
        "body); the stored one stands and this one is not sent"
    )
    assert record["raw"] == json.dumps({"id": "q1", "prompt": "changed"})  # as written
    assert not (spool / "quarantine" / "b.jsonl.errors.jsonl").exists()
    assert sorted(p.name for p in (spool / "done").iterdir()) == ["a.jsonl", "b.jsonl", "c.jsonl"]
    with factory() as s:
        stored = requests.get(s, "spool", "q1")
    assert stored is not None
    assert stored.request.body["messages"][0]["content"] == "first"
    engine.dispose()
