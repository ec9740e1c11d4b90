"""Gemini results are collected whichever output shape comes back, matched by key.

A report from the field says Gemini can answer a file-input job with ``inlinedResponses``; the
sandbox's ``other_shape`` fault answers every job in the shape it did not ask for (a file job
inline, an inline job with a ``responsesFile``), and every key must still get its result.
"""

from __future__ import annotations

import pytest

from planner.core.states import BatchState
from planner.sandbox import RunningSandbox
from tests.contract.test_providers import (
    CASES,
    Case,
    billed,
    finish,
    lines_for,
    make_provider,
    results_by_key,
    set_faults,
    submit,
)

GEMINI_CASES = [c for c in CASES if c.impl == "gemini"]


@pytest.mark.parametrize("case", GEMINI_CASES, ids=[c.id for c in GEMINI_CASES])
def test_results_arrive_in_the_other_shape(case: Case, sandbox: RunningSandbox) -> None:
    set_faults(sandbox, "other_shape=1,shuffle_results=1")
    provider = make_provider(case.impl, sandbox, **case.options)
    lines = lines_for(case, n=4, prefix="shape")
    remote, payload = submit(provider, "pb-shape", lines)
    assert payload.mode == case.mode

    done = finish(provider, sandbox, remote.remote_id)
    assert done.state is BatchState.SUCCEEDED
    # the fault did answer in the other shape: a results file for inline input, none for a file
    assert (done.output_file_id is not None) == (case.mode == "inline")
    results = results_by_key(provider.fetch_results(done, payload.keys), payload.keys)
    bills = billed(sandbox, "batch")
    for key, result in results.items():
        assert result.ok, result
        assert result.response
        assert bills[key]["times_billed"] == 1
