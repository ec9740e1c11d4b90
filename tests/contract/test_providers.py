"""One contract suite for every BatchProvider: Gemini native, OpenAI, and OpenAI-compat on Gemini.

Each test runs the unmodified SDKs against planner.sandbox and checks what the port promises:
our id travels with the batch, every key gets exactly one result joined by key (results are
shuffled on purpose), usage equals what the sandbox billed, faults map to the right
planner.errors class, and the API key never shows up in an error or a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from planner.core.model import Endpoint, Usage
from planner.core.states import FINISHED_BATCH_STATES, BatchState
from planner.errors import (
    AuthFailed,
    NotFound,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    Transient,
)
from planner.providers import BatchProvider, create_provider
from planner.providers.base import MALFORMED, NOT_EXECUTED, BatchLine, ErrorKind, LineResult
from planner.sandbox import RunningSandbox
from tests.contract.conftest import SECONDS_PER_STATE

KEY = "PLANTED-KEY-7f3a9c1e5b2d4a6f"


def _chat(i: int) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": f"Say hello number {i}, briefly."}],
        "max_tokens": 40,
    }


def _embeddings(i: int) -> dict[str, Any]:
    return {"input": f"The food was delicious, {i} times."}


def _responses(i: int) -> dict[str, Any]:
    return {"input": f"Name {i} colours.", "max_output_tokens": 40}


def _generate(i: int) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": f"Say hello number {i}."}]}],
        "generationConfig": {"maxOutputTokens": 40},
    }


def _embed(i: int) -> dict[str, Any]:
    return {
        "content": {"parts": [{"text": f"Explain thing {i}"}]},
        "taskType": "RETRIEVAL_DOCUMENT",
    }


@dataclass(frozen=True)
class Case:
    """One endpoint (and input mode) of one implementation."""

    impl: str
    name: str
    model: str
    endpoint: Endpoint
    body: Callable[[int], dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    mode: str = "file"

    @property
    def id(self) -> str:
        return f"{self.impl}-{self.name}"


CASES = [
    Case(
        "gemini",
        "generate-inline",
        "gemini-2.5-flash",
        Endpoint.GENERATE_CONTENT,
        _generate,
        mode="inline",
    ),
    Case(
        "gemini",
        "generate-file",
        "gemini-2.5-flash",
        Endpoint.GENERATE_CONTENT,
        _generate,
        {"inline_max_bytes": 0},
    ),
    Case("gemini", "embed-file", "gemini-embedding-001", Endpoint.EMBED_CONTENT, _embed),
    Case("openai", "chat", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS, _chat),
    Case("openai", "embeddings", "text-embedding-3-small", Endpoint.EMBEDDINGS, _embeddings),
    Case("openai", "responses", "gpt-4o-mini", Endpoint.RESPONSES, _responses),
    Case("compat", "chat", "gemini-2.5-flash", Endpoint.CHAT_COMPLETIONS, _chat),
    Case("compat", "embeddings", "gemini-embedding-001", Endpoint.EMBEDDINGS, _embeddings),
]
IMPLS = ["gemini", "openai", "compat"]
DEFAULT_CASE = {impl: next(c for c in CASES if c.impl == impl) for impl in IMPLS}


def make_provider(impl: str, sandbox: RunningSandbox, **options: Any) -> BatchProvider:
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 10.0)
    if impl == "gemini":
        return create_provider("gemini", api_key=KEY, base_url=sandbox.url, **options)
    if impl == "openai":
        return create_provider("openai", api_key=KEY, base_url=sandbox.url + "/v1", **options)
    return create_provider(
        "openai",
        api_key=KEY,
        base_url=sandbox.url + "/v1beta/openai/",
        files_via_gemini=True,
        **options,
    )


def lines_for(case: Case, n: int = 3, prefix: str = "req") -> list[BatchLine]:
    return [
        BatchLine(
            key=f"{prefix}-{case.impl}-{i}",
            model=case.model,
            endpoint=case.endpoint,
            body=case.body(i),
        )
        for i in range(n)
    ]


def set_faults(sandbox: RunningSandbox, spec: str) -> None:
    response = httpx.post(f"{sandbox.url}/_sandbox/faults", json={"spec": spec})
    assert response.status_code == 200, response.text


def advance(sandbox: RunningSandbox, seconds: float) -> None:
    response = httpx.post(f"{sandbox.url}/_sandbox/clock/advance", json={"seconds": seconds})
    assert response.status_code == 200, response.text


def ledger(sandbox: RunningSandbox) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{sandbox.url}/_sandbox/ledger").json()
    return data


def billed(sandbox: RunningSandbox, lane: str) -> dict[str, dict[str, Any]]:
    return {
        r["key"]: r for r in ledger(sandbox)["requests"] if lane in r.get("lanes", {r["lane"]: 1})
    }


def ledger_usage(entry: dict[str, Any]) -> Usage:
    """The sandbox's billed usage in our normalised shape (input includes cached)."""
    u = entry["usage"]
    if "input_tokens" in u or "output_tokens" in u:
        return Usage(
            u.get("input_tokens", 0),
            u.get("output_tokens", 0),
            u.get("cached_input_tokens", u.get("cached_tokens", 0)),
        )
    if "prompt_tokens" in u:
        return Usage(
            u.get("prompt_tokens", 0), u.get("completion_tokens", 0), u.get("cached_tokens", 0)
        )
    return Usage(
        u.get("promptTokenCount", 0) + u.get("toolUsePromptTokenCount", 0),
        u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0),
        u.get("cachedContentTokenCount", 0),
    )


