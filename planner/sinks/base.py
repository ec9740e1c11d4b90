"""The sinks port: where finished requests are written for the user.

A delivery is a set of records with a stable ``delivery_id`` chosen (and committed to the store)
before the sink is called. Writing the same delivery again must leave the same result, so a
crash between the write and the store's "delivered" mark never produces a second copy.

A sink that talks to a remote receiver which may be down (a webhook) is *queued*: it sets
``queued = True``, and instead of being called while a delivery settles, its records are put in
the store's outbox in the settling transaction and sent from there (``pipeline/outbox.py``),
one record per ``deliver`` call whose ``delivery_id`` is that record's idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

Record = Mapping[str, Any]
"""One JSON-ready result or dead-letter record (see ``planner.pipeline.deliver``)."""


@runtime_checkable
class Sink(Protocol):
    kind: str

    @property
    def name(self) -> str: ...

    def deliver(self, delivery_id: str, results: Sequence[Record], dead: Sequence[Record]) -> None:
        """Write one delivery, idempotently per ``delivery_id``."""
        ...


def is_queued(sink: Sink) -> bool:
    """Whether ``sink``'s records go through the store's outbox (see the module docstring)."""
    return getattr(sink, "queued", False) is True
