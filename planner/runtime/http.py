"""Serve ``/metrics`` from planner's registry, on loopback unless told otherwise.

prometheus_client's ``start_http_server`` binds ``0.0.0.0`` by default, so the address is
always passed explicitly (spec §5.4). The server runs in a daemon thread, owns no signals, and
comes back as a handle that stops it (tests, reload with a new listen address, shutdown). For
a remote Prometheus put a TLS proxy in front; never share a public listener with the intake.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from planner.errors import InputError

__all__ = ["MetricsServer", "serve_metrics"]

log = logging.getLogger(__name__)


@dataclass
class MetricsServer:
    """A running /metrics listener."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_metrics(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464
) -> MetricsServer:
    """Start serving ``registry`` at ``http://host:port/metrics``; ``port=0`` picks a free one.

    Raises ``InputError`` (exit 2, one line) if the address cannot be bound, before READY.
    """
    if not _is_loopback(host):
        log.warning(
            "metrics listener on a non-loopback address %s",
            host,
            extra={"event": "metrics.listen_public", "host": host},
        )
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:  # a busy port or an address not ours: one line naming the setting
        raise InputError(
            f"metrics.listen {host}:{port}: cannot listen: {exc.strerror or exc}; "
            "stop what holds it or choose another address"
        ) from exc
    bound_port = int(server.server_address[1])
    log.info(
        "serving metrics on %s:%s",
        host,
        bound_port,
        extra={"event": "metrics.listening", "host": host, "port": bound_port},
    )
    return MetricsServer(host, bound_port, server, thread)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