def finish(provider: BatchProvider, sandbox: RunningSandbox, remote_id: str) -> Any:
    """Poll, advancing the sandbox clock one state at a time, until the batch is finished."""
    for _ in range(12):
        remote = provider.get(remote_id)
        if remote.state in FINISHED_BATCH_STATES:
            return remote
        advance(sandbox, SECONDS_PER_STATE)
    raise AssertionError(f"batch {remote_id} never finished")


def submit(provider: BatchProvider, batch_id: str, lines: list[BatchLine]) -> Any:
    payload = provider.build_payload(batch_id, lines)
    return provider.submit(batch_id, lines[0].model, lines[0].endpoint, payload), payload


def results_by_key(results: Iterator[LineResult], keys: tuple[str, ...]) -> dict[str, LineResult]:
    found = list(results)
    assert sorted(r.key for r in found) == sorted(keys), "exactly one result per key"
    return {r.key: r for r in found}


# --- the happy path, per endpoint and mode ------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_round_trip(case: Case, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "shuffle_results=1")
    provider = make_provider(case.impl, sandbox, **case.options)
    lines = lines_for(case, n=4)
    remote, payload = submit(provider, "pb-round", lines)
    assert payload.mode == case.mode
    assert remote.our_id == "pb-round"
    assert remote.state in (BatchState.SUBMITTED, BatchState.RUNNING)

    done = finish(provider, sandbox, remote.remote_id)
    assert done.state is BatchState.SUCCEEDED
    assert done.our_id == "pb-round"
    results = results_by_key(provider.fetch_results(done, payload.keys), payload.keys)
    bills = billed(sandbox, "batch")
    for key, result in results.items():
        assert result.ok, result
        assert result.response
        assert bills[key]["times_billed"] == 1
        assert result.usage == ledger_usage(bills[key]), key
    (batch,) = ledger(sandbox)["batches"]
    assert batch["our_id"] == "pb-round"
    provider.delete_collected(done)
    provider.delete_collected(done)  # what is gone already is fine
    if case.impl == "gemini":  # the batch held its requests and answers: deleted with its files
        with pytest.raises(NotFound):
            provider.get(done.remote_id)
    else:  # an OpenAI batch cannot be deleted (its files are)
        assert provider.get(done.remote_id).state is BatchState.SUCCEEDED


@pytest.mark.parametrize("impl", IMPLS)
def test_list_ours_finds_batches_by_our_id(impl: str, sandbox: RunningSandbox) -> None:
    case = DEFAULT_CASE[impl]
    provider = make_provider(impl, sandbox)
    first, _ = submit(provider, "pb-list-1", lines_for(case, 1, "a"))
    second, _ = submit(provider, "pb-list-2", lines_for(case, 1, "b"))
    ours = {r.our_id: r.remote_id for r in provider.list_ours()}
    assert ours == {"pb-list-1": first.remote_id, "pb-list-2": second.remote_id}
    future = datetime.now(tz=UTC) + timedelta(days=3650)
    assert list(provider.list_ours(since=future)) == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_call_interactive(case: Case, sandbox: RunningSandbox) -> None:
    provider = make_provider(case.impl, sandbox)
    (line,) = lines_for(case, 1, "live")
    result = provider.call_interactive(line, flex=False)
    assert result.ok and result.key == line.key and result.response
    # interactive calls carry no key on the wire: the sandbox bills them under its own id
    (entry,) = billed(sandbox, "interactive").values()
    assert entry["times_billed"] == 1
    if case.endpoint is Endpoint.EMBED_CONTENT:
        # Gemini's embedContent response reports no token count: usage is unknown
        assert result.usage is None
    else:
        assert result.usage == ledger_usage(entry)


