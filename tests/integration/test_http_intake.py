"""The HTTP intake end to end: the unmodified ``openai`` SDK hands a batch to planner.

Upload, create, run-once passes against the sandbox, poll until ``completed``, download the
output and error files: every custom_id of the input is answered exactly once, good lines in
the output with the provider's body, bad lines in the error file with their reason (and kept in
the store's quarantine); a wrong token gets 401. The native endpoints are driven with httpx.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from planner.config import load_config
from planner.pipeline.context import StageContext
from planner.runtime.intake.server import IntakeServer, build_service, serve_intake
from planner.runtime.runner import run_once
from planner.runtime.wiring import build_context
from planner.sandbox import RunningSandbox
from planner.store.tables import INTAKE_LINE, REQUEST

TOKENS = "tok-alpha-123,tok-beta-456"

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
sources:
  spool: {kind: jsonl_dir, path: spool, settle: 0s, sink: out}
sinks:
  out: {kind: jsonl_dir, path: results}
policies:
  default: {batch_window: 24h, default_deadline: 48h}
  intake: {batch_window: 1h}
intake:
  enabled: true
  listen: 127.0.0.1:8470
  tokens_env: PLANNER_INTAKE_TOKENS
  source: intake
  policy: intake
"""


def chat(custom_id: str, text: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 20},
    }


GOOD = [chat(f"req-{i}", f"Say {i}.") for i in range(6)]
BAD_LINES = [
    ("not json at all", None, "invalid_json"),
    (json.dumps(chat("bad-model", "x", model="gpt-nonexistent")), "bad-model", "unknown_model"),
    (
        json.dumps({**chat("wrong-url", "x"), "url": "/v1/embeddings"}),
        "wrong-url",
        "bad_endpoint",
    ),
    (json.dumps(chat("req-0", "again")), "req-0", "duplicate_id"),
]


@pytest.fixture()
def intake(
    tmp_path: Path, sandbox_factory: Callable[..., RunningSandbox], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[IntakeServer, StageContext, RunningSandbox]]:
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "a.jsonl").write_text(json.dumps(chat("spool-1", "Hi.")) + "\n")
    (tmp_path / "planner.yaml").write_text(CONFIG)
    monkeypatch.setenv("PLANNER_INTAKE_TOKENS", TOKENS)
    sandbox = sandbox_factory()
    cfg = load_config(tmp_path / "planner.yaml")
    ctx = build_context(cfg, sandbox_url=sandbox.url)
    service = build_service(
        cfg.intake, ctx.session_factory, ctx.catalog.family_of, facts_of=ctx.catalog.get
    )
    server = serve_intake(cfg.intake, service, os.environ, port=0)
    try:
        yield server, ctx, sandbox
    finally:
        server.stop()


def client(server: IntakeServer, token: str = "tok-beta-456") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0)


