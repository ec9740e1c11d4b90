"""Fault injection for the sandbox: a small spec language and deterministic decisions.

Spec: comma-separated ``name=value`` items (whitespace ignored), e.g.
``rate_limit=0.2,retry_after=3,server_error=0.1,batch_fail=0.1,line_error_rate=0.02,seed=42``.

HTTP faults (decided per call; value = probability 0..1):
  rate_limit        429. OpenAI: ``retry-after``/``retry-after-ms`` headers; Gemini: no header,
                    RESOURCE_EXHAUSTED with ``google.rpc.RetryInfo.retryDelay`` in the body.
  daily_quota       429 whose body says a per-day quota is exhausted (Gemini ``QuotaFailure``
                    with a ``...PerDay`` quota id; OpenAI ``insufficient_quota``).
  server_error      500.            unavailable   503.
  auth_error        401 (OpenAI) / 403 PERMISSION_DENIED (Gemini).
  timeout_rate      (alias timeout) the call is carried out, then the answer is held
                    ``timeout_sleep`` seconds (default 30), longer than a sane client timeout:
                    an ambiguous outcome.
  drop_rate         (alias drop) the call is carried out, then the connection is cut mid-response.
  slow=SECONDS      every call sleeps this long before answering (``slow_rate`` = probability,
                    default 1).
  retry_after=S     the hint sent with rate_limit (default 2.5).
  list_lag=S        a new batch shows up in list results only S seconds after creation.
Job faults (decided once per job, at creation; value = probability):
  batch_fail        the job fails (Gemini: Operation ``error``; OpenAI: ``failed`` + errors).
  batch_expire      the job expires; ``expire_done_fraction`` (default 0.5) of its lines ran
                    (OpenAI returns them; Gemini EXPIRED returns no results).
  cancel            the job is cancelled by someone else mid-run (``done_fraction`` of it ran).
  stuck             the job stays pending forever.
  token_limit       enqueued-token limit hit: Gemini 429 RESOURCE_EXHAUSTED at create;
                    OpenAI create succeeds, then the job is ``failed`` / ``token_limit_exceeded``.
Line faults (decided per line; value = probability):
  line_error_rate, malformed_line_rate, missing_line_rate;  shuffle_results=0|1.
Output faults (decided once per job, at settlement; value = probability):
  other_shape       a Gemini job answers in the other output shape: a file-input job returns
                    ``inlinedResponses`` (each keyed by ``metadata.key``), an inline job a
                    ``responsesFile`` (as field reports say Google sometimes does).
Tier faults (decided per interactive call, by request key; value = probability):
  flex_default      a flex request is answered by the default tier, as a provider does when it
                    has no flex capacity for it: OpenAI reports ``service_tier: "default"``,
                    Gemini ``usageMetadata.serviceTier: "standard"``; billed at that tier.
Other:
  seed=INT (default 0). Every draw is a hash of (seed, what, identity), so a run repeats exactly.
Targeting, for any fault name F:
  F_on=a|b|c   only calls/jobs matching one of the tokens: an operation (``create``), a surface
               (``gemini``, ``openai``, ``compat``) or both (``gemini.create``).
               Operations: upload, upload_chunk, file_get, file_list, file_delete, download,
               create, get, list, cancel, delete, generate, embed, count_tokens.
  F_first=N    the first N matching calls/jobs get the fault for certain (then ``F`` applies).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from starlette.responses import Response, StreamingResponse

HttpFaultKind = Literal[
    "rate_limit", "daily_quota", "server_error", "unavailable", "auth_error", "timeout", "drop"
]
JobFaultKind = Literal["fail", "expire", "cancel", "stuck", "token_limit"]
LineFaultKind = Literal["error", "malformed", "missing"]

# Order matters: the first fault whose draw hits wins.
HTTP_FAULTS: dict[str, tuple[HttpFaultKind, int]] = {
    "auth_error": ("auth_error", 401),
    "daily_quota": ("daily_quota", 429),
    "rate_limit": ("rate_limit", 429),
    "unavailable": ("unavailable", 503),
    "server_error": ("server_error", 500),
    "timeout_rate": ("timeout", 0),
    "drop_rate": ("drop", 0),
}
JOB_FAULTS: dict[str, JobFaultKind] = {
    "token_limit": "token_limit",
    "batch_fail": "fail",
    "batch_expire": "expire",
    "cancel": "cancel",
    "stuck": "stuck",
}
LINE_FAULTS: dict[str, LineFaultKind] = {
    "line_error_rate": "error",
    "malformed_line_rate": "malformed",
    "missing_line_rate": "missing",
}
_PROBABILITIES = (
    *HTTP_FAULTS,
    *JOB_FAULTS,
    *LINE_FAULTS,
    "slow_rate",
    "other_shape",
    "flex_default",
)
_SECONDS = ("retry_after", "slow", "timeout_sleep", "list_lag")
_FRACTIONS = ("expire_done_fraction", "done_fraction")
_TARGETABLE = (*HTTP_FAULTS, *JOB_FAULTS, "slow")
OPERATIONS = frozenset(
    {
        "upload",
        "upload_chunk",
        "file_get",
        "file_list",
        "file_delete",
        "download",
        "create",
        "get",
        "list",
        "cancel",
        "delete",
        "generate",
        "embed",
        "count_tokens",
    }
)
SURFACES = frozenset({"gemini", "openai", "compat"})


class FaultSpecError(ValueError):
    """A fault spec item that cannot be understood; the message names the item."""


@dataclass(frozen=True)
class HttpFault:
    """What to do to one HTTP call.

    ``status`` 0 means "answer normally" (after ``sleep`` seconds, or after acting for
    ``timeout``/``drop``). ``after_action`` is True when the call must be carried out first.
    """

    kind: HttpFaultKind | Literal["slow"]
    status: int = 0
    retry_after: float | None = None
    sleep: float = 0.0

    @property
    def after_action(self) -> bool:
        return self.kind in ("timeout", "drop")


@dataclass(frozen=True)
class JobFault:
    kind: JobFaultKind
    done_fraction: float = 0.0
    message: str = ""


def _draw(seed: int, *parts: object) -> float:
    """A deterministic uniform number in [0, 1) from the seed and an identity."""
    digest = hashlib.sha256(":".join([str(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _parse_targets(name: str, raw: str, where: str) -> frozenset[str]:
    base = name[: -len("_on")]
    if base not in _TARGETABLE:
        raise FaultSpecError(f"{where}: {base!r} cannot be targeted")
    tokens = frozenset(t.strip() for t in raw.split("|") if t.strip())
    for token in tokens:
        surface, _, op = token.partition(".")
        if op:
            ok = surface in SURFACES and op in OPERATIONS
        else:
            ok = surface in SURFACES or surface in OPERATIONS
        if not ok:
            raise FaultSpecError(
                f"{where}: unknown target {token!r}; expected an operation "
                f"({', '.join(sorted(OPERATIONS))}), a surface ({', '.join(sorted(SURFACES))})"
                " or surface.operation, separated by |"
            )
    return tokens


def _parse_count(name: str, raw: str, where: str) -> int:
    base = name[: -len("_first")]
    if base not in _TARGETABLE:
        raise FaultSpecError(f"{where}: {base!r} has no _first form")
    if not raw.isdigit():
        raise FaultSpecError(f"{where}: expected a whole number of calls >= 0")
    return int(raw)


def _parse_number(name: str, raw: str, where: str) -> float:
    try:
        number = float(raw)
    except ValueError:
        raise FaultSpecError(f"{where}: expected a number") from None
    if name in _SECONDS:
        if not number >= 0:
            raise FaultSpecError(f"{where}: expected seconds >= 0")
        return number
    if not 0.0 <= number <= 1.0:
        raise FaultSpecError(f"{where}: expected a probability between 0 and 1")
    return number


def _parse_value(name: str, raw: str) -> Any:
    where = f"fault {name}={raw!r}"
    if name == "seed":
        try:
            return int(raw)
        except ValueError:
            raise FaultSpecError(f"{where}: expected an integer seed") from None
    if name == "shuffle_results":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise FaultSpecError(f"{where}: expected 0 or 1")
    if name.endswith("_on"):
        return _parse_targets(name, raw, where)
    if name.endswith("_first"):
        return _parse_count(name, raw, where)
    return _parse_number(name, raw, where)


def _known(name: str) -> bool:
    if name in ("seed", "shuffle_results") or name in _PROBABILITIES:
        return True
    if name in _SECONDS or name in _FRACTIONS:
        return True
    for suffix in ("_on", "_first"):
        if name.endswith(suffix) and name[: -len(suffix)] in _TARGETABLE:
            return True
    return False


_ALIASES = {"timeout": "timeout_rate", "drop": "drop_rate"}


def _canonical(name: str) -> str:
    """``timeout`` / ``drop`` are accepted for ``timeout_rate`` / ``drop_rate`` (also in F_on)."""
    for suffix in ("_on", "_first", ""):
        base = name[: len(name) - len(suffix)] if suffix else name
        if name.endswith(suffix) and base in _ALIASES:
            return _ALIASES[base] + suffix
    return name


def parse_spec(spec: str | None) -> dict[str, Any]:
    """Parse a spec string into a settings dict; raises FaultSpecError on any bad item."""
    settings: dict[str, Any] = {}
    if not spec or not spec.strip():
        return settings
    for position, item in enumerate(spec.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = _canonical(name.strip())
        if not sep:
            raise FaultSpecError(f"fault item {position} {item!r}: expected name=value")
        if not _known(name):
            raise FaultSpecError(f"fault item {position}: unknown fault {name!r}")
        settings[name] = _parse_value(name, raw.strip())
    return settings


def _settings_from_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """JSON form: {"spec": "..."} or {"rate_limit": 0.2, "rate_limit_on": ["create"], ...}."""
    if set(data) == {"spec"}:
        spec = data["spec"]
        if not isinstance(spec, str):
            raise FaultSpecError("fault body: 'spec' must be a string")
        return parse_spec(spec)
    parts: list[str] = []
    for name, value in data.items():
        if isinstance(value, list | tuple | set | frozenset):
            value = "|".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = int(value)
        parts.append(f"{name}={value}")
    return parse_spec(",".join(parts))


class FaultPlan:
    """Decides, deterministically, which calls, jobs and lines misbehave."""

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings: dict[str, Any] = dict(settings or {})
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], int] = {}
        self._hits: dict[str, int] = {}
        self._jobs = 0

    @classmethod
    def from_spec(cls, spec: str | None) -> FaultPlan:
        return cls(parse_spec(spec))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultPlan:
        return cls(_settings_from_mapping(data))

    def to_dict(self) -> dict[str, Any]:
        return {k: sorted(v) if isinstance(v, frozenset) else v for k, v in self.settings.items()}

    def reset_counters(self) -> None:
        with self._lock:
            self._calls.clear()
            self._hits.clear()
            self._jobs = 0

    # -- simple settings ----------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return int(self.settings.get("seed", 0))

    @property
    def retry_after(self) -> float:
        return float(self.settings.get("retry_after", 2.5))

    @property
    def list_lag(self) -> float:
        return float(self.settings.get("list_lag", 0.0))

    @property
    def shuffle_results(self) -> bool:
        return bool(self.settings.get("shuffle_results", False))

    @property
    def done_fraction(self) -> float:
        value = self.settings.get("expire_done_fraction", self.settings.get("done_fraction", 0.5))
        return float(value)

    # -- decisions ----------------------------------------------------------------------------
    def _targets(self, name: str, surface: str, operation: str) -> bool:
        tokens: frozenset[str] | None = self.settings.get(f"{name}_on")
        if not tokens:
            return True
        return bool({surface, operation, f"{surface}.{operation}"} & tokens)

    def _hit(self, name: str, draw: float) -> bool:
        """Called under the lock for a matching call: first-N, then the probability."""
        first = int(self.settings.get(f"{name}_first", 0))
        seen = self._hits.get(name, 0)
        self._hits[name] = seen + 1
        if seen < first:
            return True
        return draw < float(self.settings.get(name, 0.0))

    def http_fault(self, surface: str, operation: str, ident: str = "") -> HttpFault | None:
        """The fault (if any) for this call; counts the call for ``_first`` targeting."""
        with self._lock:
            n = self._calls.get((surface, operation), 0)
            self._calls[(surface, operation)] = n + 1
            sleep = 0.0
            if "slow" in self.settings and self._targets("slow", surface, operation):
                rate = float(self.settings.get("slow_rate", 1.0))
                if _draw(self.seed, "slow", surface, operation, n) < rate:
                    sleep = float(self.settings["slow"])
            for name, (kind, status) in HTTP_FAULTS.items():
                configured = name in self.settings or f"{name}_first" in self.settings
                if not configured or not self._targets(name, surface, operation):
                    continue
                if self._hit(name, _draw(self.seed, name, surface, operation, n, ident)):
                    if kind == "timeout":
                        sleep = max(sleep, float(self.settings.get("timeout_sleep", 30.0)))
                    retry = self.retry_after if kind in ("rate_limit", "daily_quota") else None
                    if kind == "daily_quota":
                        retry = 86_400.0
                    return HttpFault(kind=kind, status=status, retry_after=retry, sleep=sleep)
            if sleep > 0:
                return HttpFault(kind="slow", sleep=sleep)
            return None

    def job_fault(
        self, job_ident: str, surface: str = "", operation: str = "create"
    ) -> JobFault | None:
        """The fate of a new job, decided once at creation."""
        with self._lock:
            self._jobs += 1
            for name, kind in JOB_FAULTS.items():
                configured = name in self.settings or f"{name}_first" in self.settings
                if not configured or not self._targets(name, surface, operation):
                    continue
                if self._hit(name, _draw(self.seed, name, job_ident)):
                    fraction = self.done_fraction if kind in ("expire", "cancel") else 0.0
                    return JobFault(kind=kind, done_fraction=fraction)
            return None

    def other_shape(self, job_ident: str) -> bool:
        """Whether this job's results come back in the shape it did not ask for."""
        p = float(self.settings.get("other_shape", 0.0))
        return p > 0 and _draw(self.seed, "other_shape", job_ident) < p

    def flex_default(self, key: str) -> bool:
        """Whether this flex call is answered by the default tier instead."""
        p = float(self.settings.get("flex_default", 0.0))
        return p > 0 and _draw(self.seed, "flex_default", key) < p

    def line_fault(self, job_ident: str, key: str) -> LineFaultKind | None:
        for name, kind in LINE_FAULTS.items():
            p = float(self.settings.get(name, 0.0))
            if p > 0 and _draw(self.seed, name, job_ident, key) < p:
                return kind
        return None


class ConnectionDropped(Exception):
    """Raised inside a streaming body to make the server cut the connection mid-response."""


def dropped_response(status_code: int = 200) -> Response:
    """A response that announces a body, sends part of it, then aborts the connection.

    The client sees a protocol error (incomplete body) after the server has acted: the
    "accept then drop" and "connection reset mid-body" faults. The server logs the abort.
    """

    def body() -> Iterator[bytes]:
        yield b'{"partial'
        raise ConnectionDropped("sandbox fault: connection dropped mid-response")

    return StreamingResponse(
        body(),
        status_code=status_code,
        media_type="application/json",
        headers={"content-length": "4096"},
    )
