"""``python -m planner.sandbox --port N --faults SPEC --speed SECONDS_PER_STATE``."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Sequence

from planner.sandbox import DEFAULT_SECONDS_PER_STATE, run_forever
from planner.sandbox.faults import FaultSpecError, parse_spec
from planner.sandbox.kernel import DEFAULT_MAX_CONCURRENT_JOBS, Limits


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m planner.sandbox",
        description="Run the local Gemini/OpenAI batch emulator until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0 = any free port)")
    parser.add_argument("--faults", default=None, help="fault spec, e.g. rate_limit=0.1,seed=7")
    parser.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SECONDS_PER_STATE,
        help="seconds each job spends in each state (0 = instant)",
    )
    parser.add_argument(
        "--max-jobs",
        type=int,
        default=DEFAULT_MAX_CONCURRENT_JOBS,
        help=f"concurrent unfinished batches per surface (default {DEFAULT_MAX_CONCURRENT_JOBS})",
    )
    parser.add_argument(
        "--enqueued-tokens",
        action="append",
        default=[],
        metavar="MODEL=TOKENS",
        help="enqueued-token limit for a model (repeatable); others use the built-in table",
    )
    parser.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # spawn()
    parser.add_argument("--until-stdin-closes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    limits = Limits(max_concurrent_jobs=args.max_jobs)
    for item in args.enqueued_tokens:
        model, sep, raw = item.partition("=")
        if not sep or not model or not raw.isdigit():
            parser.error(f"--enqueued-tokens {item!r}: expected MODEL=TOKENS")
        limits.enqueued_tokens[model.removeprefix("models/")] = int(raw)
    try:
        parse_spec(args.faults)
    except FaultSpecError as exc:
        parser.error(str(exc))
    if args.speed < 0:
        parser.error("--speed must be >= 0")
    try:
        sock = None if args.fd is None else socket.socket(fileno=args.fd)
        run_forever(
            args.host,
            args.port,
            args.faults,
            args.speed,
            limits=limits,
            sock=sock,
            until_stdin_closes=args.until_stdin_closes,
        )
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:  # the port is taken: one line and exit 2, as `planner sandbox` does
        parser.error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
