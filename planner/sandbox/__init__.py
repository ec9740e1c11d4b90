"""planner.sandbox: a local emulator of the Gemini and OpenAI batch surfaces.

It imports nothing from the rest of planner, so it cannot share a bug with the code it checks.

    with serve(faults="rate_limit=0.1", speed=0.5) as sandbox:
        client = genai.Client(api_key="x", http_options={"base_url": sandbox.url})

``create_app`` builds the ASGI app around a ``SandboxState``; ``serve`` runs it with uvicorn in a
background thread on 127.0.0.1; ``run_forever`` is what ``planner sandbox`` and
``python -m planner.sandbox`` call (also as the child process of ``planner run --sandbox``,
``planner/runtime/sandbox_child.py``, serving on the socket its parent bound).
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
import threading
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from planner.sandbox import control_routes, gemini_routes, openai_routes
from planner.sandbox.faults import FaultPlan, FaultSpecError, HttpFault, JobFault
from planner.sandbox.kernel import (
    Job,
    JobLine,
    Ledger,
    LimitExceeded,
    Limits,
    LineOutcome,
    SandboxClock,
    SandboxState,
    StoredFile,
)

__all__ = [
    "FaultPlan",
    "FaultSpecError",
    "HttpFault",
    "Job",
    "JobFault",
    "JobLine",
    "Ledger",
    "LimitExceeded",
    "Limits",
    "LineOutcome",
    "RunningSandbox",
    "SandboxClock",
    "SandboxState",
    "StoredFile",
    "create_app",
    "make_state",
    "run_forever",
    "serve",
]

logger = logging.getLogger(__name__)

DEFAULT_SECONDS_PER_STATE = 1.0
_STARTUP_TIMEOUT_SECONDS = 10.0


def create_app(state: SandboxState | None = None) -> FastAPI:
    """The ASGI app serving every surface on one port, around ``state`` (fresh if None)."""
    state = state or SandboxState()
    app = FastAPI(title="planner sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = state
    control_routes.install(app, state)
    openai_routes.install(app, state)
    gemini_routes.install(app, state)
    return app


def make_state(
    *,
    faults: str | FaultPlan | None = None,
    speed: float = DEFAULT_SECONDS_PER_STATE,
    manual_clock: bool = False,
    limits: Limits | None = None,
) -> SandboxState:
    """A fresh state; ``faults`` is a spec string (see faults.py) or a FaultPlan."""
    plan = faults if isinstance(faults, FaultPlan) else FaultPlan.from_spec(faults)
    clock = SandboxClock(speed, manual=manual_clock)
    return SandboxState(clock=clock, faults=plan, limits=limits)


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the sandbox only listens on loopback addresses, not {host!r}")


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections (no 40 ms
    # delayed-ACK stalls on keep-alive requests).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:  # a busy port: the caller says so in one line; no socket left open
        sock.close()
        raise
    return sock


class RunningSandbox:
    """A sandbox served by uvicorn in a daemon thread; ``stop()`` or use it as a context."""

    def __init__(
        self,
        state: SandboxState,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sock: socket.socket | None = None,
    ) -> None:
        """``sock``: serve on this bound socket instead of binding ``host:port`` (the parent
        of ``runtime/sandbox_child.py`` hands one over)."""
        self.state = state
        if sock is not None:
            self._socket = sock
            host = sock.getsockname()[0]
            _check_loopback(host)
        else:
            _check_loopback(host)
            if not 0 <= port <= 65535:  # bind() would raise OverflowError, a traceback for a typo
                raise ValueError(f"port must be 0 to 65535, got {port}")
            self._socket = _bound_socket(host, port)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        state.public_url = self.url
        self.app = create_app(state)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=5,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"planner-sandbox-{self.port}",
            daemon=True,
        )

    def start(self) -> RunningSandbox:
        self._thread.start()
        started = threading.Event()
        for _ in range(int(_STARTUP_TIMEOUT_SECONDS / 0.01)):
            if self._server.started:
                started.set()
                break
            if not self._thread.is_alive():
                break
            started.wait(0.01)
        if not started.is_set():
            self.stop()
            raise RuntimeError(f"sandbox did not start on {self.url}")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=_STARTUP_TIMEOUT_SECONDS)
        self._socket.close()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningSandbox(url={self.url!r})"


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    faults: str | FaultPlan | None = None,
    speed: float = DEFAULT_SECONDS_PER_STATE,
    manual_clock: bool = False,
    limits: Limits | None = None,
    state: SandboxState | None = None,
) -> RunningSandbox:
    """Start a sandbox on ``host:port`` (0 = a free port) and return it running."""
    state = state or make_state(
        faults=faults, speed=speed, manual_clock=manual_clock, limits=limits
    )
    return RunningSandbox(state, host, port).start()


def run_forever(
    host: str = "127.0.0.1",
    port: int = 8765,
    faults: str | None = None,
    speed: float = DEFAULT_SECONDS_PER_STATE,
    *,
    limits: Limits | None = None,
    sock: socket.socket | None = None,
    until_stdin_closes: bool = False,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (``planner sandbox``, ``python -m``).

    Prints one line with the URL. Raises ValueError for a non-loopback host and
    FaultSpecError for a bad fault spec, before anything listens. ``sock``: serve on this
    bound socket instead of ``host:port``; ``until_stdin_closes``: also stop when standard
    input ends (the parent of ``runtime/sandbox_child.py`` exited, however it ended).
    """
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        del signum, frame
        stop.set()

    def _watch_stdin() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        stop.set()

    state = make_state(faults=faults, speed=speed, limits=limits)
    if sock is None:
        sandbox = serve(host, port, state=state)
    else:
        sandbox = RunningSandbox(state, sock=sock).start()
    if until_stdin_closes:
        threading.Thread(target=_watch_stdin, name="planner-sandbox-stdin", daemon=True).start()
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"planner sandbox listening on {sandbox.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sandbox.stop()
