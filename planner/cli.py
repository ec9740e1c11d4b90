"""The command line: each command calls one function and renders its result.

This is the only module that sets exit codes: 0 ok, 1 runtime failure, 2 bad input (config,
arguments, files). Heavy imports happen inside the commands so that ``planner --help`` is fast.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from planner import heap
from planner.errors import ConfigError, InputError, PlannerError

app = typer.Typer(
    name="planner",
    help="Cost-aware batching for LLM APIs: batch what can wait, at half the price.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="PLANNER_CONFIG",
        help="Configuration file (or PLANNER_CONFIG).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object for machines.")]


def _now() -> datetime:
    return datetime.now(UTC)


def _fail(code: int, lines: list[str]) -> NoReturn:
    for line in lines:
        sys.stderr.write(line + "\n")  # unwrapped: FILE:LINE:COL lines are for tools too
    raise typer.Exit(code)


@contextmanager
def _exit_codes() -> Iterator[None]:
    """Translate planner's exceptions into the documented exit codes."""
    try:
        yield
    except ConfigError as exc:
        _fail(2, exc.problems or [str(exc)])
    except InputError as exc:
        _fail(2, [f"error: {exc}"])
    except PlannerError as exc:
        _fail(1, [f"error: {exc}"])
    except OSError as exc:  # the machine refused (disk, permissions): one line, no traceback
        where = f": {exc.filename}" if exc.filename else ""
        _fail(1, [f"error: {exc.strerror or exc}{where}"])


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@app.command()
def validate(config: ConfigOption) -> None:
    """Check a configuration file; print every problem as FILE:LINE:COL: message."""
    from planner.config import validate_file
    from planner.runtime.checks import RUNTIME_CHECKS

    problems = validate_file(config, checks=RUNTIME_CHECKS)
    if problems:
        _fail(2, problems)
    from planner.config.prices import config_retirements
    from planner.runtime.checks import load_runtime_config

    for warning in config_retirements(load_runtime_config(config), _now()):
        err.print(f"warning: {config}: {warning.model} {warning.message}", soft_wrap=True)
    out.print(f"{config}: ok")


@app.command()
def plan(config: ConfigOption, as_json: JsonOption = False) -> None:
    """Dry run: estimate, decide and pack what the sources hold now. Changes nothing."""
    from planner.cli_render import render_plan
    from planner.runtime.checks import load_runtime_config
    from planner.runtime.wiring import build_plan_report

    with _exit_codes():
        cfg = load_runtime_config(config)
        kept: list[object] = []  # freed by the end of the process, not before
        with _progress(enabled=not as_json) as advance:
            report = build_plan_report(cfg, now=_now(), on_request=advance, keep=kept)
    if as_json:
        _print_json(report.to_json())
    else:
        render_plan(out, report)
    _end_one_shot()


def _on_a_terminal() -> bool:
    """Progress is for a person at a terminal: never into a pipe, a log or a --json reader."""
    return out.is_terminal and err.is_terminal


