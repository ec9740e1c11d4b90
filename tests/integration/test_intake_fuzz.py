"""No input stops intake: hostile files and file names through `plan` and the real intake.

Each example writes a spool of random files (names with bytes that are not UTF-8, newlines,
255-byte names, ...) holding random lines (see ``tests/unit/test_formats_fuzz.py``), runs the
plan preview and one intake pass into a fresh SQLite store, and checks that nothing escaped as
an exception, nothing is left in the spool or in ``.claimed/``, and every non-blank line is
accounted for: stored, a repeat of a stored line, or in the quarantine with its reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from planner.config import load_config
from planner.pipeline.intake import ingest_all
from planner.runtime import clock
from planner.runtime.wiring import build_plan_report, build_sources, catalog_for
from planner.sources.formats import Reason
from planner.store.engine import make_engine, make_session_factory, upgrade
from planner.store.tables import REQUEST
from tests.unit.test_formats_fuzz import lines

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini}
sources:
  spool:
    kind: jsonl_dir
    path: spool
    default_model: gpt-4o-mini
    default_embedding_model: text-embedding-3-small
    settle: 0s
metrics: {enabled: false}
"""
names = st.one_of(
    st.sampled_from([b"\xff\xfe", b"a\nb", b"-rf", b" ", b"\xc3\xa9t\xc3\xa9", b"%41", b"x" * 249]),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\x00" not in b),
).map(lambda stem: stem.lstrip(b".") + b".jsonl")
files = st.dictionaries(names, st.lists(lines, max_size=6), min_size=1, max_size=4)


def _nonblank(data: list[bytes]) -> int:
    """Lines that are not blank: blank = only Unicode white space (and a BOM on line 1)."""
    count = 0
    for number, line in enumerate(data, 1):
        raw = line.replace(b"\n", b" ")
        raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
        try:
            count += bool(raw.decode("utf-8").strip())
        except UnicodeDecodeError:
            count += 1
    return count


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files)
def test_any_spool_is_planned_and_ingested_without_losing_a_line(
    spool_files: dict[bytes, list[bytes]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spool = root / "spool"
        spool.mkdir()
        expected = 0
        for name, data in spool_files.items():
            body = b"".join(line.replace(b"\n", b" ") + b"\n" for line in data)
            with open(os.fsencode(spool) + b"/" + name, "wb") as f:
                f.write(body)
            expected += _nonblank(data)
        (root / "planner.yaml").write_text(CONFIG)
        cfg = load_config(root / "planner.yaml")

        now = clock.utc_now()  # the files' mtime is the wall clock's: settle counts from it
        report = build_plan_report(cfg, now=now)
        assert report is not None

        engine = make_engine(f"sqlite:///{root / 'planner.db'}")
        upgrade(engine)
        factory = make_session_factory(engine)
        result = ingest_all(build_sources(cfg, catalog_for(cfg)), factory, now)

        assert result.units == len(spool_files)
        left = [p.name for p in spool.iterdir() if p.is_file()]
        assert left == [], left
        assert list((spool / ".claimed").iterdir()) == []
        quarantined = sum(result.quarantined.get("spool", {}).values())
        stored = result.inserted.get("spool", 0)
        repeated = result.duplicates.get("spool", 0)
        assert stored + repeated + quarantined == expected
        records = [
            json.loads(line)
            for path in (spool / "quarantine").glob("*.jsonl")
            # JSON Lines end at "\n" only: str.splitlines() would also cut a record at a
            # U+2028 or U+0085 inside a quoted raw line, which JSON leaves unescaped
            for line in path.read_text(encoding="utf-8").split("\n")
            if line
        ] if (spool / "quarantine").exists() else []  # fmt: skip
        assert len(records) == quarantined
        assert {r["reason"] for r in records} <= {x.value for x in Reason} - {"internal_error"}
        with factory() as session:
            assert session.execute(select(func.count()).select_from(REQUEST)).scalar() == stored
        engine.dispose()
