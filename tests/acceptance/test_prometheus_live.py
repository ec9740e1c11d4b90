"""The real programs together: ``planner sandbox`` with malformed result lines, ``planner run``
(the daemon, restarted with SIGTERM in the middle), and Debian's ``prometheus`` scraping it every
second with the shipped alert rules loaded.

It proves what a finance reader and an operator rely on: the dashboard's money panels (saved so
far, spent, saved by model, saved in the range) equal ``planner report --json`` to the
micro-dollar before and after the restart; no money series ever resets; every dashboard query
and every alert rule parses and runs in Prometheus; and no rule or panel names a metric the
daemon never exported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from planner.config import load_config
from planner.runtime import store_commands
from tests.conftest import REPO, require_service

DASHBOARD = REPO / "grafana" / "planner-dashboard.json"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
NAME = re.compile(r"\bplanner_[a-z_]+")
MICRO = Decimal("0.0000005")  # half a micro-dollar: float rounding, never a missing amount
# Exported only where a budget is configured (none is: budgets come with their own config).
ONLY_WITH_A_BUDGET = {
    f"planner_budget_{k}_usd" for k in ("limit", "spent", "reserved", "remaining")
}
TERMINAL = ("succeeded", "dead", "rejected")
GRAFANA_VARIABLES = {
    "$job": ".*",
    "$source": ".*",
    "$provider": ".*",
    "$model": ".*",
    "$lane": ".*",
    "$__range": "1d",
}

CONFIG = """
state_dir: state
providers:
  openai: {kind: openai}
  gemini: {kind: gemini, models: ["gemini-*"]}
sources:
  spool: {kind: jsonl_dir, path: spool, default_model: gpt-4o-mini, settle: 0s, interval: 1s}
sinks:
  out: {kind: jsonl_dir, path: results}
schedule:
  submit: interval 1s
  poll: 1s
metrics:
  listen: 127.0.0.1:{port}
"""

MODELS = ("gpt-4o-mini", "gemini-2.5-flash", "text-embedding-3-small", "gemini-embedding-001")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass  # not listening yet
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def write_wave(spool: Path, name: str, count: int) -> int:
    """A mixed file: chat and embeddings on both providers, some due within the hour (the
    interactive lane), and one line that is not JSON (quarantined). Returns valid lines."""
    due = (datetime.now(UTC) + timedelta(minutes=50)).isoformat()
    lines = []
    for i in range(count):
        model = MODELS[i % len(MODELS)]
        field = "text" if "embedding" in model else "prompt"
        line: dict[str, Any] = {"id": f"{name}-{i}", field: f"{name} item {i}", "model": model}
        if i % 6 == 5:
            line["deadline"] = due
        lines.append(json.dumps(line))
    lines.insert(count // 2, "{this is not json")
    partial = spool / f"{name}.jsonl.part"
    partial.write_text("\n".join(lines) + "\n")
    partial.rename(spool / f"{name}.jsonl")
    return count


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = answer.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def by(self, expr: str, label: str | None = None) -> dict[str, Decimal]:
        """An instant vector as {label value: exact decimal of the float Prometheus holds}."""
        return {
            (row["metric"].get(label, "") if label else ""): Decimal(row["value"][1])
            for row in self.query(expr)
        }


@pytest.fixture()
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        require_service("prometheus")  # fails in CI: .ci/run installs Debian's prometheus
    assert found is not None
    return found


@pytest.fixture()
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def dashboard_targets() -> dict[str, list[str]]:
    doc = json.loads(DASHBOARD.read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in doc["panels"]}


def grafana(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def rule_exprs() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def report(config: Path) -> dict[str, Any]:
    """``planner report --json``'s data, read in this process (a CLI start per poll is slow)."""
    return store_commands.report(load_config(config), None, datetime.now(UTC))


