"""planner.metrics on a fresh registry per test, read back with get_sample_value."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from planner.core.model import Lane
from planner.core.states import BatchState, RequestState
from planner.errors import AuthFailed, PlannerError, ProviderError, RateLimited, Transient
from planner.metrics import (
    BATCH_TURNAROUND_BUCKETS,
    OTHER_MODEL,
    STAGES,
    ErrorKind,
    Metrics,
    StoreCollector,
    StoreReading,
    error_kind,
)

P, M = "gemini", "gemini-2.5-flash"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, process_metrics=False)


def test_ingested_and_quarantined_by_source(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.record_ingested("spool", 3)
    metrics.record_ingested("spool")
    metrics.record_quarantined("spool", "bad_json", 2)
    get = registry.get_sample_value
    assert get("planner_requests_ingested_total", {"source": "spool"}) == 4
    assert get("planner_lines_quarantined_total", {"source": "spool", "reason": "bad_json"}) == 2


@dataclass
class Row:
    """A ledger group as store.ledger.spend returns it."""

    source: str
    provider: str | None
    model: str
    lane: Lane
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    interactive_equiv_usd: Decimal = Decimal(0)
    savings_usd: Decimal = Decimal(0)
    overspend_usd: Decimal = Decimal(0)


def test_money_is_the_ledger_read_at_scrape_time(registry: CollectorRegistry) -> None:
    """Exact decimal sums converted once, no float drift; a restart (a fresh registry) exports
    the same totals; every primed group is there at 0 before its first bill."""
    rows = [
        Row("spool", P, M, Lane.BATCH, 1000, 300, 200, Decimal("0.000385"), Decimal("0.00077")),
        Row("spool", P, M, Lane.BATCH, 10, 0, 5, Decimal("0.000770"), Decimal("0.00154")),
        Row("spool", P, "typed-by-a-user", Lane.FLEX, 1, 0, 1, Decimal("0.1"), Decimal("0.1")),
    ]
    for row in rows:
        row.savings_usd = row.interactive_equiv_usd - row.cost_usd
    primed = [("spool", P, M, lane.value) for lane in Lane]

    def read() -> StoreReading:
        return StoreReading(spend=list(rows))

    for _restart in range(2):
        registry = CollectorRegistry()
        metrics = Metrics(registry, known_models={M}, store=read, process_metrics=False)
        metrics.prime_ledger(primed)
        get = registry.get_sample_value
        batch = {"source": "spool", "provider": P, "model": M, "lane": "batch"}
        assert get("planner_cost_usd_total", batch) == 0.001155  # 0.000385 + 0.000770, exactly
        assert get("planner_interactive_equivalent_cost_usd_total", batch) == 0.00231
        assert get("planner_savings_usd_total", batch) == 0.001155
        assert get("planner_overspend_usd_total", batch) == 0
        for kind, n in (("input", 1010), ("cached", 300), ("output", 205)):
            assert get("planner_tokens_billed_total", {**batch, "kind": kind}) == n
        flex = {**batch, "lane": "flex"}
        assert get("planner_savings_usd_total", flex) == 0  # primed, nothing billed yet
        other = {**batch, "model": OTHER_MODEL, "lane": "flex"}
        assert get("planner_cost_usd_total", other) == 0.1  # unknown models collapse
    rows.append(
        Row("spool", P, M, Lane.INTERACTIVE, 1, 0, 1, Decimal("0.5"), Decimal("0.4"),
            Decimal("-0.1"), Decimal("0.1"))
    )  # fmt: skip
    interactive = {"source": "spool", "provider": P, "model": M, "lane": "interactive"}
    assert registry.get_sample_value("planner_overspend_usd_total", interactive) == 0.1
    assert registry.get_sample_value("planner_savings_usd_total", interactive) == -0.1


def test_estimate_tokens_and_error_ratio(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.record_estimate(P, M, 900, 150)
    metrics.record_estimate_error(P, M, 990, 900)
    metrics.record_estimate_error(P, M, 990, None)  # no estimate: nothing to compare
    get = registry.get_sample_value
    assert (
        get("planner_tokens_estimated_total", {"provider": P, "model": M, "kind": "input"}) == 900
    )
    assert (
        get("planner_tokens_estimated_total", {"provider": P, "model": M, "kind": "output"}) == 150
    )
    # 990 / 900 = 1.1: inside the 1.1 bucket, outside 1.05
    labels = {"provider": P, "model": M}
    assert get("planner_estimate_error_ratio_bucket", {**labels, "le": "1.1"}) == 1
    assert get("planner_estimate_error_ratio_bucket", {**labels, "le": "1.05"}) == 0
    assert get("planner_estimate_error_ratio_sum", labels) == pytest.approx(1.1)
    assert get("planner_estimate_error_ratio_count", labels) == 1


def test_unknown_models_collapse_to_other(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, known_models={M}, process_metrics=False)
    metrics.record_batch_submitted(P, "user-typed-anything")
    metrics.record_batch_submitted(P, M)
    get = registry.get_sample_value
    assert get("planner_batches_submitted_total", {"provider": P, "model": OTHER_MODEL}) == 1
    assert get("planner_batches_submitted_total", {"provider": P, "model": M}) == 1


def test_turnaround_buckets_reach_48h(metrics: Metrics, registry: CollectorRegistry) -> None:
    assert max(BATCH_TURNAROUND_BUCKETS) == 48 * 3600
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    metrics.record_batch_finished(P, M, t0, t0 + timedelta(hours=25))
    labels = {"provider": P, "model": M}
    get = registry.get_sample_value
    assert get("planner_batch_turnaround_seconds_bucket", {**labels, "le": "86400.0"}) == 0
    assert get("planner_batch_turnaround_seconds_bucket", {**labels, "le": "108000.0"}) == 1
    assert get("planner_batch_turnaround_seconds_sum", labels) == 25 * 3600


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RateLimited("slow down project-x", retry_after=3), ErrorKind.RATE_LIMITED),
        (Transient("upstream connect error"), ErrorKind.TRANSIENT),
        (AuthFailed("invalid key for org-y"), ErrorKind.AUTH_FAILED),
        (ProviderError("an odd failure"), ErrorKind.OTHER),
    ],
)
def test_provider_errors_are_labelled_by_class_not_message(
    metrics: Metrics, registry: CollectorRegistry, error: ProviderError, kind: ErrorKind
) -> None:
    assert error_kind(error) is kind
    metrics.record_provider_error(P, error)
    assert (
        registry.get_sample_value(
            "planner_provider_errors_total", {"provider": P, "kind": kind.value}
        )
        == 1
    )
    assert str(error) not in generate_latest(registry).decode()


def test_stage_runs_budget_duplicates_reload(metrics: Metrics, registry: CollectorRegistry) -> None:
    get = registry.get_sample_value
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    for stage in STAGES:  # pre-created at 0 so alerts see them before the first run
        assert get("planner_stage_last_success_timestamp_seconds", {"stage": stage}) == 0
    metrics.record_stage_run("submit", ok=True, finished_at=now, duration_seconds=1.5)
    metrics.record_stage_run("submit", ok=False, finished_at=now, duration_seconds=0.2)
    assert get("planner_stage_last_success_timestamp_seconds", {"stage": "submit"}) == (
        now.timestamp()
    )
    assert get("planner_stage_failures_total", {"stage": "submit"}) == 1
    assert get("planner_stage_duration_seconds_count", {"stage": "submit"}) == 2
    metrics.set_stage_interval("poll", 60)
    assert get("planner_stage_interval_seconds", {"stage": "poll"}) == 60
    assert get("planner_duplicate_batches_total", {"provider": P}) is None
    metrics.prime(providers=[P])
    assert get("planner_duplicate_batches_total", {"provider": P}) == 0
    metrics.record_duplicate_batch(P)
    assert get("planner_duplicate_batches_total", {"provider": P}) == 1
    assert get("planner_config_reload_success") == 1
    metrics.record_config_reload(False)
    assert get("planner_config_reload_success") == 0
    metrics.set_circuit_open(P, True)
    assert get("planner_circuit_open", {"provider": P}) == 1


def test_prime_creates_every_combination_at_zero(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.prime(sources=["spool"], models=[(P, M)], reasons=["invalid_json", "schema"])
    get = registry.get_sample_value
    assert get("planner_requests_ingested_total", {"source": "spool"}) == 0
    assert get("planner_stage_last_success_timestamp_seconds", {"stage": "ingest:spool"}) == 0
    for reason in ("invalid_json", "schema"):
        labels = {"source": "spool", "reason": reason}
        assert get("planner_lines_quarantined_total", labels) == 0
    for kind in ErrorKind:
        assert get("planner_provider_errors_total", {"provider": P, "kind": kind.value}) == 0
    # no budget is configured: no placeholder series an alert or a panel would read as $0 left
    samples = [s.name for f in registry.collect() for s in f.samples]
    assert "planner_budget_remaining_usd" not in samples


def test_store_gauges_are_read_at_scrape_time(registry: CollectorRegistry) -> None:
    counts: dict[str, Any] = {"requests": {"queued": 5}, "batches": {"running": 2}}
    Metrics(registry, store=lambda: StoreReading(**counts), process_metrics=False)
    get = registry.get_sample_value
    assert get("planner_requests", {"state": "queued"}) == 5
    assert get("planner_batches", {"state": "running"}) == 2
    for state in RequestState:
        assert get("planner_requests", {"state": state.value}) is not None
    for bstate in BatchState:
        assert get("planner_batches", {"state": bstate.value}) is not None
    counts["requests"]["queued"] = 1  # the store changed; the next scrape sees it
    assert get("planner_requests", {"state": "queued"}) == 1
    # A fresh Metrics (a restart) reports the store's numbers, not zero.
    again = CollectorRegistry()
    Metrics(again, store=lambda: StoreReading(**counts), process_metrics=False)
    assert again.get_sample_value("planner_requests", {"state": "queued"}) == 1


def test_store_collector_failure_is_counted_not_raised(registry: CollectorRegistry) -> None:
    def broken() -> StoreReading:
        raise PlannerError("database is locked")

    Metrics(registry, store=broken, process_metrics=False)
    assert registry.get_sample_value("planner_requests", {"state": "queued"}) is None
    assert registry.get_sample_value("planner_collector_errors_total") == 2  # two scrapes


def test_store_collector_caches_within_its_window() -> None:
    calls: list[int] = []
    now = [100.0]

    def counts() -> StoreReading:
        calls.append(1)
        return StoreReading(requests={"queued": len(calls)})

    collector = StoreCollector(counts, cache_seconds=5, monotonic=lambda: now[0])
    registry = CollectorRegistry()
    registry.register(collector)
    assert registry.get_sample_value("planner_requests", {"state": "queued"}) == 1
    now[0] = 104.0
    assert registry.get_sample_value("planner_requests", {"state": "queued"}) == 1
    now[0] = 105.5
    assert registry.get_sample_value("planner_requests", {"state": "queued"}) == 2


def test_escapes_and_token_limit_refusals(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.prime(sources=[], models=[(P, M)])
    get = registry.get_sample_value
    assert get("planner_batch_escapes_total", {"provider": P}) == 0
    assert get("planner_token_limit_refusals_total", {"provider": P, "model": M}) == 0
    metrics.record_batch_escape(P)
    metrics.record_token_limit_refusal(P, M)
    metrics.record_token_limit_refusal(P, M)
    assert get("planner_batch_escapes_total", {"provider": P}) == 1
    assert get("planner_token_limit_refusals_total", {"provider": P, "model": M}) == 2


def test_names_follow_the_conventions(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, store=StoreReading, process_metrics=False)
    for family in registry.collect():
        assert family.name.startswith("planner_"), family.name
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client adds it once
    names = metrics.metric_names()
    for required in (
        "planner_requests_ingested_total",
        "planner_lines_quarantined_total",
        "planner_tokens_estimated_total",
        "planner_tokens_billed_total",
        "planner_cost_usd_total",
        "planner_interactive_equivalent_cost_usd_total",
        "planner_savings_usd_total",
        "planner_batches_submitted_total",
        "planner_batch_turnaround_seconds_bucket",
        "planner_estimate_error_ratio_bucket",
        "planner_provider_errors_total",
        "planner_duplicate_batches_total",
        "planner_budget_remaining_usd",
        "planner_stage_last_success_timestamp_seconds",
        "planner_requests",
        "planner_batches",
        "planner_build_info",
    ):
        assert required in names, required


def test_two_registries_are_independent() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    Metrics(a, process_metrics=False).record_ingested("spool", 7)
    Metrics(b, process_metrics=False)
    assert a.get_sample_value("planner_requests_ingested_total", {"source": "spool"}) == 7
    assert b.get_sample_value("planner_requests_ingested_total", {"source": "spool"}) is None


def test_process_metrics_on_the_injected_registry(registry: CollectorRegistry) -> None:
    Metrics(registry)
    assert (registry.get_sample_value("process_start_time_seconds") or 0) > 0


def test_budget_gauges_only_for_configured_budgets(registry: CollectorRegistry) -> None:
    counts: dict[str, dict[str, float]] = {
        "budget_limit": {"policy:default/day": 5.0, "source:spool/month": 100.0},
        "budget_spent": {"policy:default/day": 1.25, "source:spool/month": 0.0},
        "budget_reserved": {"policy:default/day": 2.5, "source:spool/month": 0.0},
        "budget_remaining": {"policy:default/day": 1.25, "source:spool/month": 100.0},
    }
    Metrics(registry, store=lambda: StoreReading(budgets=counts), process_metrics=False)
    get = registry.get_sample_value
    day = {"budget": "policy:default", "period": "day"}
    assert get("planner_budget_limit_usd", day) == 5.0
    assert get("planner_budget_spent_usd", day) == 1.25
    assert get("planner_budget_reserved_usd", day) == 2.5
    assert get("planner_budget_remaining_usd", day) == 1.25
    month = {"budget": "source:spool", "period": "month"}
    assert get("planner_budget_limit_usd", month) == 100.0
    assert get("planner_budget_limit_usd", {"budget": "policy:default", "period": "month"}) is None
    counts.clear()  # no budget configured: no budget series at all
    assert get("planner_budget_limit_usd", day) is None


def test_oldest_batch_timestamps_only_when_the_store_has_one(registry: CollectorRegistry) -> None:
    t = datetime.fromtimestamp(1_764_000_000, UTC)
    counts: dict[str, Any] = {"oldest": {"pending_batch": t}}
    Metrics(registry, store=lambda: StoreReading(**counts), process_metrics=False)
    get = registry.get_sample_value
    assert get("planner_batch_oldest_pending_timestamp_seconds") == 1_764_000_000
    assert get("planner_batch_oldest_uncollected_timestamp_seconds") is None
    counts["oldest"] = {}
    assert get("planner_batch_oldest_pending_timestamp_seconds") is None
