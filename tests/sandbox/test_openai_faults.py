"""Each injected fault as the unmodified ``openai`` SDK observes it (specs/openai-batch-api.md
§9 retry behaviour, §10 pitfalls; faults.py for the spec language)."""

from __future__ import annotations

import json
from typing import Any, Final

import httpx
import httpx2
import openai
import pytest

from planner.sandbox import FaultPlan, RunningSandbox
from planner.sandbox.openai_common import reset_settings

CHAT: Final = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _defaults(sandbox: RunningSandbox) -> None:
    reset_settings(sandbox.state)


class _Counting:
    """An SDK client whose transport records every attempt's retry-count header."""

    def __init__(self, sandbox: RunningSandbox, *, max_retries: int, timeout: float = 10) -> None:
        self.attempts: list[str] = []

        def record(request: httpx2.Request) -> None:
            self.attempts.append(request.headers.get("x-stainless-retry-count", ""))

        self.client = openai.OpenAI(
            api_key="test",
            base_url=sandbox.url + "/v1",
            max_retries=max_retries,
            timeout=timeout,
            http_client=httpx2.Client(event_hooks={"request": [record]}),
        )


def _faults(sandbox: RunningSandbox, spec: str) -> None:
    sandbox.state.faults = FaultPlan.from_spec(spec)


def _rows(n: int) -> bytes:
    return "".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": CHAT,
                "body": {"model": MODEL, "messages": [{"role": "user", "content": f"q{i}"}]},
            }
        )
        + "\n"
        for i in range(n)
    ).encode()


def _batch(client: openai.OpenAI, n: int) -> Any:
    file = client.files.create(file=("in.jsonl", _rows(n), "application/jsonl"), purpose="batch")
    return client.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h")


def _lines(client: openai.OpenAI, file_id: str | None) -> list[str]:
    return client.files.content(file_id).text.splitlines() if file_id else []


def _billed(sandbox: RunningSandbox) -> dict[str, int]:
    ledger = httpx.get(sandbox.url + "/_sandbox/ledger").json()
    return {r["key"]: r["times_billed"] for r in ledger["requests"]}


# -- HTTP faults ------------------------------------------------------------------------------
def test_rate_limit_exhausts_the_sdk_retries(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "rate_limit=1,retry_after=0.05")
    counting = _Counting(sandbox, max_retries=2)
    with pytest.raises(openai.RateLimitError) as caught:
        counting.client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert counting.attempts == ["0", "1", "2"]
    headers = caught.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("0.05", "50")
    assert caught.value.code == "rate_limit_exceeded"
    assert _billed(sandbox) == {}


def test_rate_limit_then_success(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "rate_limit_first=2,retry_after=0.01")
    counting = _Counting(sandbox, max_retries=2)
    chat = counting.client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert chat.choices[0].message.content
    assert counting.attempts == ["0", "1", "2"]
    assert sum(_billed(sandbox).values()) == 1


def test_retry_after_beyond_two_minutes_is_not_retried(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "rate_limit=1,retry_after=300")
    counting = _Counting(sandbox, max_retries=2)
    with pytest.raises(openai.RateLimitError):
        counting.client.files.list()
    assert counting.attempts == ["0"]  # SDK >= 2.52 raises at once (§9)


def test_server_errors_are_retried(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "server_error_first=1,unavailable_first=1,retry_after=0.01")
    counting = _Counting(sandbox, max_retries=2)
    assert counting.client.files.list().data == []
    assert counting.attempts == ["0", "1", "2"]


def test_503_says_retry_and_500_surfaces(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "unavailable=1")
    counting = _Counting(sandbox, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        counting.client.batches.list()
    assert caught.value.status_code == 503
    assert caught.value.response.headers["x-should-retry"] == "true"


def test_insufficient_quota_says_do_not_retry(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "daily_quota=1")
    counting = _Counting(sandbox, max_retries=3)
    with pytest.raises(openai.RateLimitError) as caught:
        counting.client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert counting.attempts == ["0"]  # x-should-retry: false wins over the 429 rule
    assert caught.value.code == "insufficient_quota"


def test_auth_error(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "auth_error=1")
    with pytest.raises(openai.AuthenticationError):
        _Counting(sandbox, max_retries=0).client.files.list()


def test_timeout_after_the_batch_was_created(sandbox: RunningSandbox) -> None:
    """An ambiguous create: the SDK times out, yet the batch exists (pitfall 12)."""
    client = openai.OpenAI(api_key="test", base_url=sandbox.url + "/v1", max_retries=0)
    file = client.files.create(file=("in.jsonl", _rows(1), "application/jsonl"), purpose="batch")
    _faults(sandbox, "timeout_rate=1,timeout_on=create,timeout_sleep=1")
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.2).batches.create(
            input_file_id=file.id, endpoint=CHAT, completion_window="24h"
        )
    assert len(client.batches.list().data) == 1