def report_cli(config: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "planner", "report", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def money_of(data: dict[str, Any]) -> dict[str, Any]:
    """What the money panels must show, from ``planner report --json``."""
    by_model: dict[str, Decimal] = defaultdict(Decimal)
    for row in data["rows"]:
        by_model[row["model"]] += Decimal(row["savings_usd"])
    return {
        "saved": Decimal(data["totals"]["savings_usd"]),
        "spent": Decimal(data["totals"]["cost_usd"]),
        "by_model": dict(by_model),
    }


def panels_money(prom: Prometheus) -> dict[str, Any]:
    """The money panels' own queries, as Grafana sends them (variables at "All")."""
    panels = dashboard_targets()
    saved = prom.by(grafana(panels["Saved so far (all time)"][0]))
    spent = prom.by(grafana(panels["Spent so far (all time)"][0]))
    in_range = prom.by(grafana(panels["Saved in the selected range"][0]))
    by_model = prom.by(grafana(panels["Saved by model (all time)"][0]), "model")
    return {
        "saved": saved.get("", Decimal(-1)),
        "spent": spent.get("", Decimal(-1)),
        "in_range": in_range.get("", Decimal(-1)),  # the range (1d) covers the whole test
        "by_model": {m: v for m, v in by_model.items() if v != 0},
    }


def agrees(panel: dict[str, Any], ledger: dict[str, Any]) -> bool:
    def close(a: Decimal, b: Decimal) -> bool:
        return abs(a - b) < MICRO

    models = {m: v for m, v in ledger["by_model"].items() if v != 0}
    return (
        close(panel["saved"], ledger["saved"])
        and close(panel["in_range"], ledger["saved"])
        and close(panel["spent"], ledger["spent"])
        and panel["by_model"].keys() == models.keys()
        and all(close(panel["by_model"][m], models[m]) for m in models)
    )


def assert_panels_equal_the_ledger(prom: Prometheus, config: Path) -> dict[str, Any]:
    """Once Prometheus has scraped a still ledger: the panels equal the report. A snapshot
    counts only if the ledger did not move while Prometheus was asked."""
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        before = money_of(report(config))
        panel = panels_money(prom)
        after = money_of(report(config))
        if before == after and agrees(panel, after):
            assert after["saved"] > 0
            return after
        seen.append((panel, after))
        time.sleep(1)
    raise AssertionError(f"the money panels never equalled planner report: {seen[-3:]}")


def scraped_totals(metrics_url: str) -> dict[str, Decimal]:
    """The daemon's own /metrics, summed over every series of the two money totals."""
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for line in httpx.get(metrics_url, timeout=30).text.splitlines():
        name, _, rest = line.partition("{")
        if name in ("planner_savings_usd_total", "planner_cost_usd_total"):
            sums[name] += Decimal(rest.rsplit(" ", 1)[1])
    return sums


def assert_scrape_equals_the_ledger(metrics_url: str, config: Path) -> None:
    """/metrics as a scraper reads it, against ``planner report`` (a still ledger; the daemon
    caches its store reads for a few seconds)."""
    seen: list[tuple[dict[str, Decimal], dict[str, Any]]] = []
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        before = money_of(report(config))
        scraped = scraped_totals(metrics_url)
        after = money_of(report(config))
        if (
            before == after
            and abs(scraped["planner_savings_usd_total"] - after["saved"]) < MICRO
            and abs(scraped["planner_cost_usd_total"] - after["spent"]) < MICRO
        ):
            return
        seen.append((scraped, after))
        time.sleep(0.5)
    raise AssertionError(f"/metrics never equalled planner report: {seen[-3:]}")


def every_query_runs(prom: Prometheus) -> None:
    for title, exprs in dashboard_targets().items():
        for expr in exprs:
            prom.query(grafana(expr))  # asserts status "success": it parsed and ran
            assert NAME.search(expr), title
    for expr in rule_exprs().values():
        prom.query(expr)
    rules = httpx.get(f"{prom.url}/api/v1/rules", timeout=30).json()["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    assert loaded.keys() == rule_exprs().keys()
    for name, rule in loaded.items():
        assert rule["health"] in ("ok", "unknown") and not rule.get("lastError"), (name, rule)


def status(config: Path) -> dict[str, Any]:
    return store_commands.status(load_config(config))


def all_terminal(config: Path, total: int) -> bool:
    requests: dict[str, int] = status(config)["requests"]
    return sum(requests.get(s, 0) for s in TERMINAL) == total


def start_daemon(config: Path, sandbox_url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "planner",
                "run",
                "-c",
                str(config),
                "--sandbox-url",
                sandbox_url,
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )


@pytest.mark.timeout(300)  # about a minute; room for a machine shared with other jobs
def test_dashboard_money_equals_the_ledger_across_a_restart_with_malformed_results(
    tmp_path: Path, prometheus_binary: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    sandbox_port, metrics_port, prom_port = free_port(), free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    # malformed result lines; every result download takes 3 s, so a finished batch waits
    # uncollected long enough for the "not collected" gauge to be scraped
    faults = "malformed_line_rate=0.08,slow=3,slow_on=download,seed=11"
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "planner",
            "sandbox",
            "--port",
            str(sandbox_port),
            "--faults",
            faults,
            "--speed",
            "1",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(sandbox)
    wait_for("the sandbox", lambda: httpx.get(f"{sandbox_url}/_sandbox/ledger").is_success)

    (tmp_path / "prom.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "planner",
                        "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                    }
                ],
            }
        )
    )
    prom = Prometheus(
        f"http://127.0.0.1:{prom_port}",
        subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={tmp_path / 'prom.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    )
    processes.append(prom.process)
    wait_for("prometheus", lambda: httpx.get(f"{prom.url}/-/ready").is_success)

    spool = tmp_path / "spool"
    spool.mkdir()
    config = tmp_path / "planner.yaml"
    config.write_text(CONFIG.replace("{port}", str(metrics_port)))
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, sandbox_url, log)
    processes.append(daemon)

    # the first scrape already has every money series, at 0: nothing is born holding a value
    wait_for("a first scrape", lambda: bool(prom.query('up{job="planner"} == 1')))
    zero = prom.by('sum(planner_savings_usd_total{job="planner"})')
    assert zero == {"": Decimal(0)}
    assert prom.query('planner_lines_quarantined_total{reason="invalid_json"} == 0')

    # wave 1, all of it through, then the panels against the ledger
    total = write_wave(spool, "w1", 24)
    wait_for("wave 1 to finish", lambda: all_terminal(config, total), timeout=90)
    first = assert_panels_equal_the_ledger(prom, config)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    assert_scrape_equals_the_ledger(metrics_url, config)
    every_query_runs(prom)

    # wave 2, and SIGTERM while its batches are at the provider
    total += write_wave(spool, "w2", 24)
    wait_for(
        "wave 2 at the provider",
        lambda: sum(status(config)["batches"].get(s, 0) for s in ("submitted", "running")) > 0,
        timeout=60,
    )
    started_before = prom.by('max(process_start_time_seconds{job="planner"})')[""]
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=90) == 0
    lines = log.read_text().splitlines()
    assert '"event": "stopped"' in lines[-1], lines[-3:]

    daemon = start_daemon(config, sandbox_url, log)
    processes.append(daemon)
    wait_for("the restarted daemon's /metrics", lambda: httpx.get(metrics_url).is_success)
    assert_scrape_equals_the_ledger(metrics_url, config)  # its first scrapes: the ledger's totals
    wait_for(
        "a scrape of the restarted daemon",
        lambda: (
            prom.by('max(process_start_time_seconds{job="planner"})').get("", 0) > started_before
        ),
    )
    # right after the restart the totals continue from the ledger: no dip, no jump
    after_restart = panels_money(prom)
    assert after_restart["saved"] >= first["saved"] - MICRO
    assert_panels_equal_the_ledger(prom, config)

    wait_for("wave 2 to finish", lambda: all_terminal(config, total), timeout=120)
    last = assert_panels_equal_the_ledger(prom, config)
    assert_scrape_equals_the_ledger(metrics_url, config)
    assert last["saved"] > first["saved"]
    assert money_of(report_cli(config)) == last  # the CLI's report --json says the same
    every_query_runs(prom)

    # the provider's side: nothing billed twice, malformed result lines included
    billed = httpx.get(f"{sandbox_url}/_sandbox/ledger", timeout=30).json()["requests"]
    assert billed and max(r["times_billed"] for r in billed) == 1

    # counters never went backwards across the restart: no reset for increase() to guess at
    window = "[10m]"
    for name in ("planner_savings_usd_total", "planner_cost_usd_total"):
        assert prom.by(f'sum(resets({name}{{job="planner"}}{window}))') == {"": Decimal(0)}
    # estimate error is measured for embedding models too
    for model in ("text-embedding-3-small", "gemini-embedding-001"):
        count = prom.by(f'sum(planner_estimate_error_ratio_count{{model="{model}"}})')
        assert count.get("", Decimal(0)) > 0, model
    # the operator's log: batches finished and collected with their money, results written
    text = log.read_text()
    for event in ("batch_finished", "batch_collected", "results_written", "stopped"):
        assert f'"event": "{event}"' in text, event

    # no rule or panel names a metric that was never exported
    exported = set(httpx.get(f"{prom.url}/api/v1/label/__name__/values").json()["data"])
    named = {n for exprs in dashboard_targets().values() for e in exprs for n in NAME.findall(e)}
    named |= {n for e in rule_exprs().values() for n in NAME.findall(e)}
    assert named - exported - ONLY_WITH_A_BUDGET == set()
    assert not ONLY_WITH_A_BUDGET & exported  # no placeholder budget without a budget

    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=90) == 0
