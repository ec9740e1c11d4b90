"""The spool folder on a real file system: readiness, claims, quarantine, done/, recovery."""

from __future__ import annotations

import errno
import json
import os
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from planner.core.model import Endpoint, ProviderKind, Request
from planner.sources import SOURCES, Claim, ClaimedFile, JsonlDirSource, Source, source_class
from planner.sources.base import LineError
from planner.sources.sql import SqlSource

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "spool"
FAMILIES = {
    "gpt-4o-mini": ProviderKind.OPENAI,
    "text-embedding-3-small": ProviderKind.OPENAI,
    "gemini-2.5-flash": ProviderKind.GEMINI,
    "gemini-embedding-001": ProviderKind.GEMINI,
}


def make_source(path: Path, **kw: Any) -> JsonlDirSource:
    return JsonlDirSource(
        "spool",
        path,
        family_of=FAMILIES.get,
        default_model="gpt-4o-mini",
        default_embedding_model="text-embedding-3-small",
        default_deadline=None,
        **kw,
    )


def drop(folder: Path, name: str, data: bytes | str, *, age: float = 60.0) -> Path:
    """Write a file whose mtime is ``age`` seconds before NOW."""
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    stamp = NOW.timestamp() - age
    os.utime(path, (stamp, stamp))
    return path


def line(key: str, prompt: str = "hi") -> str:
    return json.dumps({"id": key, "prompt": prompt})


def keys(items: list[Any]) -> list[str]:
    return [i.key if isinstance(i, Request) else f"!{i.line}" for i in items]


def test_registry_and_protocols(tmp_path: Path) -> None:
    assert source_class("jsonl_dir") is JsonlDirSource
    assert source_class("sql") is SqlSource
    assert all(source_class(kind).kind == kind for kind in SOURCES)
    with pytest.raises(KeyError, match="known: jsonl_dir"):
        source_class("ftp")
    source = make_source(tmp_path)
    assert isinstance(source, Source)
    drop(tmp_path, "a.jsonl", line("x") + "\n")
    (claim,) = source.claim(NOW)
    assert isinstance(claim, Claim)


def test_scan_reads_everything_in_order_and_moves_nothing(tmp_path: Path) -> None:
    drop(tmp_path, "b.jsonl", line("b1") + "\n" + "nope\n" + line("b2") + "\n", age=10)
    drop(tmp_path, "a.jsonl", line("a1") + "\n", age=20)  # older: first
    before = sorted(p.name for p in tmp_path.iterdir())
    items = list(make_source(tmp_path).scan(NOW))
    assert keys(items) == ["a1", "b1", "!2", "b2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    first = items[0]
    assert isinstance(first, Request)
    assert (first.source, first.origin, first.received_at) == ("spool", "a.jsonl:1", NOW)
    error = items[2]
    assert isinstance(error, LineError)
    assert error.message.startswith("b.jsonl:2: not valid JSON")


def test_half_written_and_foreign_entries_are_not_read(tmp_path: Path) -> None:
    drop(tmp_path, "ready.jsonl", line("ok") + "\n")
    drop(tmp_path, "writing.jsonl.tmp", line("tmp") + "\n")
    drop(tmp_path, "writing.jsonl.part", line("part") + "\n")
    drop(tmp_path, ".hidden.jsonl", line("hidden") + "\n")
    drop(tmp_path, "notes.txt", line("txt") + "\n")
    drop(tmp_path, "fresh.jsonl", line("fresh") + "\n", age=1.0)  # inside the 2 s settle time
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "ready.jsonl")
    os.mkfifo(tmp_path / "fifo.jsonl")
    source = make_source(tmp_path)
    assert source.ready_files(NOW) == ["ready.jsonl"]
    assert keys(list(source.scan(NOW))) == ["ok"]
    assert [c.name for c in source.claim(NOW)] == ["ready.jsonl"]
    # once settled, the fresh file is read too
    later = NOW + timedelta(seconds=5)
    assert source.ready_files(later) == ["fresh.jsonl"]


