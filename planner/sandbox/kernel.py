"""The provider emulator's shared state: clock, files, jobs, limits and the billing ledger.

Both surfaces (Gemini native and OpenAI / OpenAI-compat) keep their resources here so that one
ledger sees every batch and every billed request. The kernel knows nothing about wire shapes:
a surface registers a *settle hook* that renders a finished job's results in its own format and
returns what to bill. Everything is guarded by one re-entrant lock (``SandboxState.lock``); route
handlers take it for the duration of a state change and never sleep while holding it.

Job life cycle on the sandbox clock (``S`` = the job's ``seconds_per_state``, fixed at creation):

    [t0, t0+S)      pending      (OpenAI surfaces show it as "validating")
    [t0+S, t0+2S)   running
    [t0+2S, t0+3S)  finalizing   (Gemini shows RUNNING)
    >= t0+3S        succeeded    (or the fate a fault decided: failed at t0+S,
                                  expired / cancelled at t0+3S, or stuck in pending)
    a job still unfinished at t0 + expires_after (default 48 h) is "expired".

A cancel request at time c turns the job into "cancelling" for ``cancel_grace`` seconds, then
"cancelled". With S = 0 every job is terminal the moment it is created.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from planner.sandbox import wire_json
from planner.sandbox.billing import MEMORY_KEYS, Bills
from planner.sandbox.faults import FaultPlan, JobFault

_log = logging.getLogger(__name__)

Surface = str  # "gemini" | "openai" | "compat"
Lane = Literal["batch", "interactive"]

TERMINAL_PHASES = frozenset({"succeeded", "failed", "expired", "cancelled"})
ACTIVE_PHASES = frozenset({"pending", "running", "finalizing", "cancelling"})

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

# Batch enqueued-token limits (input tokens summed over a model's unfinished jobs).
# Gemini: Tier 1 of specs/pricing-and-limits.md §3.2; OpenAI: Tier 2 of §3.3 (Tier 1's 90k for
# gpt-4o would reject most demo batches). Keys are model ids without "models/"; lookup is exact,
# then the longest matching prefix, then DEFAULT_ENQUEUED_TOKENS.
DEFAULT_ENQUEUED_TOKEN_LIMITS: dict[str, int] = {
    "gemini-3-pro-preview": 50_000_000,
    "gemini-3-pro-image-preview": 2_000_000,
    "gemini-3-flash-preview": 3_000_000,
    "gemini-2.5-pro": 5_000_000,
    "gemini-2.5-flash": 3_000_000,
    "gemini-2.5-flash-lite": 10_000_000,
    "gemini-2.0-flash": 10_000_000,
    "gemini-embedding-001": 500_000,
    "gpt-4o": 1_350_000,
    "gpt-4o-mini": 20_000_000,
    "gpt-4.1": 1_350_000,
    "gpt-4.1-mini": 20_000_000,
    "gpt-5-mini": 20_000_000,
    "gpt-5-nano": 20_000_000,
    "text-embedding-3-large": 3_000_000,
}
DEFAULT_ENQUEUED_TOKENS = 10_000_000
DEFAULT_MAX_CONCURRENT_JOBS = 100
DEFAULT_EXPIRY_SECONDS = 48 * 3600.0


class LimitExceeded(Exception):
    """A job was refused at creation: too many active jobs or too many enqueued tokens."""

    def __init__(self, kind: Literal["concurrency", "enqueued_tokens"], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class SandboxClock:
    """The sandbox's notion of time.

    ``seconds_per_state`` paces jobs (0 = instant). ``manual=True`` freezes the wall clock so
    only ``advance`` moves time (tests); otherwise ``now`` is wall time plus the advanced offset.
    """

    def __init__(self, seconds_per_state: float = 2.0, *, manual: bool = False) -> None:
        if seconds_per_state < 0:
            raise ValueError(f"seconds_per_state must be >= 0, got {seconds_per_state}")
        self.seconds_per_state = float(seconds_per_state)
        self.manual = manual
        self._start = time.time()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            base = self._start if self.manual else time.time()
            return base + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"the clock only moves forward; got {seconds}")
        with self._lock:
            self._offset += float(seconds)


@dataclass
class StoredFile:
    id: str
    surface: Surface
    filename: str
    display_name: str | None
    purpose: str
    mime_type: str
    blob: Blob
    created_at: float
    expires_at: float | None = None
    state: str = "ACTIVE"
    generated: bool = False  # a results/error file written by the sandbox
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.blob.size


SPILL_BYTES = 1 << 20  # a stored file larger than this is kept on disk
BLOCK_BYTES = 1 << 20  # what a line-by-line read of a file on disk holds at once


class Blob:
    """A stored file's bytes: in memory up to ``SPILL_BYTES``, else in an anonymous temporary
    file (gone when the file is). The real services keep files on disk; an emulator holding
    every batch's input and results in memory until they were deleted needed several hundred
    MB for a run of 100,000 requests. Reads use ``pread``, so threads may read at once; a
    batch's input is read a block at a time (:meth:`lines`): reading it whole, then splitting
    it, held two copies of a 30 MB file beside its decoded lines (at 50,000 requests the
    emulator, not planner, was the largest process of ``run --once --sandbox``)."""

    __slots__ = ("_digest", "_file", "_small", "size")

    def __init__(self, data: bytes) -> None:
        self.size = len(data)
        self._small: bytes | None = data if self.size <= SPILL_BYTES else None
        self._file: IO[bytes] | None = None
        self._digest: str | None = None
        if self._small is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the file)
            self._file.write(data)
            self._file.flush()

    @classmethod
    def copied_from(cls, source: IO[bytes]) -> Blob:
        """The bytes ``source`` holds from where it is to its end, copied a block at a time
        (an upload, which the web framework spooled to disk: reading it whole held a batch's
        input file in memory, 100 MB at 100,000 requests, beside the copy stored)."""
        first = source.read(SPILL_BYTES + 1)
        if len(first) <= SPILL_BYTES:
            return cls(first)
        file = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the Blob)
        file.write(first)
        while block := source.read(BLOCK_BYTES):
            file.write(block)
        return cls.in_file(file)

    @classmethod
    def in_file(cls, file: IO[bytes]) -> Blob:
        """The bytes a temporary ``file`` holds (``BlobWriter``'s), kept in it."""
        file.flush()
        blob = cls(b"")
        blob._file, blob.size = file, file.seek(0, os.SEEK_END)
        blob._small = None
        return blob

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def read(self) -> bytes:
        if self._small is not None:
            return self._small
        assert self._file is not None
        return os.pread(self._file.fileno(), self.size, 0)

    def read_at(self, offset: int, length: int) -> bytes:
        """``read()[offset:offset + length]``, reading only those bytes (``pread``)."""
        if self._small is not None:
            return self._small[offset : offset + length]
        assert self._file is not None
        return os.pread(self._file.fileno(), length, offset)

    def blocks(self) -> Iterator[bytes]:
        """The bytes in order, at most ``BLOCK_BYTES`` at a time."""
        if self._small is not None:
            yield self._small
            return
        assert self._file is not None
        fd, offset = self._file.fileno(), 0
        while offset < self.size:
            block = os.pread(fd, min(BLOCK_BYTES, self.size - offset), offset)
            if not block:
                return
            offset += len(block)
            yield block

    def lines(self) -> Iterator[bytes]:
        """The pieces ``read().split(b"\\n")`` gives, in order, without the whole file in memory."""
        pending: list[bytes] = []
        for block in self.blocks():
            parts = block.split(b"\n")
            if len(parts) == 1:
                pending.append(block)
                continue
            pending.append(parts[0])
            yield b"".join(pending)
            yield from parts[1:-1]
            pending = [parts[-1]]
        yield b"".join(pending)

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the bytes, computed once (Gemini's file resource names it)."""
        if self._digest is None:
            digest = hashlib.sha256()
            for block in self.blocks():
                digest.update(block)
            self._digest = digest.hexdigest()
        return self._digest


class BlobWriter:
    """A file written a line at a time (a batch's results) or a piece at a time (a resumable
    upload): in memory up to ``SPILL_BYTES``, then in a temporary file. Collecting the lines,
    joining them and encoding the text held three copies of a results file at once: with
    embeddings of 1,536 floats, 30 KB a line, a batch of 10,000 needed about 900 MB; an upload
    gathered in memory was copied once more when it was stored."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._file: IO[bytes] | None = None
        self.lines = 0
        self.size = 0  # bytes written

    def __len__(self) -> int:
        return self.lines

    def add(self, line: str) -> None:
        """``line`` and a newline after it (the file is ``"\\n".join(lines) + "\\n"``)."""
        self.lines += 1
        self.write(line.encode() + b"\n")

    def write(self, data: bytes) -> None:
        """``data`` as it is, after what was written before."""
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._buffer += data
        if len(self._buffer) > SPILL_BYTES:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the Blob)
            self._file.write(self._buffer)
            self._buffer = bytearray()

    def blob(self) -> Blob:
        """The file written so far, as stored files keep it."""
        if self._file is not None:
            return Blob.in_file(self._file)
        return Blob(bytes(self._buffer))


@dataclass
class UploadSession:
    """A resumable upload in progress (Gemini); the id in its URL authorises the chunks."""

    id: str
    surface: Surface
    metadata: dict[str, Any]
    expected_size: int | None
    mime_type: str
    filename: str | None
    received: BlobWriter = field(default_factory=BlobWriter)  # the bytes so far, spilled


@dataclass(frozen=True, slots=True)
class LineSource:
    """Where a line's request is in the batch's input file: the line's bytes at ``offset``, its
    ``field`` once decoded. A job keeps this (and the file) instead of the decoded request: a
    batch's decoded requests, held from the create that checks them to the settle that answers
    them, took the emulator past 250 MB at 100,000 requests (a decoded chat request is two to
    three times its line), and the real services read their input from storage too."""

    blob: Blob
    offset: int
    length: int
    field: str

    def read(self) -> dict[str, Any]:
        value = wire_json.loads(self.blob.read_at(self.offset, self.length))[self.field]
        assert isinstance(value, dict), "checked when the batch was created"
        return value


class JobLine:
    """One request of a job: its key, and its request either held (inline requests, and the
    lines of a Gemini file, split as text) or read from the input file each time it is asked
    for (``LineSource``: an OpenAI batch's lines), so that such a job holds its requests one
    at a time while it answers them."""

    __slots__ = ("_request", "_source", "key", "prompt_tokens", "refused")

    def __init__(
        self,
        key: str,
        request: dict[str, Any] | None = None,
        prompt_tokens: int | None = None,  # counted at create (the enqueued-token limit), if so
        *,
        source: LineSource | None = None,
    ) -> None:
        if (request is None) == (source is None):
            raise ValueError("a job line needs its request or where to read it, not both")
        self.key = key
        self.prompt_tokens = prompt_tokens
        self._request = request
        self._source = source
        self.refused: bool | None = None  # whether the endpoint refuses it, once asked

    @property
    def request(self) -> dict[str, Any]:
        if self._request is not None:
            return self._request
        assert self._source is not None
        return self._source.read()

    @property
    def in_memory(self) -> bool:
        """Whether the request is held here (inline, and a Gemini file's lines), not read
        from the input file."""
        return self._source is None

    def __repr__(self) -> str:
        return f"JobLine(key={self.key!r})"


@dataclass(slots=True)
class LineOutcome:
    """What happened to one input line of a finished job, before a surface renders it; its
    key, request and prompt tokens are its line's (the request read again from the input
    where the job keeps it there)."""

    index: int  # position in the input
    line: JobLine
    fault: str | None  # None (answer normally) | "error" | "malformed" | "missing"

    @property
    def key(self) -> str:
        return self.line.key

    @property
    def request(self) -> dict[str, Any]:
        return self.line.request

    @property
    def prompt_tokens(self) -> int | None:
        """The line's, if counted at create."""
        return self.line.prompt_tokens


@dataclass
class Job:
    id: str
    surface: Surface
    kind: str  # "generate" | "embed" | "chat" | "embeddings" | "responses" | ...
    model: str
    lines: list[JobLine]
    created_at: float
    seconds_per_state: float
    our_id: str | None = None
    display_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    input_file_id: str | None = None
    inline: bool = False
    enqueued_tokens: int = 0
    fault: JobFault | None = None
    cancel_requested_at: float | None = None
    cancel_grace: float | None = None  # None -> seconds_per_state; Gemini uses 0
    # Still unfinished this long after creation -> "expired" (Gemini 48 h; OpenAI: the window).
    expires_after: float | None = DEFAULT_EXPIRY_SECONDS
    deleted: bool = False
    settled: bool = False
    settled_at: float | None = None
    executed: list[LineOutcome] = field(default_factory=list)  # until settled: see ``compact``
    output: dict[str, Any] = field(default_factory=dict)  # surface-owned (file ids, inline, ...)
    extra: dict[str, Any] = field(default_factory=dict)  # surface-owned request echo etc.
    size: int = field(init=False)  # how many requests it was created with
    # once settled, an inline job's requests as its resource echoes them: JSON lines of
    # ``{"request": ..., "metadata": ...}``, on disk past ``SPILL_BYTES`` (``compact``)
    echo: Blob | None = None
    ran: int = 0  # once settled: lines run (``executed``, as its settle hook left it)
    failed_lines: int = 0  # once settled: of those, lines answered with an error

    def __post_init__(self) -> None:
        self.size = len(self.lines)

    def compact(self) -> None:
        """Once settled (its answers written, its usage billed): keep its counts, not its lines
        and outcomes, which nothing reads again. A job kept them for as long as the emulator
        ran, ~0.5 KB a request on top of the ledger's record. An inline job's resource echoes
        its requests: it keeps its lines unless its surface wrote them to ``echo``."""
        self.ran = len(self.executed)
        self.failed_lines = sum(1 for outcome in self.executed if outcome.fault == "error")
        self.executed = []
        if not self.inline or self.deleted or self.echo is not None:
            self.lines = []
            self.extra.pop("inline_metadata", None)  # in the echo, if the resource shows it
        if self.deleted:
            self._forget_resource()

    def delete(self) -> None:
        """Deleted by its client: never shown again, so once settled (its usage billed) it
        keeps only its counts. One still running keeps its lines until it ends and they are
        billed (``compact`` then drops them with its answers)."""
        self.deleted = True
        if self.settled:
            self.lines = []
            self._forget_resource()

    def _forget_resource(self) -> None:
        """Drop what only the job's resource showed (inline requests and answers)."""
        self.output = {}
        self.echo = None
        self.extra.pop("inline_metadata", None)

    # -- timing -----------------------------------------------------------------------------
    def _natural_phase(self, now: float) -> tuple[str, float]:
        """Phase ignoring cancellation, and the time it began (with the expiry deadline)."""
        deadline = None if self.expires_after is None else self.created_at + self.expires_after
        if deadline is not None and now >= deadline:
            phase, began = self._scheduled_phase(deadline)
            if phase not in TERMINAL_PHASES:
                return "expired", deadline
            return phase, began
        return self._scheduled_phase(now)

    def _scheduled_phase(self, now: float) -> tuple[str, float]:
        t0, s = self.created_at, self.seconds_per_state
        kind = self.fault.kind if self.fault else None
        if kind == "stuck":
            return "pending", t0
        if kind in ("fail", "token_limit") and now >= t0 + s:
            return "failed", t0 + s
        if now < t0 + s:
            return "pending", t0
        if now < t0 + 2 * s:
            return "running", t0 + s
        if now < t0 + 3 * s:
            return "finalizing", t0 + 2 * s
        if kind == "expire":
            return "expired", t0 + 3 * s
        if kind == "cancel":
            return "cancelled", t0 + 3 * s
        return "succeeded", t0 + 3 * s

    def phase(self, now: float) -> str:
        natural, _ = self._natural_phase(now)
        c = self.cancel_requested_at
        if c is None or now < c:
            return natural
        natural_at_c, _ = self._natural_phase(c)
        if natural_at_c in TERMINAL_PHASES:
            return natural  # cancel arrived too late; ignored
        grace = self.seconds_per_state if self.cancel_grace is None else self.cancel_grace
        if now < c + grace:
            return "cancelling"
        return "cancelled"

    def phase_started_at(self, now: float) -> float:
        """When the current phase began (for update/end timestamps)."""
        _, began = self._natural_phase(now)
        c = self.cancel_requested_at
        if c is None or now < c or self._natural_phase(c)[0] in TERMINAL_PHASES:
            return began
        grace = self.seconds_per_state if self.cancel_grace is None else self.cancel_grace
        return c if now < c + grace else c + grace

    def is_terminal(self, now: float) -> bool:
        return self.phase(now) in TERMINAL_PHASES

    def running_started_at(self) -> float:
        return self.created_at + self.seconds_per_state

    def done_fraction(self, now: float) -> float:
        """Share of lines processed at ``now``: 0 while pending, linear while running."""
        phase = self.phase(now)
        if phase == "succeeded":
            return 1.0
        if phase == "failed":
            return 0.0
        if phase == "expired":
            if self.fault is not None and self.fault.kind == "expire":
                return self.fault.done_fraction
            assert self.expires_after is not None
            return self._progress_at(self.created_at + self.expires_after)
        if phase in ("cancelled", "cancelling"):
            c = self.cancel_requested_at
            if c is None:  # cancelled by a fault
                return self.fault.done_fraction if self.fault else 0.0
            return self._progress_at(c)
        return self._progress_at(now)

    def _progress_at(self, t: float) -> float:
        if self._scheduled_phase(t)[0] == "pending":
            return 0.0  # not started (a stuck job never starts, whatever the speed)
        s = self.seconds_per_state
        if s <= 0:
            return 1.0 if t >= self.created_at else 0.0
        return min(1.0, max(0.0, (t - self.running_started_at()) / s))


# A surface's settle hook: renders ``job.executed`` into ``job.output`` (creating files through
# the state) and returns (key, usage) pairs to bill in the "batch" lane.
SettleHook = Callable[["SandboxState", Job], list[tuple[str, dict[str, Any]]]]


class Ledger:
    """Everything the sandbox has seen: batches created and requests billed (by key, in
    ``billing.Bills``: in memory, then on disk past its ``memory_keys``).

    Usage dicts use one vocabulary on every surface: ``input_tokens``, ``output_tokens``
    (billable output, thinking/reasoning included), ``total_tokens``, and optionally
    ``thoughts_tokens`` / ``reasoning_tokens`` (already inside ``output_tokens``). Integer
    fields are summed over every time the key was billed.
    """

    def __init__(self, memory_keys: int = MEMORY_KEYS) -> None:
        self._batches: list[Job] = []
        self.bills = Bills(memory_keys)
        self.bill = self.bills.bill  # every bill goes to the per-key records

    def record_batch(self, job: Job) -> None:
        self._batches.append(job)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "batches": [
                {
                    "name": job.id,
                    "our_id": job.our_id,
                    "model": job.model,
                    "requests": job.size,
                    "state": job.phase(now),
                    "surface": job.surface,
                    "kind": job.kind,
                    "display_name": job.display_name,
                    "deleted": job.deleted,
                    "billed": job.ran if job.settled else 0,
                }
                for job in self._batches
            ],
            "requests": list(self.bills.records()),
        }


@dataclass
class Limits:
    max_concurrent_jobs: int = DEFAULT_MAX_CONCURRENT_JOBS
    enqueued_tokens: dict[str, int] = field(
        default_factory=lambda: dict(DEFAULT_ENQUEUED_TOKEN_LIMITS)
    )
    default_enqueued_tokens: int = DEFAULT_ENQUEUED_TOKENS

    def enqueued_limit(self, model: str) -> int:
        bare = bare_model(model)
        if bare in self.enqueued_tokens:
            return self.enqueued_tokens[bare]
        best = ""
        for name in self.enqueued_tokens:
            if bare.startswith(name) and len(name) > len(best):
                best = name
        return self.enqueued_tokens[best] if best else self.default_enqueued_tokens


def bare_model(model: str) -> str:
    """``models/gemini-2.5-flash`` -> ``gemini-2.5-flash``."""
    return model.split("/", 1)[1] if model.startswith(("models/", "tunedModels/")) else model


def our_id_from_display_name(name: str | None) -> str | None:
    """Our planner puts ``planner:<batch id>`` in display names; anything else is not ours."""
    if not name or "planner:" not in name:
        return None
    rest = name.split("planner:", 1)[1].strip()
    return rest or None


class SandboxState:
    """All sandbox state; hold ``lock`` while reading or changing anything."""

    def __init__(
        self,
        *,
        clock: SandboxClock | None = None,
        faults: FaultPlan | None = None,
        limits: Limits | None = None,
        public_url: str | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock or SandboxClock()
        self.faults = faults or FaultPlan()
        self.limits = limits or Limits()
        self.public_url = public_url  # set by serve(); routes otherwise use the request's Host
        self.ledger = Ledger()
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, Job] = {}
        self.uploads: dict[str, UploadSession] = {}
        self.settle_hooks: dict[Surface, SettleHook] = {}
        self._counter = 0
        self._seq = 0

    # -- identity -----------------------------------------------------------------------------
    def new_id(self, prefix: str = "", length: int = 24) -> str:
        """A fresh id, deterministic per state: ``prefix`` + ``length`` chars of [a-z0-9]."""
        with self.lock:
            self._counter += 1
            n = self._counter
        digest = hashlib.sha256(f"{self.faults.seed}:{prefix}:{n}".encode()).digest()
        rng = random.Random(digest)
        return prefix + "".join(rng.choice(_ALPHABET) for _ in range(length))

    def next_seq(self) -> int:
        """A strictly increasing number (creation order for listings and page tokens)."""
        with self.lock:
            self._seq += 1
            return self._seq

    def reset(self) -> None:
        """Forget everything (files, jobs, ledger, uploads); keep clock, faults, limits, hooks."""
        with self.lock:
            self.ledger.bills.close()  # its records' file, if they moved to one
            self.ledger = Ledger()
            self.files.clear()
            self.jobs.clear()
            self.uploads.clear()
            self._counter = 0
            self._seq = 0
            self.faults.reset_counters()

    # -- files --------------------------------------------------------------------------------
    def add_file(
        self,
        *,
        surface: Surface,
        data: bytes | Blob,
        filename: str = "",
        purpose: str = "",
        mime_type: str = "application/octet-stream",
        display_name: str | None = None,
        file_id: str | None = None,
        expires_at: float | None = None,
        generated: bool = False,
        state: str = "ACTIVE",
        metadata: dict[str, Any] | None = None,
    ) -> StoredFile:
        with self.lock:
            fid = file_id or self.new_id("file-" if surface != "gemini" else "", 24)
            meta = dict(metadata or {})
            meta.setdefault("seq", self.next_seq())
            stored = StoredFile(
                id=fid,
                surface=surface,
                filename=filename,
                display_name=display_name,
                purpose=purpose,
                mime_type=mime_type,
                blob=data if isinstance(data, Blob) else Blob(data),
                created_at=self.clock.now(),
                expires_at=expires_at,
                state=state,
                generated=generated,
                metadata=meta,
            )
            self.files[fid] = stored
            return stored

    # -- jobs ---------------------------------------------------------------------------------
    def active_jobs(self, now: float, surface: Surface | None = None) -> list[Job]:
        with self.lock:
            return [
                j
                for j in self.jobs.values()
                if not j.deleted
                and (surface is None or j.surface == surface)
                and j.phase(now) in ACTIVE_PHASES
            ]

    def check_limits(self, job: Job, now: float) -> LimitExceeded | None:
        """Would ``job`` exceed the concurrency or the model's enqueued-token limit?"""
        with self.lock:
            active = self.active_jobs(now, job.surface)
            if len(active) >= self.limits.max_concurrent_jobs:
                return LimitExceeded(
                    "concurrency",
                    f"Too many concurrent batch jobs: limit {self.limits.max_concurrent_jobs}.",
                )
            model = bare_model(job.model)
            enqueued = sum(j.enqueued_tokens for j in active if bare_model(j.model) == model)
            limit = self.limits.enqueued_limit(model)
            if enqueued + job.enqueued_tokens > limit:
                return LimitExceeded(
                    "enqueued_tokens",
                    f"Enqueued token limit reached for {model}. Limit: {limit:,} enqueued "
                    f"tokens; in use {enqueued:,}, this batch {job.enqueued_tokens:,}.",
                )
            return None

    def add_job(self, job: Job, *, enforce_limits: bool = True) -> Job:
        """Register a job (and record it in the ledger); raises LimitExceeded when refused."""
        with self.lock:
            if enforce_limits:
                refusal = self.check_limits(job, job.created_at)
                if refusal is not None:
                    raise refusal
            job.extra.setdefault("seq", self.next_seq())
            self.jobs[job.id] = job
            self.ledger.record_batch(job)
            return job

    def request_cancel(self, job: Job, now: float) -> None:
        with self.lock:
            if job.cancel_requested_at is None and not job.is_terminal(now):
                job.cancel_requested_at = now

    def settle(self, job: Job, now: float) -> None:
        """Once a job is terminal: decide each line's outcome, render results, bill once."""
        with self.lock:
            if job.settled or not job.is_terminal(now):
                return
            fraction = job.done_fraction(now)
            count = len(job.lines) if fraction >= 1.0 else int(len(job.lines) * fraction)
            ident = job.id
            outcomes = [
                LineOutcome(index=i, line=line, fault=self.faults.line_fault(ident, line.key))
                for i, line in enumerate(job.lines[:count])
            ]
            if self.faults.shuffle_results:
                random.Random(f"{self.faults.seed}:shuffle:{ident}").shuffle(outcomes)
            job.executed = outcomes
            job.settled = True
            job.settled_at = now
            hook = self.settle_hooks.get(job.surface)
            billed = hook(self, job) if hook is not None else []
            for key, usage in billed:
                self.ledger.bill(key, "batch", usage, model=job.model, batch=job.id)
            job.compact()

    def settle_all(self, now: float, jobs: Iterable[Job] | None = None) -> None:
        with self.lock:
            for job in list(jobs if jobs is not None else self.jobs.values()):
                self.settle(job, now)

    def visible_in_list(self, job: Job, now: float) -> bool:
        """List lag fault: a new job shows up in listings only ``list_lag`` seconds later."""
        return not job.deleted and now >= job.created_at + self.faults.list_lag

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock.now()
            self.settle_all(now)
            return self.ledger.snapshot(now)


def settle_in_background(state: SandboxState, job: Job) -> None:
    """Settle ``job`` on a thread of its own if it is already over (a sandbox at speed 0), as
    the real services work through a batch after answering its create: the client goes on
    (uploading the next batch) while the answers are made, and a read of the job before they
    are done waits for them (``settle`` holds the state's lock). Not over yet: nothing here;
    the first read after its end settles it, as before."""

    def run() -> None:
        try:
            state.settle(job, state.clock.now())
        except Exception:  # the next read of the job settles it again and answers the error
            _log.exception("settling %s failed", job.id)

    if job.is_terminal(state.clock.now()):
        threading.Thread(target=run, name=f"settle-{job.id}", daemon=True).start()
