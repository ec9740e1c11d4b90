"""Gemini in compat mode serves every input format: Gemini-format lines (generateContent,
embedContent, simple lines for a Gemini model) are translated to the compat surface and each gets
its result line through the sandbox with the unmodified SDKs; a line that cannot be translated is
rejected with the field named, never a bare ``no_provider``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO, planner_status

GEN = "gemini-3.5-flash-lite"
EMB = "gemini-embedding-001"

SPOOL: list[dict[str, Any]] = [
    {"key": "gen-1", "model": GEN, "request": {"contents": [{"parts": [{"text": "Hello"}]}]}},
    {
        "key": "gen-2",
        "model": f"models/{GEN}",
        "request": {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "Name a colour."}]}],
            "generationConfig": {"maxOutputTokens": 16},
        },
    },
    {"key": "emb-1", "model": EMB, "request": {"content": {"parts": [{"text": "a doc"}]}}},
    {"id": "simple-1", "model": GEN, "prompt": "Say hi."},
    {"id": "simple-emb", "model": EMB, "text": "another doc"},
    {
        "custom_id": "oa-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": GEN, "messages": [{"role": "user", "content": "hi"}]},
    },
    {
        "key": "tools-1",
        "model": GEN,
        "request": {"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]},
    },
]


def _config(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "work.jsonl").write_text("".join(json.dumps(x) + "\n" for x in SPOOL))
    doc = {
        "state_dir": str(tmp_path / "state"),
        "providers": {"gemini": {"kind": "gemini", "openai_compat": True}},
        "sources": {
            "spool": {"kind": "jsonl_dir", "path": str(spool), "sink": "out", "settle": "0s"}
        },
        "sinks": {"out": {"kind": "jsonl_dir", "path": str(tmp_path / "out")}},
        "policies": {"default": {"min_savings_usd": "0"}},
    }
    path = tmp_path / "planner.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _records(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(folder.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def test_compat_mode_serves_gemini_format_lines(tmp_path: Path) -> None:
    config = _config(tmp_path)
    plan = subprocess.run(
        [sys.executable, "-m", "planner", "plan", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ.copy(),
        timeout=120,
    )
    assert plan.returncode == 0, plan.stderr
    reasons: dict[str, int] = json.loads(plan.stdout)["totals"]["reasons"]
    assert reasons.get("no_provider") == 1, reasons  # only the line with tools

    done = subprocess.run(
        [sys.executable, "-m", "planner", "run", "--once", "--sandbox", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ.copy(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # the rejection is said, with the field, not left to a bare count
    assert (
        "1 request(s) rejected (no_provider), e.g. request 'tools-1' (generateContent): "
        "'tools': has no equivalent" in done.stderr
    ), done.stderr
    records = _records(tmp_path / "out")
    answered = {r["id"]: r for r in records if "response" in r}
    assert set(answered) == {"gen-1", "gen-2", "emb-1", "simple-1", "simple-emb", "oa-1"}
    for key in ("gen-1", "gen-2", "simple-1", "oa-1"):  # the compat layer's (OpenAI) shape
        assert answered[key]["response"]["choices"][0]["message"]["content"], key
    for key in ("emb-1", "simple-emb"):
        assert answered[key]["response"]["data"][0]["embedding"], key
    assert all(r["usage"]["input_tokens"] > 0 for r in answered.values())
    (dead,) = [r for r in records if r["id"] == "tools-1"]  # its dead-letter line says why
    assert "'tools': has no equivalent" in dead["error"]["message"]
    assert planner_status(config)["requests"].get("rejected") == 1


def test_untranslatable_line_is_refused_with_its_field(tmp_path: Path) -> None:
    from planner.config import load_config
    from planner.runtime.wiring import build_plan_report

    cfg = load_config(_config(tmp_path))
    from planner.runtime.clock import utc_now

    report = build_plan_report(cfg, now=utc_now())
    rows = {r.model: r for r in report.ordered_rows() if r.provider is None}
    assert list(rows) == [GEN]
    assert rows[GEN].requests == 1
    assert rows[GEN].reasons == {"no_provider": 1}
