"""Read spool lines on every core: parse, check and measure them in worker processes.

Reading a spool is CPU work (JSON, the checks of ``sources/formats``, the tokenizer) that one
Python process does on one core. ``ReadPool`` is a ``LineJudge`` (``sources/lines.py``): the
source reads the bytes and keeps the order and the per-file checks; chunks of lines go to
worker processes that judge each line and measure each request (``pipeline/measure.py``), and
come back in order. At most ``ahead`` chunks are in flight, so memory stays flat whatever the
spool. A worker that dies costs nothing: its chunk and the rest are judged here.

Workers are forked while the process has one thread (``planner plan``, an intake of ``run
--once``), with the encodings this process loaded (shared, copy on write), which it then frees:
it counts nothing while they read. A process with threads (the daemon) uses a fork server,
since forking a threaded process can copy a held lock; its workers load their own.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import select
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, runtime_checkable

from planner.core.catalog import Catalog
from planner.core.estimate import TokenCounter
from planner.core.model import Request
from planner.pipeline.measure import measure
from planner.sources.base import ParsedLine
from planner.sources.formats import Defaults
from planner.sources.line_chunks import parts
from planner.sources.lines import FileChunks, Judged, LineContext, RawLine, judge_parts

_log = logging.getLogger(__name__)

WORKERS_ENV = "PLANNER_READ_WORKERS"  # how many worker processes; 0 = read in this process


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a worker needs, sent once when it starts: each source's record defaults by name,
    the catalog, and how to make a token counter."""

    settings: Mapping[str, Defaults]
    catalog: Catalog
    counter: Callable[[], TokenCounter]
    # BPE encodings loaded before forking, once, and shared with the workers (copy on write)
    encodings: tuple[str, ...] = ()
    # None: every request keeps its body. Else a measured request keeps it only where this
    # answers True: ``plan`` plans from the measured facts, so the body is neither pickled by a
    # worker nor unpickled here (a third of what crossed the pipe)
    keeps_body: Callable[[Request], bool] | None = None
    # a measured request carries its body as the text the store keeps (``Measured.body_json``):
    # intake stores that text and needs the decoded body only to compare a repeated key's,
    # so with ``keeps_body=no_body`` a body crosses the pipe once, as one string
    keeps_text: bool = False


def no_body(request: Request) -> bool:
    """``WorkerSetup.keeps_body`` of intake: no measured request keeps its decoded body (a
    function of this module, not a lambda: a fork server pickles the setup)."""
    return False


@runtime_checkable
class Loads(Protocol):
    """A counter that loads an encoding without counting: toktok builds a table of its own
    (~16 MiB an encoding, kept to the end of the process) on its first count, which this
    process, counting nothing while forked workers read, is better without."""

    def load(self, encoding: str) -> object: ...


_worker: tuple[WorkerSetup, TokenCounter] | None = None  # in a worker: its setup and counter
# a chunk sent (or to be judged here: no future), with its file
_Pending = tuple[LineContext, Sequence[RawLine], Future[list[ParsedLine | None]] | None]


def _start_worker(setup: WorkerSetup, reader: int) -> None:
    global _worker
    _end_with(reader)
    _worker = (setup, setup.counter())


def _end_with(reader: int) -> None:
    """In a worker: end as soon as the reading process ``reader`` ends (Linux: a pidfd,
    watched by a daemon thread). A reader killed with SIGKILL (a crash, ``kill -9``, the OOM
    killer) cannot shut its pool down, and its workers, blocked on a queue whose writing end
    they hold too, would wait forever; a fork server's workers also hold the pipe whose end
    tells it to stop, so it would wait for them. Either would keep the reader's stdout and
    stderr open to whoever waits on them. Where there is no pidfd, nothing is watched."""
    try:
        watched = os.pidfd_open(reader)
    except ProcessLookupError:  # it ended before it could be watched
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd here
        return

    def watch() -> None:
        select.select([watched], [], [])  # readable once the process has ended
        os._exit(0)

    threading.Thread(target=watch, name="end-with-reader", daemon=True).start()


def _judge_chunk(
    source: str, file: str, now: datetime, max_line_bytes: int, chunk: Sequence[RawLine]
) -> list[ParsedLine | None]:
    """In a worker: ``chunk`` judged and its requests measured."""
    assert _worker is not None, "worker not started"
    setup, counter = _worker
    ctx = LineContext(file, now, setup.settings[source], max_line_bytes)
    return [_measured(judge_parts(*line, ctx), setup, counter) for line in parts(chunk)]


def _measured(
    item: ParsedLine | None, setup: WorkerSetup, counter: TokenCounter
) -> ParsedLine | None:
    if not isinstance(item, Request):
        return item
    keeps = setup.keeps_body
    keep = keeps is None or keeps(item)
    try:
        return measure(item, setup.catalog, counter, keep_body=keep, keep_text=setup.keeps_text)
    except Exception:  # never lose a line to a measuring bug: planning measures it again
        _log.exception("request could not be measured", extra={"event": "measure_failed"})
        return item


def worker_count(environ: Mapping[str, str] = os.environ) -> int:
    """Worker processes to read with: ``PLANNER_READ_WORKERS``, else one per usable core
    (none on a single core: the workers would only take turns with this process)."""
    given = environ.get(WORKERS_ENV, "").strip()
    if given.isdigit():
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if (cores or 1) < 2 else cores or 1


