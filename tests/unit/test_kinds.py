"""The registries of source and sink kinds: each names a class whose ``kind`` is its key, loaded
when asked for (the SQL ones bring SQLAlchemy, which ``planner plan`` does without)."""

from __future__ import annotations

import pytest

import planner.sinks
import planner.sources
from planner.sinks import SINKS, sink_class
from planner.sources import SOURCES, source_class


def test_every_registered_kind_names_its_own_class() -> None:
    assert {kind: source_class(kind).kind for kind in SOURCES} == {k: k for k in SOURCES}
    assert {kind: sink_class(kind).kind for kind in SINKS} == {k: k for k in SINKS}
    assert set(SOURCES) == {"jsonl_dir", "sql"}
    assert set(SINKS) == {"jsonl_dir", "sql", "webhook"}


def test_an_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown sink kind 'ftp'; known: jsonl_dir, sql, webhook"):
        sink_class("ftp")
    with pytest.raises(KeyError, match="unknown source kind 'ftp'; known: jsonl_dir, sql"):
        source_class("ftp")


def test_the_sql_classes_are_still_attributes_of_their_packages() -> None:
    assert planner.sinks.SqlSink is sink_class("sql")
    assert planner.sources.SqlSource is source_class("sql")
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = planner.sinks.Nope
