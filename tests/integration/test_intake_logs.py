"""A unit's bad lines are logged one by one up to ``LOGGED_PER_UNIT``, then summed in one
warning at the unit's end; every one is still quarantined and counted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from planner.pipeline.intake import LOGGED_PER_UNIT, ingest_all
from planner.store.engine import make_engine, make_session_factory, upgrade
from tests.integration.test_jsonl_dir import NOW, drop, make_source


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def test_bad_lines_past_the_first_ones_are_summed_in_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'planner.db'}")
    upgrade(engine)
    bad = LOGGED_PER_UNIT + 37
    lines = [json.dumps({"id": f"ok{i}", "prompt": "fine"}) for i in range(5)]
    lines += ['{"id": "cut' for _ in range(bad - 7)]  # invalid_json
    lines += [json.dumps({"id": f"m{i}", "prompt": "x", "model": "gpt-nope"}) for i in range(7)]
    drop(spool, "many.jsonl", "\n".join(lines) + "\n", age=120)
    drop(spool, "few.jsonl", '{"id": "a", "prompt": "fine"}\n{"nope\n', age=120)

    with caplog.at_level(logging.WARNING, logger="planner.pipeline.intake"):
        result = ingest_all([make_source(spool)], make_session_factory(engine), NOW)

    assert result.inserted == {"spool": 6}
    assert result.quarantined == {"spool": {"invalid_json": bad - 7 + 1, "unknown_model": 7}}
    one_by_one = _events(caplog, "line_quarantined")
    assert len(one_by_one) == LOGGED_PER_UNIT + 1  # many.jsonl's first ones, few.jsonl's one
    (summary,) = _events(caplog, "lines_quarantined")
    held = bad - LOGGED_PER_UNIT
    assert summary.__dict__["unit"] == "many.jsonl" and summary.__dict__["lines"] == held
    assert summary.__dict__["reasons"] == {"invalid_json": held - 7, "unknown_model": 7}
    assert summary.getMessage() == (
        f"quarantined {held} more lines of many.jsonl (invalid_json {held - 7}, "
        "unknown_model 7); each is kept in the quarantine with its reason"
    )
    kept = (spool / "quarantine" / "many.jsonl.errors.jsonl").read_text().splitlines()
    assert len(kept) == bad  # none dropped with its warning
    engine.dispose()
