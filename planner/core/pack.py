"""Packing batch-bound requests into provider jobs that respect every limit.

One pass, in the order given (the planner gives the earliest deadline first): each group
(provider, model, endpoint, source, deadline band) has one open batch; an item
that would push it past any limit closes it and opens the next. A batch never mixes groups (both
providers allow one model per job). An item that exceeds a limit on its own can never be sent in
a batch; it is returned in ``oversized`` with the limit it breaks, never dropped. Only keys and
running sums are held, not request bodies.

With ``budgets`` (input tokens per (provider, model) that new batches may still hold, see
``core/enqueued.py``), an item that would take its queue past the budget is returned in
``deferred``, and so is every later item of that queue, so the oldest goes first next time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

from planner.core.limits import BatchLimits
from planner.core.model import Endpoint


class PackGroup(NamedTuple):
    """What must be equal for requests to share a batch."""

    provider: str  # the configured provider's name
    model: str
    endpoint: Endpoint
    # keys are unique per source only; one source per batch keeps them unique in its file
    # (custom_id / key) and in the results joined back by key
    source: str = ""
    band: int = 0  # deadline band (``deadline_band``): short slack never rides with long


MAX_BAND = 4  # slack of this many batch windows or more (or no deadline): one band
_NOTHING = timedelta(0)


def deadline_band(slack: timedelta | None, needed: timedelta) -> int:
    """Which deadline band a batch-bound request packs in: ``floor(slack / needed)``, from 1
    (just enough slack for one batch) up to ``MAX_BAND`` (``None``: no deadline). Requests of
    different bands never share a batch, so a request whose deadline comes soon never takes one
    with a long deadline down with it when its batch must be cancelled (the deadline escape)."""
    if slack is None or needed <= _NOTHING:
        return MAX_BAND
    band = slack // needed
    return 1 if band < 1 else MAX_BAND if band > MAX_BAND else band


class PackItem(NamedTuple):
    """One request as the packer sees it. ``line_bytes`` counts its JSONL line with the newline."""

    key: str
    group: PackGroup
    line_bytes: int
    input_tokens: int
    embedding_inputs: int = 0


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """A batch to create: its requests' keys in received order (none when packed with
    ``keys=False``) and its totals."""

    group: PackGroup
    keys: tuple[str, ...]
    bytes: int
    input_tokens: int
    embedding_inputs: int
    requests: int


@dataclass(frozen=True, slots=True)
class Oversized:
    """An item no batch can carry, with the limit it breaks alone."""

    item: PackItem
    limit: str


@dataclass(frozen=True, slots=True)
class PackResult:
    batches: list[PlannedBatch]
    oversized: list[Oversized]
    deferred: list[PackItem] = field(default_factory=list)  # over the queue's budget: wait


QueueKey = tuple[str, str]
"""(provider, model): the enqueued-token queue, shared by every endpoint of the model."""


@dataclass(slots=True)
class _Open:
    """The open batch of one group: running sums and keys (``None``: not kept)."""

    group: PackGroup
    first: int  # received position of its first item, to order the output
    keys: list[str] | None = field(default_factory=list)
    requests: int = 0
    bytes: int = 0
    input_tokens: int = 0
    embedding_inputs: int = 0

    def add(self, item: PackItem) -> None:
        if self.keys is not None:
            self.keys.append(item.key)
        self.requests += 1
        self.bytes += item.line_bytes
        self.input_tokens += item.input_tokens
        self.embedding_inputs += item.embedding_inputs

    def close(self) -> PlannedBatch:
        return PlannedBatch(
            self.group,
            () if self.keys is None else tuple(self.keys),
            self.bytes,
            self.input_tokens,
            self.embedding_inputs,
            self.requests,
        )


def broken_limit(
    limits: BatchLimits, requests: int, size: int, tokens: int, inputs: int
) -> str | None:
    """The first limit the given totals exceed, by name, or ``None`` if they fit."""
    if limits.max_requests is not None and requests > limits.max_requests:
        return "max_requests"
    if limits.max_bytes is not None and size > limits.max_bytes:
        return "max_bytes"
    if limits.max_enqueued_tokens is not None and tokens > limits.max_enqueued_tokens:
        return "max_enqueued_tokens"
    if limits.max_embedding_inputs is not None and inputs > limits.max_embedding_inputs:
        return "max_embedding_inputs"
    return None


class _Caps(NamedTuple):
    """A group's limits with ``None`` as no cap at all, so a check is four comparisons."""

    limits: BatchLimits
    requests: float
    bytes: float
    tokens: float
    inputs: float

    @classmethod
    def of(cls, limits: BatchLimits) -> _Caps:
        def cap(limit: int | None) -> float:
            return math.inf if limit is None else limit

        return cls(
            limits,
            cap(limits.max_requests),
            cap(limits.max_bytes),
            cap(limits.max_enqueued_tokens),
            cap(limits.max_embedding_inputs),
        )

    def over(self, requests: int, size: int, tokens: int, inputs: int) -> bool:
        """Whether the totals exceed any limit (``broken_limit`` says which)."""
        return (
            requests > self.requests
            or size > self.bytes
            or tokens > self.tokens
            or inputs > self.inputs
        )


