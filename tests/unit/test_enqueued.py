"""The learned enqueued-token limit and the packer's queue budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.core.enqueued import (
    LEARNED_LIMIT_TTL,
    LearnedLimit,
    current,
    enqueue_budget,
    is_token_limit,
    learned_from_refusal,
    lowered,
    with_learned,
)
from planner.core.limits import BatchLimits
from planner.core.model import Endpoint
from planner.core.pack import PackGroup, PackItem, pack

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CHAT = PackGroup("openai", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS)
RESP = PackGroup("openai", "gpt-4o-mini", Endpoint.RESPONSES)  # same queue, other endpoint
OTHER = PackGroup("openai", "gpt-5-mini", Endpoint.CHAT_COMPLETIONS)


@pytest.mark.parametrize(
    ("in_flight", "batch", "learned"),
    [
        (500_000, 2_000_000, 500_000),  # others were accepted: the queue holds what they hold
        (0, 2_000_000, 1_000_000),  # alone and refused: half of it
        (0, 1, 1),  # never below one token
    ],
)
def test_what_a_refusal_teaches(in_flight: int, batch: int, learned: int) -> None:
    assert learned_from_refusal(in_flight, batch) == learned


def test_a_learned_limit_only_lowers_and_expires() -> None:
    old = LearnedLimit(1_000, T0)
    assert lowered(old, 5_000, T0 + timedelta(hours=1)) == 1_000  # never raised
    assert lowered(old, 400, T0 + timedelta(hours=1)) == 400
    expired_at = T0 + LEARNED_LIMIT_TTL
    assert current(old, expired_at - timedelta(seconds=1)) == 1_000
    assert current(old, expired_at) is None
    assert lowered(old, 5_000, expired_at) == 5_000  # the old one no longer holds
    assert lowered(None, 5_000, T0) == 5_000


@pytest.mark.parametrize(
    ("configured", "learned", "effective"),
    [(2_000_000, None, 2_000_000), (2_000_000, 300, 300), (100, 300, 100), (None, 300, 300)],
)
def test_min_of_configured_and_learned(
    configured: int | None, learned: int | None, effective: int | None
) -> None:
    limits = BatchLimits(max_requests=10, max_enqueued_tokens=configured)
    got = with_learned(limits, learned)
    assert got.max_enqueued_tokens == effective
    assert got.max_requests == 10


def test_budget_is_what_the_queue_has_left() -> None:
    assert enqueue_budget(None, 10**9) is None
    assert enqueue_budget(1_000, 300) == 700
    assert enqueue_budget(1_000, 5_000) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token_limit_exceeded: Enqueued token limit reached for gpt-4o-mini", True),
        ("429 RESOURCE_EXHAUSTED: Enqueued token limit reached for gemini-2.5-flash", True),
        ("batch_failed: validation", False),
        (None, False),
    ],
)
def test_token_limit_is_recognised(text: str | None, expected: bool) -> None:
    assert is_token_limit(text) is expected


def _item(key: str, tokens: int, group: PackGroup = CHAT) -> PackItem:
    return PackItem(key, group, 100, tokens)


def test_a_refused_batch_is_split_under_the_learned_limit() -> None:
    # 10 requests of 100 tokens; learned limit 250 -> batches of 2 (200), never 3 (300)
    limits = with_learned(BatchLimits(max_enqueued_tokens=2_000_000), 250)
    result = pack([_item(str(i), 100) for i in range(10)], lambda g: limits)
    assert [len(b.keys) for b in result.batches] == [2, 2, 2, 2, 2]
    assert all(b.input_tokens <= 250 for b in result.batches)


def test_the_budget_defers_the_rest_of_a_full_queue_in_order() -> None:
    limits = BatchLimits(max_enqueued_tokens=250)
    items = [
        _item("c1", 100),
        _item("r1", 100, RESP),
        _item("c2", 100),  # 300 > 250 left for gpt-4o-mini: deferred, and so is all after
        _item("o1", 100, OTHER),  # another model's queue has no budget given: packed
        _item("r2", 10, RESP),  # would fit the remaining 50, but the queue is closed
    ]
    result = pack(items, lambda g: limits, {("openai", "gpt-4o-mini"): 250})
    assert sorted(k for b in result.batches for k in b.keys) == ["c1", "o1", "r1"]
    assert [i.key for i in result.deferred] == ["c2", "r2"]
    zero = pack(items, lambda g: limits, {("openai", "gpt-4o-mini"): 0})
    assert [i.key for i in zero.deferred] == ["c1", "r1", "c2", "r2"]


@given(
    tokens=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=60),
    learned=st.integers(min_value=1, max_value=2_000),
    budget=st.integers(min_value=0, max_value=5_000),
)
def test_packing_under_a_learned_limit_and_budget(
    tokens: list[int], learned: int, budget: int
) -> None:
    """Every item ends in exactly one place; no batch over min(configured, learned); packed
    tokens of the queue within the budget; deferred items are a suffix of the queue's order."""
    limits = with_learned(BatchLimits(max_enqueued_tokens=1_500), learned)
    items = [_item(f"k{i}", t) for i, t in enumerate(tokens)]
    result = pack(items, lambda g: limits, {("openai", "gpt-4o-mini"): budget})
    packed = [k for b in result.batches for k in b.keys]
    oversized = [o.item.key for o in result.oversized]
    deferred = [i.key for i in result.deferred]
    assert sorted(packed + oversized + deferred) == sorted(i.key for i in items)
    cap = min(1_500, learned)
    assert all(b.input_tokens <= cap for b in result.batches)
    assert sum(b.input_tokens for b in result.batches) <= budget
    assert all(o.item.input_tokens > cap for o in result.oversized)
    fitting = [i.key for i in items if i.input_tokens <= cap]
    assert fitting == [k for k in fitting if k in packed] + deferred
