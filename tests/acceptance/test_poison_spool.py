"""Issue 12 as a user meets it: the example configuration, a spool of good lines mixed with
poison lines and names, and Google's own embeddings file, through `plan` and `run --once`.

Both exit 0; nothing stays in `.claimed/`; every good line has a result line; every poison line
is in the quarantine with its reason; the Gemini file is batched with gemini-embedding-001.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tests.acceptance.test_cli_plan import run
from tests.conftest import REPO
from tests.integration.test_run_once import read_sink

SEED = '{"key": "request_1", "request": {"output_dimensionality": 512, "content": {"parts": [{"text": "Explain GenAI"}]}}}'  # noqa: E501
CHAT = {"role": "user", "content": "x"}
POISON: dict[str, tuple[str, str]] = {  # raw line -> (reason, a fragment of the message)
    '{"id": "p1", "prompt": "x\\ud800y"}': ("encoding", "lone surrogate"),
    '{"id": "p2", "prompt": "x", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}": (
        "too_deep",
        "nested too deeply",
    ),
    json.dumps(
        {
            "custom_id": "p3",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [CHAT], "max_tokens": 10**30},
        }
    ): ("number_out_of_range", "body.max_tokens"),
    json.dumps({"id": "p4", "prompt": "x", "deadline": "99999999999d"}): ("deadline", "3650d"),
    json.dumps({"id": "p5", "prompt": "x", "max_output_tokens": 99_999_999}): (
        "max_output_tokens",
        "at most 16,384 for gpt-4o-mini",
    ),
    json.dumps(
        {
            "custom_id": "p6",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "gpt-4o-mini", "input": "x"},
        }
    ): ("model_kind", "needs an embedding model"),
    json.dumps(
        {
            "custom_id": "p7",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": "x", "dimensions": 100000},
        }
    ): ("dimensions", "1 to 1536"),
    json.dumps({"id": "good-1", "prompt": "a different body for a used key"}): (
        "duplicate_id",
        "already used earlier in this file",
    ),
}


def _drop(folder: Path, name: bytes, text: str) -> None:
    path = os.fsencode(folder) + b"/" + name
    with open(path, "wb") as f:
        f.write(text.encode())
    os.utime(path, (1_700_000_000, 1_700_000_000))  # long settled


def test_poison_and_provider_files_through_plan_and_run(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    config = tmp_path / "config" / "planner.example.yaml"
    shutil.copy(REPO / "config" / "planner.example.yaml", config)
    spool = tmp_path / "state" / "spool"
    spool.mkdir(parents=True)
    good = [json.dumps({"id": f"good-{i}", "prompt": f"hello {i}"}) for i in range(1, 4)]
    lines = [good[0], *POISON, *good[1:]]
    _drop(spool, b"mixed.jsonl", "\n".join(lines) + "\n")
    _drop(spool, b"caf\xe9.jsonl", json.dumps({"id": "good-4", "prompt": "odd name"}) + "\n")
    _drop(spool, b"gemini-embeddings.jsonl", SEED + "\n")

    plan = run("plan", "-c", str(config), "--json")
    assert plan.returncode == 0, plan.stderr
    report: dict[str, Any] = json.loads(plan.stdout)
    assert report["quarantined"] == len(POISON)
    embed = [m for m in report["models"] if m["model"] == "gemini-embedding-001"]
    assert [(m["endpoint"], m["requests"]) for m in embed] == [("embedContent", 1)]

    done = run("run", "--once", "--sandbox", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert os.listdir(spool / ".claimed") == []
    names = ["caf%E9.jsonl", "gemini-embeddings.jsonl", "mixed.jsonl"]
    assert sorted(os.listdir(spool / "done")) == names
    results, dead = read_sink(tmp_path / "state" / "results")
    assert dead == {}
    assert set(results) == {"good-1", "good-2", "good-3", "good-4", "request_1"}
    assert all(len(v) == 1 for v in results.values())
    quarantine = (spool / "quarantine" / "mixed.jsonl.errors.jsonl").read_text()
    records = [json.loads(x) for x in quarantine.splitlines()]
    assert len(records) == len(POISON)
    for record, (raw, (reason, fragment)) in zip(records, POISON.items(), strict=True):
        assert record["raw"] == raw
        assert record["reason"] == reason, record["message"]
        assert fragment in record["message"], record["message"]