@pytest.mark.parametrize("impl", ["gemini", "openai"])
def test_call_interactive_flex(impl: str, sandbox: RunningSandbox) -> None:
    provider = make_provider(impl, sandbox)
    (line,) = lines_for(DEFAULT_CASE[impl], 1, "flex")
    result = provider.call_interactive(line, flex=True)
    assert result.ok and result.tier == "flex"  # the tier that answered, as reported
    (entry,) = billed(sandbox, "flex").values()
    assert entry["lanes"] == {"flex": 1}


@pytest.mark.parametrize("impl", ["gemini", "openai"])
def test_a_flex_call_answered_by_the_default_tier_says_so(
    impl: str, sandbox: RunningSandbox
) -> None:
    """OpenAI reports ``service_tier: "default"``, Gemini ``usageMetadata.serviceTier:
    "standard"`` when the default tier answered a flex request; it is billed at that tier."""
    set_faults(sandbox, "flex_default=1")
    provider = make_provider(impl, sandbox)
    (line,) = lines_for(DEFAULT_CASE[impl], 1, "flex")
    result = provider.call_interactive(line, flex=True)
    assert result.ok and result.tier == {"gemini": "standard", "openai": "default"}[impl]
    assert billed(sandbox, "flex") == {}
    (entry,) = billed(sandbox, "interactive").values()
    assert entry["lanes"] == {"interactive": 1}


# --- batch-level outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_failed_batch_leaves_every_key_not_executed(impl: str, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "batch_fail=1")
    provider = make_provider(impl, sandbox)
    remote, payload = submit(provider, "pb-fail", lines_for(DEFAULT_CASE[impl], 3))
    done = finish(provider, sandbox, remote.remote_id)
    assert done.state is BatchState.FAILED
    assert done.error_code and done.error_kind is not None
    results = results_by_key(provider.fetch_results(done, payload.keys), payload.keys)
    assert all(not r.ok and r.retryable for r in results.values())
    assert all(r.error_code == NOT_EXECUTED for r in results.values())


@pytest.mark.parametrize("impl", IMPLS)
def test_expired_batch_keeps_partial_results(impl: str, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "batch_expire=1,expire_done_fraction=0.5,shuffle_results=1")
    provider = make_provider(impl, sandbox)
    remote, payload = submit(provider, "pb-exp", lines_for(DEFAULT_CASE[impl], 4))
    done = finish(provider, sandbox, remote.remote_id)
    assert done.state is BatchState.EXPIRED
    results = results_by_key(provider.fetch_results(done, payload.keys), payload.keys)
    bills = billed(sandbox, "batch")
    for key, result in results.items():
        if result.ok:
            assert result.usage == ledger_usage(bills[key])
        else:
            assert result.retryable, result
    # the lines the provider ran and billed are exactly the ones we got answers for
    assert {k for k, r in results.items() if r.ok} == set(bills)
    if impl == "openai":  # OpenAI keeps the finished half; Gemini's EXPIRED returns nothing
        assert len(bills) == 2


@pytest.mark.parametrize("impl", IMPLS)
def test_per_line_errors(impl: str, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "line_error_rate=1")
    provider = make_provider(impl, sandbox)
    remote, payload = submit(provider, "pb-lerr", lines_for(DEFAULT_CASE[impl], 3))
    done = finish(provider, sandbox, remote.remote_id)
    assert done.state is BatchState.SUCCEEDED  # a finished batch may hold failed lines
    results = results_by_key(provider.fetch_results(done, payload.keys), payload.keys)
    for result in results.values():
        assert not result.ok
        assert result.error_code not in (None, NOT_EXECUTED, MALFORMED)
        assert result.error_message


