"""The daemon's life cycle: sd_notify messages to systemd and the stop/reload signals.

``SdNotify`` speaks systemd's notify protocol with the standard library only (the protocol "is
guaranteed to be stable"; systemd's own MIT-0 example and gunicorn's ``systemd.py`` do the
same): one ``AF_UNIX``/``SOCK_DGRAM`` datagram to ``$NOTIFY_SOCKET``, a leading ``@`` meaning
the abstract namespace. Without the variable it does nothing, and it never raises: a broken
notify socket must not take the daemon down.

``Lifecycle`` owns SIGTERM/SIGINT (stop) and SIGHUP (reload). The handlers only set flags and
write one byte to a self-pipe, which is all that is safe in a signal handler (no locks: a
``threading.Event.set`` there can deadlock against the interrupted main thread). The daemon
polls ``stop_requested``/``take_reload()`` between steps and sleeps in :meth:`Lifecycle.wait`,
which a signal wakes at once. A stop gives the current step until :meth:`Lifecycle.deadline`
(``grace_seconds`` after the first signal) to finish; a second stop signal sets ``force``.

systemd 252 (Debian 12) has no ``Type=notify-reload``; the unit uses ``Type=notify`` and we
send ``RELOADING=1`` (with ``MONOTONIC_USEC``, which newer systemd wants) then ``READY=1``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from types import FrameType

from planner.runtime import clock

__all__ = ["Lifecycle", "SdNotify"]

log = logging.getLogger(__name__)

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class SdNotify:
    """Messages to systemd's notify socket; a no-op without ``NOTIFY_SOCKET``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if raw.startswith("@"):
            self._address = b"\0" + raw[1:].encode()
        elif raw.startswith("/"):
            self._address = raw
        elif raw:
            log.warning(
                "NOTIFY_SOCKET is neither a path nor an abstract name; not notifying",
                extra={"event": "sd_notify.bad_socket"},
            )
        self._watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: half of ``WATCHDOG_USEC``, or None if off."""
        return self._watchdog_interval

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True if it was sent."""
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(payload)
        except OSError as exc:
            log.warning(
                "sd_notify failed: %s",
                exc.strerror or type(exc).__name__,
                extra={"event": "sd_notify.failed"},
            )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        return self.notify(
            "RELOADING=1", f"MONOTONIC_USEC={clock.monotonic_usec()}", *_status(status)
        )

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(*_status(text))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more start/stop time (``EXTEND_TIMEOUT_USEC``) while making progress."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return ("STATUS=" + " ".join(text.split()),)  # one line: the protocol is line based


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 2_000_000


class Lifecycle:
    """Stop and reload requests from signals, as flags the daemon polls.

    ``install()`` must run on the main thread (Python delivers signals there);
    ``uninstall()`` restores the previous handlers. ``request_stop()``/``request_reload()``
    do the same as the signals, for tests and an in-process CLI.
    """

    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
    RELOAD_SIGNALS = (signal.SIGHUP,)

    def __init__(
        self,
        *,
        grace_seconds: float = 60.0,
        notifier: SdNotify | None = None,
        monotonic: Callable[[], float] = clock.monotonic,
    ) -> None:
        if grace_seconds < 0:
            raise ValueError("grace_seconds must be >= 0")
        self.grace_seconds = grace_seconds
        self.notifier = notifier if notifier is not None else SdNotify()
        self._monotonic = monotonic
        self._stop = False
        self._force = False
        self._reload = False
        self._stop_at: float | None = None
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._previous: dict[int, _Handler] = {}

    # -- signal side (async-signal-safe: plain assignments and one os.write) ------------------
    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._stop:
            self._force = True
        else:
            self._stop_at = self._monotonic()
            self._stop = True
        self._wake()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full pipe already means "wake up"
            os.write(self._write_fd, b"\0")

    # -- installation ----------------------------------------------------------------------
    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("Lifecycle.install() must run on the main thread")
        for sig in self.STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_stop)
        for sig in self.RELOAD_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_reload)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def close(self) -> None:
        self.uninstall()
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Lifecycle:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the daemon's side -----------------------------------------------------------------
    def request_stop(self) -> None:
        self._on_stop(signal.SIGTERM, None)

    def request_reload(self) -> None:
        self._on_reload(signal.SIGHUP, None)

    @property
    def stop_requested(self) -> bool:
        return self._stop

    @property
    def force(self) -> bool:
        """A second stop signal arrived: abandon the current step now."""
        return self._force

    def take_reload(self) -> bool:
        """True once per reload request (several SIGHUPs before a poll coalesce into one)."""
        if self._reload:
            self._reload = False
            return True
        return False

    def deadline(self) -> float | None:
        """The monotonic time by which a stopping daemon must be gone, or None if running."""
        return None if self._stop_at is None else self._stop_at + self.grace_seconds

    def grace_left(self) -> float | None:
        """Seconds of the stop grace period left (never negative), or None if running."""
        deadline = self.deadline()
        return None if deadline is None else max(0.0, deadline - self._monotonic())

    def should_abandon(self) -> bool:
        """Give up the current step: forced, or the grace period is over."""
        left = self.grace_left()
        return self._force or (left is not None and left <= 0)

    def wait(self, timeout: float | None) -> bool:
        """Sleep up to ``timeout`` seconds or until a signal; True if a stop is requested."""
        if self._stop:
            return True
        readable, _, _ = select.select([self._read_fd], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read_fd, 512):
                    pass
        return self._stop
