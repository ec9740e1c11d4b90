"""Packing: never over a limit, never drops, duplicates or mixes, oversized items reported,
deterministic received order."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.core.limits import BatchLimits
from planner.core.model import Endpoint
from planner.core.pack import PackGroup, PackItem, PlannedBatch, broken_limit, pack

A = PackGroup("openai", "gpt-4o-mini", Endpoint.CHAT_COMPLETIONS)
B = PackGroup("openai", "gpt-5-mini", Endpoint.CHAT_COMPLETIONS)
E = PackGroup("openai", "text-embedding-3-small", Endpoint.EMBEDDINGS)


def _item(
    key: str, group: PackGroup = A, size: int = 10, tokens: int = 1, inputs: int = 0
) -> PackItem:
    return PackItem(key, group, size, tokens, inputs)


def test_cuts_on_each_limit() -> None:
    limits = BatchLimits(max_requests=3, max_bytes=25, max_enqueued_tokens=100)
    items = [_item("1"), _item("2"), _item("3", size=6), _item("4"), _item("5", tokens=95)]
    # 1+2 = 20 bytes; +3 = 26 > 25 -> cut; 3+4 = 16 bytes, 2 tokens;
    # +5 -> 97 tokens fit, but 26 bytes > 25 -> cut
    result = pack(items, lambda g: limits)
    assert [b.keys for b in result.batches] == [("1", "2"), ("3", "4"), ("5",)]
    assert result.batches[0] == PlannedBatch(A, ("1", "2"), 20, 2, 0, 2)
    assert result.oversized == []


def test_max_requests_and_embedding_inputs() -> None:
    limits = BatchLimits(max_requests=2, max_embedding_inputs=5)
    items = [_item(str(i), E, inputs=2) for i in range(5)]
    # 2 + 2 = 4 inputs; a third would be 6 > 5, and 2 requests is the cap anyway
    assert [b.keys for b in pack(items, lambda g: limits).batches] == [
        ("0", "1"),
        ("2", "3"),
        ("4",),
    ]
    limits = BatchLimits(max_embedding_inputs=5)
    # inputs 2+2 = 4, +2 = 6 > 5 -> cut
    assert [len(b.keys) for b in pack(items, lambda g: limits).batches] == [2, 2, 1]


def test_groups_never_mix_and_order_is_received_order() -> None:
    items = [_item("a1"), _item("b1", B), _item("a2"), _item("b2", B), _item("a3")]
    asked: list[PackGroup] = []

    def limits_for(group: PackGroup) -> BatchLimits:
        asked.append(group)
        return BatchLimits(max_requests=2)

    result = pack(items, limits_for)
    assert [b.keys for b in result.batches] == [("a1", "a2"), ("b1", "b2"), ("a3",)]
    assert asked == [A, B]  # once per group


def test_oversized_items_are_reported_not_dropped() -> None:
    limits = BatchLimits(max_bytes=100, max_enqueued_tokens=50)
    items = [_item("ok"), _item("big", size=101), _item("long", tokens=51), _item("ok2")]
    result = pack(items, lambda g: limits)
    assert [b.keys for b in result.batches] == [("ok", "ok2")]
    assert [(o.item.key, o.limit) for o in result.oversized] == [
        ("big", "max_bytes"),
        ("long", "max_enqueued_tokens"),
    ]


def test_empty_and_unlimited() -> None:
    assert pack([], lambda g: BatchLimits()).batches == []
    items = (_item(str(i)) for i in range(1000))  # any iterable, consumed once
    (batch,) = pack(items, lambda g: BatchLimits()).batches
    assert len(batch.keys) == 1000 and batch.bytes == 10_000


def test_broken_limit_names() -> None:
    limits = BatchLimits(1, 1, 1, 1)
    assert broken_limit(limits, 1, 1, 1, 1) is None
    assert broken_limit(limits, 2, 1, 1, 1) == "max_requests"
    assert broken_limit(limits, 1, 1, 1, 2) == "max_embedding_inputs"


GROUPS = st.sampled_from([A, B, E])
ITEMS = st.lists(
    st.tuples(GROUPS, st.integers(1, 60), st.integers(0, 60), st.integers(0, 6)), max_size=80
)
LIMITS = st.builds(
    BatchLimits,
    max_requests=st.none() | st.integers(1, 8),
    max_bytes=st.none() | st.integers(1, 150),
    max_enqueued_tokens=st.none() | st.integers(0, 150),
    max_embedding_inputs=st.none() | st.integers(0, 12),
)


@settings(max_examples=300, deadline=None)
@given(raw=ITEMS, limits_by_group=st.fixed_dictionaries({A: LIMITS, B: LIMITS, E: LIMITS}))
def test_pack_properties(
    raw: list[tuple[PackGroup, int, int, int]], limits_by_group: dict[PackGroup, BatchLimits]
) -> None:
    items = [
        PackItem(f"k{i}", g, size, tokens, inputs)
        for i, (g, size, tokens, inputs) in enumerate(raw)
    ]
    by_key = {item.key: item for item in items}
    result = pack(items, limits_by_group.__getitem__)

    # nothing dropped, nothing duplicated
    packed = [key for batch in result.batches for key in batch.keys]
    oversized = [o.item.key for o in result.oversized]
    assert Counter(packed + oversized) == Counter(item.key for item in items)

    for batch in result.batches:
        members = [by_key[k] for k in batch.keys]
        limits = limits_by_group[batch.group]
        # never mixes groups; totals are the members' sums
        assert {m.group for m in members} == {batch.group}
        assert batch.bytes == sum(m.line_bytes for m in members)
        assert batch.input_tokens == sum(m.input_tokens for m in members)
        assert batch.embedding_inputs == sum(m.embedding_inputs for m in members)
        # never exceeds any limit
        assert (
            broken_limit(
                limits, len(members), batch.bytes, batch.input_tokens, batch.embedding_inputs
            )
            is None
        )
        # received order inside a batch
        assert list(batch.keys) == sorted(batch.keys, key=lambda k: int(k[1:]))

    # an item is oversized only if it breaks a limit alone
    for o in result.oversized:
        i = o.item
        assert (
            broken_limit(
                limits_by_group[i.group], 1, i.line_bytes, i.input_tokens, i.embedding_inputs
            )
            == o.limit
        )

    # batches ordered by their first item; deterministic
    firsts = [int(b.keys[0][1:]) for b in result.batches]
    assert firsts == sorted(firsts)
    assert pack(items, limits_by_group.__getitem__) == result


def test_without_keys_the_batches_count_the_same() -> None:
    limits = BatchLimits(max_requests=3, max_bytes=25, max_enqueued_tokens=100)
    items = [_item("1"), _item("2"), _item("3", size=6), _item("4"), _item("5", tokens=95)]
    kept = pack(items, lambda g: limits)
    counted = pack(items, lambda g: limits, keys=False)
    # the same cuts (20, 16 and 10 bytes), sizes and counts; no keys held
    assert [(b.requests, b.bytes, b.input_tokens) for b in counted.batches] == [
        (len(b.keys), b.bytes, b.input_tokens) for b in kept.batches
    ]
    assert [b.keys for b in counted.batches] == [(), (), ()]
