"""Strict parsers for the three unit-bearing value types of the configuration.

Each parser takes what YAML produced and returns a plain Python value, or raises ``ValueError``
whose message says what was expected (the loader prefixes ``FILE:LINE:COL``):

* **Duration** -> ``timedelta``: one or more ``<integer><unit>`` parts, largest unit first, units
  ``d`` (days), ``h``, ``m`` (minutes), ``s``: ``90s``, ``15m``, ``12h``, ``2d``, ``1h30m``. A bare
  number is refused because it has no unit (and YAML 1.1 reads ``1:30`` as the integer 90).
* **Byte size** -> ``int`` bytes: ``<number><unit>`` with SI units ``B``, ``KB`` (= ``kB``),
  ``MB``, ``GB``, ``TB`` in powers of 1000 and binary units ``KiB``, ``MiB``, ``GiB``, ``TiB`` in
  powers of 1024, so ``200MB`` is 200,000,000 bytes and ``512KiB`` is 524,288. Units are
  case-sensitive (``mb`` is refused rather than guessed). A YAML integer is a count of bytes.
* **Listen address** -> ``Listen(host, port)``: ``127.0.0.1:9464`` or ``[::1]:9464``.
* **Submit schedule** -> ``SubmitSchedule``: ``interval 15m`` or a five-field cron expression.
* **USD** -> ``Decimal``: a non-negative amount with at most 6 decimal places, from a quoted
  decimal string (``"0.50"``) or a whole YAML integer. A YAML float (``0.5``) is refused with a
  message to quote it: money is never read through a binary float.

Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

DURATION_UNITS: dict[str, int] = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 1000,
    "kB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
USD_MAX_PLACES = 6

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_USD = re.compile(r"-?\d+(?:\.\d+)?")
_MAX_SHOWN = 40
# What provider keys look like (OpenAI ``sk-...``, Google ``AIza...``): never shown in a message.
SECRET_PATTERN = re.compile(r"sk-[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{30,}")
_DURATION_HINT = "expected a duration such as 90s, 15m, 12h, 2d or 1h30m"
MAX_DURATION_SECONDS = 3650 * 86400  # ten years, as far as a record's deadline may reach
_SIZE_HINT = "expected a size such as 512KiB, 200MB or 2GB"
_USD_HINT = 'expected a non-negative USD amount such as "0.50"'


def show(value: Any) -> str:
    """A short, safe rendering of a user value for an error message (key-like text redacted)."""
    if isinstance(value, str) and SECRET_PATTERN.search(value):
        return "<redacted>"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def describe(value: Any) -> str:
    """How a YAML value is named in messages: its YAML type, and a short value for scalars."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float | Decimal):
        return f"the number {show(value)}"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def parse_duration(value: Any, *, allow_zero: bool = False) -> timedelta:
    """``"1h30m"`` -> ``timedelta(hours=1, minutes=30)``; see the module docstring."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):  # bool is an int
        raise ValueError(f"{_DURATION_HINT}; got the bare number {show(value)} (give a unit)")
    elif not isinstance(value, str):
        raise ValueError(f"{_DURATION_HINT}; got {type(value).__name__}")
    else:
        seconds = _duration_seconds(value)
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{_DURATION_HINT}; got {show(value)} (must be greater than zero)")
    if seconds > MAX_DURATION_SECONDS:  # a typo; timedelta() and now + it would overflow
        raise ValueError(f"{_DURATION_HINT}; got {show(value)} (at most 3650d)")
    return timedelta(seconds=seconds)


def _duration_seconds(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        if text.strip().endswith("ms"):
            raise ValueError(f"{_DURATION_HINT}; got {show(text)} (milliseconds are not supported)")
        raise ValueError(f"{_DURATION_HINT}; got {show(text)}")
    parts = (int(g) if g else 0 for g in match.groups())
    return sum(n * unit for n, unit in zip(parts, DURATION_UNITS.values(), strict=True))


def format_duration(value: timedelta) -> str:
    """The inverse of ``parse_duration`` for whole seconds: 5400 s -> ``1h30m``."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in DURATION_UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_byte_size(value: Any) -> int:
    """``"200MB"`` -> ``200_000_000``; ``"512KiB"`` -> ``524_288``; see the module docstring."""
    if isinstance(value, bool):
        raise ValueError(f"{_SIZE_HINT}; got {show(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{_SIZE_HINT}; got {value} (must not be negative)")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{_SIZE_HINT}; got {type(value).__name__}")
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{_SIZE_HINT}; got {show(value)}")
    number, unit = match.groups()
    if unit not in SIZE_UNITS:
        units = ", ".join(SIZE_UNITS)
        raise ValueError(
            f"{_SIZE_HINT}; unknown unit {unit!r} in {show(value)} "
            f"(units are case-sensitive: {units})"
            if unit
            else f"{_SIZE_HINT}; got {show(value)} (a string needs a unit, e.g. {number}B)"
        )
    total = Decimal(number) * SIZE_UNITS[unit]
    if total != total.to_integral_value():
        raise ValueError(f"{_SIZE_HINT}; {show(value)} is not a whole number of bytes")
    return int(total)


