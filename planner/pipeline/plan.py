"""The plan stage: estimate each request, price it in every lane, decide its lane, pack batches.

The same functions serve the dry run (``planner plan``, which reads sources without claiming)
and the daemon's planning pass (which records the outcome in the store). Nothing here reads the
clock or touches the store: ``now`` and every collaborator are parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from planner.core.catalog import Catalog, ModelEntry
from planner.core.cost import LaneCosts, compare
from planner.core.estimate import TokenCounter, embedding_inputs, estimate
from planner.core.limits import BatchLimits
from planner.core.model import Lane, Request, TokenEstimate
from planner.core.pack import PackGroup, PackItem, PackResult, pack
from planner.core.policy import Decision, PolicyRules, Reason, decide


@dataclass(frozen=True, slots=True)
class Assessment:
    """Everything the planner concluded about one request."""

    request: Request
    provider: str | None  # the configured provider it routes to; None = no provider serves it
    entry: ModelEntry | None
    estimate: TokenEstimate
    costs: LaneCosts
    decision: Decision

    @property
    def lane(self) -> Lane | None:
        return self.decision.lane


@dataclass(frozen=True, slots=True)
class Planner:
    """The collaborators of one planning pass, fixed for its duration."""

    catalog: Catalog
    counter: TokenCounter
    route: Callable[[Request], str | None]  # -> the configured provider that can take it
    rules_for: Callable[[Request], PolicyRules]
    default_output_tokens_for: Callable[[Request], int]
    line_bytes: Callable[[Request, str], int]  # request, provider name -> JSONL line bytes
    limits_for: Callable[[PackGroup], BatchLimits]

    def assess(self, request: Request, now: datetime) -> Assessment:
        entry = self.catalog.get(request.model)
        tokens = estimate(
            request,
            entry,
            self.counter,
            default_output_tokens=self.default_output_tokens_for(request),
        )
        costs = compare(entry, tokens, at=now)
        provider = self.route(request)
        if provider is None:
            detail = f"no configured provider serves {request.model} on {request.endpoint.value}"
            decision = Decision(None, Reason.NO_PROVIDER, detail)
        else:
            decision = decide(request, tokens, costs, self.rules_for(request), now)
        return Assessment(request, provider, entry, tokens, costs, decision)

    def pack_item(self, assessment: Assessment) -> PackItem:
        request, provider = assessment.request, assessment.provider
        if provider is None:
            raise ValueError(f"request {request.key} has no provider and cannot be packed")
        return PackItem(
            key=request.key,
            group=PackGroup(provider, request.model, request.endpoint),
            line_bytes=self.line_bytes(request, provider),
            input_tokens=assessment.estimate.input_tokens,
            embedding_inputs=embedding_inputs(request),
        )

    def pack(self, batch_bound: Iterable[Assessment]) -> PackResult:
        """Batches for the assessments whose lane is batch (others are ignored)."""
        items = (self.pack_item(a) for a in batch_bound if a.lane is Lane.BATCH)
        return pack(items, self.limits_for)
