"""Rich rendering of command results. Pure presentation: no decisions are made here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from planner.config.units import format_duration
from planner.core.catalog import (
    Catalog,
    ModelEntry,
    PricePeriod,
    Rates,
    TierRates,
)
from planner.core.retirement import catalog_warnings, entry_warnings
from planner.pipeline.preview import ModelRow, PlanReport, budget_rows

STALE_AFTER_DAYS = 90
RETIRING_WITHIN_DAYS = 30


FOLD_AT = 24  # a text column keeps words up to this long whole while the table fits


def _words(cell: object) -> int:
    """The longest word of a text cell (markup stripped): what folding would split."""
    plain = Text.from_markup(cell).plain if isinstance(cell, str) else ""
    return max((len(word) for word in plain.split()), default=0)


def _fit(table: Table, folded: set[int]) -> int:
    """Never cut a number: on a narrow terminal Rich shortens cells with an ellipsis, and
    "$0.00003…" is a wrong amount, not a short one. Right-aligned columns (counts, money) keep
    their full width and their headers go onto more lines at spaces; text columns fold long
    names (``overflow="fold"``) instead of cutting them: words up to ``FOLD_AT`` stay whole,
    except in the columns ``folded`` (by index), which may fold down to 5 characters.
    Returns the narrowest width of the table's cells."""
    narrowest = 0
    for i, column in enumerate(table.columns):
        if column.justify == "right":
            column.no_wrap = True
            header = str(column.header)
            if " " in header and "\n" not in header:
                column.header = header.replace(" ", "\n")  # a two-line header, never cut
            cells = [Text.from_markup(c).cell_len for c in column.cells if isinstance(c, str)]
            lines = str(column.header).split("\n")
            column.min_width = max([*cells, *(len(line) for line in lines)], default=0)
        else:
            longest = max((_words(c) for c in [column.header, *column.cells]), default=0)
            column.min_width = 5 if i in folded else max(5, min(longest, FOLD_AT))
            column.overflow = "fold"
        narrowest += column.min_width or 0
    return narrowest


def _layouts(table: Table) -> Iterator[tuple[set[int], bool]]:
    """Ever narrower ways to lay ``table`` out: boxed, then borderless, then folding its text
    columns one by one, the one with the longest words first."""
    yield set(), True
    yield set(), False
    texts = [i for i, c in enumerate(table.columns) if c.justify != "right"]
    longest = sorted(texts, key=lambda i: -max(map(_words, table.columns[i].cells), default=0))
    for n in range(1, len(longest) + 1):
        yield set(longest[:n]), False


def _show(console: Console, table: Table) -> None:
    """Print ``table`` whole, as a table whenever its numbers fit (see ``_layouts``); only a
    terminal too narrow even for that gets one block of ``column: value`` lines per row."""
    n = len(table.columns)
    for folded, boxed in _layouts(table):
        narrowest = _fit(table, folded)
        # boxed: padding 1 each side and a border per column, plus the last border;
        # borderless: one space between columns (collapsed padding)
        chrome = 3 * n + 1 if boxed else n - 1
        if narrowest + chrome <= console.width:
            # Rich measures a text cell by its longest word, folding or not: cap each text
            # column so that no line runs past the terminal, the spare width going to the
            # folded columns (or, when none is, to every text column)
            texts = [i for i, c in enumerate(table.columns) if c.justify != "right"]
            takers = [i for i in texts if i in folded] or texts
            spare = (console.width - chrome - narrowest) // max(1, len(takers))
            for i in texts:
                column = table.columns[i]
                column.max_width = (column.min_width or 0) + (spare if i in takers else 0)
            if not boxed:
                table.box, table.show_edge, table.pad_edge = None, False, False
                table.collapse_padding = True
            console.print(table)
            return
    if table.title:
        console.print(table.title, style="bold")
    headers = [str(column.header).replace("\n", " ") for column in table.columns]
    for row in zip(*(list(column.cells) for column in table.columns), strict=True):
        for header, value in zip(headers, row, strict=True):
            console.print(f"  {header}: ", end="")
            console.print(value)
        console.print()


def _usd(value: Decimal | str | None) -> str:
    """The exact amount (cents at least, never rounded): the ledger's sums are exact decimals,
    so the shown spent + saved is the shown interactive equivalent, in every row and total
    (each amount rounded on its own did not add up). Fractions of a cent still matter at two
    million requests."""
    if value is None:
        return "[yellow]unpriced[/]"
    amount = Decimal(value)
    exponent = amount.normalize().as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"${amount:,.{places}f}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "-"