def upload(sdk: openai.OpenAI, lines: list[str]) -> str:
    data = ("\n".join(lines) + "\n").encode()
    file = sdk.files.create(
        file=("batch.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch"
    )
    assert file.purpose == "batch" and file.bytes == len(data)
    return file.id


def settle(ctx: StageContext, sdk: openai.OpenAI, batch_id: str, passes: int = 3) -> Any:
    for _ in range(passes):
        run_once(ctx)
        batch = sdk.batches.retrieve(batch_id)
        if batch.status in ("completed", "cancelled"):
            return batch
    raise AssertionError(f"batch {batch_id} still {batch.status} after {passes} passes")


def jsonl(sdk: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    return [json.loads(line) for line in sdk.files.content(file_id).text.splitlines()]


def test_openai_sdk_batch_flow_answers_every_custom_id(
    intake: tuple[IntakeServer, StageContext, RunningSandbox],
) -> None:
    server, ctx, sandbox = intake
    sdk = client(server)
    lines = [json.dumps(line) for line in GOOD] + [text for text, _, _ in BAD_LINES]
    file_id = upload(sdk, lines)
    assert sdk.files.retrieve(file_id).filename == "batch.jsonl"

    batch = sdk.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.status == "in_progress" and batch.metadata == {"job": "nightly"}
    assert batch.request_counts is not None and batch.request_counts.total == len(lines)
    assert batch.expires_at == batch.created_at + 86400
    assert [b.id for b in sdk.batches.list(limit=5).data] == [batch.id]

    done = settle(ctx, sdk, batch.id)
    assert done.status == "completed" and done.completed_at is not None
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (
        len(GOOD),
        len(BAD_LINES),
    )

    output = jsonl(sdk, done.output_file_id)
    errors = jsonl(sdk, done.error_file_id)
    assert sorted(o["custom_id"] for o in output) == sorted(g["custom_id"] for g in GOOD)
    for line in output:
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["response"]["body"]["object"] == "chat.completion"
    by_code = {e["error"]["code"]: e for e in errors}
    assert set(by_code) == {code for _, _, code in BAD_LINES}
    for _, custom_id, code in BAD_LINES:
        assert by_code[code]["custom_id"] == custom_id and by_code[code]["response"] is None
    assert "line 8: " in by_code["unknown_model"]["error"]["message"]
    assert sdk.files.retrieve(done.output_file_id).purpose == "batch_output"

    # quarantined with their reason, raw line kept
    with ctx.session_factory() as session:
        kept = session.execute(
            select(INTAKE_LINE.c.reason, INTAKE_LINE.c.raw).where(INTAKE_LINE.c.reason.is_not(None))
        ).all()
    assert sorted(r for r, _ in kept) == sorted(code for _, _, code in BAD_LINES)
    assert "not json at all" in {raw for _, raw in kept}

    # each good line billed once at the sandbox, through a batch, pooled with the spool's work
    ledger = httpx.get(sandbox.url + "/_sandbox/ledger").json()
    billed = {r["key"]: r for r in ledger["requests"]}
    for line in GOOD:
        assert billed[f"{batch.id}/{line['custom_id']}"]["times_billed"] == 1
    assert billed["spool-1"]["times_billed"] == 1
    assert sdk.batches.retrieve(batch.id).status == "completed"  # stays finished
    sdk.files.delete(file_id)
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(file_id)


def test_wrong_or_missing_token_gets_401(
    intake: tuple[IntakeServer, StageContext, RunningSandbox],
) -> None:
    server, _, _ = intake
    with pytest.raises(openai.AuthenticationError) as caught:
        client(server, token="tok-alpha-12").batches.list()
    assert caught.value.status_code == 401 and caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_")
    assert "tok-alpha" not in str(caught.value.body)
    assert httpx.get(server.url + "/v1/batches").status_code == 401
    assert client(server, token="tok-alpha-123").batches.list().data == []


def test_cancel_rejects_the_queued_lines_and_a_second_cancel_is_a_conflict(
    intake: tuple[IntakeServer, StageContext, RunningSandbox],
) -> None:
    server, ctx, _ = intake
    sdk = client(server)
    file_id = upload(sdk, [json.dumps(line) for line in GOOD[:3]])
    batch = sdk.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    cancelled = sdk.batches.cancel(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    assert cancelled.request_counts is not None and cancelled.request_counts.failed == 3
    errors = jsonl(sdk, cancelled.error_file_id)
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert cancelled.output_file_id is None
    with pytest.raises(openai.ConflictError):
        sdk.batches.cancel(batch.id)
    run_once(ctx)  # nothing of it is sent afterwards
    with ctx.session_factory() as session:
        states = session.execute(
            select(REQUEST.c.state).where(REQUEST.c.source == "intake")
        ).scalars()
        assert set(states) == {"rejected"}


def test_native_post_answers_each_record_and_get_shows_the_result(
    intake: tuple[IntakeServer, StageContext, RunningSandbox],
) -> None:
    server, ctx, _ = intake
    auth = {"Authorization": "Bearer tok-alpha-123"}
    records = [
        {"id": "n-1", "prompt": "Hello", "model": "gpt-4o-mini"},
        chat("n-2", "Hi"),
        {"id": "n-3", "prompt": "x", "model": "no-such-model"},
        {"prompt": "no id"},
        {
            "custom_id": "n-5",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": "embed me", "dimensions": 100000},
        },
    ]
    answer = httpx.post(server.url + "/requests", json=records, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["status"] for r in body["requests"]] == [
        "accepted",
        "accepted",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert body["requests"][2]["error"]["code"] == "unknown_model"
    assert body["requests"][4]["error"]["code"] == "dimensions"  # checked against the catalog
    assert body["requests"][3]["error"]["code"] == "missing_id"
    again = httpx.post(server.url + "/requests", json=records[0], headers=auth).json()
    assert again["requests"][0]["status"] == "duplicate"
    changed = {**records[0], "prompt": "Something else"}
    other = httpx.post(server.url + "/requests", json=changed, headers=auth).json()
    assert other["requests"][0]["status"] == "rejected"
    assert other["requests"][0]["error"]["code"] == "duplicate_id"

    lines = "\n".join(
        json.dumps(r) for r in [{"id": "n-4", "prompt": "yo", "model": "gpt-4o-mini"}]
    )
    ndjson = httpx.post(
        server.url + "/requests",
        content=lines + "\n{broken\n",
        headers={**auth, "Content-Type": "application/x-ndjson"},
    ).json()
    assert [r["status"] for r in ndjson["requests"]] == ["accepted", "rejected"]

    view = httpx.get(server.url + "/requests/n-1", headers=auth).json()
    assert view["state"] == "queued" and view["result"] is None
    run_once(ctx)
    view = httpx.get(server.url + "/requests/n-1", headers=auth).json()
    assert view["state"] == "succeeded", view
    assert view["result"]["response"]["object"] == "chat.completion"
    missing = httpx.get(server.url + "/requests/nope", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    with ctx.session_factory() as session:
        stored = set(
            session.execute(select(REQUEST.c.key).where(REQUEST.c.source == "intake")).scalars()
        )
    assert stored == {"n-1", "n-2", "n-4"}  # nothing of the rejected records


def test_a_file_without_lines_makes_a_failed_batch(
    intake: tuple[IntakeServer, StageContext, RunningSandbox],
) -> None:
    server, _, _ = intake
    sdk = client(server)
    file_id = upload(sdk, [""])
    batch = sdk.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "failed" and batch.failed_at == batch.created_at
    assert batch.errors is not None and batch.errors.data is not None
    assert [e.code for e in batch.errors.data] == ["empty_file"]
    assert batch.request_counts is not None and batch.request_counts.total == 0
    with pytest.raises(openai.ConflictError):
        sdk.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        sdk.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="48h",  # type: ignore[arg-type]
        )
    assert caught.value.param == "completion_window"
