"""gemini_wire against the examples of specs/gemini-batch-api.md (section numbers in comments)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from planner.core.model import Endpoint, Usage
from planner.core.states import BatchState
from planner.providers import gemini_wire as wire
from planner.providers.base import (
    MALFORMED,
    NOT_EXECUTED,
    BadLine,
    BatchLine,
    ErrorKind,
    LineResult,
    join_by_key,
)

GEN = Endpoint.GENERATE_CONTENT
EMB = Endpoint.EMBED_CONTENT


def gen_line(key: str, text: str = "hi", max_tokens: int | None = 50) -> BatchLine:
    body: dict[str, object] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if max_tokens is not None:
        body["generationConfig"] = {"maxOutputTokens": max_tokens}
    return BatchLine(key=key, model="gemini-2.5-flash", endpoint=GEN, body=body)


def emb_line(key: str, text: str = "alpha") -> BatchLine:
    return BatchLine(
        key=key,
        model="gemini-embedding-001",
        endpoint=EMB,
        body={"content": {"parts": [{"text": text}]}, "taskType": "RETRIEVAL_DOCUMENT"},
    )


def test_display_name_round_trip() -> None:
    assert wire.batch_display_name("01HX") == "planner:01HX"
    assert wire.our_id_from_display_name("planner:01HX") == "01HX"
    assert wire.our_id_from_display_name("nightly-2026-11-24") is None
    assert wire.our_id_from_display_name("planner:") is None
    assert wire.our_id_from_display_name(None) is None


@pytest.mark.parametrize(
    ("model", "endpoint", "path"),
    [
        ("gemini-2.5-flash", GEN, "models/gemini-2.5-flash:batchGenerateContent"),
        ("models/gemini-2.5-flash", GEN, "models/gemini-2.5-flash:batchGenerateContent"),
        ("gemini-embedding-001", EMB, "models/gemini-embedding-001:asyncBatchEmbedContent"),
        ("tunedModels/abc", GEN, "tunedModels/abc:batchGenerateContent"),
    ],
)
def test_create_path(model: str, endpoint: Endpoint, path: str) -> None:  # §4.5, §4.6
    assert wire.create_path(model, endpoint) == path


def test_openai_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Gemini native endpoint"):
        wire.create_path("gpt-4o", Endpoint.CHAT_COMPLETIONS)


def test_batch_path_requires_prefix() -> None:  # §3: bare ids fail client-side
    assert wire.batch_path("batches/abc") == "batches/abc"
    for bad in ("abc", "batches/a/b", "files/abc"):
        with pytest.raises(ValueError, match="batches/<id>"):
            wire.batch_path(bad)


def test_small_generate_batch_goes_inline_with_keys_in_metadata() -> None:  # §4.5
    payload = wire.build_payload("b1", [gen_line("in-1", "inline one"), gen_line("in-2")])
    assert payload.mode == "inline"
    assert payload.keys == ("in-1", "in-2")
    assert payload.inline is not None
    assert payload.inline[0] == {
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "inline one"}]}],
            "generationConfig": {"maxOutputTokens": 50},
        },
        "metadata": {"key": "in-1"},
    }
    body = wire.create_body("planner:b1", GEN, inline=payload.inline)
    assert body["batch"]["displayName"] == "planner:b1"
    assert body["batch"]["inputConfig"]["requests"]["requests"][1]["metadata"] == {"key": "in-2"}
    assert payload.size_bytes == len(json.dumps(body))


def test_large_payload_goes_to_a_file() -> None:  # 20 MB inline limit, §9
    lines = [gen_line(f"k{i}", "x" * 100) for i in range(10)]
    payload = wire.build_payload("b1", lines, inline_max_bytes=500)
    assert payload.mode == "file"
    assert payload.jsonl is not None
    rows = [json.loads(r) for r in payload.jsonl.splitlines()]
    assert rows[0] == {"key": "k0", "request": dict(lines[0].body)}  # §7.1 wrapper
    assert payload.size_bytes == len(payload.jsonl)


def test_large_expected_output_goes_to_a_file() -> None:
    # 3 lines × 1000 tokens × 4 bytes = 12,000 bytes of expected output > 10,000
    lines = [gen_line(f"k{i}", max_tokens=1000) for i in range(3)]
    assert wire.build_payload("b", lines, inline_max_output_bytes=10_000).mode == "file"
    assert wire.build_payload("b", lines, inline_max_output_bytes=12_000).mode == "inline"
    # no maxOutputTokens: DEFAULT_OUTPUT_TOKENS (8192) × 4 bytes each
    assert wire.expected_output_bytes([gen_line("a", max_tokens=None)]) == 8192 * 4


def test_embeddings_always_go_to_a_file_with_one_content_per_line() -> None:  # §7.2, §7.4
    payload = wire.build_payload("b", [emb_line("e1"), emb_line("e2", "beta")])
    assert payload.mode == "file"
    assert payload.jsonl is not None
    first = json.loads(payload.jsonl.splitlines()[0])
    assert first["key"] == "e1"
    assert first["request"]["content"] == {"parts": [{"text": "alpha"}]}
    body = wire.create_body("planner:b", EMB, file_name="files/93f4948c6b69")
    # the SDK spells the embedding file source in snake_case (pitfall 16)
    assert body == {
        "batch": {"displayName": "planner:b", "inputConfig": {"file_name": "files/93f4948c6b69"}}
    }
    assert wire.create_body("planner:b", GEN, file_name="files/x")["batch"]["inputConfig"] == {
        "fileName": "files/x"
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": [{"parts": [{"text": "a"}]}]}, "exactly one 'content'"),
        ({"content": [{"parts": [{"text": "a"}]}]}, "exactly one 'content'"),
        ({"content": {"parts": []}, "requests": []}, "not 'contents'"),
    ],
)
def test_embedding_bodies_need_exactly_one_content(body: dict[str, object], message: str) -> None:
    line = BatchLine("k", "gemini-embedding-001", EMB, body)
    with pytest.raises(ValueError, match=message) as info:
        wire.build_payload("b9", [line])
    assert "batch b9 line 1 (key 'k')" in str(info.value)


def test_build_payload_rejects_mixed_models_duplicates_and_empty() -> None:
    other = BatchLine("k2", "gemini-2.5-pro", GEN, gen_line("x").body)
    with pytest.raises(ValueError, match=r"line 2 .* one model and endpoint"):
        wire.build_payload("b", [gen_line("k1"), other])
    with pytest.raises(ValueError, match=r"line 2 .* duplicate key"):
        wire.build_payload("b", [gen_line("k1"), gen_line("k1")])
    with pytest.raises(ValueError, match="no lines"):
        wire.build_payload("b", [])
    with pytest.raises(ValueError, match="non-empty 'contents'"):
        wire.build_payload("b", [BatchLine("k", "m", GEN, {"contents": []})])


SUCCEEDED_OP = {  # §5.1 verbatim
    "name": "batches/o08hk76gv328ihxcssjsgwt3g6omtfysxi46",
    "metadata": {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "name": "batches/o08hk76gv328ihxcssjsgwt3g6omtfysxi46",
        "model": "models/gemini-2.5-flash",
        "displayName": "planner:01HXYZ",
        "inputConfig": {"fileName": "files/p1mds9fl15bs"},
        "createTime": "2025-09-01T04:13:24.263450184Z",
        "updateTime": "2025-09-01T04:29:25.679632Z",
        "endTime": "2025-09-01T04:29:25.679632Z",
        "batchStats": {"requestCount": "2", "successfulRequestCount": "2"},
        "state": "BATCH_STATE_SUCCEEDED",
        "output": {"responsesFile": "files/batch-o08hk76gv328ihxcssjsgwt3g6omtfysxi46"},
    },
    "done": True,
}


def test_parse_operation_reads_everything_the_sdk_drops() -> None:
    remote = wire.parse_operation(SUCCEEDED_OP)
    assert remote.remote_id == "batches/o08hk76gv328ihxcssjsgwt3g6omtfysxi46"
    assert remote.our_id == "01HXYZ"
    assert remote.state is BatchState.SUCCEEDED
    assert remote.model == "gemini-2.5-flash"
    assert remote.endpoint is GEN
    assert (remote.counts.total, remote.counts.completed, remote.counts.failed) == (2, 2, 0)
    assert remote.input_file_id == "files/p1mds9fl15bs"
    assert remote.output_file_id == "files/batch-o08hk76gv328ihxcssjsgwt3g6omtfysxi46"
    assert remote.created_at == datetime(2025, 9, 1, 4, 13, 24, 263450, tzinfo=UTC)
    assert remote.inline is False
    assert remote.error_code is None


@pytest.mark.parametrize(
    ("wire_state", "state"),
    [
        ("BATCH_STATE_PENDING", BatchState.SUBMITTED),
        ("BATCH_STATE_RUNNING", BatchState.RUNNING),
        ("BATCH_STATE_SUCCEEDED", BatchState.SUCCEEDED),
        ("BATCH_STATE_FAILED", BatchState.FAILED),
        ("BATCH_STATE_CANCELLED", BatchState.CANCELLED),
        ("BATCH_STATE_EXPIRED", BatchState.EXPIRED),
        ("JOB_STATE_PENDING", BatchState.SUBMITTED),
        ("JOB_STATE_RUNNING", BatchState.RUNNING),
        ("JOB_STATE_SUCCEEDED", BatchState.SUCCEEDED),
        ("JOB_STATE_FAILED", BatchState.FAILED),
        ("JOB_STATE_CANCELLED", BatchState.CANCELLED),
        ("JOB_STATE_EXPIRED", BatchState.EXPIRED),
    ],
)
def test_state_map_both_spellings(wire_state: str, state: BatchState) -> None:  # §8.1
    assert wire.map_state(wire_state) is state


def test_unknown_state_is_not_finished() -> None:  # pitfall 14
    assert wire.map_state("BATCH_STATE_CANCELLING") is None
    op = {"name": "batches/x", "metadata": {"state": "batch_state_running"}}
    assert wire.parse_operation(op).state is BatchState.SUBMITTED


def test_failed_operation_error_is_classified() -> None:  # §5.1: Operation error
    op = {
        "name": "batches/x",
        "metadata": {"state": "BATCH_STATE_FAILED"},
        "error": {"code": 8, "message": "Enqueued token limit reached"},
    }
    remote = wire.parse_operation(op)
    assert remote.error_code == "RESOURCE_EXHAUSTED"
    assert remote.error_kind is ErrorKind.QUOTA_EXCEEDED
    assert remote.error_message == "Enqueued token limit reached"
    op["error"] = {"code": 3, "message": "bad input"}
    assert wire.parse_operation(op).error_kind is ErrorKind.PERMANENT
    expired = wire.parse_operation(
        {"name": "batches/y", "metadata": {"state": "BATCH_STATE_EXPIRED"}}
    )
    assert expired.error_code == "batch_expired"


def test_inline_operation_is_marked_inline() -> None:
    op = {
        "name": "batches/x",
        "metadata": {"state": "BATCH_STATE_PENDING", "inputConfig": {"requests": {"requests": []}}},
    }
    assert wire.parse_operation(op).inline is True


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # §7.3 example: prompt 8; candidates 11 + thoughts 829 = 840 output
        (
            {
                "promptTokenCount": 8,
                "candidatesTokenCount": 11,
                "thoughtsTokenCount": 829,
                "totalTokenCount": 848,
            },
            Usage(8, 840, 0),
        ),
        # cached tokens are part of promptTokenCount already: input 100 includes cached 60
        (
            {"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 5},
            Usage(100, 5, 60),
        ),
        # tool-use prompt tokens are billed as input: 10 + 4
        ({"promptTokenCount": 10, "toolUsePromptTokenCount": 4}, Usage(14, 0, 0)),
        # zero counters are omitted on the wire (pitfall 18)
        ({}, Usage(0, 0, 0)),
    ],
)
def test_usage_from_metadata(usage: dict[str, int], expected: Usage) -> None:
    assert wire.usage_from_metadata(usage) == expected


RESULTS = (  # §7.3 lines (order shuffled on purpose), plus an embedding line
    b'{"key": "request_2", "error": {"code": 3, "message": "bad request"}}\n'
    b'{"key": "request_1", "response": {"candidates": [{"content": {"role": "model", "parts": '
    b'[{"text": "AI learns patterns from data."}]}, "finishReason": "STOP", "index": 0}], '
    b'"usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 11, "thoughtsTokenCount": '
    b'829, "totalTokenCount": 848}, "modelVersion": "gemini-2.5-flash"}}\n'
    b"\n"
    b'{"key": "request_3", "error": {"code": 14, "message": "try later"}}\n'
)


def test_each_result_read_from_a_file_carries_the_size_of_its_line() -> None:
    lines = [line for line in RESULTS.splitlines() if line.strip()]
    results = list(wire.parse_results_file(b"\n\n".join(lines), GEN))
    assert all(isinstance(r, LineResult) for r in results)
    assert [r.size for r in results if isinstance(r, LineResult)] == [len(x) for x in lines]


def test_parse_results_file_joins_by_key() -> None:
    results = {r.key: r for r in wire.parse_results_file(RESULTS, GEN) if isinstance(r, LineResult)}
    assert results["request_1"].ok
    assert results["request_1"].usage == Usage(8, 840, 0)
    assert results["request_1"].response is not None
    assert results["request_1"].response["modelVersion"] == "gemini-2.5-flash"
    assert results["request_2"] == LineResult(
        "request_2",
        ok=False,
        error_code="INVALID_ARGUMENT",
        error_message="bad request",
        retryable=False,
    )
    assert results["request_3"].retryable is True
    assert results["request_3"].error_code == "UNAVAILABLE"


def test_embedding_results_line() -> None:  # §7.3: tokenCount is an int64 string
    data = (
        b'{"response": {"tokenCount": "1", "embedding": {"values": [-0.034, 0.0025]}}, '
        b'"key": "request_1"}\n'
    )
    (result,) = list(wire.parse_results_file(data, EMB))
    assert isinstance(result, LineResult)
    assert result.ok and result.usage == Usage(1, 0, 0)


def test_malformed_lines_are_reported_not_fatal() -> None:
    data = (
        b'{"key": "a", "response": {"candidates": []}\n'  # truncated JSON, key recoverable
        b"garbage\n"  # nothing recoverable
        b'["not", "an", "object"]\n'
        b'{"key": "b"}\n'  # neither response nor error
        b'{"key": "c", "response": {"usageMetadata": {"promptTokenCount": 1}}}\n'
    )
    items = list(wire.parse_results_file(data, GEN))
    # each keeps its text, for the dead-letter line
    assert items[0] == BadLine(
        1, "not valid JSON", "a", '{"key": "a", "response": {"candidates": []}'
    )
    assert items[1] == BadLine(2, "not valid JSON", None, "garbage")
    assert items[2] == BadLine(3, "not a JSON object", raw='["not", "an", "object"]')
    assert items[3] == BadLine(
        4, "neither 'response' nor 'error' is an object", "b", '{"key": "b"}'
    )
    assert isinstance(items[4], LineResult) and items[4].ok


def test_embedding_response_without_embedding_is_malformed() -> None:
    (item,) = list(wire.parse_results_file(b'{"key": "e", "response": {"tokenCount": "1"}}', EMB))
    assert item == BadLine(
        1,
        "embedding response without 'embedding'",
        "e",
        '{"key": "e", "response": {"tokenCount": "1"}}',
    )


def test_inline_responses_doubly_nested_and_keyed() -> None:  # §7.4
    op = {
        "metadata": {
            "output": {
                "inlinedResponses": {
                    "inlinedResponses": [
                        {"error": {"code": 3, "message": "nope"}, "metadata": {"key": "in-2"}},
                        {
                            "response": {
                                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}
                            },
                            "metadata": {"key": "in-1"},
                        },
                        {"response": {}},  # no metadata: cannot be joined by key
                    ]
                }
            }
        }
    }
    items = list(wire.parse_inline_responses(op, GEN))
    assert isinstance(items[0], LineResult) and items[0].key == "in-2" and not items[0].ok
    assert isinstance(items[1], LineResult) and items[1].usage == Usage(3, 2, 0)
    assert items[2] == BadLine(3, "inline response without metadata.key", raw='{"response": {}}')
    # a bare list under the outer key yields nothing rather than crashing (pitfall 11)
    assert (
        list(wire.parse_inline_responses({"metadata": {"output": {"inlinedResponses": []}}}, GEN))
        == []
    )


def test_join_by_key_exactly_one_per_key(caplog: pytest.LogCaptureFixture) -> None:
    found = [
        LineResult("b", ok=True),
        BadLine(2, "not valid JSON", "c"),
        BadLine(3, "not valid JSON", None),
        LineResult("b", ok=False),  # duplicate: the first wins
        LineResult("zzz", ok=True),  # not ours
    ]
    with caplog.at_level(logging.WARNING):
        results = list(
            join_by_key(["a", "b", "c"], found, batch="batches/x", log=logging.getLogger("t"))
        )
    by_key = {r.key: r for r in results}
    assert sorted(by_key) == ["a", "b", "c"] and len(results) == 3
    assert by_key["a"].error_code == NOT_EXECUTED and by_key["a"].retryable
    assert by_key["b"].ok
    # a malformed line may have been billed: never retried by itself, its text kept
    assert by_key["c"].error_code == MALFORMED and not by_key["c"].retryable
    assert by_key["c"].raw is None  # (this BadLine was built without text)
    assert len(caplog.records) == 4  # two bad lines, one duplicate, one unknown key


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": 3, "message": "m"}, ("INVALID_ARGUMENT", "m", False)),
        ({"code": 13}, ("INTERNAL", "INTERNAL", True)),
        ({"code": 429, "message": "slow down"}, ("429", "slow down", True)),
        (
            {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"},
            ("INVALID_ARGUMENT", "bad", False),
        ),
        ({"message": "?"}, ("UNKNOWN", "?", True)),
    ],
)
def test_line_error(error: dict[str, object], expected: tuple[str, str, bool]) -> None:
    assert wire.line_error(error) == expected


def test_retry_info_and_daily_quota() -> None:  # reliability §3.1
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel"}],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": "45.837906927s",
                },
            ],
        }
    }
    assert wire.retry_delay_seconds(body) == pytest.approx(45.837906927)
    assert wire.is_daily_quota(body) is True
    assert wire.retry_delay_seconds([body]) == pytest.approx(45.837906927)  # array envelope
    assert wire.retry_delay_seconds({"error": {"details": []}}) is None
    assert wire.is_daily_quota({"error": {"code": 429}}) is False


def test_parse_timestamp() -> None:  # pitfall 20
    assert wire.parse_timestamp("2025-09-01T04:13:24.263450184Z") == datetime(
        2025, 9, 1, 4, 13, 24, 263450, tzinfo=UTC
    )
    assert wire.parse_timestamp("2025-09-01T04:13:24Z") == datetime(
        2025, 9, 1, 4, 13, 24, tzinfo=UTC
    )
    assert wire.parse_timestamp("2025-09-01T04:13:24") is None  # no zone: unusable
    assert wire.parse_timestamp("yesterday") is None
    assert wire.parse_timestamp(None) is None


def test_interactive_body_flex() -> None:
    line = gen_line("k")
    assert "serviceTier" not in wire.interactive_body(line, flex=False)
    assert wire.interactive_body(line, flex=True)["serviceTier"] == "flex"
    with pytest.raises(ValueError, match="generateContent only"):
        wire.interactive_body(emb_line("e"), flex=True)
    assert wire.interactive_path("gemini-embedding-001", EMB) == (
        "models/gemini-embedding-001:embedContent"
    )


def test_interactive_result() -> None:
    result = wire.interactive_result(emb_line("e"), {"embedding": {"values": [0.1]}})
    assert result.ok and result.usage is None
    bad = wire.interactive_result(emb_line("e"), {"something": 1})
    assert not bad.ok and bad.error_code == MALFORMED and not bad.retryable and bad.raw


@pytest.mark.parametrize(
    ("reported", "tier"),
    [
        ("flex", "flex"),
        ("FLEX", "flex"),
        ("standard", "standard"),
        ("unspecified", None),
        (None, None),
    ],
)
def test_interactive_result_reports_the_tier_that_answered(
    reported: str | None, tier: str | None
) -> None:
    meta: dict[str, object] = {"promptTokenCount": 2, "candidatesTokenCount": 1}
    if reported is not None:
        meta["serviceTier"] = reported
    result = wire.interactive_result(gen_line("g"), {"candidates": [], "usageMetadata": meta})
    assert result.ok and result.tier == tier
