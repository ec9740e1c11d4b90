"""The one exception tree of planner.

Adapters translate library errors into these (``raise ... from``); only the CLI maps them to
exit codes (``ConfigError``/``InputError`` -> 2, everything else -> 1)::

    PlannerError
     +-- ConfigError        the configuration is wrong (carries FILE:LINE:COL problems)
     +-- InputError         a file or argument given by the user is wrong
     +-- StoreError         the database refused or is unreachable
     +-- SinkError          a sink could not take results (read-only, full)
     +-- ProviderError      a provider call failed
          +-- Transient     worth retrying soon (5xx, timeouts, connection resets)
          |    +-- OutcomeUnknown  the request left and no answer came back (read timeout,
          |                        connection cut mid-response): it may have been carried out
          +-- RateLimited   429; ``retry_after`` seconds when the provider said so
          +-- QuotaExceeded a limit that a short wait will not lift (enqueued tokens, daily quota)
          +-- Permanent     the request itself is wrong (400/404/422); retrying cannot help
          +-- NotFound      the remote object does not exist (any more)
          +-- AuthFailed    401/403: the key is missing, wrong or lacks permission
"""

from __future__ import annotations


class PlannerError(Exception):
    """Root of every error planner raises on purpose."""


class ConfigError(PlannerError):
    """The configuration is invalid. ``problems`` holds one ``FILE:LINE:COL: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InputError(PlannerError):
    """A file or argument given by the user is invalid."""


class StoreError(PlannerError):
    """The store could not do what was asked."""


class SinkError(PlannerError):
    """A sink could not take results (a read-only or full folder); nothing half-written stays."""


class ProviderError(PlannerError):
    """A provider call failed; subclasses say what the caller can do about it."""

    retryable: bool = False


class Transient(ProviderError):
    retryable = True


class OutcomeUnknown(Transient):
    """The request was sent and the answer was lost: the provider may have carried it out (and
    billed it). Safe to repeat only where the call is idempotent (a GET, a create looked up by
    our id); an interactive generation is not, so it is not sent again."""


class RateLimited(ProviderError):
    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(ProviderError):
    """A limit such as enqueued tokens or a daily quota; shrink or wait long."""


class Permanent(ProviderError):
    """The request is invalid; retrying the same thing cannot succeed."""


class NotFound(ProviderError):
    """The remote object is gone or never existed."""


class AuthFailed(ProviderError):
    """Credentials are missing, wrong or not allowed."""
