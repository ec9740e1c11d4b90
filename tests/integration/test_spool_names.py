"""Odd spool file names: claimed under a name that is valid UTF-8 and fits, never stranded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from planner.core.model import Request
from planner.sources.base import LineError
from planner.sources.lines import MAX_NAME_BYTES, safe_name
from tests.integration.test_jsonl_dir import NOW, line, make_source


def _drop(folder: Path, name: bytes, data: str) -> None:
    path = os.fsencode(folder) + b"/" + name
    with open(path, "wb") as f:
        f.write(data.encode())
    stamp = NOW.timestamp() - 60
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize(
    ("name", "claimed"),
    [
        (b"caf\xe9.jsonl", "caf%E9.jsonl"),  # Latin-1, not UTF-8
        (b"a\nb.jsonl", "a%0Ab.jsonl"),
        (b"caf\xc3\xa9 ok.jsonl", "café ok.jsonl"),  # good names are kept as they are
    ],
)
def test_odd_names_are_claimed_renamed_and_their_lines_kept(
    tmp_path: Path, name: bytes, claimed: str
) -> None:
    _drop(tmp_path, name, line("a") + "\n{broken\n")
    source = make_source(tmp_path)
    scanned = list(source.scan(NOW))
    assert [i.origin for i in scanned] == [f"{claimed}:1", f"{claimed}:2"]
    (claim,) = source.claim(NOW)
    assert claim.name == claimed
    items = list(claim.lines())
    assert [type(i) for i in items] == [Request, LineError]
    claim.finish(NOW)
    assert os.listdir(tmp_path / ".claimed") == []
    assert os.listdir(tmp_path / "done") == [claimed]
    record = json.loads((tmp_path / "quarantine" / f"{claimed}.errors.jsonl").read_text())
    assert record["file"] == claimed and record["reason"] == "invalid_json"


def test_a_255_byte_name_leaves_room_for_the_quarantine_name(tmp_path: Path) -> None:
    name = "é" * 124 + "x.jsonl"  # 255 bytes in UTF-8: the most a file system allows
    assert len(name.encode()) == 255
    _drop(tmp_path, name.encode(), "{broken\n")
    source = make_source(tmp_path)
    (claim,) = source.claim(NOW)
    assert len(claim.name.encode()) <= MAX_NAME_BYTES and claim.name.endswith(".jsonl")
    assert claim.name == safe_name(name)  # the same name every time: a re-read matches
    list(claim.lines())
    claim.finish(NOW)
    (quarantined,) = os.listdir(tmp_path / "quarantine")
    assert quarantined == claim.name + ".errors.jsonl"
    assert os.listdir(tmp_path / ".claimed") == []
