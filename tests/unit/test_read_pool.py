"""Reading on every core gives what reading in this process gives, measured, in order."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
from collections.abc import Iterator, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest

from planner.config.prices import shipped_catalog
from planner.core.model import BODY_NOT_LOADED, Request
from planner.pipeline import read_pool
from planner.pipeline.measure import measure
from planner.pipeline.read_pool import ReadPool, WorkerSetup, no_body, worker_count
from planner.sources.formats import Defaults
from planner.sources.lines import (
    CHUNK_LINES,
    LineContext,
    LineParser,
    RawLine,
    chunked,
    judge_here,
    judge_line,
    read_lines,
)
from planner.store.requests import body_json, content_of, decoded_body, same_content
from planner.tokenizers import TiktokenCounter

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CATALOG = shipped_catalog()
SETTINGS = Defaults(
    source="spool",
    family_of=CATALOG.family_of,
    facts_of=CATALOG.get,
    default_model="gpt-4o-mini",
    default_embedding_model="text-embedding-3-small",
)
SETUP = WorkerSetup({"spool": SETTINGS}, CATALOG, partial(TiktokenCounter, CATALOG, download=False))


def _spool(n: int) -> bytes:
    """``n`` lines of every kind: good ones of three formats, bad JSON, a repeated key, blanks."""
    rows: list[bytes] = []
    for i in range(n):
        kind = i % 7
        if kind == 0:
            body = {"messages": [{"role": "user", "content": f"hello number {i} é 日本"}]}
            line = {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions"}
            rows.append(json.dumps({**line, "body": {"model": "gpt-4o-mini", **body}}).encode())
        elif kind == 1:
            rows.append(json.dumps({"id": f"e{i}", "text": f"embed {i}"}).encode())
        elif kind == 2:
            request = {"contents": [{"parts": [{"text": f"gemini {i}"}]}]}
            rows.append(
                json.dumps(
                    {"key": f"g{i}", "model": "gemini-3.5-flash-lite", "request": request}
                ).encode()
            )
        elif kind == 3:
            rows.append(b'{"id": "broken", "prompt": ')
        elif kind == 4:
            rows.append(json.dumps({"id": "same", "prompt": f"again {i}"}).encode())
        elif kind == 5:
            rows.append(b"")
        else:
            rows.append(
                json.dumps({"id": f"p{i}", "prompt": "x" * (i % 50), "deadline": "2h"}).encode()
            )
    return b"\n".join(rows) + b"\n"


def _parsed(data: bytes, judge: object) -> list[object]:
    parser = LineParser(
        file="a.jsonl",
        now=NOW,
        settings=SETTINGS,
        max_line_bytes=1 << 20,
        judge=judge,  # type: ignore[arg-type]
    )
    return list(parser.parse(read_lines(io.BytesIO(data), 1 << 20)))


def test_the_pool_reads_what_this_process_reads_and_measures_it() -> None:
    data = _spool(3 * CHUNK_LINES + 17)  # several chunks, the last one short
    here = _parsed(data, judge_here)
    with ReadPool(SETUP, workers=2) as pool:
        there = _parsed(data, pool.judge)
    assert there == here  # same requests and errors, in the same order
    counter = TiktokenCounter(CATALOG, download=False)
    requests = [r for r in there if isinstance(r, Request)]
    assert len(requests) > 3 * 100
    for request in requests:
        assert request.measured is not None
        again = measure(replace(request, measured=None), CATALOG, counter)
        assert request.measured == again.measured
    reasons = [getattr(e, "reason", None) for e in there if not isinstance(e, Request)]
    assert "invalid_json" in reasons and "duplicate_id" in reasons


def test_chunks_in_flight_are_bounded() -> None:
    """The pool never reads more than ``ahead`` chunks beyond what was handed out."""
    pulled = 0

    def chunks() -> Iterator[Sequence[RawLine]]:
        nonlocal pulled
        for chunk in chunked(read_lines(io.BytesIO(_spool(40 * CHUNK_LINES)), 1 << 20)):
            pulled += 1
            yield chunk

    ctx = LineContext("a.jsonl", NOW, SETTINGS, 1 << 20)
    with ReadPool(SETUP, workers=2) as pool:
        judged = pool.judge([(ctx, chunks())])
        next(judged)
        assert pulled <= 2 * 2 + 2
        handed = 1 + sum(1 for _ in judged)
    assert handed == pulled


def test_a_dead_worker_costs_nothing() -> None:
    data = _spool(4 * CHUNK_LINES)
    here = _parsed(data, judge_here)
    with ReadPool(SETUP, workers=2) as pool:
        assert _parsed(data, pool.judge) == here  # the workers are started
        executor = pool._executor
        assert executor is not None
        executor.submit(os.getpid).result()  # the workers are up
        for pid in list(executor._processes):  # killed on purpose
            os.kill(pid, signal.SIGKILL)
        there = _parsed(data, pool.judge)
    assert there == here
    assert all(r.measured is not None for r in there if isinstance(r, Request))


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({"PLANNER_READ_WORKERS": "0"}, 0), ({"PLANNER_READ_WORKERS": "3"}, 3)],
)
def test_worker_count_can_be_set(environ: dict[str, str], expected: int) -> None:
    assert worker_count(environ) == expected


def test_worker_count_defaults_to_the_usable_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert worker_count({}) == (0 if cores < 2 else cores)


def test_a_short_input_is_read_here_and_a_long_one_by_the_workers() -> None:
    short = _spool(2 * CHUNK_LINES)  # 2 chunks: not more than start_after
    with ReadPool(SETUP, workers=2, start_after=2) as pool:
        assert _parsed(short, pool.judge) == _parsed(short, judge_here)
        assert pool._executor is None  # no process was started for it
        long = _spool(6 * CHUNK_LINES)
        there = _parsed(long, pool.judge)
        assert pool._executor is not None
    assert there == _parsed(long, judge_here)
    assert all(r.measured is not None for r in there if isinstance(r, Request))


def test_requests_cross_processes_whole() -> None:
    """``Request.__reduce__`` and ``Measured.__reduce__`` name every field."""
    data = _spool(20)
    requests = [r for r in _parsed(data, judge_here) if isinstance(r, Request)]
    counter = TiktokenCounter(CATALOG, download=False)
    for request in (*requests, *(measure(r, CATALOG, counter) for r in requests)):
        again = pickle.loads(pickle.dumps(request))
        assert again == request and again.measured == request.measured
        assert [getattr(again, f.name) for f in fields(Request)] == [
            getattr(request, f.name) for f in fields(Request)
        ]
    for raw in read_lines(io.BytesIO(data), 10):  # short and over-long lines alike
        again_raw = pickle.loads(pickle.dumps(raw))
        assert [getattr(again_raw, f.name) for f in fields(RawLine)] == [
            getattr(raw, f.name) for f in fields(RawLine)
        ]


def test_a_bodiless_request_crosses_processes_bodiless() -> None:
    requests = [r for r in _parsed(_spool(10), judge_here) if isinstance(r, Request)]
    counter = TiktokenCounter(CATALOG, download=False)
    for request in requests:
        bodiless = measure(request, CATALOG, counter).without_body()
        again = pickle.loads(pickle.dumps(bodiless))
        assert again.body is BODY_NOT_LOADED  # the same object: planning tests it by identity
        assert again == bodiless and again.measured == bodiless.measured


def gemini_kept(request: Request) -> bool:
    """A ``keeps_body`` a fork server can pickle (pytest's threads make the pool use one)."""
    return request.model.startswith("gemini-")


def test_plan_reads_measured_requests_without_their_bodies() -> None:
    """With ``keeps_body`` (``plan``), workers send back the measured facts and no body, except
    where it answers True (routing reads the body); intake keeps every body."""
    data = _spool(3 * CHUNK_LINES)
    here = [r for r in _parsed(data, judge_here) if isinstance(r, Request)]

    with ReadPool(replace(SETUP, keeps_body=gemini_kept), workers=2) as pool:
        there = [r for r in _parsed(data, pool.judge) if isinstance(r, Request)]
        assert pool._executor is not None  # read by the workers
    assert [(r.source, r.key) for r in there] == [(r.source, r.key) for r in here]
    kept = [r for r in there if r.body is not BODY_NOT_LOADED]
    assert kept and all(gemini_kept(r) for r in kept)
    assert len(kept) < len(there) and all(r.measured is not None for r in there)
    by_key = {r.key: r for r in here}
    counter = TiktokenCounter(CATALOG, download=False)
    for request in there:  # the same facts as a request read whole
        whole = measure(by_key[request.key], CATALOG, counter)
        assert request.measured == whole.measured
        assert request.body in (BODY_NOT_LOADED, whole.body)


def test_intake_gets_the_text_it_stores_and_no_decoded_body() -> None:
    """``keeps_text`` with ``no_body`` (intake): a body crosses the pipe once, as the text the
    store keeps; it decodes to the body, stores as a request read whole would, and compares
    as equal or not for a repeated key as the body itself does."""
    data = _spool(3 * CHUNK_LINES)
    here = [r for r in _parsed(data, judge_here) if isinstance(r, Request)]
    with ReadPool(replace(SETUP, keeps_body=no_body, keeps_text=True), workers=2) as pool:
        there = [r for r in _parsed(data, pool.judge) if isinstance(r, Request)]
        assert pool._executor is not None  # read by the workers
    assert [(r.source, r.key) for r in there] == [(r.source, r.key) for r in here]
    counter = TiktokenCounter(CATALOG, download=False)
    for read, whole in zip(there, here, strict=True):
        assert read.body is BODY_NOT_LOADED and read.measured is not None
        assert read.measured.body_json is not None
        assert json.loads(read.measured.body_json) == whole.body == decoded_body(read)
        assert read.measured == measure(whole, CATALOG, counter).measured
        assert body_json(read) == body_json(measure(whole, CATALOG, counter))
        stored = content_of(whole)
        assert same_content(stored, read)
        other = replace(stored, body_json=json.dumps({**whole.body, "extra": 1}))
        assert not same_content(other, read)
    with pytest.raises(ValueError, match="neither its body nor its text"):
        decoded_body(here[0].without_body())


def test_workers_that_cannot_start_leave_the_reading_to_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_semaphores(*args: object, **kwargs: object) -> None:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(read_pool, "ProcessPoolExecutor", no_semaphores)
    data = _spool(3 * CHUNK_LINES)
    with ReadPool(SETUP, workers=2) as pool:
        there = _parsed(data, pool.judge)
    assert there == _parsed(data, judge_here)
    assert all(r.measured is not None for r in there if isinstance(r, Request))


def test_the_next_files_are_read_while_the_last_chunks_of_one_are_judged() -> None:
    """Files of one chunk each: the pool sends the next files' chunks before it hands out the
    first file's, so both workers stay busy across the ends of small files, and every chunk
    comes back in order with its own file."""
    pulled: list[str] = []

    def files() -> Iterator[tuple[LineContext, Iterator[Sequence[RawLine]]]]:
        for n in range(12):
            ctx = LineContext(f"f{n}.jsonl", NOW, SETTINGS, 1 << 20)

            def chunks(name: str = ctx.file, n: int = n) -> Iterator[Sequence[RawLine]]:
                pulled.append(name)
                yield list(read_lines(io.BytesIO(_spool(5 + n)), 1 << 20))

            yield ctx, chunks()

    with ReadPool(SETUP, workers=2) as pool:
        judged = pool.judge(files())
        first = next(judged)
        assert first[0].file == "f0.jsonl"
        assert len(pulled) == 2 * 2 + 2  # five more files in flight behind the first
        rest = list(judged)
    assert [ctx.file for ctx, _, _ in [first, *rest]] == [f"f{n}.jsonl" for n in range(12)]
    for ctx, chunk, items in [first, *rest]:
        assert items == [_here(raw, ctx) for raw in chunk]


def _here(raw: RawLine, ctx: LineContext) -> object:
    """A line judged and measured in this process, as a worker does."""
    item = judge_line(raw, ctx)
    counter = TiktokenCounter(CATALOG, download=False)
    return measure(item, CATALOG, counter) if isinstance(item, Request) else item


RELEASED_AFTER_FORK = """
import json, threading
from dataclasses import replace
from planner.pipeline.read_pool import ReadPool
from planner.sources.lines import CHUNK_LINES, judge_here
from planner.tokenizers import TiktokenCounter
from tests.unit.test_read_pool import CATALOG, SETUP, _parsed, _spool

counter = TiktokenCounter(CATALOG, download=False)
calls = []
counted = []
count = counter.count
counter.count = lambda text, encoding: counted.append(text) or count(text, encoding)

def release():
    calls.append((sorted(counter._encodings), len(counted)))
    counter.release()

data = _spool(3 * CHUNK_LINES)
here = _parsed(data, judge_here)
setup = replace(SETUP, encodings=("cl100k_base", "o200k_base"))
alone = threading.active_count() == 1  # so the workers are forked from this process
with ReadPool(setup, workers=2, here=counter, release_here=release) as pool:
    there = _parsed(data, pool.judge)
    forked = pool._forked
after = sorted(counter._encodings)
print(json.dumps({"alone": alone, "forked": forked, "same": there == here, "calls": calls,
                  "after": after, "again": counter.count("hello", "o200k_base")}))
"""


def test_forked_workers_free_this_processs_encodings() -> None:
    """Forked workers keep the encodings loaded here (copy on write); this process frees its
    own once they started, reads the same, and loads them again if it counts later."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", RELEASED_AFTER_FORK], capture_output=True, text=True, check=True
    ).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["alone"] and got["forked"] and got["same"]
    # once, with both loaded and nothing counted (toktok's tables are built on a first count)
    assert got["calls"] == [[["cl100k_base", "o200k_base"], 0]]
    assert got["after"] == [] and got["again"] == 1


def test_a_fork_server_leaves_this_processs_encodings() -> None:
    """With threads the workers come from a fork server and load their own: nothing here is
    freed (this process may be counting on another thread)."""
    import threading

    released: list[int] = []
    ticking = threading.Event()
    thread = threading.Thread(target=ticking.wait)
    thread.start()
    try:
        with ReadPool(SETUP, workers=2, release_here=lambda: released.append(1)) as pool:
            _parsed(_spool(3 * CHUNK_LINES), pool.judge)
            assert pool._executor is not None and not pool._forked
    finally:
        ticking.set()
        thread.join()
    assert released == []


KILLED_WHILE_READING = """
import os, signal, sys
from planner.pipeline.read_pool import ReadPool
from planner.sources.lines import CHUNK_LINES
from tests.unit.test_read_pool import SETUP, _parsed, _spool

method = sys.argv[1]
if method == "forkserver":  # a thread makes the pool use a fork server
    import threading
    threading.Thread(target=threading.Event().wait, daemon=True).start()
pool = ReadPool(SETUP, workers=2)
_parsed(_spool(3 * CHUNK_LINES), pool.judge)
print(" ".join(str(p) for p in pool._executor._processes), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no shutdown, no exit handlers
"""


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_workers_end_with_a_killed_reading_process(method: str) -> None:
    """``kill -9`` of the reading process ends its workers too: none is left waiting, and
    whoever reads the process's output sees it end (``communicate`` returns)."""
    import subprocess
    import sys
    import time

    done = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_READING, method],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    workers = [int(p) for p in done.stdout.split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [p for p in workers if os.path.exists(f"/proc/{p}")]
    states = [Path(f"/proc/{p}/stat").read_text().split()[2] for p in alive]
    assert all(s == "Z" for s in states), states  # gone, or a zombie waiting for its reaper
