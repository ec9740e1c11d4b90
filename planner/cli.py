"""The command line: each command calls one function and renders its result.

This is the only module that sets exit codes: 0 ok, 1 runtime failure, 2 bad input (config,
arguments, files). Heavy imports happen inside the commands so that ``planner --help`` is fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

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


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@app.command()
def validate(config: ConfigOption) -> None:
    """Check a configuration file; print every problem as FILE:LINE:COL: message."""
    from planner.config import validate_file

    problems = validate_file(config)
    if problems:
        _fail(2, problems)
    out.print(f"{config}: ok")


@app.command()
def plan(config: ConfigOption, as_json: JsonOption = False) -> None:
    """Dry run: estimate, decide and pack what the sources hold now. Changes nothing."""
    from planner.cli_render import render_plan
    from planner.config import load_config
    from planner.runtime.wiring import build_plan_report

    with _exit_codes():
        cfg = load_config(config)
        with _progress(enabled=not as_json) as advance:
            report = build_plan_report(cfg, now=_now(), on_request=advance)
    if as_json:
        _print_json(report.to_json())
    else:
        render_plan(out, report)


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A spinner with a running count of requests read; silent when not a terminal."""
    if not enabled or not err.is_terminal:
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


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption) -> None:
    """Apply the store's migrations (also done at start)."""
    from planner.config import load_config
    from planner.runtime.wiring import upgrade_store

    with _exit_codes():
        cfg = load_config(config)
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

    run_forever("127.0.0.1", port, faults, speed)


def main() -> None:
    app()
