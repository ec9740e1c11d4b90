"""The life cycle with real signals, a real child process and a real notify socket.

The child below is the daemon's loop in miniature: READY after the handlers are installed,
WATCHDOG pings from the working loop, RELOADING/READY on SIGHUP, STOPPING on SIGTERM, then
the current step gets the grace period (or less, on a second signal) and the process exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.runtime.lifecycle import Lifecycle, SdNotify

CHILD = textwrap.dedent(
    """
    import sys
    from planner.runtime.lifecycle import Lifecycle, SdNotify

    grace, mode = float(sys.argv[1]), sys.argv[2]
    notify = SdNotify()
    with Lifecycle(grace_seconds=grace, notifier=notify) as life:
        notify.ready("started")
        interval = notify.watchdog_interval or 1.0
        while not life.stop_requested:
            if life.take_reload():
                notify.reloading("reloading configuration")
                notify.ready("reloaded")
            notify.watchdog()
            life.wait(interval)
        notify.stopping("finishing the current step")
        if mode == "stuck":  # a step that never ends by itself
            while not life.should_abandon():
                life.wait(life.grace_left())
            print("abandoned force=%s" % life.force, flush=True)
    print("clean exit", flush=True)
    """
)

RECV_TIMEOUT = 20.0  # a bound for a hung child, not a measurement


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # AF_UNIX paths are limited to 108 bytes: keep the directory short.
    with tempfile.TemporaryDirectory(prefix="pl-", dir="/tmp") as tmp:
        path = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(RECV_TIMEOUT)
        yield sock, path
        sock.close()


def start_child(address: str, *, grace: float, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(grace), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def receive_until(sock: socket.socket, wanted: str, seen: list[list[str]]) -> list[str]:
    """Read datagrams until one carries ``wanted``; every datagram is kept in ``seen``."""
    while True:
        message = sock.recv(4096).decode().split("\n")
        seen.append(message)
        if wanted in message:
            return message


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=RECV_TIMEOUT)
    return proc.returncode, out, err


def test_ready_watchdog_reload_stop_sequence(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    proc = start_child(path, grace=30, mode="quick")
    seen: list[list[str]] = []
    try:
        ready = receive_until(sock, "READY=1", seen)
        assert "STATUS=started" in ready
        receive_until(sock, "WATCHDOG=1", seen)
        receive_until(sock, "WATCHDOG=1", seen)
        proc.send_signal(signal.SIGHUP)
        reloading = receive_until(sock, "RELOADING=1", seen)
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading)
        receive_until(sock, "READY=1", seen)
        proc.send_signal(signal.SIGTERM)
        stopping = receive_until(sock, "STOPPING=1", seen)
        assert "STATUS=finishing the current step" in stopping
    finally:
        code, out, err = finish(proc)
    assert code == 0, err
    assert out.strip() == "clean exit"
    flat = [line for message in seen for line in message]
    assert flat.index("READY=1") < flat.index("RELOADING=1") < flat.index("STOPPING=1")
    assert seen[0][0] == "READY=1"  # nothing before readiness


def test_stuck_step_is_abandoned_after_the_grace_period(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    proc = start_child(path, grace=0.3, mode="stuck")
    seen: list[list[str]] = []
    try:
        receive_until(sock, "READY=1", seen)
        proc.send_signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1", seen)
    finally:
        code, out, err = finish(proc)
    assert code == 0, err
    assert out.splitlines() == ["abandoned force=False", "clean exit"]


def test_second_signal_forces_the_stop(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    proc = start_child(path, grace=3600, mode="stuck")  # only the second signal can end it
    seen: list[list[str]] = []
    try:
        receive_until(sock, "READY=1", seen)
        proc.send_signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1", seen)
        proc.send_signal(signal.SIGINT)
    finally:
        code, out, err = finish(proc)
    assert code == 0, err
    assert out.splitlines() == ["abandoned force=True", "clean exit"]


def test_abstract_namespace_socket() -> None:
    name = f"planner-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(RECV_TIMEOUT)
        proc = start_child("@" + name, grace=30, mode="quick")
        seen: list[list[str]] = []
        try:
            receive_until(sock, "READY=1", seen)
            proc.send_signal(signal.SIGINT)
            receive_until(sock, "STOPPING=1", seen)
        finally:
            code, _, err = finish(proc)
    assert code == 0, err


def test_notify_is_a_noop_without_the_variable() -> None:
    notify = SdNotify({})
    assert not notify.enabled
    assert notify.ready() is False
    assert notify.watchdog() is False
    assert notify.watchdog_interval is None


def test_notify_never_raises_on_a_dead_socket(tmp_path: Path) -> None:
    notify = SdNotify({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notify.enabled
    assert notify.ready("x") is False
    assert SdNotify({"NOTIFY_SOCKET": "relative/path"}).ready() is False


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),  # WatchdogSec=60s -> ping every 30 s
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], interval: float | None) -> None:
    assert SdNotify(environ).watchdog_interval == interval


def test_status_is_one_line(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notify = SdNotify({"NOTIFY_SOCKET": path})
    assert notify.status("reconciling\n3 of 10 batches")
    assert notify.extend_timeout(1.5)
    assert sock.recv(4096) == b"STATUS=reconciling 3 of 10 batches"
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=1500000"


def test_in_process_signals_set_flags_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGHUP)
    clock = [10.0]
    with Lifecycle(grace_seconds=5, notifier=SdNotify({}), monotonic=lambda: clock[0]) as life:
        assert life.deadline() is None
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)
        assert life.wait(RECV_TIMEOUT) is False  # woken by the reload, not stopping
        assert life.take_reload() is True
        assert life.take_reload() is False  # two SIGHUPs before a poll are one reload
        os.kill(os.getpid(), signal.SIGTERM)
        assert life.wait(RECV_TIMEOUT) is True
        assert life.deadline() == 15.0
        assert life.grace_left() == 5.0
        assert not life.should_abandon()
        clock[0] = 15.0
        assert life.should_abandon()
    assert signal.getsignal(signal.SIGHUP) == before


def test_install_refuses_other_threads() -> None:
    import threading

    errors: list[BaseException] = []
    life = Lifecycle(notifier=SdNotify({}))

    def run() -> None:
        try:
            life.install()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    life.close()
    assert len(errors) == 1


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="grace"):
        Lifecycle(grace_seconds=-1, notifier=SdNotify({}))
