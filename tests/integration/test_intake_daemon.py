"""The intake served by `planner run` itself: the unmodified ``openai`` SDK uploads, creates,
polls until ``completed`` and downloads, while the daemon (a real process, on its schedule,
against a separately running sandbox) decides and executes the lines; a wrong token gets 401;
SIGTERM stops the listener with the rest."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from planner.sandbox import RunningSandbox, serve
from tests.conftest import REPO
from tests.integration.test_daemon import free_port

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
policies:
  default: {}
  intake: {batch_window: 1h}
schedule:
  submit: interval 1s
  poll: 1s
metrics:
  listen: 127.0.0.1:{metrics}
intake:
  enabled: true
  listen: 127.0.0.1:{intake}
  tokens_env: PLANNER_INTAKE_TOKENS
  source: intake
  policy: intake
  max_body: 200MB
"""


@pytest.fixture()
def sandbox() -> Iterator[RunningSandbox]:
    with serve(speed=0.0) as running:
        yield running


def test_sdk_batch_through_the_running_daemon(tmp_path: Path, sandbox: RunningSandbox) -> None:
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "planner.yaml"
    config.write_text(CONFIG.replace("{metrics}", str(metrics_port)).replace("{intake}", str(port)))
    env = os.environ | {"PLANNER_INTAKE_TOKENS": "daemon-token-1,other-token"}
    process = subprocess.Popen(
        [sys.executable, "-m", "planner", "run", "-c", str(config), "--sandbox-url", sandbox.url],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/openapi.json").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        sdk = openai.OpenAI(base_url=base + "/v1", api_key="daemon-token-1", max_retries=0)
        lines = [
            {
                "custom_id": f"d-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{i}"}]},
            }
            for i in range(5)
        ]
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        file = sdk.files.create(
            file=("in.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch"
        )
        batch = sdk.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        deadline = time.monotonic() + 90
        while (
            batch.status not in ("completed", "failed", "cancelled") and time.monotonic() < deadline
        ):
            time.sleep(1)
            batch = sdk.batches.retrieve(batch.id)
        assert batch.status == "completed", batch
        assert batch.request_counts is not None and batch.request_counts.completed == 5
        assert batch.output_file_id is not None and batch.error_file_id is None
        output = [json.loads(x) for x in sdk.files.content(batch.output_file_id).text.splitlines()]
        assert sorted(o["custom_id"] for o in output) == [f"d-{i}" for i in range(5)]
        assert all(o["response"]["status_code"] == 200 for o in output)
        ledger = httpx.get(sandbox.url + "/_sandbox/ledger").json()
        lanes = {r["key"]: r["lane"] for r in ledger["requests"]}
        assert {lanes[f"{batch.id}/d-{i}"] for i in range(5)} == {"batch"}
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert 'planner_requests_ingested_total{source="intake"} 5.0' in scrape
        assert (
            'planner_lines_quarantined_total{reason="invalid_json",source="intake"} 0.0' in scrape
        )
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base + "/v1", api_key="nope", max_retries=0).batches.list()
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    assert "daemon-token-1" not in out
