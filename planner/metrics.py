"""Every Prometheus metric planner exports, defined once, on an injected registry.

Why a class on an injected ``CollectorRegistry`` and not module globals: a fresh registry per
test keeps tests independent (``registry.get_sample_value``), and a reload never registers a
metric twice. The pipeline calls the ``record_*`` helpers; nothing else touches the metric
objects, so names, labels and units live here only.

Conventions (DESIGN "Metrics", specs/reliability-and-operations.md §5):

- prefix ``planner_``; counters end in ``_total``; durations in ``_seconds``; times of events
  are ``_timestamp_seconds`` (timestamps, not ages); money in ``_usd`` (a documented local
  convention: Prometheus has no currency unit and we never add a ``currency`` label).
- labels come from bounded sets only: ``source``, ``provider``, ``model`` (the canonical catalog
  name; anything outside ``known_models`` becomes ``"other"``), ``mode`` (the lane: batch,
  interactive, flex), ``state``, ``stage``, ``kind``, ``reason``, ``budget`` (a configured
  budget), ``period``. Never a request id, batch id, file name or error message.

Money: the store's ``Decimal`` ledger is the source of truth. Prometheus samples are floats, so
the money counters here are a *derived view*: the pipeline increments them right after the
commit that records the amount (STYLE 8), converting with ``float()`` only at this boundary.
After a restart the counters start again at zero (``increase()``/``rate()`` handle the reset);
``planner report`` reads the ledger for exact totals.

Queue depth and batches by state are *store-derived*: :class:`StoreCollector` calls an injected
callable at scrape time, so a restart never resets them and replicas agree (§5.3).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from planner.core.model import Lane
from planner.core.states import BatchState, RequestState
from planner.errors import (
    AuthFailed,
    NotFound,
    Permanent,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    Transient,
)

__all__ = [
    "BATCH_TURNAROUND_BUCKETS",
    "ESTIMATE_ERROR_BUCKETS",
    "OTHER_MODEL",
    "STAGES",
    "ErrorKind",
    "Metrics",
    "StoreCollector",
    "StoreCounts",
    "error_kind",
    "ingest_stage",
]

log = logging.getLogger(__name__)

OTHER_MODEL = "other"

STAGES: tuple[str, ...] = ("submit", "flush", "interactive", "poll", "housekeeping")
"""The daemon's jobs (``runtime/daemon.py``), besides one ``ingest:<source>`` per source; each
exports its last success and its configured interval."""


def ingest_stage(source: str) -> str:
    """The stage label of one source's ingest job."""
    return f"ingest:{source}"


BATCH_TURNAROUND_BUCKETS: tuple[float, ...] = tuple(
    float(s)
    for s in (
        60,
        300,
        900,
        1800,
        3600,
        2 * 3600,
        4 * 3600,
        8 * 3600,
        12 * 3600,
        18 * 3600,
        24 * 3600,
        30 * 3600,
        36 * 3600,
        48 * 3600,
    )
)
"""Submit-to-finished seconds: minutes to the 24 h target, and on to 48 h for expiry."""

ESTIMATE_ERROR_BUCKETS: tuple[float, ...] = (
    0.5,
    0.75,
    0.9,
    0.95,
    0.99,
    1.0,
    1.01,
    1.05,
    1.1,
    1.25,
    1.5,
    2.0,
)
"""actual / estimated input tokens; 1.0 is a perfect estimate."""

STAGE_DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

StoreCounts = Mapping[str, Mapping[str, float | Decimal]]
"""What the store reports at scrape time::

    {"requests": {state: n, ...},
     "batches": {state: n, ...},
     "oldest": {"pending_batch": unix_seconds,       # submitted, not finished at the provider
                "uncollected_batch": unix_seconds},  # finished, results not yet collected
     "budget_limit": {"policy:default/day": usd, ...},   # one key per configured budget window
     "budget_spent": {...}, "budget_reserved": {...}, "budget_remaining": {...}}

``"oldest"`` and each of its keys are optional: leave a key out when no batch is in that
condition (the gauge then has no sample, so its alert cannot fire on a placeholder). The
budget maps hold only the budgets that are configured (``core/budget.py``); their keys are
``<scope>:<name>/<period>``.
"""

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
"""Store-derived, labels ``budget`` (``policy:<name>`` / ``source:<name>``) and ``period``."""

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