@pytest.mark.parametrize("impl", IMPLS)
def test_malformed_and_missing_lines_are_reported_not_fatal(
    impl: str, sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    set_faults(sandbox, "malformed_line_rate=0.5,missing_line_rate=0.3,seed=7")
    provider = make_provider(impl, sandbox)
    remote, payload = submit(provider, "pb-bad", lines_for(DEFAULT_CASE[impl], 12))
    done = finish(provider, sandbox, remote.remote_id)
    with caplog.at_level(logging.WARNING):
        results = results_by_key(provider.fetch_results(done, payload.keys), payload.keys)
    bad = [r for r in results.values() if not r.ok]
    assert bad, "the fault plan should have spoiled some lines"
    # a malformed line may have been billed: not retryable; an absent key is reported as not
    # executed (the collector knows whether its batch completed: pipeline/collect.py)
    assert all(r.error_code in (MALFORMED, NOT_EXECUTED) for r in bad)
    assert all(r.retryable == (r.error_code == NOT_EXECUTED) for r in bad)
    assert all(r.raw for r in bad if r.error_code == MALFORMED and r.key in payload.keys)
    assert any(r.ok for r in results.values())
    if any(r.error_code == MALFORMED for r in bad):
        assert "malformed result line" in caplog.text


@pytest.mark.parametrize("impl", IMPLS)
def test_token_limit(impl: str, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "token_limit=1")
    provider = make_provider(impl, sandbox)
    lines = lines_for(DEFAULT_CASE[impl], 2)
    if impl in ("gemini", "compat"):  # Google refuses at create with 429 RESOURCE_EXHAUSTED
        with pytest.raises((RateLimited, QuotaExceeded)):
            submit(provider, "pb-tok", lines)
        return
    remote, _ = submit(provider, "pb-tok", lines)  # OpenAI: accepted, then failed
    done = finish(provider, sandbox, remote.remote_id)
    assert done.state is BatchState.FAILED
    assert done.error_code == "token_limit_exceeded"
    assert done.error_kind is ErrorKind.QUOTA_EXCEEDED


@pytest.mark.parametrize("impl", IMPLS)
def test_cancel(impl: str, sandbox: RunningSandbox) -> None:
    provider = make_provider(impl, sandbox)
    remote, payload = submit(provider, "pb-cancel", lines_for(DEFAULT_CASE[impl], 2))
    provider.cancel(remote.remote_id)
    done = finish(provider, sandbox, remote.remote_id)
    assert done.state is BatchState.CANCELLED
    provider.cancel(remote.remote_id)  # already finished: not an error
    results = results_by_key(provider.fetch_results(done, payload.keys), payload.keys)
    assert all(r.retryable for r in results.values() if not r.ok)


# --- HTTP faults -> planner.errors ---------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_rate_limited_create_carries_retry_after(impl: str, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "rate_limit_first=1,rate_limit_on=create,retry_after=3")
    provider = make_provider(impl, sandbox)
    with pytest.raises(RateLimited) as info:
        submit(provider, "pb-429", lines_for(DEFAULT_CASE[impl], 1))
    assert info.value.retry_after == pytest.approx(3.0)
    assert not [b for b in ledger(sandbox)["batches"] if b["our_id"] == "pb-429"]


@pytest.mark.parametrize("impl", IMPLS)
def test_daily_quota_is_quota_exceeded(impl: str, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "daily_quota_first=1,daily_quota_on=create")
    provider = make_provider(impl, sandbox)
    with pytest.raises(QuotaExceeded):
        submit(provider, "pb-day", lines_for(DEFAULT_CASE[impl], 1))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("fault", "error"),
    [("unavailable", Transient), ("server_error", Transient), ("auth_error", AuthFailed)],
)
def test_http_faults_on_get(
    impl: str, fault: str, error: type[ProviderError], sandbox: RunningSandbox
) -> None:
    provider = make_provider(impl, sandbox)
    remote, _ = submit(provider, "pb-get", lines_for(DEFAULT_CASE[impl], 1))
    set_faults(sandbox, f"{fault}_first=1,{fault}_on=get")
    with pytest.raises(error):
        provider.get(remote.remote_id)
    assert provider.get(remote.remote_id).remote_id == remote.remote_id


@pytest.mark.parametrize("impl", IMPLS)
def test_get_retries_transient_errors_when_allowed(impl: str, sandbox: RunningSandbox) -> None:
    provider = make_provider(impl, sandbox, max_retries=2)
    remote, _ = submit(provider, "pb-retry", lines_for(DEFAULT_CASE[impl], 1))
    set_faults(sandbox, "unavailable_first=1,unavailable_on=get")
    assert provider.get(remote.remote_id).our_id == "pb-retry"


@pytest.mark.parametrize("impl", IMPLS)
def test_create_is_never_retried_by_the_sdk(impl: str, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "server_error_first=1,server_error_on=create")
    provider = make_provider(impl, sandbox, max_retries=2)
    with pytest.raises(Transient):
        submit(provider, "pb-500", lines_for(DEFAULT_CASE[impl], 1))
    assert not [b for b in ledger(sandbox)["batches"] if b["our_id"] == "pb-500"]


