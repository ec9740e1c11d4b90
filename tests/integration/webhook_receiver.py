"""A real HTTP receiver for webhook tests: ``http.server`` in a thread on 127.0.0.1.

It can be started on a port chosen before (so a sink configured for that port first finds
nobody listening, then the receiver), answers from a script of status codes (then 200), checks
every POST's ``X-Planner-Signature`` against the secret, and keeps what it received.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Received:
    key: str
    event: str
    signature_ok: bool
    body: dict[str, Any]


@dataclass
class Receiver:
    port: int
    secret: str
    script: list[int] = field(default_factory=list)  # statuses to answer first, then 200
    received: list[Received] = field(default_factory=list)  # every POST that was answered 2xx
    refused: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = (
                    "sha256=" + hmac.new(receiver.secret.encode(), raw, hashlib.sha256).hexdigest()
                )
                given = self.headers.get("X-Planner-Signature", "")
                status = receiver.script.pop(0) if receiver.script else 200
                if status >= 300:
                    receiver.refused += 1
                else:
                    receiver.received.append(
                        Received(
                            self.headers.get("Idempotency-Key", ""),
                            self.headers.get("X-Planner-Event", ""),
                            hmac.compare_digest(expected, given),
                            json.loads(raw),
                        )
                    )
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "7")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