class ErrorKind(StrEnum):
    """The closed set of ``kind`` label values of ``planner_provider_errors_total``."""

    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    PERMANENT = "permanent"
    NOT_FOUND = "not_found"
    AUTH_FAILED = "auth_failed"
    OTHER = "other"


_ERROR_KINDS: tuple[tuple[type[ProviderError], ErrorKind], ...] = (
    (RateLimited, ErrorKind.RATE_LIMITED),
    (QuotaExceeded, ErrorKind.QUOTA_EXCEEDED),
    (Transient, ErrorKind.TRANSIENT),
    (Permanent, ErrorKind.PERMANENT),
    (NotFound, ErrorKind.NOT_FOUND),
    (AuthFailed, ErrorKind.AUTH_FAILED),
)


def error_kind(error: ProviderError) -> ErrorKind:
    """The label value for a provider error: its class in the tree, never its message."""
    for cls, kind in _ERROR_KINDS:
        if isinstance(error, cls):
            return kind
    return ErrorKind.OTHER


def _usd(amount: Decimal) -> float:
    """The one Decimal -> float conversion, at the metrics boundary only."""
    return float(amount)


class StoreCollector(Collector):
    """Queue depth and batches by state, asked of the store at scrape time.

    Every known state is exported, at 0 when the store has none ("avoid missing metrics"), and
    states the store reports that we do not know are exported as they come (the state enums are
    closed, so that set stays bounded). A failing callable is counted in
    ``planner_collector_errors_total`` and the store series are left out of that scrape rather
    than exported stale.
    """

    def __init__(
        self,
        counts: Callable[[], StoreCounts],
        *,
        cache_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counts = counts
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cached: tuple[float, StoreCounts] | None = None
        self._errors = 0
        self._last_duration = 0.0

    def _now(self) -> float:
        return self._monotonic()

    def _read(self) -> StoreCounts | None:
        start = self._now()
        if self._cached is not None and start - self._cached[0] < self._cache_seconds:
            return self._cached[1]
        try:
            counts = self._counts()
        except Exception:
            self._errors += 1
            log.exception("store counts failed", extra={"event": "metrics.store_counts_failed"})
            return None
        finally:
            self._last_duration = max(0.0, self._now() - start)
        self._cached = (start, counts)
        return counts

    def collect(self) -> Iterable[Metric]:
        counts = self._read()
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
        if counts is None:
            return
        yield _by_state(
            "planner_requests",
            "Requests in the store by state (queue depth).",
            [s.value for s in RequestState],
            counts.get("requests", {}),
        )
        yield _by_state(
            "planner_batches",
            "Batches in the store by state.",
            [s.value for s in BatchState],
            counts.get("batches", {}),
        )
        oldest = counts.get("oldest", {})
        for key, name, doc in OLDEST_GAUGES:
            family = GaugeMetricFamily(name, doc)
            if key in oldest:
                family.add_metric([], float(oldest[key]))
            yield family
        for key, name, doc in BUDGET_GAUGES:
            budget = GaugeMetricFamily(name, doc, labels=["budget", "period"])
            for window, usd in sorted(counts.get(key, {}).items()):
                budget.add_metric(list(window.rsplit("/", 1)), float(usd))
            yield budget

    def describe(self) -> Iterable[Metric]:
        # Describing without querying the store: registration must not touch the database.
        return [
            GaugeMetricFamily("planner_collector_duration_seconds", ""),
            CounterMetricFamily("planner_collector_errors", ""),
            GaugeMetricFamily("planner_requests", "", labels=["state"]),
            GaugeMetricFamily("planner_batches", "", labels=["state"]),
            *(GaugeMetricFamily(name, "") for _, name, _ in OLDEST_GAUGES),
            *(GaugeMetricFamily(n, "", labels=["budget", "period"]) for _, n, _ in BUDGET_GAUGES),
        ]


def _by_state(
    name: str, doc: str, known: list[str], counts: Mapping[str, float | Decimal]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["state"])
    for state in [*known, *sorted(set(counts) - set(known))]:
        family.add_metric([state], float(counts.get(state, 0)))
    return family


class Metrics:
    """planner's metrics on one registry, with the helpers the pipeline calls.

    ``known_models``: canonical model names allowed as label values; any other value is
    exported as ``model="other"`` so user input cannot blow up cardinality. ``None`` accepts
    every value (tests, and callers that validated the model against the catalog already).
    ``store_counts``: the callable behind ``planner_requests`` / ``planner_batches``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        known_models: Collection[str] | None = None,
        store_counts: Callable[[], StoreCounts] | None = None,
        store_cache_seconds: float = 0.0,
        process_metrics: bool = True,
        version: str = "",
    ) -> None:
        self.registry = registry
        self._known_models = None if known_models is None else frozenset(known_models)
        r = registry

        self.build_info = Info("planner_build", "planner's version.", registry=r)
        self.build_info.info({"version": version or _package_version()})

        self.requests_ingested = Counter(
            "planner_requests_ingested",
            "Requests accepted into the store, by source.",
            ["source"],
            registry=r,
        )
        self.lines_quarantined = Counter(
            "planner_lines_quarantined",
            "Input lines kept aside as invalid, by source and reason code.",
            ["source", "reason"],
            registry=r,
        )
        self.tokens_estimated = Counter(
            "planner_tokens_estimated",
            "Tokens estimated at planning time; kind is input or output.",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.tokens_billed = Counter(
            "planner_tokens_billed",
            "Tokens the provider reported as billed; kind is input, output or cached "
            "(cached is a part of input).",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "planner_cost",
            "Actual cost in USD, derived from the store's Decimal ledger after each commit.",
            ["provider", "model", "mode"],
            unit="usd",
            registry=r,
        )
        self.interactive_equivalent_cost = Counter(
            "planner_interactive_equivalent_cost",
            "What the same requests would have cost on the interactive API, in USD.",
            ["provider", "model", "mode"],
            unit="usd",
            registry=r,
        )
        self.savings = Counter(
            "planner_savings",
            "Interactive-equivalent cost minus actual cost, in USD (positive part).",
            ["provider", "model", "mode"],
            unit="usd",
            registry=r,
        )
        self.overspend = Counter(
            "planner_overspend",
            "Actual cost above the interactive equivalent, in USD (should stay 0).",
            ["provider", "model", "mode"],
            unit="usd",
            registry=r,
        )
        self.batches_submitted = Counter(
            "planner_batches_submitted",
            "Batch jobs the provider accepted.",
            ["provider", "model"],
            registry=r,
        )
        self.duplicate_batches = Counter(
            "planner_duplicate_batches",
            "Batches found twice at the provider for one intent (must stay 0).",
            ["provider"],
            registry=r,
        )
        self.batch_escapes = Counter(
            "planner_batch_escapes",
            "Batches cancelled at the provider because their requests' deadline slack was gone"
            " (their unfinished requests went to the interactive lane).",
            ["provider"],
            registry=r,
        )
        self.interactive_unknown_outcomes = Counter(
            "planner_interactive_unknown_outcomes",
            "Interactive requests sent whose answer was lost (a read timeout, a cut connection,"
            " a crash before the answer was recorded): dead-lettered as unknown_outcome, not"
            " sent again, possibly billed.",
            ["provider"],
            registry=r,
        )
        self.orphan_files_deleted = Counter(
            "planner_orphan_files_deleted",
            "Uploaded input files housekeeping found at the provider with no live batch (left"
            " by a crash or an unconfirmed create) and deleted.",
            ["provider"],
            registry=r,
        )
        self.token_limit_refusals = Counter(
            "planner_token_limit_refusals",
            "Batches refused because the model's enqueued-token queue was full (a lower limit"
            " was learned and their requests re-planned smaller).",
            ["provider", "model"],
            registry=r,
        )
        self.batch_turnaround = Histogram(
            "planner_batch_turnaround_seconds",
            "Seconds from submission to a terminal provider state.",
            ["provider", "model"],
            buckets=BATCH_TURNAROUND_BUCKETS,
            registry=r,
        )
        self.estimate_error = Histogram(
            "planner_estimate_error_ratio",
            "Billed input tokens divided by estimated input tokens, per request.",
            ["provider", "model"],
            buckets=ESTIMATE_ERROR_BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            "planner_provider_errors",
            "Failed provider calls, by provider and error kind.",
            ["provider", "kind"],
            registry=r,
        )
        self.provider_calls = Counter(
            "planner_provider_calls",
            "Provider calls made (the denominator of the error ratio).",
            ["provider"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "planner_circuit_open",
            "1 while the provider's circuit breaker is open.",
            ["provider"],
            registry=r,
        )
        self.stage_last_success = Gauge(
            "planner_stage_last_success_timestamp_seconds",
            "Unix time of the stage's last successful run.",
            ["stage"],
            registry=r,
        )
        self.stage_interval = Gauge(
            "planner_stage_interval_seconds",
            "The stage's configured run interval.",
            ["stage"],
            registry=r,
        )
        self.stage_duration = Histogram(
            "planner_stage_duration_seconds",
            "Seconds one run of a stage took.",
            ["stage"],
            buckets=STAGE_DURATION_BUCKETS,
            registry=r,
        )
        self.stage_failures = Counter(
            "planner_stage_failures",
            "Stage runs that ended in an error.",
            ["stage"],
            registry=r,
        )
        self.config_reload_success = Gauge(
            "planner_config_reload_success",
            "1 if the last configuration reload succeeded (or none was asked), else 0.",
            registry=r,
        )
        self.config_reload_success.set(1)
        self.store: StoreCollector | None = None
        if store_counts is not None:
            self.store = StoreCollector(store_counts, cache_seconds=store_cache_seconds)
            r.register(self.store)
        if process_metrics:
            ProcessCollector(registry=r)
        for stage in STAGES:
            self.stage_last_success.labels(stage)  # 0 = never since this process started
            self.stage_failures.labels(stage)

    # -- labels ---------------------------------------------------------------------------
    def model_label(self, model: str) -> str:
        """The canonical model name if known, else ``"other"`` (bounded cardinality)."""
        if self._known_models is None or model in self._known_models:
            return model
        return OTHER_MODEL

    def prime(
        self,
        *,
        sources: Iterable[str] = (),
        models: Iterable[tuple[str, str]] = (),
        providers: Iterable[str] = (),
    ) -> None:
        """Create every expected label combination at 0, so alerts and ``rate()`` see series
        before the first event ("avoid missing metrics")."""
        provider_set = set(providers)
        for source in sources:
            self.requests_ingested.labels(source)
            self.stage_last_success.labels(ingest_stage(source))
            self.stage_failures.labels(ingest_stage(source))
        for provider, model in models:
            provider_set.add(provider)
            m = self.model_label(model)
            self.batches_submitted.labels(provider, m)
            self.token_limit_refusals.labels(provider, m)
            for kind in ("input", "output"):
                self.tokens_estimated.labels(provider, m, kind)
            for kind in ("input", "output", "cached"):
                self.tokens_billed.labels(provider, m, kind)
            for lane in Lane:
                for counter in (self.cost, self.interactive_equivalent_cost, self.savings):
                    counter.labels(provider, m, lane.value)
        for provider in provider_set:
            self.provider_calls.labels(provider)
            self.duplicate_batches.labels(provider)
            self.batch_escapes.labels(provider)
            self.interactive_unknown_outcomes.labels(provider)
            self.orphan_files_deleted.labels(provider)
            self.circuit_open.labels(provider)
            for kind in ErrorKind:
                self.provider_errors.labels(provider, kind.value)

    # -- intake ---------------------------------------------------------------------------
    def record_ingested(self, source: str, n: int = 1) -> None:
        """After the commit that stored ``n`` new requests from ``source``."""
        self.requests_ingested.labels(source).inc(n)

    def record_quarantined(self, source: str, reason: str, n: int = 1) -> None:
        """``reason`` is a stable code (``planner.sources.formats.Reason``), never a message."""
        self.lines_quarantined.labels(source, reason).inc(n)

    # -- plan / submit --------------------------------------------------------------------
    def record_estimate(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> None:
        """After the commit that planned requests with these estimated token totals."""
        m = self.model_label(model)
        self.tokens_estimated.labels(provider, m, "input").inc(input_tokens)
        self.tokens_estimated.labels(provider, m, "output").inc(output_tokens)

    def record_batch_submitted(self, provider: str, model: str) -> None:
        self.batches_submitted.labels(provider, self.model_label(model)).inc()

    def record_batch_escape(self, provider: str) -> None:
        """After the cancel of a batch whose deadline slack was gone was sent."""
        self.batch_escapes.labels(provider).inc()

    def record_unknown_outcomes(self, provider: str, n: int) -> None:
        """After the commit that dead-lettered ``n`` interactive sends as ``unknown_outcome``."""
        self.interactive_unknown_outcomes.labels(provider).inc(n)

    def record_orphan_files_deleted(self, provider: str, n: int) -> None:
        """After housekeeping deleted ``n`` orphan uploads at ``provider``."""
        self.orphan_files_deleted.labels(provider).inc(n)

    def record_token_limit_refusal(self, provider: str, model: str) -> None:
        """After a batch refused for a full enqueued-token queue was re-planned."""
        self.token_limit_refusals.labels(provider, self.model_label(model)).inc()

    def record_duplicate_batch(self, provider: str, n: int = 1) -> None:
        self.duplicate_batches.labels(provider).inc(n)

    # -- poll / collect -------------------------------------------------------------------
    def record_batch_finished(
        self, provider: str, model: str, submitted_at: datetime, finished_at: datetime
    ) -> None:
        """Observe the turnaround of a batch that reached a terminal provider state."""
        seconds = max(0.0, (finished_at - submitted_at).total_seconds())
        self.batch_turnaround.labels(provider, self.model_label(model)).observe(seconds)

    def record_result(
        self,
        provider: str,
        model: str,
        lane: Lane | str,
        usage_in: int,
        usage_out: int,
        cached: int,
        actual_usd: Decimal,
        interactive_usd: Decimal,
        *,
        estimated_in: int | None = None,
    ) -> None:
        """After the commit that recorded one request's (or one group's) billed usage and cost.

        ``usage_in`` includes ``cached``. Savings are ``interactive_usd - actual_usd``; a
        negative difference goes to ``planner_overspend_usd_total`` (counters only go up).
        ``estimated_in`` (input tokens estimated for the same requests) feeds the estimate
        error histogram.
        """
        m = self.model_label(model)
        mode = Lane(lane).value
        self.tokens_billed.labels(provider, m, "input").inc(usage_in)
        self.tokens_billed.labels(provider, m, "output").inc(usage_out)
        self.tokens_billed.labels(provider, m, "cached").inc(cached)
        self.cost.labels(provider, m, mode).inc(_usd(actual_usd))
        self.interactive_equivalent_cost.labels(provider, m, mode).inc(_usd(interactive_usd))
        saved = interactive_usd - actual_usd
        if saved >= 0:
            self.savings.labels(provider, m, mode).inc(_usd(saved))
        else:
            self.overspend.labels(provider, m, mode).inc(_usd(-saved))
        if estimated_in:
            self.estimate_error.labels(provider, m).observe(usage_in / estimated_in)

    # -- providers ------------------------------------------------------------------------
    def record_provider_call(self, provider: str) -> None:
        self.provider_calls.labels(provider).inc()

    def record_provider_error(self, provider: str, error: ProviderError | ErrorKind) -> None:
        kind = error if isinstance(error, ErrorKind) else error_kind(error)
        self.provider_errors.labels(provider, kind.value).inc()

    def set_circuit_open(self, provider: str, is_open: bool) -> None:
        self.circuit_open.labels(provider).set(1 if is_open else 0)

    # -- stages, config -----------------------------------------------------------
    def set_stage_interval(self, stage: str, seconds: float) -> None:
        self.stage_interval.labels(stage).set(seconds)

    def record_stage_run(
        self, stage: str, *, ok: bool, finished_at: datetime, duration_seconds: float
    ) -> None:
        """Once per stage run; ``finished_at`` is the tick's ``now`` (timezone-aware)."""
        self.stage_duration.labels(stage).observe(max(0.0, duration_seconds))
        if ok:
            self.stage_last_success.labels(stage).set(finished_at.timestamp())
        else:
            self.stage_failures.labels(stage).inc()

    def record_config_reload(self, ok: bool) -> None:
        self.config_reload_success.set(1 if ok else 0)

    def metric_names(self) -> frozenset[str]:
        """Every sample name this registry can expose (dashboard and alert tests use it)."""
        return frozenset(_sample_names(self.registry))


def _sample_names(registry: CollectorRegistry) -> Iterator[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            yield family.name + suffix


def _package_version() -> str:
    try:
        return metadata.version("planner")
    except metadata.PackageNotFoundError:
        return "unknown"
