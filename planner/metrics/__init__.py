"""Every Prometheus metric planner exports, defined once, on an injected registry.

Why a class on an injected ``CollectorRegistry`` and not module globals: a fresh registry per
test keeps tests independent (``registry.get_sample_value``), and a reload never registers a
metric twice. The stage observer (``runtime/observer.py``) calls the ``record_*`` helpers;
nothing else touches the metric objects, so names, labels and units live here (and, for the
store-derived series, in ``metrics/collectors.py``) only.

Conventions (DESIGN "Metrics", specs/reliability-and-operations.md §5):

- prefix ``planner_``; counters end in ``_total``; durations in ``_seconds``; times of events
  are ``_timestamp_seconds`` (timestamps, not ages); money in ``_usd`` (a documented local
  convention: Prometheus has no currency unit and we never add a ``currency`` label).
- labels come from bounded sets only: ``source``, ``provider``, ``model`` (the canonical catalog
  name; anything outside ``known_models`` becomes ``"other"``), ``lane`` (batch,
  interactive, flex), ``state``, ``stage``, ``kind``, ``reason``, ``budget`` (a configured
  budget), ``period``. Never a request id, batch id, file name or error message.

Two kinds of series. *Events of this process* (ingested, quarantined, submitted, provider calls
and errors, turnaround, estimate error, stage runs) are counters and histograms here, created at
0 for every expected label set (:meth:`Metrics.prime`) and incremented by the stage observer
(``runtime/observer.py``) after the commit. *What the store holds* (queue depth, batches by
state, the oldest pending / uncollected batch, the money and billed tokens of the ledger, and
the configured budgets' windows) is
read at scrape time by ``metrics/collectors.py``: never reset by a restart, never drifting from
the ledger by float additions, equal on every replica (so dashboards take ``max`` across
instances for them, not ``sum``; README "Metrics").
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.process_collector import ProcessCollector

from planner.errors import ProviderError
from planner.metrics.collectors import Group, StoreCollector, StoreReading
from planner.metrics.labels import (
    BATCH_TURNAROUND_BUCKETS,
    ESTIMATE_ERROR_BUCKETS,
    OTHER_MODEL,
    STAGE_DURATION_BUCKETS,
    STAGES,
    ErrorKind,
    error_kind,
    ingest_stage,
)

__all__ = [
    "BATCH_TURNAROUND_BUCKETS",
    "ESTIMATE_ERROR_BUCKETS",
    "OTHER_MODEL",
    "STAGES",
    "ErrorKind",
    "Group",
    "Metrics",
    "StoreCollector",
    "StoreReading",
    "error_kind",
    "ingest_stage",
]


class Metrics:
    """planner's metrics on one registry, with the helpers the pipeline calls.

    ``known_models``: canonical model names allowed as label values; any other value is
    exported as ``model="other"`` so user input cannot blow up cardinality. ``None`` accepts
    every value (tests, and callers that validated the model against the catalog already).
    ``store``: the callable behind the store-derived series (``metrics/collectors.py``).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        known_models: Collection[str] | None = None,
        store: Callable[[], StoreReading] | None = None,
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
        self.batches_submitted = Counter(
            "planner_batches_submitted",
            "Batch jobs the provider accepted.",
            ["provider", "model"],
            registry=r,
        )
        self.duplicate_batches = Counter(
            "planner_duplicate_batches",
            "Batches found twice at the provider for one intent (must stay 0): a submit that"
            " looked its unconfirmed batch up and found it more than once.",
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
            "Billed input tokens divided by estimated input tokens, per request (chat and"
            " embeddings).",
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
        if store is not None:
            self.store = StoreCollector(
                store,
                model_label=self.model_label,
                cache_seconds=store_cache_seconds,
            )
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
        reasons: Iterable[str] = (),
    ) -> None:
        """Create every expected label combination at 0, so alerts and ``increase()`` see
        series before the first event ("avoid missing metrics"). ``reasons``: every quarantine
        reason code, primed for each source."""
        provider_set = set(providers)
        reason_list = list(reasons)
        for source in sources:
            self.requests_ingested.labels(source)
            self.stage_last_success.labels(ingest_stage(source))
            self.stage_failures.labels(ingest_stage(source))
            for reason in reason_list:
                self.lines_quarantined.labels(source, reason)
        for provider, model in models:
            provider_set.add(provider)
            m = self.model_label(model)
            self.batches_submitted.labels(provider, m)
            self.token_limit_refusals.labels(provider, m)
            for kind in ("input", "output"):
                self.tokens_estimated.labels(provider, m, kind)
        for provider in provider_set:
            self.provider_calls.labels(provider)
            self.duplicate_batches.labels(provider)
            self.batch_escapes.labels(provider)
            self.interactive_unknown_outcomes.labels(provider)
            self.orphan_files_deleted.labels(provider)
            self.circuit_open.labels(provider)
            for kind in ErrorKind:
                self.provider_errors.labels(provider, kind.value)

    def prime_ledger(self, groups: Iterable[Group]) -> None:
        """The ledger groups exported at 0 until billed (replaces the previous set)."""
        if self.store is not None:
            self.store.primed = frozenset(
                (s, p, self.model_label(m), lane) for s, p, m, lane in groups
            )

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

    def record_estimate_error(
        self, provider: str, model: str, billed_in: int, estimated_in: int | None
    ) -> None:
        """One request's billed input tokens against its estimate (money and billed tokens
        are read from the ledger at scrape time, not counted here)."""
        if estimated_in:
            ratio = billed_in / estimated_in
            self.estimate_error.labels(provider, self.model_label(model)).observe(ratio)

    # -- providers ------------------------------------------------------------------------
    def record_provider_call(self, provider: str) -> None:
        self.provider_calls.labels(provider).inc()

    def record_provider_error(self, provider: str, error: ProviderError | ErrorKind) -> None:
        kind = error if isinstance(error, ErrorKind) else error_kind(error)
        self.provider_errors.labels(provider, kind.value).inc()

    def set_circuit_open(self, provider: str, is_open: bool) -> None:
        self.circuit_open.labels(provider).set(1 if is_open else 0)

    # -- stages, config ---------------------------------------------------------------------
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
