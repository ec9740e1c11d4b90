"""The dry-run report of ``planner plan``: per model, what batching would cost and save.

Money definitions (each a sum over the priced requests of the row that would be sent now: a
request that is rejected, by the policy or for being too large for any batch, or held for a
budget costs nothing and saves nothing, as in a real run):

- ``interactive_usd``: every request at the interactive price (the interactive-equivalent);
- ``batch_usd``: every request at the batch price (what sending all of them by batch would cost);
- ``planned_usd``: every request at the price of the lane the policy chose for it;
- ``savings_usd`` = ``interactive_usd`` − ``planned_usd``: what the plan saves.

A model with no price is listed in ``unpriced`` and its money fields are ``null``: it is never
counted as $0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from planner.core.budget import BudgetBook, HeldBack
from planner.core.cost import to_usd
from planner.core.limits import BatchLimits
from planner.core.model import Endpoint, Lane, Request
from planner.core.pack import Oversized, PackGroup, PackItem, PlannedBatch, broken_limit, pack
from planner.core.policy import REJECTED
from planner.core.retirement import CatalogWarning, retirement_warnings
from planner.pipeline.plan import Assessment, Planner
from planner.sources.base import LineError

ERROR_SAMPLE = 50  # quarantined lines shown in full in the report
PROGRESS_EVERY = 1000  # requests between progress callbacks
TOO_LARGE = "too_large"  # the reason planning records for a request no batch can carry


def _add(total: int | None, value: int | None) -> int | None:
    if total is None or value is None:
        return None
    return total + value


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def _usd(fusd: int | None) -> Decimal | None:
    return None if fusd is None else to_usd(fusd)


@dataclass(slots=True)
class ModelRow:
    """Sums for one (provider, model, endpoint); money in integer FUSD (``core/cost.py``),
    shown in USD by the ``*_usd`` properties."""

    provider: str | None
    model: str
    endpoint: Endpoint
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    interactive_fusd: int | None = 0
    batch_fusd: int | None = 0
    planned_fusd: int | None = 0
    lanes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    batches: list[PlannedBatch] = field(default_factory=list)
    oversized: int = 0

    @property
    def savings_fusd(self) -> int | None:
        if self.interactive_fusd is None or self.planned_fusd is None:
            return None
        return self.interactive_fusd - self.planned_fusd

    @property
    def interactive_usd(self) -> Decimal | None:
        return _usd(self.interactive_fusd)

    @property
    def batch_usd(self) -> Decimal | None:
        return _usd(self.batch_fusd)

    @property
    def planned_usd(self) -> Decimal | None:
        return _usd(self.planned_fusd)

    @property
    def savings_usd(self) -> Decimal | None:
        return _usd(self.savings_fusd)

    def add(self, a: Assessment, *, too_large: bool = False) -> None:
        estimate, decision, costs = a.estimate, a.decision, a.costs
        self.requests += 1
        self.input_tokens += estimate.input_tokens
        self.output_tokens += estimate.output_tokens
        self.methods[estimate.method] += 1
        lane = decision.lane
        if too_large:
            self.lanes[REJECTED] += 1
            self.reasons[TOO_LARGE] += 1
        else:
            self.lanes[lane.value if lane is not None else decision.outcome] += 1
            self.reasons[decision.reason.value] += 1
        interactive = costs.interactive_fusd
        if interactive is None:  # unpriced: the row's money is unknown, never $0
            self.interactive_fusd = self.batch_fusd = self.planned_fusd = None
            return
        if lane is None or too_large or self.interactive_fusd is None:
            return  # not sent (rejected or held): no cost and no savings
        self.interactive_fusd += interactive
        self.batch_fusd = _add(self.batch_fusd, costs.batch_fusd)
        self.planned_fusd = _add(self.planned_fusd, costs.lane_fusd(lane))

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "endpoint": self.endpoint.value,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "interactive_usd": _money(self.interactive_usd),
            "batch_usd": _money(self.batch_usd),
            "planned_usd": _money(self.planned_usd),
            "savings_usd": _money(self.savings_usd),
            "lanes": dict(sorted(self.lanes.items())),
            "reasons": dict(sorted(self.reasons.items())),
            "estimate_methods": dict(sorted(self.methods.items())),
            "batches": [
                {"requests": b.requests, "bytes": b.bytes, "input_tokens": b.input_tokens}
                for b in self.batches
            ],
            "oversized": self.oversized,
        }


@dataclass(slots=True)
class PlanReport:
    """The whole dry run: rows per model, totals, quarantined lines, unpriced models."""

    rows: dict[tuple[str | None, str, Endpoint], ModelRow] = field(default_factory=dict)
    errors: list[LineError] = field(default_factory=list)
    quarantined: int = 0
    duplicates: int = 0  # keys already stored or read before with the same request: no-ops
    book: BudgetBook | None = None  # the budgets, as this plan would leave them
    retirements: list[CatalogWarning] = field(default_factory=list)  # models in use, once each
    settling: int = 0  # spool files not read: modified within their source's ``settle``

    def add(self, a: Assessment, *, too_large: bool = False) -> None:
        key = (a.provider, a.request.model, a.request.endpoint)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = ModelRow(a.provider, a.request.model, a.request.endpoint)
        row.add(a, too_large=too_large)

    def add_error(self, error: LineError) -> None:
        self.quarantined += 1
        if len(self.errors) < ERROR_SAMPLE:
            self.errors.append(error)

    def add_batches(self, batches: Iterable[PlannedBatch], oversized: Iterable[Oversized]) -> None:
        for batch in batches:
            g = batch.group
            self.rows[(g.provider, g.model, g.endpoint)].batches.append(batch)
        for item in oversized:
            g = item.item.group
            self.rows[(g.provider, g.model, g.endpoint)].oversized += 1

    @property
    def unpriced(self) -> list[str]:
        return sorted({r.model for r in self.rows.values() if r.interactive_fusd is None})

    def ordered_rows(self) -> list[ModelRow]:
        return sorted(self.rows.values(), key=lambda r: (r.provider or "", r.model, r.endpoint))

    def totals(self) -> dict[str, Any]:
        """Sums over the priced rows (unpriced models are listed apart, never counted as $0)."""
        priced = [r for r in self.rows.values() if r.interactive_fusd is not None]
        lanes: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for r in self.rows.values():
            lanes.update(r.lanes)
            reasons.update(r.reasons)

        def money(attr: str) -> str | None:
            total: int | None = 0
            for r in priced:
                total = _add(total, getattr(r, attr))
            return _money(_usd(total))

        return {
            "requests": sum(r.requests for r in self.rows.values()),
            "input_tokens": sum(r.input_tokens for r in self.rows.values()),
            "output_tokens": sum(r.output_tokens for r in self.rows.values()),
            "interactive_usd": money("interactive_fusd"),
            "batch_usd": money("batch_fusd"),
            "planned_usd": money("planned_fusd"),
            "savings_usd": money("savings_fusd"),
            "lanes": dict(sorted(lanes.items())),
            "reasons": dict(sorted(reasons.items())),
            "batches": sum(len(r.batches) for r in self.rows.values()),
            "oversized": sum(r.oversized for r in self.rows.values()),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "models": [r.to_json() for r in self.ordered_rows()],
            "totals": self.totals(),
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "settling": self.settling,
            "errors": [
                {"origin": e.origin, "reason": e.reason, "message": e.message} for e in self.errors
            ],
            "unpriced": self.unpriced,
            "budgets": budget_rows(self.book),
            "retirements": [
                {"model": w.model, "kind": w.kind.value, "message": w.message}
                for w in self.retirements
            ],
        }


def budget_rows(book: BudgetBook | None) -> list[dict[str, Any]]:
    """Each budget window: its limit, what was spent and reserved before, what the plan takes
    (``planned_usd``), what is left, and what it held back (requests and their upper bound)."""
    if book is None:
        return []
    rows = []
    for (key, period), window in sorted(book.windows.items()):
        planned = book.planned.get(key, Decimal(0))
        held = book.held.get(key, HeldBack())
        rows.append(
            {
                "budget": str(key),
                "period": period.value,
                "at_cap": book.rules[key].at_cap.value,
                "limit_usd": _money(window.limit),
                "spent_usd": _money(window.spent),
                "reserved_usd": _money(window.reserved - planned),
                "planned_usd": _money(planned),
                "remaining_usd": _money(window.remaining),
                "held_requests": held.requests - held.rejected,
                "rejected_requests": held.rejected,
                "held_usd": _money(held.usd),
            }
        )
    return rows


def build_report(
    lines: Iterable[Request | LineError],
    planner: Planner,
    now: datetime,
    on_request: Callable[[int], None] | None = None,
    book: BudgetBook | None = None,
) -> PlanReport:
    """Assess every line once, in one streaming pass, and pack the batch-bound ones; with
    ``book``, within the budgets (first come, first served, in the sources' order)."""
    report = PlanReport(book=book)
    seen = 0
    limits: dict[PackGroup, BatchLimits] = {}  # per group, as the packer asks once

    def limits_for(group: PackGroup) -> BatchLimits:
        found = limits.get(group)
        if found is None:
            found = limits[group] = planner.limits_for(group)
        return found

    def batch_items() -> Iterator[PackItem]:
        nonlocal seen
        for line in lines:
            if isinstance(line, LineError):
                report.add_error(line)
                continue
            assessment = planner.assess(line, now, book)
            if assessment.decision.lane is Lane.BATCH:
                # the report shows batch sizes, never keys: keeping none keeps memory flat
                item: PackItem | None = planner.pack_item(assessment, key="")
                assert item is not None
                # the packer refuses an item that breaks a limit alone: planning rejects it
                too_large = (
                    broken_limit(
                        limits_for(item.group),
                        1,
                        item.line_bytes,
                        item.input_tokens,
                        item.embedding_inputs,
                    )
                    is not None
                )
                report.add(assessment, too_large=too_large)
            else:
                item = None
                report.add(assessment)
            seen += 1
            if on_request is not None and seen % PROGRESS_EVERY == 0:
                on_request(seen)
            if item is not None:
                yield item

    result = pack(batch_items(), limits_for, keys=False)
    report.add_batches(result.batches, result.oversized)
    used = (planner.catalog.get(row.model) for row in report.rows.values())
    report.retirements = retirement_warnings([e for e in used if e is not None], now)
    if on_request is not None:
        on_request(seen)
    return report
