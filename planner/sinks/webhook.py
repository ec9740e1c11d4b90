"""``kind: webhook``: each result (and each dead letter) POSTed as JSON to a URL, signed.

One record per POST, its body the record as compact JSON, with these headers:

- ``X-Planner-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body bytes under the sink's
  secret, so the receiver can prove the body came from us (compare in constant time);
- ``Idempotency-Key``: one key per record that stays the same on every retry, so a receiver
  that saw a POST whose answer we lost can drop the repeat;
- ``X-Planner-Event``: ``result`` or ``dead``.

A webhook sink is *queued* (``queued = True``): the settling transaction puts its records in
the store's outbox instead of calling it, and ``pipeline/outbox.py`` calls :meth:`deliver` for
each outbox row until the receiver answers 2xx, backing off between failures (``retry``). So a
receiver that is down loses nothing: the records wait in the store, across restarts.

Answers map onto the error tree: 2xx delivered; 429 ``RateLimited`` (its ``Retry-After``
honoured); 408, 5xx, timeouts and connection failures ``Transient``; other 4xx ``Permanent``
(still kept and retried at the longest back-off: the receiver may be fixed). The secret never
appears in a repr, log line or error; error messages name the sink and the status only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

from planner.core import json_text
from planner.core.retry import RetryPolicy
from planner.errors import Permanent, RateLimited, Transient
from planner.sinks.base import Record

SIGNATURE_HEADER = "X-Planner-Signature"
EVENT_HEADER = "X-Planner-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"

if TYPE_CHECKING:  # imported when a webhook sink is made: every command loads this module
    import httpx


def encode(record: Record) -> bytes:
    """The body of one POST: the record as compact UTF-8 JSON."""
    return json_text.dumps(record).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """The ``X-Planner-Signature`` value for ``body``: ``sha256=`` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class WebhookSink:
    """A receiver URL (see the module docstring)."""

    kind = "webhook"
    queued = True

    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._name = name
        self.url = url
        self._secret = secret
        self.retry = retry or RetryPolicy()
        import httpx  # 30 ms that `planner plan` and configs without a webhook never pay

        self._http_error = httpx.HTTPError
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"WebhookSink(name={self._name!r}, url={self.url!r})"

    def close(self) -> None:
        self._client.close()

    def deliver(self, delivery_id: str, results: Sequence[Record], dead: Sequence[Record]) -> None:
        """POST every record; ``delivery_id`` is the idempotency key of a lone record, and
        ``<delivery_id>.<n>`` of the n-th of several. Raises on the first refusal."""
        records = [("result", r) for r in results] + [("dead", r) for r in dead]
        for n, (event, record) in enumerate(records, 1):
            key = delivery_id if len(records) == 1 else f"{delivery_id}.{n}"
            self.post(key, event, encode(record))

    def post(self, key: str, event: str, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self._secret, body),
            IDEMPOTENCY_HEADER: key,
            EVENT_HEADER: event,
        }
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except self._http_error as exc:
            raise Transient(f"webhook {self._name}: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        message = f"webhook {self._name} answered HTTP {status}"
        if status == 429:
            raise RateLimited(message, retry_after=_retry_after(response))
        if status == 408 or status >= 500:
            raise Transient(message)
        raise Permanent(message)
