"""A batch's lines keep where their requests are in the input file, not the requests.

The emulator held every decoded request of a batch from the create that checks it to the settle
that answers it: at 100,000 requests its largest batch (55,000 chat lines) took it to 299 MiB,
the largest process of ``run --once --sandbox``. Each line now keeps its offset in the stored
input (``kernel.LineSource``) and is read again, one at a time, when it is answered. The
offsets must land on the right lines however the file is cut into blocks, spilled to disk or
broken with ``\\r\\n`` and blank lines, and the answers must not change.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.sandbox import RunningSandbox, kernel, usage
from planner.sandbox.openai_common import OpenAISettings
from planner.sandbox.openai_input import parse_input

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_BODY = st.fixed_dictionaries(
    {
        "model": st.just("gpt-4o-mini"),
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.just("user"), "content": _TEXT}),
            min_size=1,
            max_size=3,
        ),
    }
)
_ENDINGS = st.sampled_from(["\n", "\r\n", "\n\n", "\n  \n"])


@pytest.fixture
def client(sandbox: RunningSandbox) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=sandbox.url + "/v1", max_retries=0)


def _line(key: str, body: dict[str, Any]) -> str:
    item = {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body}
    return json.dumps(item, ensure_ascii=False)


def _count(body: dict[str, Any]) -> int:
    return len(json.dumps(body))


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(_BODY, min_size=1, max_size=12),
    endings=st.lists(_ENDINGS, min_size=12, max_size=12),
    spill=st.sampled_from([0, 1 << 20]),
    block=st.integers(1, 64),
)
def test_each_line_reads_back_its_own_request(
    bodies: list[dict[str, Any]], endings: list[str], spill: int, block: int
) -> None:
    text = "".join(_line(f"k{i}", b) + endings[i] for i, b in enumerate(bodies))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel, "SPILL_BYTES", spill)
        patch.setattr(kernel, "BLOCK_BYTES", block)
        blob = kernel.Blob(text.encode())
        parsed = parse_input(blob, "/v1/chat/completions", OpenAISettings(), _count)
        assert not parsed.errors
        assert [line.key for line in parsed.lines] == [f"k{i}" for i in range(len(bodies))]
        assert not any(line.in_memory for line in parsed.lines)
        assert [line.request for line in parsed.lines] == bodies  # read again, each time
        assert [line.request for line in parsed.lines] == bodies
        assert [line.prompt_tokens for line in parsed.lines] == [_count(b) for b in bodies]


def test_an_outcome_reads_its_key_and_request_from_its_line() -> None:
    blob = kernel.Blob((_line("a", {"model": "m", "messages": []}) + "\n").encode())
    parsed = parse_input(blob, "/v1/chat/completions", OpenAISettings())
    (line,) = parsed.lines
    outcome = kernel.LineOutcome(0, line, None)
    assert outcome.request == {"model": "m", "messages": []} and outcome.key == "a"
    assert outcome.prompt_tokens is None  # not counted without ``count``
    assert not line.in_memory


def test_a_line_needs_its_request_or_its_source() -> None:
    with pytest.raises(ValueError):
        kernel.JobLine("k")
    source = kernel.LineSource(kernel.Blob(b"{}"), 0, 2, "body")
    with pytest.raises(ValueError):
        kernel.JobLine("k", {"a": 1}, source=source)


def test_a_running_batch_keeps_no_request_and_answers_each_from_its_file(
    sandbox: RunningSandbox, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the emulator through the SDK, the input spilled to disk: while the batch runs
    its lines hold nothing decoded, and its answers are those of the requests it was sent."""
    monkeypatch.setattr(kernel, "SPILL_BYTES", 64)
    sandbox.state.clock = kernel.SandboxClock(10.0, manual=True)  # runs until advanced
    bodies = [
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "é word " * (i + 1)}]}
        for i in range(30)
    ]
    data = "\r\n".join(_line(f"q{i}", b) for i, b in enumerate(bodies)).encode() + b"\r\n"
    uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    job = sandbox.state.jobs[batch.id]
    assert len(job.lines) == 30 and not any(line.in_memory for line in job.lines)
    sandbox.state.clock.advance(3600)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.request_counts.completed == 30
    assert done.output_file_id is not None
    results = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    answered = {r["custom_id"]: r["response"]["body"] for r in results}
    assert set(answered) == {f"q{i}" for i in range(30)}
    # each answered from its own request: the prompt counts differ from line to line
    prompts = {k: v["usage"]["prompt_tokens"] for k, v in answered.items()}
    assert prompts == {f"q{i}": usage.prompt_tokens(b) for i, b in enumerate(bodies)}
    assert len(set(prompts.values())) == 30
    assert (job.lines, job.size) == ([], 30)  # once answered it keeps its counts, no line