@contextmanager
def _pass_progress(*, enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """The steps of ``run --once`` as they run, on stderr; nothing when not a terminal."""
    if not enabled or not _on_a_terminal():
        yield None
        return
    from planner.cli_render import stage_progress
    from planner.runtime.runner import STEPS

    with stage_progress(err, STEPS) as on_stage:
        yield on_stage


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A spinner with a running count of requests read; silent when not a terminal."""
    if not enabled or not _on_a_terminal():
        yield lambda _n: None
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    columns = (
        SpinnerColumn(),
        TextColumn("reading sources"),
        BarColumn(),
        TextColumn("{task.completed} requests"),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("read", total=None)
        yield lambda n: progress.update(task, completed=n)


@app.command()
def prices(
    model: Annotated[str | None, typer.Argument(help="Show one model in detail.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="PLANNER_CONFIG",
            help="Apply this config's `models:` overrides.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The price catalog in use, with sources, check dates and warnings."""
    from planner.cli_render import render_prices
    from planner.runtime.wiring import catalog_for

    with _exit_codes():
        catalog = catalog_for(config)
        if model is not None and catalog.get(model) is None:
            known = ", ".join(sorted(catalog.models()))
            raise InputError(f"unknown model {model!r}; known models: {known}")
        render_prices(out, catalog, model=model, now=_now(), as_json=as_json)


@app.command()
def report(
    config: ConfigOption,
    since: Annotated[
        str | None,
        typer.Option(help="Only what was billed in this last stretch, e.g. 1d, 12h, 30d."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Spend, interactive-equivalent and savings by source, model and lane, from the ledger."""
    from planner.cli_render import render_report
    from planner.config.units import parse_duration
    from planner.runtime.checks import load_runtime_config
    from planner.runtime.store_commands import report as store_report

    with _exit_codes():
        try:
            window = None if since is None else parse_duration(since)
        except ValueError as exc:
            raise InputError(f"--since: {exc}") from exc
        cfg = load_runtime_config(config)
        data = store_report(cfg, window, _now())
    if as_json:
        _print_json(data)
    else:
        render_report(out, data)


@app.command()
def requeue(
    config: ConfigOption,
    reason: Annotated[
        str,
        typer.Option(
            help="The error code of the dead-lettered requests to send again, e.g. "
            "unknown_outcome (an interactive send whose answer was lost: it may have been "
            "billed already, and will be billed again)."
        ),
    ],
    source: Annotated[str | None, typer.Option(help="Only this source's requests.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List them; change nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Send dead-lettered requests back to the queue for one more attempt."""
    from planner.runtime.checks import load_runtime_config
    from planner.runtime.store_commands import requeue as store_requeue

    with _exit_codes():
        cfg = load_runtime_config(config)
        data = store_requeue(cfg, reason, source, dry_run=dry_run, now=_now())
    if as_json:
        _print_json(data)
        return
    for r in data["requests"][:20]:
        out.print(f"{r['source']}/{r['key']}: {r['error']}", soft_wrap=True)
    if len(data["requests"]) > 20:
        out.print(f"... and {len(data['requests']) - 20:,} more")
    count = len(data["requests"])
    if not count:
        out.print(f"no dead-lettered request has the error {reason}: nothing to requeue")
    elif dry_run:
        out.print(f"{count:,} dead-lettered requests with {reason} would be requeued (dry run)")
    else:
        out.print(
            f"{count:,} dead-lettered requests with {reason} requeued: the next planning pass "
            "sends them; their new result is a new line, the old dead-letter line stays"
        )


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption) -> None:
    """Apply the store's migrations (also done at start)."""
    from planner.runtime.checks import load_runtime_config
    from planner.runtime.wiring import upgrade_store

    with _exit_codes():
        cfg = load_runtime_config(config)
        shown = upgrade_store(cfg)
    out.print(f"store at {shown} is up to date")


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8089,
    faults: Annotated[
        str | None, typer.Option(help="Fault spec, e.g. rate_limit=0.1,seed=7.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Seconds per batch state (0 = instant).")] = 1.0,
) -> None:
    """Run the local emulator of the Gemini and OpenAI batch APIs."""
    from planner.sandbox import run_forever

    try:
        run_forever("127.0.0.1", port, faults, speed)
    except OSError as exc:  # the port is taken (or not ours to bind): one line, exit 2
        why = exc.strerror or str(exc)
        _fail(2, [f"error: cannot listen on 127.0.0.1:{port}: {why}; choose another --port"])
    except ValueError as exc:  # a bad --faults spec
        _fail(2, [f"error: {exc}"])


# Objects allocated between two collections of the youngest generation (Python's default: 700).
# planner allocates hundreds of thousands of short-lived rows, requests and records a stage;
# at the default a ``run --once`` of 20,000 requests spent ~0.9 s in 2,000 collections, most of
# them scanning the same live rows again; at 20,000 (and 20 young collections per older one)
# ~0.2 s. Garbage cycles wait a little longer: a few MB at most.
GC_YOUNG_OBJECTS = 20_000


def tune_gc() -> None:
    """The collector as every planner command runs it (``main``; the benchmarks that time
    planner's code in a process of their own apply it too)."""
    gc.set_threshold(GC_YOUNG_OBJECTS, 20, 20)


_ends_at_once = False  # set by ``main``: a one-shot command may end the process when done


def _end_one_shot() -> None:
    """End the process of a one-shot command that has written everything it had to, without
    the interpreter's teardown, which only frees memory the system takes back anyway (the
    tokenizer's tables alone took 0.09 s to free). Only under ``main``: a command invoked
    in-process (the tests' runner) returns as usual."""
    if not _ends_at_once:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def main() -> None:
    global _ends_at_once
    tune_gc()
    heap.give_back_big_blocks()
    _ends_at_once = True
    try:
        app()
    finally:  # app returned or raised: this process goes on (a test calling main, say)
        _ends_at_once = False


@app.command()
def run(
    config: ConfigOption,
    once: Annotated[bool, typer.Option("--once", help="Run every stage once, then exit.")] = False,
    use_sandbox: Annotated[
        bool,
        typer.Option("--sandbox", help="Start the local emulator and use it for every provider."),
    ] = False,
    sandbox_url: Annotated[
        str | None, typer.Option("--sandbox-url", help="Use an emulator already running at URL.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The daemon; with --once, every stage once (see the README)."""
    from planner.runtime.checks import load_runtime_config
    from planner.runtime.logging import setup_logging
    from planner.runtime.runner import run_once
    from planner.runtime.wiring import build_context

    if use_sandbox and sandbox_url:
        _fail(2, ["error: give --sandbox or --sandbox-url, not both"])
    # --once is a command a person watches: warnings and errors only, on stderr
    setup_logging(logging.WARNING if once else logging.INFO, stream=sys.stderr if once else None)
    if not once:
        from planner.runtime.daemon import run_daemon

        with _exit_codes(), _sandbox(use_sandbox, sandbox_url, speed=1.0) as url:
            code = run_daemon(config, sandbox_url=url)
        raise typer.Exit(code)
    with _exit_codes():
        cfg = load_runtime_config(config)
        with _sandbox(use_sandbox, sandbox_url) as url:
            ctx = build_context(cfg, sandbox_url=url, local_chunks=0)
            with _pass_progress(enabled=not as_json) as on_stage:
                summary = run_once(ctx, on_stage=on_stage)
    if as_json:
        _print_json(summary.stages)
    else:
        for stage, figures in summary.stages.items():
            out.print(
                f"[bold]{stage:12}[/] " + ", ".join(f"{k} {_figure(v)}" for k, v in figures.items())
            )
        sinks = ", ".join(_where(s) for s in cfg.sinks.values()) or "no sink configured"
        out.print(f"results: {sinks}; money so far: planner status -c {config}")
    if summary.every_call_failed:  # a cron script must see it: no key, a bad key, no network
        _fail(1, ["error: every provider call failed (see the log above); nothing was sent"])


def _figure(value: Any) -> str:
    """A stage's figure as a person reads it: counts by name as ``(batch 11, interactive 1)``."""
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k} {n}" for k, n in value.items()) + ")"
    return str(value)


def _where(sink: Any) -> str:
    """Where a sink writes: a folder (resolved, no ``config/../``), a URL or a table."""
    path = getattr(sink, "path", None)
    if path is not None:
        return str(Path(path).resolve())
    return str(getattr(sink, "url", None) or getattr(sink, "table", ""))


@contextmanager
def _sandbox(start: bool, url: str | None, speed: float = 0.0) -> Iterator[str | None]:
    """The emulator for --sandbox, in a child process: instant for --once, a second per state
    for the daemon (so a newcomer can watch batches move)."""
    if not start:
        yield url
        return
    from planner.runtime.sandbox_child import spawn

    with spawn(speed=speed) as running:
        yield running.url


@app.command()
def status(config: ConfigOption, as_json: JsonOption = False) -> None:
    """Requests and batches by state, and what was spent and saved."""
    from planner.cli_render import render_status
    from planner.runtime.checks import load_runtime_config
    from planner.runtime.store_commands import status as store_status

    with _exit_codes():
        cfg = load_runtime_config(config)
        data = store_status(cfg)
    if as_json:
        _print_json(data)
    else:
        render_status(out, data)
