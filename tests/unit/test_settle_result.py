"""What a settle reports to the observer (``pipeline/deliver.SettleResult``): exact sums and the
input tokens behind the estimate-error metric, the same whether a batch is settled whole or in
chunks, and no request kept."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.core.model import Endpoint, Request, TokenEstimate, Usage
from planner.core.states import RequestState
from planner.pipeline.deliver import SettleResult
from planner.store.requests import StoredRequest

NOW = datetime(2026, 12, 6, tzinfo=UTC)
prices = st.none() | st.decimals(0, 5, places=6)
billed = st.tuples(
    st.sampled_from(["spool", "nightly"]),
    st.sampled_from([None, "openai", "gemini"]),
    st.sampled_from(["gpt-4o-mini", "text-embedding-3-small"]),
    st.integers(0, 10**6),  # billed input tokens
    st.none() | st.integers(0, 10**6),  # estimated input tokens
    prices,  # cost
    prices,  # interactive equivalent
)


def _stored(source: str, provider: str | None, model: str, estimated: int | None) -> StoredRequest:
    request = Request(source, "k", model, Endpoint.CHAT_COMPLETIONS, {}, NOW)
    estimate = None if estimated is None else TokenEstimate(estimated, 0, "tiktoken")
    return StoredRequest(
        1, request, RequestState.SUBMITTED, 1, provider, None, None, estimate, None
    )


@settings(max_examples=200, deadline=None)
@given(items=st.lists(billed, max_size=12), cut=st.integers(1, 5))
def test_a_settle_in_chunks_reports_what_one_settle_would(
    items: list[tuple[Any, ...]], cut: int
) -> None:
    whole, chunked = SettleResult(), SettleResult()
    for start in range(0, len(items), cut):
        part = SettleResult()
        for source, provider, model, used, estimated, cost, equiv in items[start : start + cut]:
            stored = _stored(source, provider, model, estimated)
            part.bill(stored, Usage(input_tokens=used, output_tokens=0), cost, equiv)
            whole.bill(stored, Usage(input_tokens=used, output_tokens=0), cost, equiv)
        chunked.add(part)
    priced = [(c, e) for *_, c, e in items if c is not None]
    assert whole.cost_usd == chunked.cost_usd == sum((c for c, _ in priced), Decimal(0))
    saved = sum((e - c for c, e in priced if e is not None), Decimal(0))
    assert whole.saved_usd == chunked.saved_usd == saved
    assert whole.sources == chunked.sources == {s for s, *_ in items}
    expected: dict[tuple[str, str], list[int]] = {}
    for _, provider, model, used, estimated, _, _ in items:
        if estimated is not None:
            expected.setdefault((provider or "unknown", model), []).extend((used, estimated))
    for result in (whole, chunked):
        assert {g: list(pairs) for g, pairs in result.input_tokens.items()} == expected
