"""The ``jsonl_dir`` source: a spool folder of ``.jsonl`` files, one request per line.

Producer protocol (tell your users): write ``name.jsonl.tmp`` (or ``name.jsonl.part``, or a
dotfile) in the spool folder, close it, then ``rename`` it to ``name.jsonl``. A rename within one
file system is atomic, so the planner sees either nothing or the whole file. Files that do not
end in ``.jsonl``, dotfiles, anything that is not a regular file (symlinks, FIFOs, folders) and
files modified less than ``settle`` ago are left alone (the last guards producers that write
``name.jsonl`` in place; do not rely on it).

Consumer side, after maildir::

    <path>/x.jsonl --claim--> <path>/.claimed/x.jsonl --finish--> <path>/done/x.jsonl
                                  bad lines --finish--> <path>/quarantine/x.jsonl.errors.jsonl

``claim`` first renames the file into a private folder of its own (``.claimed/.claiming-*/``):
a rename is atomic, so exactly one claimer takes it. Only then is it hard-linked to
``.claimed/x.jsonl`` (falling back to a checked rename where links are not supported) and the
private name dropped; the link fails if the name is already taken, so a claim never overwrites
another (the file then goes back). A bare ``link(x, .claimed/x)`` + ``unlink(x)`` is not
exclusive: ``linkat`` resolves ``x`` before it creates the new name, so a claimer that looked
``x`` up just before a rival's unlink, and linked just after the rival had finished (its
``.claimed/x`` gone to ``done/``), claimed the same file a second time.

The caller commits the good lines to the store and only then calls ``finish``. If the process
dies in between, ``recover`` puts the file back and it is read again (so does a claim that died
inside its private folder); that is safe because ingestion is idempotent per ``(source, key)``
in the store — the store drops what it already has.

Replicas sharing the folder also share ``leases`` (``UnitLeases``, kept in the store): a file is
leased before it is moved into ``.claimed/``, the lease is renewed while its lines are read and
dropped once it is in ``done/``. ``recover`` (also run at the start of every ``claim`` pass)
puts back only files whose lease ran out or was never taken, so a live replica's file is never
taken from it, and a killed replica's file is read again by another once its lease has run out.
Without ``leases`` (one process alone), ``recover`` trusts ``stale_after`` or runs at start-up.
Quarantine entries are written at least once (a crash after the quarantine append but before
the move repeats them).

Memory stays flat whatever the file size: lines are read one at a time with a bounded
``readline``, a line over ``max_line_bytes`` is skipped in chunks and reported ``too_large``,
and the keys used to refuse duplicates spill from a set into a temporary on-disk SQLite
database past ``memory_keys`` keys.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sqlite3
import stat
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from planner.core.catalog import ModelEntry
from planner.core.model import BODY_NOT_LOADED, ProviderKind, Request
from planner.sources.base import LeaseLost, LineError, ParsedLine, UnitLeases
from planner.sources.formats import Defaults
from planner.sources.line_chunks import LineChunk, read_chunks
from planner.sources.lines import (
    FileChunks,
    LineFinder,
    LineJudge,
    LineParser,
    RawLine,
    judge_here,
    safe_name,
)

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
CLAIMED_DIR = ".claimed"
CLAIMING_PREFIX = ".claiming-"  # a claimer's private folder inside CLAIMED_DIR
DONE_DIR = "done"
QUARANTINE_DIR = "quarantine"
PENDING_ERRORS_SUFFIX = ".errors.pending"
DEFAULT_SETTLE = timedelta(seconds=2)
DEFAULT_MAX_LINE_BYTES = 10 * 1024 * 1024  # 10 MB per line
DEFAULT_MEMORY_KEYS = 100_000  # keys held in a set before spilling to disk (~10 MB)
_READ_BUFFER = 1 << 20
RENEW_EVERY = 1000  # lines read between two renewals of a file's lease


class JsonlDirSource:
    """A spool folder read as described in the module docstring."""

    kind = "jsonl_dir"

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        family_of: Callable[[str], ProviderKind | None],
        default_model: str | None = None,
        default_embedding_model: str | None = None,
        default_deadline: timedelta | None = None,
        facts_of: Callable[[str], ModelEntry | None] | None = None,
        default_models: Mapping[str, str] | None = None,
        settle: timedelta = DEFAULT_SETTLE,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        memory_keys: int = DEFAULT_MEMORY_KEYS,
        leases: UnitLeases | None = None,
        judge: LineJudge = judge_here,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self._name = name
        self.path = Path(path)
        self.settle = settle
        self.max_line_bytes = max_line_bytes
        self.memory_keys = memory_keys
        self.leases = leases
        self.judge = judge  # how lines become requests: here, or on every core (read_pool)
        self._settings = Defaults(
            source=name,
            family_of=family_of,
            default_model=default_model,
            default_embedding_model=default_embedding_model,
            default_deadline=default_deadline,
            facts_of=facts_of,
            default_models=dict(default_models or {}),
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def settings(self) -> Defaults:
        """What its records may leave out (the source's name, default models, ...)."""
        return self._settings

    @property
    def claimed_dir(self) -> Path:
        return self.path / CLAIMED_DIR

    @property
    def done_dir(self) -> Path:
        return self.path / DONE_DIR

    @property
    def quarantine_dir(self) -> Path:
        return self.path / QUARANTINE_DIR

    def __repr__(self) -> str:
        return f"JsonlDirSource(name={self._name!r}, path={str(self.path)!r})"

    # ------------------------------------------------------------------ reading

    def ready_files(self, now: datetime) -> list[str]:
        """Names of the files ready to read, oldest first (then by name)."""
        ready: list[tuple[int, str]] = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.endswith(SUFFIX):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # claimed by someone else meanwhile
                if not stat.S_ISREG(st.st_mode):
                    log.warning(
                        "spool entry is not a regular file; ignored",
                        extra={
                            "event": "spool_not_regular",
                            "source": self._name,
                            "file": safe_name(name),
                        },
                    )
                    continue
                if now - datetime.fromtimestamp(st.st_mtime, UTC) < self.settle:
                    continue
                ready.append((st.st_mtime_ns, name))
        return [name for _, name in sorted(ready)]

    def settling(self, now: datetime) -> int:
        """How many ``.jsonl`` files are left alone for now: modified within ``settle``."""
        count = 0
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.endswith(SUFFIX):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat(follow_symlinks=False)
                    fresh = now - datetime.fromtimestamp(st.st_mtime, UTC) < self.settle
                    count += stat.S_ISREG(st.st_mode) and fresh
        return count

    def scan(self, now: datetime) -> Iterator[ParsedLine]:
        """Every line of every ready file, in file order; reads only, claims and moves nothing.

        The files go to the judge in one call, so read workers take the next file's lines
        while the last of one are judged; each file keeps its own parser (its keys)."""
        # the files read and not yet done with, oldest first (a few: as far as the judge reads)
        open_files: deque[tuple[LineParser, SpillingKeySet, BinaryIO]] = deque()

        def files() -> Iterator[FileChunks]:
            for name in self.ready_files(now):
                try:
                    stream = _open_regular(self.path / name)
                except FileNotFoundError:
                    continue
                parser, keys = self._parser(safe_name(name), now)
                open_files.append((parser, keys, stream))
                yield parser.context, _chunks_of(stream, self.max_line_bytes)

        def done_with_oldest() -> None:
            _, keys, stream = open_files.popleft()
            keys.close()
            stream.close()  # read to its end already, unless the scan stops early

        judged = self.judge(files())
        try:
            for ctx, chunk, items in judged:
                while open_files[0][0].context is not ctx:  # that file is done (or was empty)
                    done_with_oldest()
                yield from open_files[0][0].accept(chunk, items)
        finally:
            if isinstance(judged, Generator):  # stop reading ahead (the workers' chunks)
                judged.close()
            while open_files:
                done_with_oldest()

    def _parser(self, name: str, now: datetime) -> tuple[LineParser, SpillingKeySet]:
        """A parser of one file and the key set it fills (close it once the file is read)."""
        keys = SpillingKeySet(self.memory_keys)
        parser = LineParser(
            file=name,
            now=now,
            settings=self._settings,
            keys=keys,
            max_line_bytes=self.max_line_bytes,
            judge=self.judge,
        )
        return parser, keys

    def _parse(
        self, chunks: Iterable[Sequence[RawLine]], name: str, now: datetime
    ) -> Iterator[ParsedLine]:
        parser, keys = self._parser(name, now)
        try:
            yield from parser.parse_chunks(chunks)
        finally:
            keys.close()

    # ------------------------------------------------------------------ claiming

    def claim(self, now: datetime) -> Iterator[ClaimedFile]:
        """Claim ready files one by one; each is yielded before the next is claimed."""
        self.claimed_dir.mkdir(exist_ok=True)
        if self.leases is not None:
            self.recover(now)  # files of replicas whose lease ran out (they died)
        for found in self.ready_files(now):
            name = safe_name(found)  # a name that is not UTF-8 or too long is claimed renamed
            if self.leases is not None and not self.leases.acquire(name):
                continue  # another replica is taking this one
            if not _claim_file(self.path / found, self.claimed_dir, name):
                if self.leases is not None:
                    self.leases.release(name)
                continue  # another claimer has it (or a file of that name is in progress)
            if name != found:
                log.warning(
                    "spool file name is not valid UTF-8 or too long; claimed as %s",
                    name,
                    extra={"event": "spool_renamed", "source": self._name, "file": name},
                )
            log.info(
                "spool file claimed",
                extra={"event": "spool_claimed", "source": self._name, "file": name},
            )
            yield ClaimedFile(self, name, now)

    def recover(self, now: datetime, *, stale_after: timedelta | None = None) -> int:
        """Put files a crashed claimer left in ``.claimed/`` back into the folder.

        With ``leases``, only files whose lease ran out (or was never taken) go back: a live
        claim belongs to a working replica. Without, run it at start-up while no other process
        claims from this folder, or pass ``stale_after`` longer than any claim can take so live
        claims are left alone. Returns how many files went back.
        """
        if not self.claimed_dir.is_dir():
            return 0
        recovered = self._recover_private(now, stale_after)
        for entry in sorted(os.scandir(self.claimed_dir), key=lambda e: e.name):
            name = entry.name
            if name.endswith(PENDING_ERRORS_SUFFIX):
                continue
            if not name.endswith(SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            claimed = self.claimed_dir / name
            if self.leases is not None:
                if not self.leases.acquire(name):
                    continue  # its owner is alive and working on it
                if not claimed.is_file():  # its owner finished it meanwhile
                    self.leases.release(name)
                    continue
            elif stale_after is not None:
                # link/rename set ctime, so ctime is the claim time (mtime stays the producer's)
                ctime = entry.stat(follow_symlinks=False).st_ctime
                if now - datetime.fromtimestamp(ctime, UTC) < stale_after:
                    continue
            _remove(claimed.with_name(name + PENDING_ERRORS_SUFFIX))
            original = self.path / name
            if original.exists() and os.path.samefile(original, claimed):
                claimed.unlink()  # the crash fell between link and unlink: the original stands
            elif not _move_no_replace(claimed, original):
                _move_unique(claimed, self.path, name, tag="recovered")
            if self.leases is not None:
                self.leases.release(name)
            recovered += 1
            log.warning(
                "spool file recovered from an interrupted claim",
                extra={"event": "spool_recovered", "source": self._name, "file": name},
            )
        return recovered

    def _recover_private(self, now: datetime, stale_after: timedelta | None) -> int:
        """Empty the private folders of claims interrupted inside ``_claim_file``.

        A file already linked to its claimed name only loses its private name (the claim
        itself is then recovered, or not, like any other); a file not yet linked goes back
        under the rules of ``recover``. Empty folders are removed: a live claimer that loses
        its folder fails its rename and leaves the file in the spool.
        """
        recovered = 0
        for folder in sorted(self.claimed_dir.glob(CLAIMING_PREFIX + "*")):
            try:
                held_files = sorted(folder.iterdir()) if not folder.is_symlink() else []
            except (FileNotFoundError, NotADirectoryError):
                continue  # its live claimer is done with it
            for held in held_files:
                if self._recover_held(held, now, stale_after):
                    recovered += 1
                    log.warning(
                        "spool file recovered from an interrupted claim",
                        extra={"event": "spool_recovered", "source": self._name, "file": held.name},
                    )
            with contextlib.suppress(OSError):  # not empty: a live claim, or left for later
                folder.rmdir()
        return recovered

    def _recover_held(self, held: Path, now: datetime, stale_after: timedelta | None) -> bool:
        """Put back one file of a private folder; True if it went back to the spool."""
        name = held.name
        claimed = self.claimed_dir / name
        try:
            if claimed.exists() and os.path.samefile(claimed, held):
                _remove(held)  # the crash fell between link and unlink
                return False
            if self.leases is None and stale_after is not None:
                ctime = held.stat(follow_symlinks=False).st_ctime
                if now - datetime.fromtimestamp(ctime, UTC) < stale_after:
                    return False
        except FileNotFoundError:
            return False  # its live claimer moved it on meanwhile
        if self.leases is not None and not self.leases.acquire(name):
            return False  # its claimer is alive and working on it
        try:
            if not held.exists():  # its claimer moved it on meanwhile
                return False
            if not _move_no_replace(held, self.path / name):
                _move_unique(held, self.path, name, tag="recovered")
            return True
        finally:
            if self.leases is not None:
                self.leases.release(name)


class ClaimedFile:
    """A spool file owned by this process: read ``lines()``, commit, then ``finish(now)``."""

    def __init__(self, source: JsonlDirSource, name: str, claimed_at: datetime) -> None:
        self._source = source
        self._name = name
        self.claimed_at = claimed_at
        self.path = source.claimed_dir / name
        self._pending = source.claimed_dir / (name + PENDING_ERRORS_SUFFIX)
        self._complete = False
        self._finder = LineFinder()  # the raw text of a line ``reject`` quarantines
        self.good = 0
        self.bad = 0

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"ClaimedFile(source={self._source.name!r}, name={self._name!r})"

    def lines(self) -> Generator[ParsedLine, None, None]:
        """Requests and errors in file order. Errors are also set aside for the quarantine.

        Requests carry ``received_at`` = the claim time. Calling it again starts over.
        """
        self._complete = False
        self.good = self.bad = 0
        with _open_regular(self.path) as stream, self._pending.open("wb") as pending:
            chunks = read_chunks(stream, self._source.max_line_bytes)
            items = self._source._parse(
                self._finder.mark_chunks(chunks), self._name, self.claimed_at
            )
            for number, item in enumerate(items, 1):
                if number % RENEW_EVERY == 0:
                    self._keep_lease()
                if isinstance(item, LineError):
                    self.bad += 1
                    pending.write(_quarantine_record(item, self.claimed_at))
                else:
                    self.good += 1
                yield item
        self._complete = True

    def reject(self, request: Request, reason: str, message: str) -> LineError:
        """Quarantine a request of this file that the store refused (after ``lines()``), with
        its line as written (found again from the offsets ``lines()`` marked)."""
        if not self._complete:
            raise RuntimeError(f"{self!r}: reject() before lines() was read to the end")
        line = int((request.origin or "").rpartition(":")[2] or 0)
        text = self._finder.text(
            lambda: _open_regular(self.path), line, self._source.max_line_bytes, self._name
        )
        if text is None:  # not found again (cannot happen to a line that was read): say what
            body: object = request.body
            if body is BODY_NOT_LOADED and request.measured and request.measured.body_json:
                body = json.loads(request.measured.body_json)  # sent as text (read workers)
            record = {"key": request.key, "model": request.model, "body": body}
            text = json.dumps({**record, "endpoint": request.endpoint.value}, ensure_ascii=False)
        error = LineError(
            file=self._name,
            line=line,
            reason=reason,
            message=f"{self._name}:{line}: {message}",
            raw=text,
        )
        with self._pending.open("ab") as pending:
            pending.write(_quarantine_record(error, self.claimed_at))
        self.good -= 1
        self.bad += 1
        return error

    def finish(self, now: datetime) -> None:
        """After the good lines are committed: quarantine the bad ones, move the file to done/.

        Raises RuntimeError if ``lines()`` was not read to the end (that would lose lines).
        """
        if not self._complete:
            raise RuntimeError(f"{self!r}: finish() before lines() was read to the end")
        source = self._source
        self._keep_lease()
        if self.bad:
            source.quarantine_dir.mkdir(mode=0o700, exist_ok=True)  # raw prompts inside
            target = source.quarantine_dir / (self._name + ".errors" + SUFFIX)
            with self._pending.open("rb") as src, target.open("ab") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
        source.done_dir.mkdir(exist_ok=True)
        stamp = now.timestamp()
        os.utime(self.path, (stamp, stamp))
        self._finder.close()
        done = _move_unique(self.path, source.done_dir, self._name, tag="")
        _remove(self._pending)
        if source.leases is not None:
            source.leases.release(self._name)
        log.info(
            "spool file done",
            extra={
                "event": "spool_done",
                "source": source.name,
                "file": self._name,
                "done": done.name,
                "good": self.good,
                "bad": self.bad,
            },
        )

    def _keep_lease(self) -> None:
        leases = self._source.leases
        if leases is not None and not leases.renew(self._name):
            raise LeaseLost(
                f"{self._source.name}: {self._name} was taken over by another replica "
                "(its lease ran out)"
            )


# ---------------------------------------------------------------------- helpers


def _chunks_of(stream: BinaryIO, max_line_bytes: int) -> Iterator[LineChunk]:
    """A file's lines in chunks; the file is closed once they are read."""
    with stream:
        yield from read_chunks(stream, max_line_bytes)


class SpillingKeySet:
    """Keys seen in one file: a set up to ``memory_keys``, then a temporary SQLite database.

    ``sqlite3.connect("")`` is a private on-disk database deleted on close, with a small page
    cache, so a file of millions of lines does not grow the process.
    """

    def __init__(self, memory_keys: int = DEFAULT_MEMORY_KEYS) -> None:
        self._limit = memory_keys
        self._seen: set[str] = set()
        self._db: sqlite3.Connection | None = None

    def add(self, key: str) -> bool:
        if self._db is None:
            if key in self._seen:
                return False
            self._seen.add(key)
            if len(self._seen) > self._limit:
                self._spill()
            return True
        cursor = self._db.execute("INSERT OR IGNORE INTO seen (k) VALUES (?)", (key,))
        return cursor.rowcount == 1

    def _spill(self) -> None:
        db = sqlite3.connect("")
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE seen (k TEXT PRIMARY KEY) WITHOUT ROWID")
        db.executemany("INSERT INTO seen (k) VALUES (?)", ((k,) for k in self._seen))
        self._seen = set()
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._seen = set()


def _open_regular(path: Path) -> BinaryIO:
    """Open for reading without following symlinks, and only if it is a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError(errno.ENOENT, "not a regular file", str(path))
        return os.fdopen(fd, "rb", buffering=_READ_BUFFER)
    except BaseException:
        os.close(fd)
        raise


_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def _move_no_replace(src: Path, dst: Path) -> bool:
    """Move ``src`` to ``dst`` unless ``dst`` exists or ``src`` is gone; True if moved.

    ``link`` fails if ``dst`` exists, so a move never replaces a file; where hard links are
    not supported, fall back to a checked ``rename`` (atomic, but with a tiny window in which
    two movers of two same-named files could collide). It is not exclusive between movers of
    the same ``src``: use it only on a file this process owns (``_claim_file`` takes it first).
    """
    try:
        os.link(src, dst, follow_symlinks=False)
    except (FileExistsError, FileNotFoundError):
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if dst.exists():
            return False
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return False
        return True
    with contextlib.suppress(FileNotFoundError):
        os.unlink(src)
    return True


def _claim_file(src: Path, claimed_dir: Path, name: str) -> bool:
    """Move ``src`` to ``claimed_dir/name``; True only for the one claimer that took it.

    The rename into a private folder is the exclusive step (``rename`` looks ``src`` up and
    moves it under the directory locks, so a second claimer finds nothing); the link to the
    claimed name that follows touches a file no one else can reach. If that name is taken by
    a claim in progress, the file goes back to the spool, never over a newer file.
    """
    if (claimed_dir / name).exists():
        return False  # a file of that name is in progress
    private = claimed_dir / f"{CLAIMING_PREFIX}{uuid.uuid4().hex}"
    private.mkdir()
    held = private / name
    try:
        try:
            os.rename(src, held)
        except FileNotFoundError:
            return False  # another claimer took it first
        if _move_no_replace(held, claimed_dir / name):
            return True
        if not _move_no_replace(held, src):
            _move_unique(held, src.parent, name, tag="recovered")
        return False
    finally:
        with contextlib.suppress(OSError):
            private.rmdir()


def _move_unique(src: Path, folder: Path, name: str, *, tag: str) -> Path:
    """Move ``src`` into ``folder`` as ``name``, or ``stem.[tag-]N.jsonl`` if that is taken."""
    stem = name.removesuffix(SUFFIX)
    candidate = folder / name
    n = 0
    while not _move_no_replace(src, candidate):
        if not src.exists():
            raise FileNotFoundError(errno.ENOENT, "vanished while being moved", str(src))
        n += 1
        label = f"{tag}-{n}" if tag else str(n)
        candidate = folder / f"{stem}.{label}{SUFFIX}"
    return candidate


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _quarantine_record(error: LineError, claimed_at: datetime) -> bytes:
    record = {
        "file": error.file,
        "line": error.line,
        "reason": error.reason,
        "message": error.message,
        "raw": error.raw,
        "claimed_at": claimed_at.isoformat(),
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