class _Packer:
    """The single pass; ``limits_for`` is asked once per group."""

    def __init__(
        self,
        limits_for: Callable[[PackGroup], BatchLimits],
        budgets: Mapping[QueueKey, int] | None = None,
        keys: bool = True,
    ) -> None:
        self._limits_for = limits_for
        self._keys = keys
        self._caps: dict[PackGroup, _Caps] = {}
        self._open: dict[PackGroup, _Open] = {}
        self._budgets = dict(budgets or {})
        self._full: set[QueueKey] = set()
        self.closed: list[_Open] = []
        self.oversized: list[Oversized] = []
        self.deferred: list[PackItem] = []

    def _caps_of(self, group: PackGroup) -> _Caps:
        caps = self._caps.get(group)
        if caps is None:
            caps = self._caps[group] = _Caps.of(self._limits_for(group))
        return caps

    def _admitted(self, item: PackItem) -> bool:
        """Charge the item to its queue's budget; ``False`` (and the queue closed) if over."""
        key = (item.group.provider, item.group.model)
        budget = self._budgets.get(key)
        if budget is None:
            return True
        if key in self._full or item.input_tokens > budget:
            self._full.add(key)
            return False
        self._budgets[key] = budget - item.input_tokens
        return True

    def add(self, position: int, item: PackItem) -> None:
        group = item.group
        caps = self._caps_of(group)
        size, tokens, inputs = item.line_bytes, item.input_tokens, item.embedding_inputs
        if caps.over(1, size, tokens, inputs):
            broken = broken_limit(caps.limits, 1, size, tokens, inputs)
            assert broken is not None
            self.oversized.append(Oversized(item, broken))
            return
        if self._budgets and not self._admitted(item):
            self.deferred.append(item)
            return
        batch = self._open.get(group)
        if batch is None or caps.over(
            batch.requests + 1,
            batch.bytes + size,
            batch.input_tokens + tokens,
            batch.embedding_inputs + inputs,
        ):
            if batch is not None:
                self.closed.append(batch)
            batch = self._open[group] = _Open(group, position, [] if self._keys else None)
        batch.add(item)

    def result(self) -> PackResult:
        batches = sorted([*self.closed, *self._open.values()], key=lambda b: b.first)
        return PackResult([b.close() for b in batches], self.oversized, self.deferred)


def pack(
    items: Iterable[PackItem],
    limits_for: Callable[[PackGroup], BatchLimits],
    budgets: Mapping[QueueKey, int] | None = None,
    *,
    keys: bool = True,
) -> PackResult:
    """Pack ``items`` (in received order) into batches; O(n) plus sorting the batches.
    ``keys=False``: the batches count their requests but keep no keys (the dry run shows
    sizes only, so its memory does not grow with the requests)."""
    packer = _Packer(limits_for, budgets, keys)
    for position, item in enumerate(items):
        packer.add(position, item)
    return packer.result()