def _batches(row: ModelRow) -> str:
    if not row.batches:
        return "-"
    shown = [f"{b.requests} req / {b.bytes:,} B / {b.input_tokens:,} tok" for b in row.batches[:3]]
    more = len(row.batches) - len(shown)
    return "\n".join(shown + ([f"... {more} more"] if more else []))


def _short_endpoint(row: ModelRow) -> str:
    return row.endpoint.value.removeprefix("/v1/")


def render_plan(console: Console, report: PlanReport) -> None:
    """Two tables: what it costs (money per model) and what would happen (lanes, batches)."""
    rows = report.ordered_rows()
    money = Table(title="planner plan: estimated cost per model (dry run, nothing sent)")
    money.add_column("provider / model / endpoint")
    for name in (
        "requests",
        "input tok",
        "output tok",
        "interactive",
        "all batch",
        "planned",
        "savings",
    ):
        money.add_column(name, justify="right")
    for row in rows:
        money.add_row(
            f"{row.provider or '[red]no provider[/]'} / {row.model} / {_short_endpoint(row)}",
            f"{row.requests:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            _usd(row.interactive_usd),
            _usd(row.batch_usd),
            _usd(row.planned_usd),
            _usd(row.savings_usd),
        )
    totals = report.totals()
    money.add_section()
    money.add_row(
        "[bold]total[/] (priced models)",
        f"{totals['requests']:,}",
        f"{totals['input_tokens']:,}",
        f"{totals['output_tokens']:,}",
        _usd(totals["interactive_usd"]),
        _usd(totals["batch_usd"]),
        _usd(totals["planned_usd"]),
        f"[bold green]{_usd(totals['savings_usd'])}[/]",
    )
    _show(console, money)
    decisions = Table(title="decisions and batches")
    for name in ("model / endpoint", "lanes", "why", "batches (requests / bytes / input tokens)"):
        decisions.add_column(name)
    for row in rows:
        decisions.add_row(
            f"{row.model} / {_short_endpoint(row)}",
            _counts(dict(row.lanes)),
            _counts(dict(row.reasons)),
            _batches(row)
            + (f"\n[red]{row.oversized} too large for any batch[/]" if row.oversized else ""),
        )
    _show(console, decisions)
    budgets = budget_rows(report.book)
    if budgets:
        render_budgets(console, "budgets (this plan included)", budgets)
    console.print(
        "interactive = every request at the interactive price; all batch = every request by "
        "batch; planned = each request in the lane chosen for it; savings = interactive - planned.",
        style="dim",
    )
    for warning in report.retirements:
        console.print(f"[yellow]warning: {warning.model} {warning.message}[/]")
    if report.unpriced:
        console.print(
            f"[yellow]unpriced models (not counted as $0, add them under `models:`):[/] "
            f"{', '.join(report.unpriced)}"
        )
    if report.settling:
        console.print(
            f"[yellow]{report.settling} spool file(s) not read yet: modified within the source's "
            "`settle` time; they are read once they have settled[/]"
        )
    if report.duplicates:
        console.print(
            f"{report.duplicates} line(s) repeat a request already stored or read before "
            "(same key and content): no-ops, not planned again"
        )
    if report.quarantined:
        console.print(f"[red]{report.quarantined} bad line(s) would be quarantined:[/]")
        for error in report.errors:
            console.print(f"  {error.message}", markup=False)
        if report.quarantined > len(report.errors):
            console.print(f"  ... and {report.quarantined - len(report.errors)} more")


def _rate(value: Decimal | None) -> str:
    return "-" if value is None else format(value.normalize(), "f")


def _tier_json(t: TierRates | Rates | None) -> dict[str, str | None] | None:
    if t is None:
        return None
    return {k: None if v is None else format(v, "f") for k, v in vars_of(t).items()}


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _period_json(p: PricePeriod) -> dict[str, Any]:
    return {
        "effective": p.effective.isoformat() if p.effective else None,
        "standard": _tier_json(p.standard),
        "flex": _tier_json(p.flex),
        "long_context_threshold": p.long_context_threshold,
        "long_context": _tier_json(p.long_context),
    }


