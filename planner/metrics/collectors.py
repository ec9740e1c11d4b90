"""Metrics read from the store at scrape time: queue depth, batches, the ledger's money.

Why at scrape time and not counted as events: the store is the truth, shared by every replica
and kept across restarts. A counter this process incremented would start again at 0 after a
restart (or from whatever it was given), drift from the ledger by float additions, and be born
holding its first increment (``increase()`` never sees it). A collector that asks the store on
every scrape has none of these faults: the money counters *are* the ledger's decimal sums,
converted to float once, here (spec reliability-and-operations §5.3).

:class:`StoreCollector` exports queue depth and batches by state, the oldest pending and the
oldest uncollected batch, the ledger totals (money and billed tokens by source, provider,
model and lane) and the configured budgets' windows. The store is asked through injected
callables (the runtime composes them), so this module never imports the store. The answer is
cached for ``cache_seconds`` (a scrape every few seconds does not rescan the ledger each time),
and a failing read is counted in ``planner_collector_errors_total`` and leaves the store series
out of that scrape rather than exporting stale or zero values.

Every (source, provider, model, lane) group in ``primed`` is exported from the first scrape, at
0 until the ledger has rows for it, so the first result of a group is an increase Prometheus
sees; groups the ledger has but ``primed`` does not (a source since removed) are exported too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from planner.core.model import Lane
from planner.core.states import BatchState, RequestState

log = logging.getLogger(__name__)

OLDEST_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "pending_batch",
        "planner_batch_oldest_pending_timestamp_seconds",
        "Unix time the oldest batch still pending at the provider was submitted.",
    ),
    (
        "uncollected_batch",
        "planner_batch_oldest_uncollected_timestamp_seconds",
        "Unix time the oldest finished but not yet collected batch finished.",
    ),
)

BUDGET_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("budget_limit", "planner_budget_limit_usd", "USD the budget may spend in its window."),
    (
        "budget_spent",
        "planner_budget_spent_usd",
        "USD billed (the ledger) in the budget's current window.",
    ),
    (
        "budget_reserved",
        "planner_budget_reserved_usd",
        "USD reserved by work in flight under the budget (each request's upper bound).",
    ),
    (
        "budget_remaining",
        "planner_budget_remaining_usd",
        "USD left in the window: limit - spent - reserved, never below 0.",
    ),
)
"""Labels ``budget`` (``policy:<name>`` / ``source:<name>``) and ``period``; only configured
budgets have series (``core/budget.py``)."""

GROUP_LABELS = ["source", "provider", "model", "lane"]

MONEY: tuple[tuple[str, str, str], ...] = (
    ("cost", "planner_cost_usd", "Actual cost in USD: the store's ledger, summed exactly."),
    (
        "equiv",
        "planner_interactive_equivalent_cost_usd",
        "What the same requests would have cost on the interactive API, in USD (ledger).",
    ),
    (
        "savings",
        "planner_savings_usd",
        "Interactive-equivalent cost minus actual cost, in USD: the ledger's saving, exactly "
        "what planner report shows.",
    ),
    (
        "overspend",
        "planner_overspend_usd",
        "Actual cost above the interactive equivalent, in USD, summed over the ledger rows "
        "where it happened (should stay 0).",
    ),
)
TOKEN_KINDS = ("input", "cached", "output")


class SpendRow(Protocol):
    """One ledger group as ``store.ledger.spend`` sums it (exact decimals)."""

    source: str
    provider: str | None
    model: str
    lane: Lane
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    interactive_equiv_usd: Decimal
    savings_usd: Decimal
    overspend_usd: Decimal


@dataclass(frozen=True, slots=True)
class StoreReading:
    """What the store says at one scrape."""

    requests: Mapping[str, int] = field(default_factory=dict)  # by state
    batches: Mapping[str, int] = field(default_factory=dict)  # by state
    oldest: Mapping[str, datetime] = field(default_factory=dict)  # OLDEST_GAUGES keys
    spend: Iterable[SpendRow] = ()  # the ledger's all-time groups
    # BUDGET_GAUGES keys -> {"<scope>:<name>/<period>": usd}, configured budgets only
    budgets: Mapping[str, Mapping[str, Decimal | float]] = field(default_factory=dict)


@dataclass(slots=True)
class _Group:
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    money: dict[str, Decimal] = field(default_factory=lambda: {k: Decimal(0) for k, *_ in MONEY})


Group = tuple[str, str, str, str]
"""(source, provider, model, lane) label values."""


class StoreCollector(Collector):
    """The store-derived series, asked of ``read`` at scrape time (module docstring)."""

    def __init__(
        self,
        read: Callable[[], StoreReading],
        *,
        model_label: Callable[[str], str] = lambda m: m,
        primed: Collection[Group] = (),
        cache_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_store = read
        self._model_label = model_label
        self.primed: frozenset[Group] = frozenset(primed)
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cached: tuple[float, StoreReading] | None = None
        self._errors = 0
        self._last_duration = 0.0

    def _read(self) -> StoreReading | None:
        start = self._monotonic()
        if self._cached is not None and start - self._cached[0] < self._cache_seconds:
            return self._cached[1]
        try:
            reading = self._read_store()
            # read the ledger rows now, inside the timed, guarded call
            reading = replace(reading, spend=list(reading.spend))
        except Exception:
            self._errors += 1
            log.exception("store read for metrics failed", extra={"event": "metrics.store_failed"})
            return None
        finally:
            self._last_duration = max(0.0, self._monotonic() - start)
        self._cached = (start, reading)
        return reading

    def collect(self) -> Iterable[Metric]:
        reading = self._read()
        duration = GaugeMetricFamily(
            "planner_collector_duration_seconds",
            "Seconds the last store query for the scrape took.",
        )
        duration.add_metric([], self._last_duration)
        errors = CounterMetricFamily(
            "planner_collector_errors", "Store queries for a scrape that failed."
        )
        errors.add_metric([], float(self._errors))
        yield duration
        yield errors
        if reading is None:
            return
        yield _by_state(
            "planner_requests",
            "Requests in the store by state (queue depth).",
            [s.value for s in RequestState],
            reading.requests,
        )
        yield _by_state(
            "planner_batches",
            "Batches in the store by state.",
            [s.value for s in BatchState],
            reading.batches,
        )
        for key, name, doc in OLDEST_GAUGES:
            family = GaugeMetricFamily(name, doc)
            if key in reading.oldest:
                family.add_metric([], reading.oldest[key].timestamp())
            yield family
        yield from self._ledger(reading.spend)
        for key, name, doc in BUDGET_GAUGES:
            budget = GaugeMetricFamily(name, doc, labels=["budget", "period"])
            for window, usd in sorted(reading.budgets.get(key, {}).items()):
                budget.add_metric(list(window.rsplit("/", 1)), float(usd))
            yield budget

    def _ledger(self, spend: Iterable[SpendRow]) -> Iterable[Metric]:
        groups: dict[Group, _Group] = {g: _Group() for g in self.primed}
        for row in spend:
            labels = (
                row.source,
                row.provider or "unknown",
                self._model_label(row.model),
                str(row.lane),
            )
            group = groups.setdefault(labels, _Group())
            group.tokens["input"] += row.input_tokens
            group.tokens["cached"] += row.cached_input_tokens
            group.tokens["output"] += row.output_tokens
            group.money["cost"] += row.cost_usd
            group.money["equiv"] += row.interactive_equiv_usd
            group.money["savings"] += row.savings_usd
            group.money["overspend"] += row.overspend_usd
        order = sorted(groups)
        for key, name, doc in MONEY:
            family = CounterMetricFamily(name, doc, labels=GROUP_LABELS)
            for labels in order:
                family.add_metric(list(labels), float(groups[labels].money[key]))  # exact sum
            yield family
        tokens = CounterMetricFamily(
            "planner_tokens_billed",
            "Tokens the provider billed, from the ledger; kind is input, cached (a part of "
            "input) or output.",
            labels=[*GROUP_LABELS, "kind"],
        )
        for labels in order:
            for kind in TOKEN_KINDS:
                tokens.add_metric([*labels, kind], float(groups[labels].tokens[kind]))
        yield tokens

    def describe(self) -> Iterable[Metric]:
        # Describing without querying the store: registration must not touch the database.
        return [
            GaugeMetricFamily("planner_collector_duration_seconds", ""),
            CounterMetricFamily("planner_collector_errors", ""),
            GaugeMetricFamily("planner_requests", "", labels=["state"]),
            GaugeMetricFamily("planner_batches", "", labels=["state"]),
            *(GaugeMetricFamily(name, "") for _, name, _ in OLDEST_GAUGES),
            *(CounterMetricFamily(name, "", labels=GROUP_LABELS) for _, name, _ in MONEY),
            CounterMetricFamily("planner_tokens_billed", "", labels=[*GROUP_LABELS, "kind"]),
            *(GaugeMetricFamily(n, "", labels=["budget", "period"]) for _, n, _ in BUDGET_GAUGES),
        ]


def _by_state(
    name: str, doc: str, known: list[str], counts: Mapping[str, int]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["state"])
    for state in [*known, *sorted(set(counts) - set(known))]:
        family.add_metric([state], float(counts.get(state, 0)))
    return family
