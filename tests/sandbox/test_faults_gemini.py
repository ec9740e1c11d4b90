"""Each injected fault, observed through the unmodified google-genai SDK the way the real
service shows it (specs/gemini-batch-api.md, specs/reliability-and-operations.md §7.3)."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from planner.sandbox import FaultPlan, RunningSandbox

MODEL = "gemini-2.5-flash"


def _faults(sandbox: RunningSandbox, spec: str) -> None:
    sandbox.state.faults = FaultPlan.from_spec(spec)


def _rows(n: int) -> bytes:
    rows = [
        {"key": f"k{i:02d}", "request": {"contents": [{"parts": [{"text": f"q {i}"}]}]}}
        for i in range(n)
    ]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _file_batch(client: Any, n: int) -> Any:
    src = client.files.upload(file=io.BytesIO(_rows(n)), config={"mime_type": "jsonl"})
    job = client.batches.create(model=MODEL, src=src.name, config={"display_name": "planner:b1"})
    return client.batches.get(name=job.name)


def _ledger(sandbox: RunningSandbox) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{sandbox.url}/_sandbox/ledger").json()
    return body


def _retry_info(error: errors.APIError) -> list[dict[str, Any]]:
    details = error.details["error"]["details"]
    return [d for d in details if d["@type"].endswith("google.rpc.RetryInfo")]


def test_rate_limit_is_a_429_with_retry_info_in_the_body_and_no_header(
    gemini: Any, sandbox: RunningSandbox
) -> None:
    _faults(sandbox, "rate_limit=1,retry_after=2.5,rate_limit_on=create")
    with pytest.raises(errors.ClientError) as caught:
        gemini.batches.create(model=MODEL, src=[{"contents": "x"}])
    error = caught.value
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    assert _retry_info(error) == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}
    ]
    assert error.response is not None and "retry-after" not in error.response.headers
    assert _ledger(sandbox)["batches"] == []  # refused before anything was created
    assert gemini.batches.list().page == []  # other operations are not targeted


def test_daily_quota_names_a_per_day_quota(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "daily_quota=1")
    with pytest.raises(errors.ClientError) as caught:
        gemini.models.generate_content(model=MODEL, contents="x")
    details = caught.value.details["error"]["details"]
    quota = next(d for d in details if d["@type"].endswith("QuotaFailure"))
    assert quota["violations"][0]["quotaId"].endswith("PerDay" + "PerProjectPerModel")


def test_first_n_targeting_and_list_429(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "rate_limit_first=2,rate_limit_on=list")
    for _ in range(2):
        with pytest.raises(errors.ClientError) as caught:
            gemini.batches.list()
        assert caught.value.code == 429
    assert list(gemini.batches.list()) == []


@pytest.mark.parametrize(("spec", "code"), [("server_error=1", 500), ("unavailable=1", 503)])
def test_server_errors_are_server_errors(
    gemini: Any, sandbox: RunningSandbox, spec: str, code: int
) -> None:
    _faults(sandbox, spec + ",server_error_on=get|generate,unavailable_on=get|generate")
    with pytest.raises(errors.ServerError) as caught:
        gemini.models.generate_content(model=MODEL, contents="x")
    assert caught.value.code == code


def test_auth_error_is_permission_denied(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "auth_error=1,auth_error_on=gemini")
    with pytest.raises(errors.ClientError) as caught:
        gemini.files.list()
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")


def test_upload_chunk_fault_fails_the_upload_without_sdk_resends(
    gemini: Any, sandbox: RunningSandbox
) -> None:
    _faults(sandbox, "unavailable=1,unavailable_on=upload_chunk")
    with pytest.raises(errors.ServerError):
        gemini.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "jsonl"})
    assert sandbox.state.files == {}


def test_slow_response_trips_a_client_timeout(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "slow=1,slow_on=get")
    client = genai.Client(
        api_key="t",
        http_options=types.HttpOptions(base_url=sandbox.url, api_version="v1beta", timeout=300),
    )
    job = client.batches.create(model=MODEL, src=[{"contents": "x"}])
    with pytest.raises(Exception) as caught:  # the transport's ReadTimeout (httpx2)
        client.batches.get(name=job.name)
    assert "timeout" in type(caught.value).__name__.lower()


def test_timeout_after_create_leaves_an_ambiguous_batch(sandbox: RunningSandbox) -> None:
    _faults(sandbox, "timeout=1,timeout_on=create,timeout_sleep=1")
    client = genai.Client(
        api_key="t",
        http_options=types.HttpOptions(base_url=sandbox.url, api_version="v1beta", timeout=300),
    )
    with pytest.raises(Exception) as caught:
        client.batches.create(
            model=MODEL, src=[{"contents": "x"}], config={"display_name": "planner:plb_9"}
        )
    assert "timeout" in type(caught.value).__name__.lower()
    assert [b["our_id"] for b in _ledger(sandbox)["batches"]] == ["plb_9"]


def test_dropped_connection_after_create(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "drop_rate=1,drop_rate_on=create")
    with pytest.raises(Exception) as caught:
        gemini.batches.create(model=MODEL, src=[{"contents": "x"}])
    assert not isinstance(caught.value, errors.APIError)
    assert len(_ledger(sandbox)["batches"]) == 1


def test_failed_batch_has_an_operation_error(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "batch_fail=1")
    job = _file_batch(gemini, 3)
    assert job.state == types.JobState.JOB_STATE_FAILED
    raw = httpx.get(f"{sandbox.url}/v1beta/{job.name}", headers={"x-goog-api-key": "t"}).json()
    assert raw["done"] is True and raw["error"]["code"] == 13
    assert "output" not in raw["metadata"]
    assert _ledger(sandbox)["requests"] == []


def test_expired_batch_returns_no_results(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "batch_expire=1,expire_done_fraction=0.5")
    job = _file_batch(gemini, 4)
    assert job.state == types.JobState.JOB_STATE_EXPIRED
    assert job.dest is None or job.dest.file_name is None
    assert _ledger(sandbox)["requests"] == []


def test_externally_cancelled_batch(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "cancel=1")
    assert _file_batch(gemini, 2).state == types.JobState.JOB_STATE_CANCELLED


def test_stuck_batch_stays_pending_until_it_expires_at_48_hours(
    gemini: Any, sandbox: RunningSandbox
) -> None:
    _faults(sandbox, "stuck=1")
    sandbox.state.clock.seconds_per_state = 5
    job = gemini.batches.create(model=MODEL, src=[{"contents": "x"}])
    sandbox.state.clock.advance(48 * 3600 - 1)
    assert gemini.batches.get(name=job.name).state == types.JobState.JOB_STATE_PENDING
    sandbox.state.clock.advance(1)
    assert gemini.batches.get(name=job.name).state == types.JobState.JOB_STATE_EXPIRED


def test_token_limit_fault_is_a_429_at_create(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "token_limit=1")
    with pytest.raises(errors.ClientError) as caught:
        gemini.batches.create(model=MODEL, src=[{"contents": "x"}])
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert _ledger(sandbox)["batches"] == []


def test_line_errors_are_error_lines_and_not_billed(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "line_error_rate=1")
    job = _file_batch(gemini, 3)
    lines = [json.loads(x) for x in gemini.files.download(file=job.dest.file_name).splitlines()]
    assert all(set(line) == {"key", "error"} for line in lines)
    assert lines[0]["error"]["code"] == 3
    raw = httpx.get(f"{sandbox.url}/v1beta/{job.name}", headers={"x-goog-api-key": "t"}).json()
    assert raw["metadata"]["batchStats"] == {"requestCount": "3", "failedRequestCount": "3"}
    assert _ledger(sandbox)["requests"] == []


def test_malformed_and_missing_lines(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "malformed_line_rate=0.3,missing_line_rate=0.3,seed=5")
    job = _file_batch(gemini, 20)
    raw_lines = gemini.files.download(file=job.dest.file_name).decode().splitlines()
    parsed, malformed = [], 0
    for raw in raw_lines:
        try:
            parsed.append(json.loads(raw))
        except ValueError:
            malformed += 1
    assert malformed > 0
    assert len(raw_lines) < 20  # some lines are missing
    billed = {r["key"]: r["times_billed"] for r in _ledger(sandbox)["requests"]}
    assert len(billed) == 20 and set(billed.values()) == {1}  # lost answers were still billed


def test_shuffled_result_order(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "shuffle_results=1,seed=1")
    job = _file_batch(gemini, 10)
    keys = [
        json.loads(x)["key"] for x in gemini.files.download(file=job.dest.file_name).splitlines()
    ]
    assert sorted(keys) == [f"k{i:02d}" for i in range(10)]
    assert keys != sorted(keys)


def test_list_lag_hides_new_batches(gemini: Any, sandbox: RunningSandbox) -> None:
    _faults(sandbox, "list_lag=60")
    job = gemini.batches.create(model=MODEL, src=[{"contents": "x"}])
    assert list(gemini.batches.list()) == []
    sandbox.state.clock.advance(61)
    assert [j.name for j in gemini.batches.list()] == [job.name]


def test_faults_can_be_replaced_over_http(gemini: Any, sandbox: RunningSandbox) -> None:
    response = httpx.post(
        f"{sandbox.url}/_sandbox/faults", json={"rate_limit": 1, "rate_limit_on": ["list"]}
    )
    assert response.status_code == 200
    with pytest.raises(errors.ClientError):
        gemini.batches.list()
    bad = httpx.post(f"{sandbox.url}/_sandbox/faults", json={"spec": "rate_limit=2"})
    assert bad.status_code == 400 and "rate_limit" in bad.json()["error"]["message"]
    httpx.post(f"{sandbox.url}/_sandbox/faults", json={})
    assert list(gemini.batches.list()) == []
