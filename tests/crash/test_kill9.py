"""kill -9 at every named crash point, then restart until done: nothing lost, nothing twice.

A separate sandbox process (one per module) plays both providers, so its ledger survives our
kills. Each case gets a fresh workspace (spool, store, results) whose request keys carry the
case name, so one shared sandbox ledger still tells the cases apart. The first
``planner run --once`` dies by SIGKILL at the named point (``PLANNER_CRASH_AT``, once per
marker file); the same command is then run again until every request is terminal, and the
invariants of specs/reliability-and-operations.md §7.1 are checked:

- I1 no loss: every good spool line ends with exactly one result line or one dead-letter line,
  never both; the bad lines are kept in quarantine;
- I2 no double billing: the sandbox billed each batch request at most once, with the usage we
  recorded; the store's money ledger holds one row per succeeded request;
- I3 no duplicate batch: every batch the store sent is on exactly one sandbox batch;
- I4 no orphan: the remote files of our batches are deleted (or, under faults, still due);
- I5 money: the store ledger's cost equals the result files' cost.

The interactive lane sends at most once (no idempotency key exists for an interactive call, so
a second send would be a second bill): in sandbox mode each call carries its request key, so
the ledger shows each interactive bill per key too, and I2 covers that lane. A kill after an
interactive call and before its answer is committed (``after_interactive_call``) leaves the
sends in flight with an unknown outcome: they end as ``unknown_outcome`` dead-letter lines,
billed once, never sent again, and that is the only dead-letter line allowed without faults.

The random variant kills the process after seeded random delays (``CRASH_SEED`` overrides the
seed), with provider faults on. The kill times are wall-clock, so a seed repeats the delays,
not necessarily the exact point each kill lands on.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, SHARED_TIKTOKEN

CHAT = 600  # OpenAI chat lines
EMBED = 200  # OpenAI embedding lines
GENERATE = 600  # Gemini generateContent lines
GEM_EMBED = 200  # Gemini embedContent lines
URGENT = 6  # simple lines with a deadline too close for a batch: the interactive lane
BAD = ["{broken", '{"custom_id": "x"}', "[1, 2]", '{"key": "k", "model": "gemini-2.5-flash"}']
TERMINAL = {"succeeded", "dead", "rejected"}
MAX_RUNS = 30
RUN_TIMEOUT = 90.0

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, sink: out}
sinks:
  out: {kind: jsonl_dir, path: results}
policies:
  default: {batch_window: 24h, default_deadline: 48h}
limits:
  openai: {max_requests: 150}
  gemini: {max_requests: 150}
metrics: {enabled: false}
schedule: {list_lag: 2s}  # an unconfirmed batch is re-sent after two listings 2 s apart
"""


# --- the sandbox process ---------------------------------------------------------------------


