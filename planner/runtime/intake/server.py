"""Run the intake: uvicorn in a daemon thread, started and stopped by the daemon.

Like ``runtime/http.py``'s /metrics listener, it binds the configured address (127.0.0.1 by
default; a warning off loopback), owns no signals (the daemon's main thread has them) and comes
back as a handle whose ``stop`` lets in-flight requests finish and frees the port.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import uvicorn
from sqlalchemy.orm import Session

from planner.config import resolve_intake_tokens
from planner.config.schema import IntakeConfig
from planner.core.catalog import ModelEntry
from planner.core.model import ProviderKind
from planner.errors import InputError
from planner.metrics import Metrics
from planner.runtime import clock
from planner.runtime.intake.app import create_app
from planner.runtime.intake.service import IntakeObserver, IntakeService
from planner.runtime.logging import register_secret
from planner.sources.formats import Reason

__all__ = ["IntakeMetrics", "IntakeServer", "build_service", "serve_intake"]

_log = logging.getLogger(__name__)
STARTUP_TIMEOUT = 10.0  # seconds to wait for uvicorn to bind before giving up


@dataclass
class IntakeServer:
    """A running intake listener."""

    host: str
    port: int
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Finish in-flight requests, then free the port; safe to call twice."""
        self._server.should_exit = True
        self._thread.join()

    def __enter__(self) -> IntakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class IntakeMetrics:
    """Counts what the intake stored and quarantined, as the ingest stage does for spools."""

    def __init__(self, metrics: Metrics, source: str) -> None:
        self._metrics = metrics
        self._metrics.record_ingested(source, 0)  # the series exist from the first scrape
        for reason in Reason:
            self._metrics.record_quarantined(source, reason.value, 0)

    def ingested(self, source: str, n: int) -> None:
        self._metrics.record_ingested(source, n)

    def quarantined(self, source: str, reason: str, n: int) -> None:
        self._metrics.record_quarantined(source, reason, n)


def build_service(
    cfg: IntakeConfig,
    session_factory: Callable[[], Session],
    family_of: Callable[[str], ProviderKind | None],
    observer: IntakeObserver | None = None,
    *,
    facts_of: Callable[[str], ModelEntry | None] | None = None,
) -> IntakeService:
    return IntakeService(
        session_factory=session_factory,
        source=cfg.source,
        family_of=family_of,
        default_model=cfg.default_model,
        observer=observer,
        facts_of=facts_of,
    )


def serve_intake(
    cfg: IntakeConfig,
    service: IntakeService,
    environ: Mapping[str, str],
    *,
    port: int | None = None,
) -> IntakeServer:
    """Start serving; ``port=0`` picks a free one. Raises ``ConfigError`` without tokens and
    ``InputError`` (exit 2, one line) if the address cannot be bound, both before READY."""
    tokens = resolve_intake_tokens(cfg, environ)
    for token in tokens:
        register_secret(token)
    app = create_app(service, [t.get_secret_value() for t in tokens], cfg.max_body)
    host = cfg.listen.host
    wanted = cfg.listen.port if port is None else port
    try:
        sock = _bind(host, wanted)
    except OSError as exc:  # a busy port or an address not ours: one line naming the setting
        raise InputError(
            f"intake.listen {host}:{wanted}: cannot listen: {exc.strerror or exc}; "
            "stop what holds it or choose another address"
        ) from exc
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="planner-intake", daemon=True
    )
    thread.start()
    bound = int(sock.getsockname()[1])
    _wait_started(server, thread)
    if not cfg.listen.is_loopback:
        _log.warning(
            "intake listener on a non-loopback address %s",
            host,
            extra={"event": "intake.listen_public", "host": host},
        )
    _log.info(
        "serving the intake on %s:%s",
        host,
        bound,
        extra={"event": "intake.listening", "host": host, "port": bound},
    )
    return IntakeServer(host, bound, server, thread)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    give_up = clock.monotonic() + STARTUP_TIMEOUT
    while not server.started and thread.is_alive() and clock.monotonic() < give_up:
        time.sleep(0.01)
    if not server.started:
        server.should_exit = True
        raise OSError("the intake did not start listening")