def test_slow_responses_time_out(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "slow=1,slow_on=openai.get")
    counting = _Counting(sandbox, max_retries=1, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        counting.client.batches.retrieve("batch_x")
    assert counting.attempts == ["0", "1"]


def test_dropped_connection(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "drop_rate=1,drop_on=upload")
    client = _Counting(sandbox, max_retries=0).client
    with pytest.raises(openai.APIConnectionError):
        client.files.create(file=("in.jsonl", _rows(1), "application/jsonl"), purpose="batch")
    _faults(sandbox, "")
    assert len(client.files.list().data) == 1  # it was stored before the drop


# -- job faults -------------------------------------------------------------------------------
def test_batch_fail(sandbox: RunningSandbox) -> None:
    client = _Counting(sandbox, max_retries=0).client
    _faults(sandbox, "batch_fail=1")
    batch = client.batches.retrieve(_batch(client, 2).id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data
    assert batch.errors.data[0].code == "batch_failed"
    assert _billed(sandbox) == {}


def test_expired_batch_returns_and_bills_the_finished_lines(sandbox: RunningSandbox) -> None:
    client = _Counting(sandbox, max_retries=0).client
    _faults(sandbox, "batch_expire=1,expire_done_fraction=0.5")
    batch = client.batches.retrieve(_batch(client, 4).id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 0}
    done = {json.loads(line)["custom_id"] for line in _lines(client, batch.output_file_id)}
    expired = [json.loads(line) for line in _lines(client, batch.error_file_id)]
    assert done == {"r0", "r1"}
    assert {x["custom_id"] for x in expired} == {"r2", "r3"}
    assert all(x["response"] is None and x["error"]["code"] == "batch_expired" for x in expired)
    assert _billed(sandbox) == {"r0": 1, "r1": 1}


def test_stuck_batch_expires_after_the_window(sandbox: RunningSandbox) -> None:
    sandbox.state.clock.seconds_per_state = 10
    client = _Counting(sandbox, max_retries=0).client
    _faults(sandbox, "stuck=1")
    batch = _batch(client, 2)
    sandbox.state.clock.advance(86_399)
    assert client.batches.retrieve(batch.id).status == "validating"
    sandbox.state.clock.advance(1)
    expired = client.batches.retrieve(batch.id)
    assert expired.status == "expired" and expired.expired_at == expired.expires_at
    assert expired.output_file_id is None
    assert len(_lines(client, expired.error_file_id)) == 2
    assert _billed(sandbox) == {}


def test_cancelled_by_a_fault_keeps_partial_results(sandbox: RunningSandbox) -> None:
    client = _Counting(sandbox, max_retries=0).client
    _faults(sandbox, "cancel=1,done_fraction=0.25")
    batch = client.batches.retrieve(_batch(client, 4).id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert len(_lines(client, batch.output_file_id)) == 1
    codes = [json.loads(line)["error"]["code"] for line in _lines(client, batch.error_file_id)]
    assert codes == ["batch_cancelled"] * 3


def test_token_limit_fault(sandbox: RunningSandbox) -> None:
    client = _Counting(sandbox, max_retries=0).client
    _faults(sandbox, "token_limit=1")
    batch = client.batches.retrieve(_batch(client, 2).id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data
    assert batch.errors.data[0].code == "token_limit_exceeded"


# -- line faults ------------------------------------------------------------------------------
def test_line_errors_partition_the_results(sandbox: RunningSandbox) -> None:
    client = _Counting(sandbox, max_retries=0).client
    _faults(sandbox, "line_error_rate=0.5,seed=7")
    batch = client.batches.retrieve(_batch(client, 20).id)
    ok = {json.loads(line)["custom_id"] for line in _lines(client, batch.output_file_id)}
    errors = [json.loads(line) for line in _lines(client, batch.error_file_id)]
    failed = {x["custom_id"] for x in errors}
    assert ok and failed and ok.isdisjoint(failed)
    assert ok | failed == {f"r{i}" for i in range(20)}
    assert all(x["response"]["status_code"] == 500 and x["error"] is None for x in errors)
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (len(ok), len(failed))
    assert set(_billed(sandbox)) == ok


def test_malformed_and_missing_lines_are_still_billed(sandbox: RunningSandbox) -> None:
    client = _Counting(sandbox, max_retries=0).client
    _faults(sandbox, "malformed_line_rate=1")
    malformed = client.batches.retrieve(_batch(client, 3).id)
    lines = _lines(client, malformed.output_file_id)
    assert len(lines) == 3
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    assert _billed(sandbox) == {"r0": 1, "r1": 1, "r2": 1}

    _faults(sandbox, "missing_line_rate=1")
    missing = client.batches.retrieve(_batch(client, 2).id)
    assert missing.request_counts is not None and missing.request_counts.completed == 2
    assert _lines(client, missing.output_file_id) == []
    assert missing.error_file_id is None
    assert _billed(sandbox) == {"r0": 2, "r1": 2, "r2": 1}  # the second batch reuses r0, r1