@dataclass
class Sandbox:
    url: str
    process: subprocess.Popen[bytes]

    def ledger(self) -> dict[str, Any]:
        data = httpx.get(self.url + "/_sandbox/ledger", timeout=30).json()
        assert isinstance(data, dict)
        return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _child_env(**extra: str) -> dict[str, str]:
    keep = ("PLANNER_CI", "PLANNER_TEST_PG_URL", "PLANNER_COLLECT_CHUNK")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_") or k in keep}
    env.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED_TIKTOKEN))
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def _start_sandbox(faults: str | None) -> Iterator[Sandbox]:
    port = _free_port()
    command = [sys.executable, "-m", "planner.sandbox", "--port", str(port), "--speed", "0.05"]
    if faults:
        command += ["--faults", faults]
    process = subprocess.Popen(
        command, env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise AssertionError(f"sandbox exited: {process.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                if httpx.get(url + "/_sandbox/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError("sandbox never answered /_sandbox/health")
        yield Sandbox(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    yield from _start_sandbox(None)


@pytest.fixture(scope="module")
def faulty_sandbox() -> Iterator[Sandbox]:
    # faults hit planner's own calls (not the ledger reads): 429s anywhere, failed lines, and
    # interactive answers cut off after the call was carried out
    yield from _start_sandbox(
        "line_error_rate=0.05,rate_limit=0.1,retry_after=0,drop=0.3,drop_on=generate,"
        "malformed_line_rate=0.03,missing_line_rate=0.02,seed=3"
    )


@pytest.fixture(scope="module")
def lossy_sandbox() -> Iterator[Sandbox]:
    # result lines lost on the way: the provider did (and billed) the work, we cannot read it
    yield from _start_sandbox("malformed_line_rate=0.05,missing_line_rate=0.03,seed=5")


# --- the workspace ---------------------------------------------------------------------------


def spool_files(tag: str, *, urgent: bool, scale: float = 1.0) -> dict[str, list[str]]:
    """The spool, by file name: both providers, both endpoints each, a few bad lines."""
    openai = [
        {
            "custom_id": f"{tag}-chat-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"Summarise ticket {i} in one line."}],
                "max_tokens": 40,
            },
        }
        for i in range(int(CHAT * scale))
    ] + [
        {
            "custom_id": f"{tag}-emb-{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": f"document {i}"},
        }
        for i in range(int(EMBED * scale))
    ]
    gemini = [
        {
            "key": f"{tag}-gen-{i}",
            "model": "gemini-2.5-flash-lite",
            "request": {
                "contents": [{"parts": [{"text": f"Name a colour, {i}"}]}],
                # a large possible answer makes it a file batch (small ones go inline): every
                # batch then has remote files, so before_cleanup always leaves some behind
                "generationConfig": {"maxOutputTokens": 65536},
            },
        }
        for i in range(int(GENERATE * scale))
    ] + [
        {
            "key": f"{tag}-gemb-{i}",
            "model": "gemini-embedding-001",
            "request": {"content": {"parts": [{"text": f"passage {i}"}]}},
        }
        for i in range(int(GEM_EMBED * scale))
    ]
    mixed: list[dict[str, Any]] = []
    if urgent:
        mixed = [
            {"id": f"{tag}-urgent-{i}", "prompt": f"Answer now {i}.", "deadline": "1h"}
            for i in range(URGENT)
        ]
    half_o, half_g = len(openai) // 2, len(gemini) // 2
    return {
        "openai-a.jsonl": [json.dumps(x) for x in openai[:half_o]],
        "openai-b.jsonl": [json.dumps(x) for x in openai[half_o:]],
        "gemini-a.jsonl": [json.dumps(x) for x in gemini[:half_g]],
        "gemini-b.jsonl": [json.dumps(x) for x in gemini[half_g:]],
        "mixed.jsonl": [json.dumps(x) for x in mixed] + BAD,
    }


@dataclass
class Workspace:
    root: Path
    tag: str
    keys: set[str]  # every good line's key
    bad: set[tuple[str, int]]  # (file, line number) of every bad line

    @property
    def config(self) -> Path:
        return self.root / "planner.yaml"


def make_workspace(root: Path, tag: str, *, urgent: bool = True, scale: float = 1.0) -> Workspace:
    spool = root / "spool"
    spool.mkdir(parents=True)
    keys: set[str] = set()
    bad: set[tuple[str, int]] = set()
    for name, lines in spool_files(tag, urgent=urgent, scale=scale).items():
        (spool / name).write_text("".join(line + "\n" for line in lines))
        for number, line in enumerate(lines, start=1):
            if line in BAD:
                bad.add((name, number))
            else:
                data = json.loads(line)
                keys.add(data.get("custom_id") or data.get("key") or data["id"])
    root.joinpath("planner.yaml").write_text(CONFIG)
    return Workspace(root, tag, keys, bad)


# --- driving planner -------------------------------------------------------------------------


def run_once(ws: Workspace, sandbox: Sandbox, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "planner", "run", "--once", "--sandbox-url", sandbox.url]
    return subprocess.run(
        [*command, "-c", str(ws.config)],
        env=_child_env(**env),
        cwd=ws.root,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def status(ws: Workspace) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "planner", "status", "--json", "-c", str(ws.config)],
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


def open_requests(ws: Workspace) -> dict[str, int]:
    return {s: n for s, n in status(ws)["requests"].items() if s not in TERMINAL and n}


def run_until_done(ws: Workspace, sandbox: Sandbox) -> list[str]:
    """Restart ``run --once`` (no crash point) until nothing is open; returns each run's
    summary (stdout)."""
    outputs: list[str] = []
    for runs in range(1, MAX_RUNS + 1):
        done = run_once(ws, sandbox)
        assert done.returncode == 0, f"run {runs} failed ({done.returncode}): {done.stderr}"
        outputs.append(done.stdout)
        left = open_requests(ws)
        if not left:
            return outputs
        time.sleep(0.2)  # batches take sandbox time (0.05 s per state)
    raise AssertionError(f"requests still open after {MAX_RUNS} runs: {left}")


# --- the invariants --------------------------------------------------------------------------


def _lines(folder: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


def _get(sandbox: Sandbox, path: str, headers: dict[str, str]) -> httpx.Response:
    for _ in range(20):  # the faulty sandbox answers 429 now and then
        answer = httpx.get(sandbox.url + path, headers=headers, timeout=30)
        if answer.status_code != 429:
            break
    assert answer.status_code in (200, 404), (path, answer.status_code, answer.text)
    return answer


OPENAI_AUTH = {"authorization": "Bearer k"}
GEMINI_AUTH = {"x-goog-api-key": "k"}


def uploads_named_for(sandbox: Sandbox, our_ids: set[str]) -> set[str]:
    """Live uploaded files whose name carries one of our batch ids (both surfaces)."""
    found: set[str] = set()
    page = _get(sandbox, "/v1/files?limit=10000", OPENAI_AUTH).json()
    found |= {f["id"] for f in page["data"] if any(o in f["filename"] for o in our_ids)}
    token = ""
    while True:
        page = _get(sandbox, f"/v1beta/files?pageSize=100&pageToken={token}", GEMINI_AUTH).json()
        names = {f["name"]: f.get("displayName", "") for f in page.get("files", [])}
        found |= {name for name, shown in names.items() if any(o in shown for o in our_ids)}
        token = page.get("nextPageToken", "")
        if not token:
            return found


def remote_files(sandbox: Sandbox, db: sqlite3.Connection) -> tuple[list[str], list[str], set[str]]:
    """Our files the provider still holds: (recorded and due for cleanup, recorded and not due
    (forgotten), uploaded but never recorded (orphan uploads)).

    Gemini's generated results files (``files/batch-<id>``, 42 characters) cannot be deleted
    through the Files API (400 on get and delete, specs/gemini-batch-api.md); they expire.
    """
    due: list[str] = []
    forgotten: list[str] = []
    recorded: set[str] = set()
    rows = db.execute(
        "SELECT provider, next_poll_at, input_file_id, output_file_id, error_file_id FROM batch"
    )
    for provider, next_visit, *files in rows:
        for file_id in filter(None, files):
            recorded.add(file_id)
            if provider == "gemini" and file_id.startswith("files/batch-"):
                continue
            if provider == "openai":
                answer = _get(sandbox, f"/v1/files/{file_id}", OPENAI_AUTH)
            else:
                answer = _get(sandbox, f"/v1beta/{file_id}", GEMINI_AUTH)
            if answer.status_code == 200:
                (due if next_visit is not None else forgotten).append(file_id)
    our_ids = {row[0] for row in db.execute("SELECT id FROM batch")}
    return due, forgotten, uploads_named_for(sandbox, our_ids) - recorded


def check_invariants(
    ws: Workspace, sandbox: Sandbox, *, faults: bool = False, unknown_ok: bool = False
) -> dict[str, Any]:
    """``unknown_ok``: a kill in the middle of interactive calls may leave ``unknown_outcome``
    dead-letter lines without any fault."""
    records = {r["id"]: r for r in _lines(ws.root / "results")}
    results = Counter(r["id"] for r in _lines(ws.root / "results"))
    dead_records = _lines(ws.root / "results" / "dead")
    dead = Counter(r["id"] for r in dead_records)
    unknown = {r["id"] for r in dead_records if r["error"]["code"] == "unknown_outcome"}
    # I1: one outcome each, none missing, none unexpected, never both
    assert {k for k, n in results.items() if n > 1} == set(), "duplicate result lines"
    assert {k for k, n in dead.items() if n > 1} == set(), "duplicate dead-letter lines"
    assert set(results) & set(dead) == set(), "a request both succeeded and died"
    assert set(results) | set(dead) == ws.keys, (
        f"missing: {sorted(ws.keys - set(results) - set(dead))[:10]}, "
        f"unexpected: {sorted(set(results) | set(dead) - ws.keys)[:10]}"
    )
    urgent = {k for k in ws.keys if k.startswith(f"{ws.tag}-urgent-")}
    assert unknown <= urgent, "only interactive sends can have an unknown outcome"
    if not faults:
        allowed = unknown if unknown_ok else set()
        assert set(dead) <= allowed, f"dead without faults: {sorted(set(dead) - allowed)[:10]}"
    lost = {r["id"] for r in dead_records if r["reason"] in ("malformed_result", "missing_result")}
    state = status(ws)
    assert {s for s, n in state["requests"].items() if n} <= TERMINAL, state["requests"]
    assert state["requests"].get("succeeded", 0) == len(results)

    # I2, I3: the sandbox's view, restricted to this case's keys and batches
    ledger = sandbox.ledger()
    mine = [r for r in ledger["requests"] if r["key"].startswith(ws.tag + "-")]
    twice = {r["key"]: r["times_billed"] for r in mine if r["times_billed"] > 1}
    assert twice == {}, f"billed twice: {dict(list(twice.items())[:10])}"
    billed = {r["key"] for r in mine if r["times_billed"] >= 1}
    assert set(results) <= billed, sorted(set(results) - billed)[:10]
    # a result line lost or unreadable: billed by the provider once, dead-lettered, not resent
    assert lost <= billed, sorted(lost - billed)[:10]
    if not faults:  # no line faults: nothing billed for a key with no result or unknown outcome
        assert billed <= set(results) | unknown, sorted(billed - set(results) - unknown)[:10]
    for r in mine:  # what we recorded is what the provider billed, token for token
        if r["key"] in records:
            usage = records[r["key"]]["usage"]
            assert usage["input_tokens"] == r["usage"]["input_tokens"], r
            assert usage["output_tokens"] == r["usage"].get("output_tokens", 0), r
    # the interactive lane: each urgent request billed at most once (above), in that lane
    calls = {r["key"] for r in mine if r["lanes"].get("interactive")}
    assert urgent & set(results) <= calls <= urgent, sorted(calls ^ urgent)[:10]

    with sqlite3.connect(ws.root / "state" / "planner.db") as db:
        our_ids = {row[0] for row in db.execute("SELECT id FROM batch")}
        sent = {row[0] for row in db.execute("SELECT id FROM batch WHERE remote_id IS NOT NULL")}
        costs = [row[0] for row in db.execute("SELECT cost_usd FROM ledger")]
        per_request = db.execute(
            "SELECT r.key, COUNT(l.id) FROM request r LEFT JOIN ledger l ON l.request_id = r.id "
            "GROUP BY r.id"
        ).fetchall()
        states = dict(db.execute("SELECT state, COUNT(*) FROM batch GROUP BY state").fetchall())
        cleanup_due, forgotten, orphan_uploads = remote_files(sandbox, db)
    # I4: no remote file of ours is left behind once every batch is collected; under faults a
    # deletion that failed transiently is still due (retried by a later collect pass)
    assert forgotten == [], f"remote files never deleted: {forgotten}"
    if not faults:
        assert cleanup_due == [], f"remote files not deleted yet: {cleanup_due}"
        assert orphan_uploads == set(), f"uploads no batch uses: {orphan_uploads}"
    batches = [b for b in ledger["batches"] if b["our_id"] in our_ids]
    by_our_id = Counter(b["our_id"] for b in batches)
    assert {o: n for o, n in by_our_id.items() if n > 1} == {}, "a batch was created twice"
    assert set(by_our_id) == sent, "a batch the store sent is unknown to the provider"
    # I5: the money in the store's ledger is the money in the result files
    assert sum(Decimal(str(c)) for c in costs if c is not None) == sum(
        Decimal(r["cost_usd"]) for r in records.values() if r["cost_usd"] is not None
    )
    # the store: one money-ledger row per succeeded request, none for the others
    rows = dict(per_request)
    assert {k: n for k, n in rows.items() if n > 1} == {}, "ledger row recorded twice"
    assert {k for k, n in rows.items() if n == 1} == set(results)

    # quarantine kept every bad line (at least once: a crash may repeat the entries)
    quarantined = _lines(ws.root / "spool" / "quarantine")
    assert {(Path(q["file"]).name, q["line"]) for q in quarantined} == ws.bad, quarantined
    assert not list((ws.root / "spool").glob("*.jsonl")), "spool files left unread"
    return {
        "batches": len(batches),
        "store_batches": states,
        "results": len(results),
        "interactive_calls": len(calls),
        "unknown_outcome": len(unknown),
        "lost_result_lines": len(lost),
        "cleanup_due": len(cleanup_due),
        "orphan_uploads": len(orphan_uploads),
    }


# --- the tests -------------------------------------------------------------------------------

POINTS = [
    "after_claim",
    "after_ingest",
    "after_intent",
    "after_upload",
    "after_create",
    "after_interactive_call",
    "after_interactive_answer",
    "during_poll",
    "after_sink_write",
    "between_chunks",
    "before_cleanup",
]


def run_until_killed(
    ws: Workspace, sandbox: Sandbox, point: str, marker: Path
) -> subprocess.CompletedProcess[str]:
    """Restart ``run --once`` with a crash at ``point`` until a run reaches it and is killed.
    A point in collect is only reached by the pass that finds its batch done: on a fast
    machine the first pass polls before the sandbox (0.05 s per state) has finished it."""
    for _ in range(MAX_RUNS):
        done = run_once(ws, sandbox, PLANNER_CRASH_AT=point, PLANNER_CRASH_ONCE=str(marker))
        if done.returncode == -signal.SIGKILL:
            assert marker.read_text() == point
            return done
        assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
        time.sleep(0.2)  # batches take sandbox time
    raise AssertionError(f"no run reached {point} in {MAX_RUNS} runs")


def _crash_case(tmp_path: Path, sandbox: Sandbox, point: str, *, urgent: bool) -> None:
    tag = point.replace("_", "") + ("u" if urgent else "b")
    ws = make_workspace(tmp_path, tag, urgent=urgent)
    marker = tmp_path / "crashed"
    run_until_killed(ws, sandbox, point, marker)
    outputs = run_until_done(ws, sandbox)
    figures = check_invariants(ws, sandbox, unknown_ok=point == "after_interactive_call")
    print(f"{point}: {len(ws.keys)} requests, {len(outputs)} restarts, {figures}")
    if point == "after_interactive_call":  # the calls in flight at the kill: never sent again
        assert figures["unknown_outcome"] >= 1, figures
    elif point == "after_interactive_answer":  # answers in the store: delivered by the restart
        line = next(x for x in outputs[0].splitlines() if x.startswith("interactive"))
        assert "recovered 0," not in line and "unknown_outcome 0," in line, line
    submit = next(line for line in outputs[0].splitlines() if line.startswith("submit"))
    if point == "after_create":  # the batch the provider accepted is found and adopted
        assert "adopted 1," in submit, submit
    elif point in ("after_intent", "after_upload"):  # no batch at the provider: sent once
        assert "adopted 0," in submit, submit


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_named_point_loses_nothing_and_bills_nothing_twice(
    tmp_path: Path, sandbox: Sandbox, point: str
) -> None:
    _crash_case(tmp_path, sandbox, point, urgent=True)


def test_kill_after_batch_sink_write(tmp_path: Path, sandbox: Sandbox) -> None:
    """Without interactive requests, after_sink_write is reached in collect, not in the
    interactive lane: the batch's results file is rewritten, its lines billed once."""
    _crash_case(tmp_path, sandbox, "after_sink_write", urgent=False)


@pytest.mark.parametrize("point", ["between_chunks", "after_sink_write"])
def test_kill_while_results_are_settled_in_chunks(
    tmp_path: Path, sandbox: Sandbox, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results settled three at a time: killed after a chunk's commit, or after a chunk's sink
    files are written, a restart goes on at the right chunk under the same file names. Every
    request still ends with exactly one line, billed once."""
    monkeypatch.setenv("PLANNER_COLLECT_CHUNK", "3")
    tag = "chunk" + point.replace("_", "")
    ws = make_workspace(tmp_path, tag, urgent=False)
    run_until_killed(ws, sandbox, point, tmp_path / "crashed")
    run_until_done(ws, sandbox)
    figures = check_invariants(ws, sandbox)
    chunked = [p.name for p in (ws.root / "results").glob("plb_*.*.jsonl")]
    assert chunked, "no batch was settled in more than one chunk"
    print(f"{point} in chunks: {len(chunked)} later-chunk files, {figures}")


@pytest.mark.timeout(300)  # ~40 s alone; restarts multiply when the machine is busy
def test_random_kills_with_provider_faults(tmp_path: Path, faulty_sandbox: Sandbox) -> None:
    seed = int(os.environ.get("CRASH_SEED", "20261128"))
    rng = random.Random(seed)
    ws = make_workspace(tmp_path, "random", scale=0.5)
    command = [sys.executable, "-m", "planner", "run", "--once", "--sandbox-url"]
    kills = attempts = 0
    # a run with work takes seconds and one without about one (start-up): kills at random
    # points until three landed, however fast the machine is
    while kills < 3 and attempts < 24:
        attempts += 1
        process = subprocess.Popen(
            [*command, faulty_sandbox.url, "-c", str(ws.config)],
            env=_child_env(),
            cwd=ws.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            process.wait(timeout=rng.uniform(0.3, 3.0))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
    try:
        runs = len(run_until_done(ws, faulty_sandbox))
        figures = check_invariants(ws, faulty_sandbox, faults=True)
    except AssertionError as exc:
        raise AssertionError(f"CRASH_SEED={seed}: {exc}") from exc
    print(f"random (seed {seed}): {kills} kills, then {runs} runs, {figures}")
    assert kills >= 1, f"seed {seed}: no run was killed; lower the delays"


@pytest.mark.parametrize("point", ["after_sink_write", "before_cleanup"])
def test_lost_result_lines_are_dead_lettered_once_across_a_kill(
    tmp_path: Path, lossy_sandbox: Sandbox, point: str
) -> None:
    """Issue 11: malformed and missing result lines were queued again and billed twice. With
    both faults and a kill while results are settled, each such request ends with exactly one
    dead-letter line (``malformed_result`` with its raw text, or ``missing_result``), billed
    once by the provider, and nothing is sent again."""
    tag = "lost" + point.replace("_", "")
    ws = make_workspace(tmp_path, tag, urgent=False, scale=0.5)
    marker = tmp_path / "crashed"
    run_until_killed(ws, lossy_sandbox, point, marker)
    run_until_done(ws, lossy_sandbox)
    figures = check_invariants(ws, lossy_sandbox, faults=True)
    dead = _lines(ws.root / "results" / "dead")
    reasons = Counter(r["reason"] for r in dead)
    assert set(reasons) == {"malformed_result", "missing_result"}, reasons
    assert all(r.get("raw") for r in dead if r["reason"] == "malformed_result")
    mine = [r for r in lossy_sandbox.ledger()["requests"] if r["key"].startswith(tag + "-")]
    assert {r["key"] for r in mine if r["times_billed"] != 1} == set()
    assert {r["key"] for r in mine} == ws.keys  # every request billed exactly once
    print(f"{point} with lost lines: {dict(reasons)}, {figures}")