@pytest.mark.parametrize("impl", IMPLS)
def test_timeout_is_transient(impl: str, sandbox: RunningSandbox) -> None:
    provider = make_provider(impl, sandbox, timeout=0.5)
    remote, _ = submit(provider, "pb-slow", lines_for(DEFAULT_CASE[impl], 1))
    set_faults(sandbox, "timeout_rate_first=1,timeout_rate_on=get,timeout_sleep=2")
    with pytest.raises(Transient):
        provider.get(remote.remote_id)


@pytest.mark.parametrize("impl", IMPLS)
def test_unknown_batch_is_not_found(impl: str, sandbox: RunningSandbox) -> None:
    provider = make_provider(impl, sandbox)
    with pytest.raises(NotFound):
        provider.get("batches/doesnotexist" if impl != "openai" else "batch_doesnotexist")


@pytest.mark.parametrize("impl", IMPLS)
def test_interactive_rate_limit_raises(impl: str, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "rate_limit_first=1,retry_after=4")
    provider = make_provider(impl, sandbox)
    (line,) = lines_for(DEFAULT_CASE[impl], 1, "live")
    with pytest.raises(RateLimited) as info:
        provider.call_interactive(line, flex=False)
    assert info.value.retry_after == pytest.approx(4.0)


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_api_key_never_in_errors_or_logs(
    impl: str, sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make_provider(impl, sandbox, **({"inline_max_bytes": 0} if impl == "gemini" else {}))
    assert KEY not in repr(provider)
    case = DEFAULT_CASE[impl]
    raised: list[BaseException] = []
    for spec in (
        "auth_error_first=1",
        "rate_limit_first=1",
        "server_error_first=1",
        "unavailable_first=1",
        "daily_quota_first=1",
    ):
        set_faults(sandbox, spec)
        with pytest.raises(ProviderError) as info:
            submit(provider, "pb-secret", lines_for(case, 1))
        raised.append(info.value)
    set_faults(sandbox, "")
    with pytest.raises(NotFound) as not_found:
        provider.get("batches/nope" if impl != "openai" else "batch_nope")
    raised.append(not_found.value)
    remote, payload = submit(provider, "pb-secret", lines_for(case, 2))
    done = finish(provider, sandbox, remote.remote_id)
    list(provider.fetch_results(done, payload.keys))
    provider.delete_collected(done)
    for exc in raised:
        chain: BaseException | None = exc
        while chain is not None:
            assert KEY not in str(chain) and KEY not in repr(chain)
            chain = chain.__cause__ or chain.__context__
    assert KEY not in caplog.text
    assert "upload_id" not in caplog.text


def test_scrub_removes_secrets_and_capability_urls() -> None:
    from planner.providers.errors import scrub

    text = (
        f"key {KEY} Bearer abc.def sk-proj-0123456789abcdef AIzaSyA0123456789abcdefghijklmnop "
        "POST http://127.0.0.1:9/upload/v1beta/files?upload_id=XYZ&upload_protocol=resumable "
        "GET /v1/x?key=AIza123"
    )
    cleaned = scrub(text, [KEY])
    for secret in (
        KEY,
        "abc.def",
        "sk-proj-0123456789abcdef",
        "AIzaSyA0123456789",
        "XYZ",
        "AIza123",
    ):
        assert secret not in cleaned
    assert "http://127.0.0.1:9/upload/v1beta/files?<redacted>" in cleaned


@pytest.mark.parametrize("impl", ["openai", "compat"])
def test_a_large_batch_file_goes_to_disk_and_uploads_whole(
    impl: str, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch file past ``SPOOL_BYTES`` is written to a temporary file, not held in memory,
    and the upload streams it: the provider receives every byte, and closing the payload
    releases the file."""
    from planner.providers import openai as openai_provider

    monkeypatch.setattr(openai_provider, "SPOOL_BYTES", 1024)  # 40 lines are several KB
    provider = make_provider(impl, sandbox)
    case = DEFAULT_CASE[impl]
    lines = lines_for(case, n=40, prefix="disk")
    payload = provider.build_payload("pb-disk", iter(lines))
    assert payload.jsonl is not None and not isinstance(payload.jsonl, bytes)
    assert payload.jsonl._rolled  # type: ignore[union-attr]  # on disk, past 1 KB
    written = payload.jsonl_bytes()
    assert written is not None and len(written) == payload.size_bytes > 1024
    assert [json.loads(x)["custom_id"] for x in written.splitlines()] == [x.key for x in lines]
    remote = provider.submit("pb-disk", case.model, case.endpoint, payload)
    payload.close()
    assert payload.jsonl.closed
    file_id = str(remote.input_file_id).removeprefix("files/")  # Gemini names it files/<id>
    assert sandbox.state.files[file_id].blob.read() == written