class ReadPool:
    """Worker processes judging spool lines; a ``LineJudge`` (``judge``). Close it when done."""

    def __init__(
        self,
        setup: WorkerSetup,
        workers: int,
        *,
        start_after: int = 0,
        here: TokenCounter | None = None,
        release_here: Callable[[], None] | None = None,
    ) -> None:
        """Workers start with the first chunk past ``start_after`` (before that, and without
        any chunk at all, nothing is started: a small spool is not worth a process).
        ``here``: this process's own counter (the planner's), so its encodings are loaded
        once per process; without it, one is made from ``setup`` when first needed.
        ``release_here`` frees ``here``'s encodings once forked workers hold them: this
        process counts nothing while they read (~100 MiB of its own; a count asked for later,
        a worker having died say, loads them again)."""
        self._setup = setup
        self._workers = workers
        self._ahead = 2 * workers + 2
        self._start_after = start_after
        self._chunks = 0
        self._executor: ProcessPoolExecutor | None = None
        self._dead = False
        self._forked = False  # the workers were forked with this process's encodings
        self._here = here
        self._release_here = release_here

    def _pool(self) -> ProcessPoolExecutor | None:
        if self._executor is None and not self._dead and self._chunks > self._start_after:
            # fork copies a held lock of another thread into the child: with threads, a server
            method = "fork" if threading.active_count() == 1 else "forkserver"
            setup = self._setup
            self._forked = method == "fork"
            if self._forked:
                setup = self._shared_setup()
            try:
                self._executor = ProcessPoolExecutor(
                    self._workers,
                    mp_context=multiprocessing.get_context(method),
                    initializer=_start_worker,
                    initargs=(setup, os.getpid()),
                )
            except (OSError, ValueError) as exc:  # no semaphores (/dev/shm), no such method
                self._dead = True
                _log.warning(
                    "read workers could not start (%s); reading in this process",
                    exc,
                    extra={"event": "read_workers_unavailable"},
                )
        return self._executor

    def _shared_setup(self) -> WorkerSetup:
        """The setup forked workers inherit: the encodings loaded here, once (a worker of its
        own would load every one again, ~80 MB and half a second each), and every object so
        far frozen out of the garbage collector, whose bookkeeping writes would copy the
        shared pages into each worker."""
        counter = self._counter()
        for encoding in self._setup.encodings:
            if isinstance(counter, Loads):  # loaded, nothing counted (a failure is kept)
                counter.load(encoding)
            else:
                counter.count("", encoding)
        gc.freeze()
        return replace(self._setup, counter=lambda: counter)

    def _counter(self) -> TokenCounter:
        if self._here is None:
            self._here = self._setup.counter()
        return self._here

    def judge(self, files: Iterable[FileChunks]) -> Iterator[Judged]:
        """Each chunk of each file with what its lines are, in order. Until more than
        ``start_after`` chunks came, they wait (a short input ends before and is judged here);
        then the workers start and take them all, with at most ``ahead`` chunks in flight,
        across the ends of files: the next file's chunks are sent while the last of one are
        judged, so a spool of small files keeps every worker busy."""
        pending: deque[_Pending] = deque()
        hold = max(self._ahead, self._start_after + 1)
        for ctx, chunks in files:
            for chunk in chunks:
                self._chunks += 1
                started = self._executor is not None
                pending.append((ctx, chunk, self._submit(chunk, ctx)))
                if not started and self._executor is not None:  # the workers just started
                    pending = deque((x, c, f or self._submit(c, x)) for x, c, f in pending)
                if len(pending) >= hold:
                    yield self._result(*pending.popleft())
        while pending:
            yield self._result(*pending.popleft())

    def _submit(
        self, chunk: Sequence[RawLine], ctx: LineContext
    ) -> Future[list[ParsedLine | None]] | None:
        executor = self._pool()
        if executor is None:
            return None  # judged here when its turn comes
        source, file, now, limit = ctx.settings.source, ctx.file, ctx.now, ctx.max_line_bytes
        try:
            future = executor.submit(_judge_chunk, source, file, now, limit, chunk)
        except (BrokenProcessPool, RuntimeError, OSError):  # died, shut down, cannot fork
            self._broken()
            return None
        if self._forked and self._release_here is not None:  # the first submit forked them
            self._release_here()
            self._release_here = None
        return future

    def _result(
        self,
        ctx: LineContext,
        chunk: Sequence[RawLine],
        future: Future[list[ParsedLine | None]] | None,
    ) -> Judged:
        if future is not None:
            try:
                return ctx, chunk, future.result()
            except BrokenProcessPool:
                self._broken()
            except Exception:  # a worker's failure costs time, never lines: judged here
                _log.exception("a read worker failed a chunk", extra={"event": "read_failed"})
        return ctx, chunk, self._judge_here(chunk, ctx)

    def _judge_here(self, chunk: Sequence[RawLine], ctx: LineContext) -> list[ParsedLine | None]:
        counter = self._counter()
        return [_measured(judge_parts(*line, ctx), self._setup, counter) for line in parts(chunk)]

    def _broken(self) -> None:
        if self._executor is not None:
            _log.error(
                "a read worker died; reading on in this process",
                extra={"event": "read_worker_died"},
            )
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._dead = True

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> ReadPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
