"""The one definition of request and batch states and of the transitions between them.

Every state change in the store is checked against these tables, so a bug that would move a
request backwards (say, from ``succeeded`` to ``queued``) fails loudly instead of billing twice.
"""

from __future__ import annotations

from enum import StrEnum


class RequestState(StrEnum):
    QUEUED = "queued"  # ingested, waiting for the planner
    HELD = "held"  # waiting for a flush trigger or budget
    PLANNED = "planned"  # assigned to a batch that is not yet at the provider
    SUBMITTED = "submitted"  # its batch was accepted by the provider
    INTERACTIVE = "interactive"  # sent to the synchronous API, standard tier
    FLEX = "flex"  # sent to the synchronous API, flex tier
    SUCCEEDED = "succeeded"  # has a result, written to the sink
    FAILED = "failed"  # the last attempt failed; retry or dead decided next
    DEAD = "dead"  # dead-lettered with the provider's message
    REJECTED = "rejected"  # refused by the policy (unpriced, over budget, too large ...)


class BatchState(StrEnum):
    PLANNED = "planned"  # intent recorded, nothing sent yet
    UPLOADING = "uploading"  # the input file is being uploaded / the create call is in flight
    SUBMITTED = "submitted"  # the provider accepted it
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    COLLECTED = "collected"  # every line accounted for in the store


TERMINAL_REQUEST_STATES = frozenset(
    {RequestState.SUCCEEDED, RequestState.DEAD, RequestState.REJECTED}
)
TERMINAL_BATCH_STATES = frozenset({BatchState.COLLECTED})
FINISHED_BATCH_STATES = frozenset(
    {BatchState.SUCCEEDED, BatchState.FAILED, BatchState.EXPIRED, BatchState.CANCELLED}
)

_R = RequestState
REQUEST_TRANSITIONS: dict[RequestState, frozenset[RequestState]] = {
    _R.QUEUED: frozenset({_R.HELD, _R.PLANNED, _R.INTERACTIVE, _R.FLEX, _R.REJECTED}),
    _R.HELD: frozenset({_R.QUEUED, _R.PLANNED, _R.INTERACTIVE, _R.FLEX, _R.REJECTED}),
    # planned -> queued: the batch was never created (crash before create, shrink and re-plan)
    _R.PLANNED: frozenset({_R.SUBMITTED, _R.QUEUED, _R.FAILED}),
    _R.SUBMITTED: frozenset({_R.SUCCEEDED, _R.FAILED, _R.QUEUED}),
    _R.INTERACTIVE: frozenset({_R.SUCCEEDED, _R.FAILED, _R.QUEUED}),
    _R.FLEX: frozenset({_R.SUCCEEDED, _R.FAILED, _R.QUEUED}),
    _R.FAILED: frozenset({_R.QUEUED, _R.DEAD}),
    _R.SUCCEEDED: frozenset(),
    # dead -> queued: only the operator's `planner requeue`, which names the state; a move that
    # does not name its expected states never takes a request out of a terminal state
    _R.DEAD: frozenset({_R.QUEUED}),
    _R.REJECTED: frozenset(),
}

_B = BatchState
BATCH_TRANSITIONS: dict[BatchState, frozenset[BatchState]] = {
    _B.PLANNED: frozenset({_B.UPLOADING, _B.CANCELLED}),
    _B.UPLOADING: frozenset({_B.SUBMITTED, _B.RUNNING, _B.FAILED, _B.CANCELLED, _B.PLANNED}),
    _B.SUBMITTED: frozenset({_B.RUNNING, *FINISHED_BATCH_STATES}),
    _B.RUNNING: frozenset(FINISHED_BATCH_STATES),
    _B.SUCCEEDED: frozenset({_B.COLLECTED}),
    _B.FAILED: frozenset({_B.COLLECTED}),
    _B.EXPIRED: frozenset({_B.COLLECTED}),
    _B.CANCELLED: frozenset({_B.COLLECTED}),
    _B.COLLECTED: frozenset(),
}


def request_transition_allowed(old: RequestState, new: RequestState) -> bool:
    return new in REQUEST_TRANSITIONS[old]


def batch_transition_allowed(old: BatchState, new: BatchState) -> bool:
    return new in BATCH_TRANSITIONS[old]