def _entry_json(e: ModelEntry) -> dict[str, Any]:
    return {
        "model": e.model,
        "provider": e.provider.value,
        "kind": e.kind.value,
        "source": e.source,
        "checked": e.checked.isoformat() if e.checked else None,
        "retires": e.retires.isoformat() if e.retires else None,
        "successor": e.successor,
        "routed": e.routed,  # from "retires" on, its prices are the successor's (see prices)
        "prices": [_period_json(p) for p in e.prices],
    }


def render_prices(
    console: Console, catalog: Catalog, *, model: str | None, now: datetime, as_json: bool
) -> None:
    from datetime import timedelta

    entries = [e for e in catalog.entries() if model is None or e.model == model]
    age, soon = timedelta(days=STALE_AFTER_DAYS), timedelta(days=RETIRING_WITHIN_DAYS)
    warnings = (
        catalog_warnings(catalog, now, max_age=age, retire_within=soon)
        if model is None
        else entry_warnings(entries[0], now, max_age=age, retire_within=soon)
    )
    if as_json:
        data = {
            "models": [_entry_json(e) for e in entries],
            "warnings": [
                {"model": w.model, "kind": w.kind.value, "message": w.message} for w in warnings
            ],
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table(title="price catalog, USD per 1M tokens (interactive / batch)")
    for name in ("model", "in", "out", "batch in", "batch out", "cached", "flex in/out", "source"):
        table.add_column(name, justify="left" if name in ("model", "source") else "right")
    for e in entries:
        period = e.period_at(now)
        if period is None:
            table.add_row(e.model, "not yet in force", "", "", "", "", "", e.source or "")
            continue
        s = period.standard
        flex = f"{_rate(period.flex.input)} / {_rate(period.flex.output)}" if period.flex else "-"
        checked = e.checked.isoformat() if e.checked else "never"
        table.add_row(
            f"{e.model}\n[dim]{e.provider.value} {e.kind.value}[/]",
            _rate(s.input),
            _rate(s.output),
            _rate(s.batch_input),
            _rate(s.batch_output),
            _rate(s.cached_input),
            flex,
            f"{e.source or '-'}\n[dim]checked {checked}[/]",
        )
    _show(console, table)
    for w in warnings:
        console.print(f"[yellow]warning[/] {w.model}: {w.message}")


def render_budgets(console: Console, title: str, rows: list[dict[str, Any]]) -> None:
    """One line per budget window (a table of eight money columns does not fit a terminal):
    limit, spent, reserved, what the plan takes (in ``plan``), what is left, what it holds."""
    console.print(title, style="bold")
    for r in rows:
        parts = [
            f"limit {_usd(r['limit_usd'])}",
            f"spent {_usd(r['spent_usd'])}",
            f"reserved {_usd(r['reserved_usd'])}",
        ]
        if "planned_usd" in r:
            parts.append(f"this plan {_usd(r['planned_usd'])}")
        parts.append(f"left {_usd(r['remaining_usd'])}")
        held = f"held {r.get('held_requests', 0):,}"
        if r.get("rejected_requests"):
            held += f", rejected {r['rejected_requests']:,}"
        if "held_usd" in r:
            held += f" ({_usd(r['held_usd'])})"
        parts.append(held)
        head = f"  {r['budget']} per {r['period']} (at cap: {r['at_cap']}): "
        console.print(head + ", ".join(parts))


def decisions_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Requests by the rule that decided them and the state they are in now."""
    table = Table(title=title)
    table.add_column("rule")
    table.add_column("state")
    table.add_column("requests", justify="right")
    for r in rows:
        table.add_row(r["rule"], r["state"], f"{r['requests']:,}")
    return table


def turnaround_table(rows: list[dict[str, Any]]) -> Table:
    """Finished batches per provider and model: p50, p95, and whether the p95 is in force."""
    table = Table(title="batch turnaround (submitted to finished)")
    table.add_column("provider / model")
    for name in ("batches", "p50", "p95"):
        table.add_column(name, justify="right")
    table.add_column("policy uses")
    for r in rows:
        in_force = (
            "learned p95"
            if r["learned"]
            else f"batch_window (learns after {r['learned_after']} batches)"
        )
        table.add_row(
            f"{r['provider']} / {r['model']}",
            f"{r['batches']:,}",
            format_duration(timedelta(seconds=r["p50_seconds"])),
            format_duration(timedelta(seconds=r["p95_seconds"])),
            in_force,
        )
    return table


def _pct(ratio: str | None) -> str:
    return "-" if ratio is None else f"{float(ratio) * 100:+.1f}%"


def accuracy_table(rows: list[dict[str, Any]]) -> Table:
    """Estimated against billed tokens per model, with the error before and after calibration."""
    table = Table(title="estimate accuracy (estimated / billed - 1)")
    table.add_column("provider / model")
    for name in ("requests", "input est", "input billed", "input error", "raw estimator"):
        table.add_column(name, justify="right")
    for name in ("output est", "output billed", "output error", "correction"):
        table.add_column(name, justify="right")
    for r in rows:
        factor = f"x{r['input_factor']}" if r["calibrated"] else "none yet"
        table.add_row(
            f"{r['provider'] or '-'} / {r['model']}",
            f"{r['requests']:,}",
            f"{r['estimated_input_tokens']:,}",
            f"{r['billed_input_tokens']:,}",
            _pct(r["input_error"]),
            _pct(r["raw_input_error"]),
            f"{r['estimated_output_tokens']:,}",
            f"{r['billed_output_tokens']:,}",
            _pct(r["output_error"]),
            factor,
        )
    return table


def render_status(console: Console, data: dict[str, Any]) -> None:
    for title in ("requests", "batches"):
        table = Table(title=f"{title} by state")
        table.add_column("state")
        table.add_column("count", justify="right")
        for state, n in data[title].items():
            if n:
                table.add_row(state, f"{n:,}")
        _show(console, table)
    _show(console, _spend_table("spend so far (from the ledger)", data["spend"]))
    if data.get("decisions"):
        _show(console, decisions_table("decisions by rule", data["decisions"]))
    if data.get("budgets"):
        render_budgets(console, "budgets now", data["budgets"])


def _spend_table(
    title: str, rows: list[dict[str, Any]], totals: dict[str, Any] | None = None
) -> Table:
    spend = Table(title=title)
    for name in ("source", "model", "lane", "requests", "spent", "if interactive", "saved"):
        spend.add_column(
            name, justify="right" if name not in ("source", "model", "lane") else "left"
        )
    for row in rows:
        spend.add_row(
            row["source"],
            row["model"],
            row["lane"],
            f"{row['requests']:,}",
            _usd(row["cost_usd"]),
            _usd(row["interactive_equivalent_usd"]),
            _usd(row["savings_usd"]),
        )
    if totals is not None:
        spend.add_section()
        spend.add_row(
            "[bold]total[/]",
            "",
            "",
            f"{totals['requests']:,}",
            _usd(totals["cost_usd"]),
            _usd(totals["interactive_equivalent_usd"]),
            _usd(totals["savings_usd"]),
        )
    return spend


def render_report(console: Console, data: dict[str, Any]) -> None:
    """``planner report``: one spend table with totals; says which requests had no price."""
    since = data["since"]
    window = f"since {since[:16].replace('T', ' ')} UTC" if since else "all time"
    _show(console, _spend_table(f"billed {window} (from the ledger)", data["rows"], data["totals"]))
    if data.get("decisions"):
        _show(console, decisions_table(f"decisions by rule ({window})", data["decisions"]))
    if data.get("accuracy"):
        _show(console, accuracy_table(data["accuracy"]))
    if data.get("turnaround"):
        _show(console, turnaround_table(data["turnaround"]))
    if data.get("budgets"):
        render_budgets(console, "budgets now", data["budgets"])
    unpriced = data["totals"]["unpriced"]
    if unpriced:
        console.print(
            f"{unpriced:,} billed requests had no price in the catalog: not in the sums above "
            "(add the model under models: to price them)"
        )


STEP_LABELS = {
    "ingest": "reading the sources",
    "submit": "planning and submitting batches",
    "interactive": "the interactive lane",
    "poll": "polling and collecting batches",
    "housekeeping": "housekeeping (orphan files, retention)",
    "outbox": "sending queued results to the sinks (outbox)",
}


@contextmanager
def stage_progress(console: Console, steps: Sequence[str]) -> Iterator[Callable[[str], None]]:
    """One line per step of a pass, a spinner on the running one and a tick on those done;
    yields the callback told each step that finished. For a terminal only (the caller checks)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(finished_text="[green]done[/]"), TextColumn("{task.description}"))
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        tasks = {
            step: progress.add_task(STEP_LABELS.get(step, step), total=1, start=i == 0)
            for i, step in enumerate(steps)
        }

        def finished(step: str) -> None:
            if step not in tasks:
                return
            progress.update(tasks[step], completed=1)
            later = steps[steps.index(step) + 1 :]
            if later:
                progress.start_task(tasks[later[0]])

        yield finished