def format_byte_size(value: int) -> str:
    """A readable form that ``parse_byte_size`` reads back to the same number."""
    for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"):
        if value and value % SIZE_UNITS[unit] == 0:
            return f"{value // SIZE_UNITS[unit]}{unit}"
    return f"{value}B"


def parse_usd(value: Any) -> Decimal:
    """``"0.50"`` / ``0.5`` / ``2`` -> ``Decimal``; see the module docstring."""
    if isinstance(value, bool):
        raise ValueError(f"{_USD_HINT}; got {show(value)}")
    if isinstance(value, Decimal):
        text = format(value, "f") if value.is_finite() else str(value)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        raise ValueError(
            f'money must be a quoted decimal string: write "{value!r}" in quotes, not the YAML '
            f"number {value!r} (a binary float, which cannot hold most cents exactly)"
        )
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"{_USD_HINT}; got {type(value).__name__}")
    if _USD.fullmatch(text) is None:
        raise ValueError(f"{_USD_HINT}; got {show(value)}")
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid numbers
        raise ValueError(f"{_USD_HINT}; got {show(value)}") from exc
    if amount < 0:
        raise ValueError(f"{_USD_HINT}; got {show(value)} (must not be negative)")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > USD_MAX_PLACES:
        raise ValueError(
            f"{_USD_HINT}; got {show(value)} (at most {USD_MAX_PLACES} decimal places)"
        )
    return amount


@dataclass(frozen=True, slots=True)
class Listen:
    """A ``host:port`` to bind; IPv6 hosts in brackets (``[::1]:9464``)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_listen(value: Any) -> Listen:
    """``"127.0.0.1:9464"`` -> ``Listen("127.0.0.1", 9464)``."""
    hint = 'expected host:port such as "127.0.0.1:9464"'
    if isinstance(value, Listen):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{hint}; got {describe(value)}")
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})", value.strip())
    if match is None:
        raise ValueError(f"{hint}; got {show(value)}")
    host = match.group(1) or match.group(2)
    port = int(match.group(3))
    if not 1 <= port <= 65535:
        raise ValueError(f"{hint}; port {port} is outside 1..65535")
    return Listen(host, port)


@dataclass(frozen=True, slots=True)
class SubmitSchedule:
    """When the submit stage runs: every ``interval``, or on a five-field ``cron`` (UTC)."""

    interval: timedelta | None = None
    cron: str | None = None

    def __str__(self) -> str:
        if self.interval is not None:
            return f"interval {format_duration(self.interval)}"
        return f"cron {self.cron}"


def parse_submit(value: Any) -> SubmitSchedule:
    """``"interval 15m"`` or a cron expression (``"*/15 * * * *"``, optionally ``"cron ..."``)."""
    hint = 'expected "interval <duration>" (e.g. "interval 15m") or a five-field cron expression'
    if isinstance(value, SubmitSchedule):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{hint}; got {describe(value)}")
    text = " ".join(value.split())
    if text.startswith("interval "):
        return SubmitSchedule(interval=parse_duration(text.removeprefix("interval ")))
    cron = text.removeprefix("cron ")
    if len(cron.split()) != 5:
        raise ValueError(f"{hint}; got {show(value)}")
    _check_cron(cron, hint)
    return SubmitSchedule(cron=cron)


def _check_cron(cron: str, hint: str) -> None:
    from apscheduler.triggers.cron import CronTrigger  # lazily: only configs with a cron pay

    try:
        CronTrigger.from_crontab(cron, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"{hint}; {cron!r} is not valid: {exc}") from None