def test_settle_time_is_a_parameter(tmp_path: Path) -> None:
    drop(tmp_path, "a.jsonl", line("a") + "\n", age=30)
    assert make_source(tmp_path, settle=timedelta(minutes=1)).ready_files(NOW) == []
    assert make_source(tmp_path, settle=timedelta(0)).ready_files(NOW) == ["a.jsonl"]


def test_line_endings_bom_blank_lines_and_missing_final_newline(tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbf"
        + line("one").encode()
        + b"\r\n\r\n   \n"
        + line("two").encode()
        + b"\r\n\n"
        + line("three").encode()  # no newline at the end
    )
    drop(tmp_path, "mixed.jsonl", data)
    items = list(make_source(tmp_path).scan(NOW))
    assert keys(items) == ["one", "two", "three"]
    assert [i.origin for i in items] == ["mixed.jsonl:1", "mixed.jsonl:4", "mixed.jsonl:6"]


def test_claim_finish_moves_to_done_and_quarantines_bad_lines(tmp_path: Path) -> None:
    data = "\n".join(
        [
            line("a"),
            '{"id": "b", "prompt": ""}',
            "[1]",
            line("c"),
            line("a", "again"),
        ]
    )
    drop(tmp_path, "in.jsonl", data + "\n")
    source = make_source(tmp_path)
    (claim,) = list(source.claim(NOW))
    assert isinstance(claim, ClaimedFile)
    assert not (tmp_path / "in.jsonl").exists()
    assert (tmp_path / ".claimed" / "in.jsonl").exists()
    assert list(source.claim(NOW)) == []  # nothing else to claim meanwhile
    items = list(claim.lines())
    assert keys(items) == ["a", "!2", "!3", "c", "!5"]
    assert (claim.good, claim.bad) == (2, 3)
    assert all(isinstance(i, Request) and i.received_at == NOW for i in items[::3])
    finished = NOW + timedelta(minutes=1)
    claim.finish(finished)
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["in.jsonl"]
    assert (tmp_path / "done" / "in.jsonl").read_text() == data + "\n"
    assert (tmp_path / "done" / "in.jsonl").stat().st_mtime == finished.timestamp()
    assert list((tmp_path / ".claimed").iterdir()) == []
    records = [
        json.loads(x)
        for x in (tmp_path / "quarantine" / "in.jsonl.errors.jsonl").read_text().splitlines()
    ]
    assert [(r["file"], r["line"], r["reason"]) for r in records] == [
        ("in.jsonl", 2, "schema"),
        ("in.jsonl", 3, "not_object"),
        ("in.jsonl", 5, "duplicate_id"),
    ]
    assert records[0]["raw"] == '{"id": "b", "prompt": ""}'
    assert records[0]["message"] == (
        "in.jsonl:2: field 'prompt': expected a non-empty string, got ''"
    )
    assert records[2]["raw"] == line("a", "again")


