"""Who this process is, as an owner of work in the store, and whether another owner is gone.

An owner is ``host:pid:token``; the token is drawn once per process, so a restarted daemon
that gets its predecessor's pid (pid 1 in a container, every time) is still someone else.
:func:`certainly_gone` answers only what it can prove from this host: an owner on another host,
or a live pid that may be the owner, is not gone, and its leases run out instead.
"""

from __future__ import annotations

import os
import secrets
import socket

_TOKEN = secrets.token_hex(6)


def this_process() -> str:
    """This process's owner name."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def certainly_gone(owner: str) -> bool:
    """Whether the process ``owner`` names has surely stopped (same host, pid not running, or
    our own pid with another token)."""
    rest = owner.split(":")
    if len(rest) < 3 or not rest[-2].isdigit():
        return False
    host, pid, token = ":".join(rest[:-2]), int(rest[-2]), rest[-1]
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return token != _TOKEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a process of another user has that pid now: it may be anything
        return False
    return False
