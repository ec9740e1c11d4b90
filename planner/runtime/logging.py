"""Structured, quiet, redacted logging: one JSON object per line on stdout.

journald captures stdout, so the daemon needs no log files. Each line carries ``ts`` (RFC 3339,
UTC), ``level``, ``logger``, ``event`` (a stable name, one per record: STYLE 5), ``message``,
the ids passed in ``extra`` and, when there is one, ``exc``.

Secrets never reach the output (STYLE 6, spec §6.1): :class:`RedactingFilter`, installed on the
handler so it sees every propagated record, replaces the literal values registered with
:func:`register_secret` and the known key shapes (``sk-…``, ``AIza…``, ``Bearer …``, ``key=``
and Gemini's resumable-upload ``upload_id=`` capability) in the message, its args, every extra
field and the exception text. The formatter redacts the finished line once more, so an object
whose ``str()`` reveals a key is caught too. The SDK and HTTP loggers are held at WARNING.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic import SecretStr

__all__ = [
    "QUIET_LOGGERS",
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "redact",
    "register_secret",
    "setup_logging",
]

REDACTED = "<redacted>"

QUIET_LOGGERS: tuple[str, ...] = (
    "httpx",
    "httpcore",
    "httpx2",
    "httpcore2",
    "openai",
    "google_genai",
    "urllib3",
)
"""Loggers that print full URLs or headers at INFO/DEBUG; WARNING unless ``debug_http``."""

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"sk-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"AIza[0-9A-Za-z_-]{30,}"), REDACTED),
    (re.compile(r"(Bearer\s+)\S+", re.IGNORECASE), r"\g<1>" + REDACTED),
    (re.compile(r"([?&](?:upload_id|key)=)[^&\s\"'<>]+"), r"\g<1>" + REDACTED),
)

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(secret: str | SecretStr) -> None:
    """Redact this literal value from every log line from now on (empty values are ignored)."""
    global _secrets
    value = (secret.get_secret_value() if isinstance(secret, SecretStr) else secret).strip()
    if not value:
        return
    with _lock:
        if value not in _secrets:
            # Longest first, so a secret containing another is replaced whole.
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def clear_secrets() -> None:
    """Forget registered secrets (tests; a reload re-registers the new ones)."""
    global _secrets
    with _lock:
        _secrets = ()


def redact(text: str) -> str:
    """``text`` with every registered secret and known key shape replaced by ``<redacted>``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so no secret survives in any part a handler may print."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record or leak its args
            message = f"{record.msg!s} (unformattable args)"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRS:
                setattr(record, key, _redact_value(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, event, message, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key not in out:
                out[key] = _redact_value(value)
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return redact(json.dumps(out, default=str, ensure_ascii=False))


_HANDLER_NAME = "planner.stdout"


def setup_logging(
    level: int | str = logging.INFO,
    secrets: Iterable[str | SecretStr] = (),
    *,
    stream: TextIO | None = None,
    debug_http: bool = False,
) -> logging.Handler:
    """Install the JSON handler on the root logger (replacing one installed before).

    ``secrets`` are registered for redaction (plus any registered earlier). ``debug_http``
    lets the HTTP/SDK loggers through at the root level; redaction still applies.
    """
    for secret in secrets:
        register_secret(secret)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug_http else logging.WARNING)
    logging.captureWarnings(True)
    return handler
