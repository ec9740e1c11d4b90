"""The emulator of ``planner run --sandbox``, in a child process of its own.

``python -m planner.sandbox`` serves on a loopback socket this process bound and listens on
(``--fd``), so the URL is known at once and calls made before the child serves wait in the
backlog; it stops when its standard input closes (``--until-stdin-closes``): when
:meth:`SandboxProcess.stop` closes it, or when this process ends, however it ends. The child
neither competes with the daemon for the GIL nor adds its files to the daemon's memory, and
this module imports nothing from ``planner.sandbox`` (its web framework stays out of the
daemon's process).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType

STOP_TIMEOUT_SECONDS = 10.0
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the ``planner`` package


class SandboxProcess:
    """A sandbox at ``speed`` seconds per job state, served by a child process on a free
    loopback port; use it as a context manager, or call :meth:`stop`."""

    def __init__(self, speed: float, host: str = "127.0.0.1") -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the sandbox only listens on loopback addresses, not {host!r}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.bind((host, 0))
            sock.listen(128)  # connections made before the child serves wait in the backlog
            port = sock.getsockname()[1]
            self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            path = os.environ.get("PYTHONPATH")
            env = {**os.environ, "PYTHONPATH": _ROOT if not path else f"{_ROOT}{os.pathsep}{path}"}
            argv = [sys.executable, "-m", "planner.sandbox", "--fd", str(sock.fileno())]
            argv += ["--speed", repr(speed), "--until-stdin-closes"]
            self._child = subprocess.Popen(  # our own interpreter and module
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                pass_fds=(sock.fileno(),),
                env=env,
                start_new_session=True,  # a Ctrl-C stops the daemon first; stop() ends the child
            )
        finally:
            sock.close()  # the child holds its own copy

    @property
    def pid(self) -> int:
        return self._child.pid

    @property
    def returncode(self) -> int | None:
        """The child's exit status once stopped (None while it runs)."""
        return self._child.returncode

    def stop(self) -> None:
        """End the child at once. The emulator keeps its batches and files in memory and
        writes nothing, so there is nothing to shut down cleanly: a graceful uvicorn shutdown
        cost 0.3 s, a tenth of a small ``run --once``, to throw that memory away."""
        stdin = self._child.stdin
        if stdin is not None and not stdin.closed:
            stdin.close()
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait(timeout=STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SandboxProcess(url={self.url!r})"


def spawn(*, speed: float) -> SandboxProcess:
    """A sandbox at ``speed`` in a child process on a free loopback port."""
    return SandboxProcess(speed)
