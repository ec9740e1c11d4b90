"""Poison lines through the real intake into SQLite and PostgreSQL: the good lines are stored,
every poison line is quarantined, nothing is left claimed (PostgreSQL text refuses NUL, so a
line the parser let through would stop the whole file there)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from planner.pipeline.intake import ingest_all
from planner.store.tables import REQUEST
from tests.integration.test_jsonl_dir import NOW, drop, make_source

POISON = [
    '{"id": "p1", "prompt": "a\\u0000b"}',
    '{"id": "p2", "prompt": "x", "metadata": {"k\\u0000": "v"}}',
    '{"id": "p3", "prompt": "x\\ud800"}',
    '{"id": "p4", "prompt": "x", "max_output_tokens": 100000000000000000000}',
    '{"id": "p5", "prompt": "x", "deadline": "99999999999d"}',
    '{"id": "p6", "prompt": "x", "metadata": ' + "[" * 5000 + "]" * 5000 + "}",
]


def test_poison_lines_never_reach_the_store(tmp_path: Path, factory: sessionmaker[Session]) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    good = [json.dumps({"id": f"g{i}", "prompt": f"hello {i} é"}) for i in range(3)]
    drop(spool, "mixed.jsonl", "\n".join([good[0], *POISON, *good[1:]]) + "\n")
    result = ingest_all([make_source(spool)], factory, NOW)
    assert result.inserted == {"spool": 3}
    assert sum(result.quarantined["spool"].values()) == len(POISON)
    assert os.listdir(spool / ".claimed") == []
    with factory() as session:
        assert session.execute(select(func.count()).select_from(REQUEST)).scalar() == 3
