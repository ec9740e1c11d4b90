"""Translate SDK and transport exceptions into planner.errors, with no secret in the message.

Taxonomy (reliability spec §3.1): 429 -> ``RateLimited`` (hint from ``retry-after-ms`` /
``retry-after`` headers or Gemini's ``RetryInfo.retryDelay``), unless the quota is per day, the
hint is longer than ``LONG_WAIT_SECONDS``, the code says the queue/credit is exhausted or the
server says ``x-should-retry: false`` -> ``QuotaExceeded``; 5xx, 408, timeouts and connection
errors -> ``Transient``; 401/403 -> ``AuthFailed``; 404 -> ``NotFound``; other 4xx ->
``Permanent``.

Messages are built from the status, the provider's code and its message only, then scrubbed of
the configured key, bearer tokens, key-looking strings and URL query strings (Gemini upload URLs
carry an ``upload_id`` that acts as a credential, reliability spec §6.1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pydantic

from planner.errors import (
    AuthFailed,
    NotFound,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    Transient,
)
from planner.providers import gemini_wire, openai_wire

LONG_WAIT_SECONDS = 300.0  # a rate-limit hint longer than this is treated as a quota (§3.1)

_PATTERNS = (
    re.compile(r"(?i)bearer\s+\S+"),
    re.compile(r"sk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"AIza[0-9A-Za-z_-]{20,}"),
    re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*"),
    re.compile(r"(?i)(key|api[_-]?key|upload_id)=[^&\s'\"]+"),
)


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove secrets and capability-bearing URL parts from ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = _PATTERNS[0].sub("Bearer <redacted>", text)
    text = _PATTERNS[1].sub("<redacted>", text)
    text = _PATTERNS[2].sub("<redacted>", text)
    text = _PATTERNS[3].sub(r"\1?<redacted>", text)
    return _PATTERNS[4].sub(r"\1=<redacted>", text)


def _transport_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name in ("httpx", "httpx2"):
        try:
            module = __import__(module_name)
        except ImportError:  # pragma: no cover - depends on the installed SDK major
            continue
        error = getattr(module, "TransportError", None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


TRANSPORT_ERRORS = _transport_errors()

# httpx failures raised before a byte of the request reached the server: nothing was done there.
_NOT_SENT = ("ConnectError", "ConnectTimeout", "PoolTimeout", "UnsupportedProtocol", "ProxyError")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (SDKs wrap the transport's error)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _chain_names(exc: BaseException) -> str:
    return " <- ".join(type(e).__name__ for e in _chain(exc))


def may_have_been_sent(exc: BaseException) -> bool:
    """Whether a transport failure leaves the request's outcome unknown: ``False`` only when the
    failure provably came before the request was sent (no connection was made), so repeating
    it cannot do the work twice. A read timeout or a connection cut mid-response is ``True``."""
    for error in _chain(exc):
        if type(error).__name__ in _NOT_SENT or isinstance(error, ConnectionRefusedError):
            return False
    return True


def sdk_failures(api_error: type[BaseException]) -> tuple[type[BaseException], ...]:
    """What a call of the SDK whose errors derive from ``api_error`` may raise because of the
    server or the network (not our bugs). Each provider module passes its own SDK's base error
    class, so importing one provider never imports the other's SDK (0.3-0.9 s and ~15 MB each:
    a deployment with one provider paid for both)."""
    return (
        api_error,
        *TRANSPORT_ERRORS,
        OSError,
        ValueError,  # includes json.JSONDecodeError and pydantic.ValidationError
        KeyError,
    )


def by_status(
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    quota: bool = False,
) -> ProviderError:
    """The ProviderError for an HTTP status (message already scrubbed)."""
    if quota:
        return QuotaExceeded(message)
    if status == 429:
        if retry_after is not None and retry_after > LONG_WAIT_SECONDS:
            return QuotaExceeded(message)
        return RateLimited(message, retry_after=retry_after)
    if status in (401, 403):
        return AuthFailed(message)
    if status == 404:
        return NotFound(message)
    if status == 408 or status >= 500:
        return Transient(message)
    return Permanent(message)


def _headers(response: object) -> Mapping[str, str]:
    headers = getattr(response, "headers", None)
    if headers is None:
        return {}
    try:
        return {str(k): str(v) for k, v in dict(headers).items()}
    except (TypeError, ValueError):
        return {}


def from_genai(
    exc: BaseException,
    *,
    operation: str,
    secrets: Sequence[str] = (),
    now: datetime | None = None,
) -> ProviderError:
    """Map a google-genai / transport exception raised during ``operation``."""
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code) if isinstance(exc.code, int) else 0
        status_name = exc.status or ""
        message = scrub(
            f"gemini {operation} failed: HTTP {code} {status_name}: {exc.message or ''}".rstrip(),
            secrets,
        )
        body: Any = exc.details
        retry_after = gemini_wire.retry_delay_seconds(body)
        if retry_after is None:
            retry_after = openai_wire.retry_after_seconds(_headers(exc.response), now)
        quota = code == 429 and gemini_wire.is_daily_quota(body)
        return by_status(code, message, retry_after=retry_after, quota=quota)
    return _generic("gemini", exc, operation=operation, secrets=secrets)


def from_openai(
    exc: BaseException,
    *,
    operation: str,
    secrets: Sequence[str] = (),
    now: datetime | None = None,
) -> ProviderError:
    """Map an openai SDK exception raised during ``operation``."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body: Any = exc.body
        code, text, _ = openai_wire.error_from_body(exc.status_code, body)
        message = scrub(
            f"openai {operation} failed: HTTP {exc.status_code} {code}: {text}", secrets
        )
        headers = _headers(exc.response)
        retry_after = openai_wire.retry_after_seconds(headers, now)
        if retry_after is None:
            retry_after = gemini_wire.retry_delay_seconds(body)  # compat layer: Google envelope
        final = {k.lower(): v for k, v in headers.items()}.get("x-should-retry") == "false"
        quota = exc.status_code in (400, 429) and (
            openai_wire.is_quota_error(code, text)
            or gemini_wire.is_daily_quota(body)
            or (exc.status_code == 429 and final)  # "do not retry": waiting will not lift it
        )
        return by_status(exc.status_code, message, retry_after=retry_after, quota=quota)
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "lost the connection"
        error = OutcomeUnknown if may_have_been_sent(exc) else Transient
        return error(scrub(f"openai {operation} {kind}: {_chain_names(exc)}", secrets))
    return _generic("openai", exc, operation=operation, secrets=secrets)


def _generic(
    provider: str, exc: BaseException, *, operation: str, secrets: Sequence[str]
) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, (*TRANSPORT_ERRORS, TimeoutError, ConnectionError)):
        error = OutcomeUnknown if may_have_been_sent(exc) else Transient
        return error(
            scrub(
                f"{provider} {operation} failed in transport: {type(exc).__name__}: {exc}", secrets
            )
        )
    if isinstance(exc, json.JSONDecodeError | pydantic.ValidationError):
        return Transient(
            scrub(f"{provider} {operation}: unreadable response: {type(exc).__name__}", secrets)
        )
    # ValueError/KeyError raised by an SDK while talking to the server (e.g. an upload that did
    # not finalize, a missing upload URL): the call may be repeated.
    return Transient(scrub(f"{provider} {operation} failed: {type(exc).__name__}: {exc}", secrets))