def test_same_name_again_gets_a_suffix_in_done_and_appends_quarantine(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    for round_ in range(3):
        drop(tmp_path, "daily.jsonl", line(f"k{round_}") + "\n[]\n")
        (claim,) = list(source.claim(NOW))
        list(claim.lines())
        claim.finish(NOW)
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == [
        "daily.1.jsonl",
        "daily.2.jsonl",
        "daily.jsonl",
    ]
    assert (tmp_path / "done" / "daily.2.jsonl").read_text().startswith(line("k2"))
    quarantine = (tmp_path / "quarantine" / "daily.jsonl.errors.jsonl").read_text().splitlines()
    assert len(quarantine) == 3


def test_a_clean_file_writes_no_quarantine(tmp_path: Path) -> None:
    drop(tmp_path, "ok.jsonl", line("a") + "\n")
    source = make_source(tmp_path)
    (claim,) = list(source.claim(NOW))
    list(claim.lines())
    claim.finish(NOW)
    assert not (tmp_path / "quarantine").exists()


def test_quarantine_folder_is_private(tmp_path: Path) -> None:
    drop(tmp_path, "a.jsonl", "oops\n")
    (claim,) = list(make_source(tmp_path).claim(NOW))
    list(claim.lines())
    claim.finish(NOW)
    assert (tmp_path / "quarantine").stat().st_mode & 0o077 == 0


def test_finish_before_reading_everything_refuses(tmp_path: Path) -> None:
    drop(tmp_path, "a.jsonl", line("a") + "\n" + line("b") + "\n")
    (claim,) = list(make_source(tmp_path).claim(NOW))
    lines = claim.lines()
    next(lines)
    with pytest.raises(RuntimeError, match="before lines"):
        claim.finish(NOW)
    lines.close()
    assert (tmp_path / ".claimed" / "a.jsonl").exists()


def test_claim_is_exclusive_between_threads(tmp_path: Path) -> None:
    """Many claimers race for each file with real renames: exactly one wins every time."""
    sources = [make_source(tmp_path) for _ in range(6)]
    for round_ in range(25):
        drop(tmp_path, f"f{round_}.jsonl", line(f"k{round_}") + "\n")
    wins: list[list[str]] = [[] for _ in sources]
    failures: list[BaseException] = []  # an exception in a thread would otherwise be lost
    barrier = threading.Barrier(len(sources))

    def work(i: int) -> None:
        try:
            barrier.wait()
            for claim in sources[i].claim(NOW):
                wins[i].append(claim.name)
                assert keys(list(claim.lines())) == [f"k{claim.name[1:-6]}"]
                claim.finish(NOW)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    claimed = sorted(name for w in wins for name in w)
    assert claimed == sorted(f"f{r}.jsonl" for r in range(25))  # each once, none lost
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == claimed
    assert os.listdir(tmp_path / ".claimed") == []  # no private folder left behind


def test_claim_never_overwrites_a_claim_in_progress(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    drop(tmp_path, "x.jsonl", line("first") + "\n")
    (first,) = list(source.claim(NOW))
    drop(tmp_path, "x.jsonl", line("second") + "\n")  # same name arrives again
    assert list(source.claim(NOW)) == []  # waits until the first is finished
    assert keys(list(first.lines())) == ["first"]
    first.finish(NOW)
    (second,) = list(source.claim(NOW))
    assert keys(list(second.lines())) == ["second"]


def test_claim_without_hard_links_falls_back_to_a_checked_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    source = make_source(tmp_path)
    drop(tmp_path, "x.jsonl", line("first") + "\n")
    (first,) = list(source.claim(NOW))
    drop(tmp_path, "x.jsonl", line("second") + "\n")
    assert list(source.claim(NOW)) == []  # still never overwrites a claim in progress
    assert keys(list(first.lines())) == ["first"]
    first.finish(NOW)
    assert [c.name for c in source.claim(NOW)] == ["x.jsonl"]


def test_recover_after_a_crash_mid_file(tmp_path: Path) -> None:
    drop(tmp_path, "a.jsonl", line("a") + "\nbad\n" + line("b") + "\n")
    source = make_source(tmp_path)
    (claim,) = list(source.claim(NOW))
    lines = claim.lines()
    next(lines)
    next(lines)  # the bad line was set aside for quarantine ...
    lines.close()  # ... and then the process "died"
    del claim
    assert (tmp_path / ".claimed" / "a.jsonl.errors.pending").exists()
    fresh = make_source(tmp_path)  # a new process
    assert fresh.ready_files(NOW) == []
    assert fresh.recover(NOW) == 1
    assert sorted(p.name for p in (tmp_path / ".claimed").iterdir()) == []
    (again,) = list(fresh.claim(NOW))
    assert keys(list(again.lines())) == ["a", "!2", "b"]
    again.finish(NOW)
    quarantine = (tmp_path / "quarantine" / "a.jsonl.errors.jsonl").read_text().splitlines()
    assert len(quarantine) == 1  # the pending errors of the dead claim were not kept


def test_recover_when_the_crash_fell_between_link_and_unlink(tmp_path: Path) -> None:
    original = drop(tmp_path, "a.jsonl", line("a") + "\n")
    (tmp_path / ".claimed").mkdir()
    os.link(original, tmp_path / ".claimed" / "a.jsonl")
    source = make_source(tmp_path)
    assert list(source.claim(NOW)) == []  # the half claim still blocks others
    assert source.recover(NOW) == 1
    assert original.exists()
    assert list((tmp_path / ".claimed").iterdir()) == []
    assert [c.name for c in source.claim(NOW)] == ["a.jsonl"]


def test_recover_when_the_crash_fell_inside_the_private_claim_folder(tmp_path: Path) -> None:
    claimed = tmp_path / ".claimed"
    claimed.mkdir()
    # crash after the exclusive rename, before the link to the claimed name
    (claimed / ".claiming-a").mkdir()
    os.rename(drop(tmp_path, "a.jsonl", line("a") + "\n"), claimed / ".claiming-a" / "a.jsonl")
    # crash after the link, before the private name was dropped
    (claimed / ".claiming-b").mkdir()
    os.rename(drop(tmp_path, "b.jsonl", line("b") + "\n"), claimed / ".claiming-b" / "b.jsonl")
    os.link(claimed / ".claiming-b" / "b.jsonl", claimed / "b.jsonl")
    (claimed / ".claiming-c").mkdir()  # crash right after the folder was made
    source = make_source(tmp_path)
    assert source.ready_files(NOW) == []
    assert source.recover(NOW) == 2  # a and b, each once
    assert os.listdir(claimed) == []
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["a.jsonl", "b.jsonl"]
    got = sorted(i.key for c in source.claim(NOW) for i in c.lines() if isinstance(i, Request))
    assert got == ["a", "b"]


def test_recover_leaves_a_live_private_claim_alone_with_stale_after(tmp_path: Path) -> None:
    claimed = tmp_path / ".claimed"
    (claimed / ".claiming-a").mkdir(parents=True)
    os.rename(drop(tmp_path, "a.jsonl", line("a") + "\n"), claimed / ".claiming-a" / "a.jsonl")
    moved_at = (claimed / ".claiming-a" / "a.jsonl").stat().st_ctime
    later = datetime.fromtimestamp(moved_at, UTC) + timedelta(minutes=5)
    source = make_source(tmp_path)
    assert source.recover(later, stale_after=timedelta(minutes=10)) == 0
    assert os.listdir(claimed / ".claiming-a") == ["a.jsonl"]
    assert source.recover(later, stale_after=timedelta(minutes=1)) == 1
    assert source.ready_files(NOW) == ["a.jsonl"]
    assert os.listdir(claimed) == []


def test_a_claim_that_finds_its_name_taken_puts_the_file_back(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    drop(tmp_path, "x.jsonl", line("first") + "\n")
    claimed = tmp_path / ".claimed"
    claimed.mkdir()
    (claimed / "x.jsonl").write_text(line("in progress") + "\n")
    assert list(source.claim(NOW)) == []
    assert (tmp_path / "x.jsonl").read_text() == line("first") + "\n"
    assert os.listdir(claimed) == ["x.jsonl"]  # untouched, no private folder left


@pytest.mark.parametrize("producer_again", [False, True])
def test_a_claim_whose_name_is_taken_after_the_rename_puts_the_file_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, producer_again: bool
) -> None:
    """A rival claim of the same name lands between our rename and our link."""
    source = make_source(tmp_path)
    drop(tmp_path, "x.jsonl", line("first") + "\n")
    real_rename = os.rename

    def rename_then_rival(src: Any, dst: Any) -> None:
        real_rename(src, dst)
        if Path(dst).parent.name.startswith(".claiming-"):
            (tmp_path / ".claimed" / "x.jsonl").write_text(line("rival") + "\n")
            if producer_again:
                drop(tmp_path, "x.jsonl", line("second") + "\n")

    monkeypatch.setattr(os, "rename", rename_then_rival)
    assert list(source.claim(NOW)) == []
    assert os.listdir(tmp_path / ".claimed") == ["x.jsonl"]
    back = "x.recovered-1.jsonl" if producer_again else "x.jsonl"
    assert (tmp_path / back).read_text() == line("first") + "\n"  # never lost, never over
    if producer_again:
        assert (tmp_path / "x.jsonl").read_text() == line("second") + "\n"


def test_recover_when_a_new_file_took_the_name(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    drop(tmp_path, "a.jsonl", line("old") + "\n")
    list(source.claim(NOW))  # claimed, then the process died
    drop(tmp_path, "a.jsonl", line("new") + "\n")
    assert source.recover(NOW) == 1
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["a.jsonl", "a.recovered-1.jsonl"]
    assert keys(list(source.scan(NOW + timedelta(minutes=1)))) in (["old", "new"], ["new", "old"])


def test_recover_leaves_live_claims_alone_with_stale_after(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    drop(tmp_path, "a.jsonl", line("a") + "\n")
    list(source.claim(NOW))
    claimed_at = (tmp_path / ".claimed" / "a.jsonl").stat().st_ctime  # set by the claim
    later = datetime.fromtimestamp(claimed_at, UTC) + timedelta(minutes=5)
    assert source.recover(later, stale_after=timedelta(minutes=10)) == 0
    assert source.recover(later, stale_after=timedelta(minutes=1)) == 1
    assert source.ready_files(NOW) == ["a.jsonl"]  # back, with the producer's mtime kept


def test_recover_with_nothing_claimed(tmp_path: Path) -> None:
    assert make_source(tmp_path).recover(NOW) == 0


def test_line_over_the_limit_is_an_error_and_the_rest_goes_on(tmp_path: Path) -> None:
    big = json.dumps({"id": "big", "prompt": "x" * 10_000})
    drop(tmp_path, "a.jsonl", line("a") + "\n" + big + "\n" + line("b"))
    source = make_source(tmp_path, max_line_bytes=1000)
    items = list(source.scan(NOW))
    assert keys(items) == ["a", "!2", "b"]
    error = items[1]
    assert isinstance(error, LineError)
    assert error.reason == "too_large"
    assert error.message == (
        f"a.jsonl:2: line is {len(big)} bytes or more, over the 1000-byte limit "
        "(first 1002 chars kept)"  # the bounded read: limit + room for "\r\n"
    )
    assert error.raw == big[:1002]


def test_duplicate_detection_spills_to_disk_and_stays_exact(tmp_path: Path) -> None:
    rows = [line(f"k{i}") for i in range(50)] + [line("k7"), line("k49"), line("new")]
    drop(tmp_path, "a.jsonl", "\n".join(rows) + "\n")
    items = list(make_source(tmp_path, memory_keys=10).scan(NOW))
    assert keys(items)[50:] == ["!51", "!52", "new"]


def test_deadlines_count_from_claim_time_and_default(tmp_path: Path) -> None:
    drop(
        tmp_path,
        "a.jsonl",
        json.dumps({"id": "d", "prompt": "x", "deadline": "15m"})
        + "\n"
        + json.dumps({"id": "e", "text": "x"})
        + "\n",
    )
    source = JsonlDirSource(
        "spool",
        tmp_path,
        family_of=FAMILIES.get,
        default_model="gpt-4o-mini",
        default_embedding_model="text-embedding-3-small",
        default_deadline=timedelta(hours=6),
    )
    first, second = list(source.scan(NOW))
    assert isinstance(first, Request)
    assert isinstance(second, Request)
    assert first.deadline == NOW + timedelta(minutes=15)
    assert (second.endpoint, second.deadline) == (Endpoint.EMBEDDINGS, NOW + timedelta(hours=6))


def test_whole_corpus_through_claim_and_quarantine(tmp_path: Path) -> None:
    expected = json.loads((CORPUS / "expected.json").read_text())
    for name in expected:
        data = (CORPUS / f"{name}.jsonl").read_bytes()
        drop(tmp_path, f"{name}.jsonl", data + (line(f"after-{name}") + "\n").encode())
    source = make_source(tmp_path, max_line_bytes=4096)
    good: list[str] = []
    for claim in source.claim(NOW):
        good += [i.key for i in claim.lines() if isinstance(i, Request)]
        claim.finish(NOW)
    for name, want in expected.items():
        assert f"after-{name}" in good
        (record,) = [
            json.loads(x)
            for x in (tmp_path / "quarantine" / f"{name}.jsonl.errors.jsonl")
            .read_text()
            .splitlines()
        ]
        assert (record["line"], record["reason"]) == (want["line"], want["reason"]), name
        assert want["fragment"] in record["message"], name
    assert len(list((tmp_path / "done").iterdir())) == len(expected)


def test_a_scan_of_many_small_files_on_read_workers_reads_each_file_as_here(
    tmp_path: Path,
) -> None:
    """Read workers judge the files of a scan together (the next file's lines while the last of
    one are judged); each file still has its own keys: a key twice in one file is refused, the
    same key in two files is not (that is the store's to judge), and an empty file is nothing."""
    from functools import partial

    from planner.config.prices import shipped_catalog
    from planner.pipeline.read_pool import ReadPool, WorkerSetup
    from planner.tokenizers import TiktokenCounter

    spool = tmp_path / "spool"
    spool.mkdir()
    for n in range(30):
        lines = [line(f"k{n}-{i}", f"prompt {n} {i}") for i in range(n % 7)]
        if n % 5 == 0:
            lines += [line(f"k{n}-0", "again in this file"), "", line("shared", f"in {n}")]
        drop(spool, f"f{n:02}.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    source = make_source(spool)
    here = list(source.scan(NOW))
    catalog = shipped_catalog()
    setup = WorkerSetup(
        {"spool": source.settings}, catalog, partial(TiktokenCounter, catalog, download=False)
    )
    with ReadPool(setup, workers=2) as pool:
        source.judge = pool.judge
        there = list(source.scan(NOW))
    strip = [replace(x, measured=None) if isinstance(x, Request) else x for x in there]
    assert strip == here
    assert all(x.measured is not None for x in there if isinstance(x, Request))
    refused = [x for x in here if isinstance(x, LineError)]
    assert [(e.file, e.reason) for e in refused] == [
        (f"f{n:02}.jsonl", "duplicate_id") for n in range(0, 30, 5) if n % 7
    ]
    assert sum(1 for x in here if isinstance(x, Request) and x.key == "shared") == 6


@pytest.mark.parametrize("workers", [0, 2])
def test_a_scan_stopped_early_closes_every_file_it_read_ahead(tmp_path: Path, workers: int) -> None:
    """The judge reads files ahead of the one being handed out (on read workers, several):
    a caller that stops early (``plan`` interrupted, an error) leaves no file open."""
    from functools import partial

    from planner.config.prices import shipped_catalog
    from planner.pipeline.read_pool import ReadPool, WorkerSetup
    from planner.tokenizers import TiktokenCounter

    spool = tmp_path / "spool"
    spool.mkdir()
    for n in range(8):  # two chunks each: the files ahead are read part of the way
        drop(spool, f"f{n:02}.jsonl", "\n".join(line(f"k{n}-{i}") for i in range(300)) + "\n")
    source = make_source(spool)
    catalog = shipped_catalog()
    setup = WorkerSetup(
        {"spool": source.settings}, catalog, partial(TiktokenCounter, catalog, download=False)
    )

    def spool_files_open() -> int:
        found = 0
        for fd in os.listdir("/proc/self/fd"):
            try:  # the listing's own descriptor is gone by now
                found += os.readlink(f"/proc/self/fd/{fd}").startswith(str(spool))
            except FileNotFoundError:
                continue
        return found

    with ReadPool(setup, workers=workers) as pool:
        if workers:
            source.judge = pool.judge
        lines = source.scan(NOW)
        taken = [next(lines) for _ in range(301)]  # into the second file; more read ahead
        assert spool_files_open() >= 1
        lines.close()
        assert spool_files_open() == 0
    assert [x.key for x in taken if isinstance(x, Request)][-2:] == ["k0-299", "k1-0"]
