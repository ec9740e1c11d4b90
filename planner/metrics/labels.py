"""The closed sets planner's metric labels and buckets come from, defined once.

``STAGES`` (the daemon's job names), the ``kind`` values of provider errors, the bucket
boundaries of the histograms, and ``model="other"`` for anything outside the catalog. They
are here, apart from the metric objects (``metrics/__init__.py``), so the pipeline, the
runtime and the tests can name them without a registry.
"""

from __future__ import annotations

from enum import StrEnum

from planner.errors import (
    AuthFailed,
    NotFound,
    Permanent,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    Transient,
)

OTHER_MODEL = "other"

STAGES: tuple[str, ...] = ("submit", "flush", "interactive", "poll", "outbox", "housekeeping")
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
