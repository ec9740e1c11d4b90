"""openai_wire against the examples of specs/openai-batch-api.md (section numbers in comments)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.core.model import Endpoint, Request, Usage
from planner.core.states import BatchState
from planner.providers import openai_wire as wire
from planner.providers.base import BadLine, BatchLine, ErrorKind, LineResult
from planner.store.requests import body_json as store_body_json

CHAT = Endpoint.CHAT_COMPLETIONS
EMB = Endpoint.EMBEDDINGS
RESP = Endpoint.RESPONSES


def chat(key: str, model: str = "gpt-4o-mini", **extra: object) -> BatchLine:
    body: dict[str, object] = {"messages": [{"role": "user", "content": "What is 2+2?"}], **extra}
    return BatchLine(key=key, model=model, endpoint=CHAT, body=body)


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1),
    extra=st.dictionaries(st.text().filter(lambda k: k not in ("model", "stream")), _VALUES),
    content=st.text(),
    with_model=st.booleans(),
)
def test_a_stored_body_is_written_as_the_encoded_one(
    key: str, extra: dict[str, object], content: str, with_model: bool
) -> None:
    """A line read from the store carries its body's stored text; the file written from it is
    byte for byte the file written by encoding the body (model present: the text as it is;
    model absent: the body is encoded with the model added)."""
    body: dict[str, object] = {**extra, "messages": [{"role": "user", "content": content}]}
    if with_model:
        body["model"] = "gpt-4o-mini"
    stored = store_body_json(Request("s", key, "gpt-4o-mini", CHAT, body, datetime.now(UTC)))
    from_store = [BatchLine.from_stored(k, "gpt-4o-mini", CHAT, stored) for k in (key, key + "2")]
    decoded = [BatchLine(k, "gpt-4o-mini", CHAT, body) for k in (key, key + "2")]
    written = wire.build_payload("pb", from_store).jsonl
    expected = wire.build_payload("pb", decoded).jsonl
    assert isinstance(written, io.BytesIO) and isinstance(expected, io.BytesIO)
    assert written.getvalue() == expected.getvalue()


def test_metadata_round_trip() -> None:  # §3.7
    assert wire.batch_metadata("pb-123") == {"planner_batch_id": "pb-123"}
    assert wire.our_id_from_metadata({"planner_batch_id": "pb-123", "kind": "chat"}) == "pb-123"
    assert wire.our_id_from_metadata({"kind": "chat"}) is None
    assert wire.our_id_from_metadata(None) is None
    assert wire.input_filename("pb-1") == "planner-pb-1.jsonl"  # must end in .jsonl, pitfall 3


def test_build_payload_chat_lines() -> None:  # §5.1
    payload = wire.build_payload("pb-1", [chat("req-0001", max_tokens=20), chat("req-0002")])
    assert payload.mode == "file" and payload.keys == ("req-0001", "req-0002")
    data = payload.jsonl_bytes()
    assert data is not None
    rows = [json.loads(r) for r in data.splitlines()]
    assert rows[0] == {
        "custom_id": "req-0001",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "messages": [{"role": "user", "content": "What is 2+2?"}],
            "max_tokens": 20,
            "model": "gpt-4o-mini",
        },
    }
    assert payload.size_bytes == len(data)
    assert data.endswith(b"\n")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (chat("k", stream=True), "stream: true"),
        (BatchLine("k", "m", CHAT, {"model": "other", "messages": []}), "differs"),
        (BatchLine("k", "m", EMB, {"inputs": "x"}), "needs 'input'"),
        (BatchLine("k", "m", RESP, {"instructions": "x"}), "needs 'input'"),
        (BatchLine("k", "m", CHAT, {"prompt": "x"}), "'messages' list"),
        (BatchLine("k", "m", Endpoint.GENERATE_CONTENT, {"contents": []}), "not an OpenAI"),
    ],
)
def test_build_payload_refuses_bad_lines(line: BatchLine, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wire.build_payload("pb", [line])


def test_build_payload_one_model_and_unique_ids() -> None:  # pitfall 21, 7
    with pytest.raises(ValueError, match=r"line 2 .* one model"):
        wire.build_payload("pb", [chat("a"), chat("b", model="gpt-4o")])
    with pytest.raises(ValueError, match=r"line 2 .* duplicate custom_id"):
        wire.build_payload("pb", [chat("a"), chat("a")])
    with pytest.raises(ValueError, match="no lines"):
        wire.build_payload("pb", iter([]))


def test_build_payload_reads_its_lines_once_as_they_come() -> None:
    """The store streams a batch's requests: each line is encoded as it arrives, in order, and
    the file is the one a list of the same lines gives."""
    taken: list[str] = []

    def stream() -> Iterator[BatchLine]:
        for key in ("c", "a", "b"):
            taken.append(key)
            yield chat(key)

    streamed = wire.build_payload("pb", stream())
    assert taken == ["c", "a", "b"] and streamed.keys == ("c", "a", "b")
    listed = wire.build_payload("pb", [chat("c"), chat("a"), chat("b")])
    assert streamed.jsonl_bytes() == listed.jsonl_bytes()
    assert (streamed.keys, streamed.size_bytes) == (listed.keys, listed.size_bytes)


BATCH = {  # §6.1 verbatim, with our metadata
    "id": "batch_abc123",
    "object": "batch",
    "endpoint": "/v1/chat/completions",
    "model": "gpt-4o-mini-2024-07-18",
    "errors": None,
    "input_file_id": "file-abc123",
    "completion_window": "24h",
    "status": "completed",
    "output_file_id": "file-out123",
    "error_file_id": "file-err123",
    "created_at": 1711471533,
    "expires_at": 1711557933,
    "request_counts": {"total": 100, "completed": 95, "failed": 5},
    "metadata": {"planner_batch_id": "pb-123"},
}


def test_parse_batch() -> None:
    remote = wire.parse_batch(BATCH)
    assert remote.remote_id == "batch_abc123"
    assert remote.our_id == "pb-123"
    assert remote.state is BatchState.SUCCEEDED
    assert remote.endpoint is CHAT
    assert (remote.counts.total, remote.counts.completed, remote.counts.failed) == (100, 95, 5)
    assert (remote.input_file_id, remote.output_file_id, remote.error_file_id) == (
        "file-abc123",
        "file-out123",
        "file-err123",
    )
    assert remote.created_at == datetime.fromtimestamp(1711471533, tz=UTC)


def test_empty_string_file_id_means_no_file() -> None:  # §6.1
    remote = wire.parse_batch({**BATCH, "output_file_id": "", "error_file_id": None})
    assert remote.output_file_id is None and remote.error_file_id is None


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("validating", BatchState.SUBMITTED),
        ("in_progress", BatchState.RUNNING),
        ("finalizing", BatchState.RUNNING),
        ("cancelling", BatchState.RUNNING),
        ("completed", BatchState.SUCCEEDED),
        ("failed", BatchState.FAILED),
        ("expired", BatchState.EXPIRED),
        ("cancelled", BatchState.CANCELLED),
    ],
)
def test_state_map(status: str, state: BatchState) -> None:  # §6.2
    assert wire.map_state(status) is state


def test_unknown_status_is_not_finished() -> None:  # pitfall 15
    assert wire.map_state("queued") is None
    assert wire.parse_batch({**BATCH, "status": "queued"}).state is BatchState.SUBMITTED


def test_token_limit_failure_is_a_quota_error() -> None:  # §6.4, §7.1
    failed = {
        **BATCH,
        "status": "failed",
        "output_file_id": None,
        "error_file_id": None,
        "errors": {
            "object": "list",
            "data": [
                {
                    "code": "token_limit_exceeded",
                    "message": "Enqueued token limit reached for gpt-4.1 in organization org-123.",
                    "param": None,
                    "line": None,
                }
            ],
        },
    }
    remote = wire.parse_batch(failed)
    assert remote.state is BatchState.FAILED
    assert remote.error_code == "token_limit_exceeded"
    assert remote.error_kind is ErrorKind.QUOTA_EXCEEDED
    invalid = {
        **failed,
        "errors": {"data": [{"code": "invalid_json_line", "message": "bad", "line": 2}]},
    }
    remote = wire.parse_batch(invalid)
    assert remote.error_kind is ErrorKind.PERMANENT
    assert remote.error_message == "bad (input line 2)"
    assert wire.parse_batch({**failed, "errors": None}).error_code == "batch_failed"


OUTPUT = (  # §5.2 / §5.4 lines
    b'{"id": "batch_req_6b6f", "custom_id": "req-0002", "response": {"status_code": 200, '
    b'"request_id": "req_6f1e", "body": {"id": "chatcmpl-abc", "object": "chat.completion", '
    b'"choices": [{"index": 0, "message": {"role": "assistant", "content": "4."}, '
    b'"finish_reason": "stop"}], "usage": {"prompt_tokens": 11, "completion_tokens": 2, '
    b'"total_tokens": 13, "prompt_tokens_details": {"cached_tokens": 0}, '
    b'"completion_tokens_details": {"reasoning_tokens": 0}}}}, "error": null}\n'
    b'{"id": "batch_req_88e5", "custom_id": "req-0003", "response": {"status_code": 400, '
    b'"request_id": "req_4205", "body": {"error": {"message": "The model `bad-model` does not '
    b'exist", "type": "invalid_request_error", "param": null, "code": "model_not_found"}}}, '
    b'"error": null}\n'
    b'{"id": "batch_req_123", "custom_id": "req-0007", "response": null, "error": {"code": '
    b'"batch_expired", "message": "This request could not be executed before the completion '
    b'window expired."}}\n'
    b'{"custom_id": "req-0008", "response": {"status_code": 500, "body": {"error": '
    b'{"message": "oops", "type": "server_error"}}}, "error": null}\n'
)


def test_parse_output_and_error_lines() -> None:
    items = {i.key: i for i in wire.parse_results_file(OUTPUT) if isinstance(i, LineResult)}
    ok = items["req-0002"]
    assert ok.ok and ok.usage == Usage(11, 2, 0)
    assert ok.response is not None and ok.response["id"] == "chatcmpl-abc"
    assert items["req-0003"] == LineResult(
        "req-0003",
        ok=False,
        error_code="model_not_found",
        error_message="The model `bad-model` does not exist",
        retryable=False,
    )
    assert items["req-0007"].error_code == "batch_expired" and items["req-0007"].retryable
    assert items["req-0008"].error_code == "server_error" and items["req-0008"].retryable


def test_each_result_carries_the_size_of_its_line() -> None:
    """What collect bounds a chunk's memory by: the bytes of the line each result was read
    from, whatever the line ending."""
    lines = [line for line in OUTPUT.splitlines() if line.strip()]
    data = b"\r\n".join(lines)
    results = [r for r in wire.parse_results_file(data) if isinstance(r, LineResult)]
    assert [r.size for r in results] == [len(line) for line in lines]


def test_malformed_output_lines() -> None:
    data = (
        b'{"custom_id": "a", "response": {"status_code": 200, "body": \n'
        b"{}\n"
        b'{"custom_id": "b", "response": {"status_code": "200", "body": {}}, "error": null}\n'
        b'{"custom_id": "c", "response": {"status_code": 200, "body": "text"}, "error": null}\n'
        b'{"custom_id": "d", "response": null, "error": null}\n'
        b'{"custom_id": "e", "error": "boom"}\n'
        b"42\n"
    )
    lines = data.decode().splitlines()
    lines[1:6] = [json.dumps(json.loads(line)) for line in lines[1:6]]
    assert list(wire.parse_results_file(data)) == [
        BadLine(1, "not valid JSON", "a", lines[0]),
        BadLine(2, "no string 'custom_id'", raw=lines[1]),
        BadLine(3, "response without an integer status_code", "b", lines[2]),
        BadLine(4, "2xx response without a JSON object body", "c", lines[3]),
        BadLine(5, "neither 'response' nor 'error' is an object", "d", lines[4]),
        BadLine(6, "'error' is neither null nor an object", "e", lines[5]),
        BadLine(7, "not a JSON object", raw=lines[6]),
    ]  # each keeps its text (the JSON of a parsed line), for the dead-letter line


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # chat: reasoning tokens are already inside completion_tokens
        (
            {
                "prompt_tokens": 11,
                "completion_tokens": 30,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 20},
            },
            Usage(11, 30, 4),
        ),
        # embeddings: prompt only
        ({"prompt_tokens": 4, "total_tokens": 4}, Usage(4, 0, 0)),
        # responses: input/output names
        (
            {
                "input_tokens": 50,
                "output_tokens": 9,
                "input_tokens_details": {"cached_tokens": 10},
                "output_tokens_details": {"reasoning_tokens": 3},
            },
            Usage(50, 9, 10),
        ),
    ],
)
def test_usage_shapes(usage: dict[str, object], expected: Usage) -> None:  # §5.3
    assert wire.usage_from_body(usage) == expected
    assert wire.usage_from_body(None) is None


NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250", "retry-after": "9"}, 0.25),  # ms preferred, any case
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "Sat, 28 Nov 2026 12:00:30 GMT"}, 30.0),
        ({"retry-after": "0"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "x", "retry-after": "2"}, 2.0),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:  # §9
    assert wire.retry_after_seconds(headers, NOW) == expected


def test_error_from_body_shapes() -> None:  # §3.1, §8 (array-wrapped Google envelope)
    assert wire.error_from_body(400, {"message": "m", "code": "missing_required_parameter"}) == (
        "missing_required_parameter",
        "m",
        False,
    )
    google = [{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}]
    assert wire.error_from_body(400, google) == ("400", "bad", False)
    assert wire.error_from_body(503, None) == ("http_503", "http_503", True)
    assert wire.is_quota_error("token_limit_exceeded", "")
    assert wire.is_quota_error(None, "Enqueued token limit reached for gpt-4o")
    assert not wire.is_quota_error("rate_limit_exceeded", "slow down")


def test_interactive_body_and_paths() -> None:
    line = chat("k")
    assert "service_tier" not in wire.interactive_body(line, flex=False)
    assert wire.interactive_body(line, flex=True)["service_tier"] == "flex"
    assert wire.interactive_body(line, flex=False)["model"] == "gpt-4o-mini"
    assert wire.endpoint_path(CHAT) == "/chat/completions"
    assert wire.endpoint_path(EMB) == "/embeddings"
    assert wire.endpoint_path(RESP) == "/responses"
    result = wire.interactive_result(line, {"usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    assert result.ok and result.usage == Usage(3, 1, 0)
    assert not wire.interactive_result(line, ["x"]).ok


@pytest.mark.parametrize(
    ("reported", "tier"), [("flex", "flex"), ("default", "default"), ("auto", None), (None, None)]
)
def test_interactive_result_reports_the_tier_that_answered(
    reported: str | None, tier: str | None
) -> None:
    line = BatchLine("k", "gpt-5-mini", Endpoint.CHAT_COMPLETIONS, {"messages": []})
    body: dict[str, object] = {"usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    if reported is not None:
        body["service_tier"] = reported
    assert wire.interactive_result(line, body).tier == tier


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(st.sampled_from([b"{}", b"x", b"\n", b"\r", b"\r\n", b"", b"\n\n"])))
def test_result_lines_are_split_as_splitlines_splits_them(parts: list[bytes]) -> None:
    """Results files, in memory or downloaded to a file, are split one line at a time (no list
    of every line): the same lines, and so the same line numbers, as ``bytes.splitlines``."""
    from planner.providers.base import _split_lines

    data = b"".join(parts)
    assert list(_split_lines(data)) == data.splitlines()
    stream = io.BytesIO(data)  # a downloaded file: read a line at a time, then closed
    assert list(_split_lines(stream)) == data.splitlines()
    assert stream.closed
