"""The command line's entry point tunes the collector before any command runs."""

from __future__ import annotations

import gc

import pytest

from planner import cli


def test_main_collects_young_objects_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command runs with the youngest generation collected every ``GC_YOUNG_OBJECTS``
    allocations, not Python's 700 (a stage allocates hundreds of thousands of rows)."""
    seen: list[tuple[int, int, int]] = []
    monkeypatch.setattr(cli, "app", lambda: seen.append(gc.get_threshold()))
    before = gc.get_threshold()
    try:
        cli.main()
    finally:
        gc.set_threshold(*before)
    assert seen == [(cli.GC_YOUNG_OBJECTS, 20, 20)]
    assert cli.GC_YOUNG_OBJECTS > 700


def test_only_main_may_end_the_process_once_a_command_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``plan`` ends its process without the interpreter's teardown only under ``main`` (the
    console script); in-process, as the tests invoke commands, it returns."""
    ended: list[bool] = []
    monkeypatch.setattr(cli.os, "_exit", lambda code: ended.append(True))
    monkeypatch.setattr(cli.logging, "shutdown", lambda: None)  # pytest's handlers stay open
    monkeypatch.setattr(cli, "app", cli._end_one_shot)
    cli.main()
    assert ended == [True]
    cli._end_one_shot()  # main is over: a no-op
    assert ended == [True]
