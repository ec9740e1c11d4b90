"""The Gemini adapter uses the SDK's public surface wherever it can; each raw REST call has a
reason this suite checks against the installed google-genai (in the range pyproject.toml pins).

If an SDK release learns to do what a raw call is there for, the matching test here fails and
the call should move to the public surface (planner/providers/gemini.py's docstring lists them).
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import httpx
import pydantic
import pytest
from google.genai import types
from packaging.specifiers import SpecifierSet

from planner.core.states import BatchState
from planner.errors import Transient
from planner.providers.gemini import GeminiProvider
from planner.sandbox import RunningSandbox
from tests.conftest import REPO
from tests.contract.test_providers import (
    CASES,
    Case,
    finish,
    ledger,
    lines_for,
    make_provider,
    set_faults,
    submit,
)

FILE_CASES = [c for c in CASES if c.impl == "gemini" and c.mode == "file"]


def test_installed_sdk_is_in_the_pinned_range() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"google-genai\b", d)]
    assert version("google-genai") in SpecifierSet(pin.removeprefix("google-genai"))


def _spy(provider: GeminiProvider, name: str, calls: list[str]) -> None:
    """Record calls to one public ``client.batches`` method, still making them."""
    batches = provider._client.batches
    real: Callable[..., Any] = getattr(batches, name)

    def recording(**kwargs: Any) -> Any:
        calls.append(name)
        return real(**kwargs)

    setattr(batches, name, recording)


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.id for c in FILE_CASES])
def test_file_batches_are_created_through_the_public_sdk(
    case: Case, sandbox: RunningSandbox
) -> None:
    provider = make_provider("gemini", sandbox, **case.options)
    assert isinstance(provider, GeminiProvider)
    calls: list[str] = []
    for name in ("create", "create_embeddings"):
        _spy(provider, name, calls)
    remote, payload = submit(provider, "pb-public", lines_for(case, n=2))
    assert payload.mode == "file"
    assert calls == ["create_embeddings" if case.name.startswith("embed") else "create"]
    assert remote.our_id == "pb-public"
    assert remote.input_file_id and remote.input_file_id.startswith("files/")
    assert remote.state in (BatchState.SUBMITTED, BatchState.RUNNING)
    done = finish(provider, sandbox, remote.remote_id)
    assert done.state is BatchState.SUCCEEDED
    assert all(r.ok for r in provider.fetch_results(done, payload.keys))


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.id for c in FILE_CASES])
def test_public_file_create_is_not_retried(case: Case, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "server_error_first=1,server_error_on=create")
    provider = make_provider("gemini", sandbox, max_retries=2, **case.options)
    with pytest.raises(Transient):
        submit(provider, "pb-500", lines_for(case, 1))
    assert not [b for b in ledger(sandbox)["batches"] if b["our_id"] == "pb-500"]


def test_inline_requests_cannot_carry_a_rest_body() -> None:
    """Reason for the raw inline create: the typed InlinedRequest refuses a REST
    GenerateContentRequest as our sources carry it (it re-encodes typed contents/config)."""
    rest_body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"maxOutputTokens": 16},
    }
    assert "request" not in types.InlinedRequest.model_fields
    with pytest.raises(pydantic.ValidationError):
        types.InlinedRequest.model_validate({**rest_body, "metadata": {"key": "k"}})


def test_typed_get_drops_what_we_read(sandbox: RunningSandbox) -> None:
    """Reason for the raw get/list: the typed BatchJob keeps neither batchStats nor the
    Operation error of a failed batch, which the wire carries."""
    set_faults(sandbox, "batch_fail=1")
    provider = make_provider("gemini", sandbox)
    assert isinstance(provider, GeminiProvider)
    remote, _ = submit(provider, "pb-typed", lines_for(FILE_CASES[0], 2))
    done = finish(provider, sandbox, remote.remote_id)
    assert done.state is BatchState.FAILED
    raw = httpx.get(f"{sandbox.url}/v1beta/{remote.remote_id}", headers={"x-goog-api-key": "k"})
    assert raw.json()["error"] and raw.json()["metadata"]["batchStats"]
    typed = provider._client.batches.get(name=remote.remote_id)
    assert typed.error is None
    assert typed.completion_stats is None
    assert done.error_code is not None and done.counts.total == 2  # what the raw read keeps


def test_private_helper_still_takes_what_raw_rest_passes() -> None:
    from google.genai._api_client import BaseApiClient

    params = list(inspect.signature(BaseApiClient.request).parameters)
    assert params[:5] == ["self", "http_method", "path", "request_dict", "http_options"]
