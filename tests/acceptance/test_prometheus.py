"""Alert rules, their unit tests, a real /metrics scrape and the dashboard, checked with
Prometheus's own promtool (Debian package ``prometheus``) and against planner.metrics."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from planner.core.model import Lane
from planner.errors import InputError, RateLimited
from planner.metrics import Metrics, StoreReading
from planner.runtime.http import serve_metrics
from planner.sources.formats import Reason
from planner.store.ledger import Spend
from tests.conftest import REPO, require_service

RULES = REPO / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = REPO / "deploy" / "prometheus" / "rules_test.yml"
DASHBOARD = REPO / "grafana" / "planner-dashboard.json"
NAME = re.compile(r"\bplanner_[a-z_]+")
EXTERNAL = {"up", "process_start_time_seconds"}  # from Prometheus / the process collector


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        require_service("promtool")
    assert found is not None
    return found


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def defined_names() -> frozenset[str]:
    metrics = Metrics(CollectorRegistry(), store=StoreReading)
    return metrics.metric_names()


def rule_list() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    return exprs


def populated(registry: CollectorRegistry) -> Metrics:
    """Every metric with at least one sample, through the helpers the pipeline calls."""
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    spend = [
        Spend("spool", "gemini", "gemini-2.5-flash", Lane.BATCH, 1, 1100, 0, 90,
              Decimal("0.25"), Decimal("0.5"), Decimal("0.25")),
        # overspend, and the model collapses to "other"
        Spend("spool", "gemini", "unknown-model", Lane.FLEX, 1, 10, 0, 1,
              Decimal("0.02"), Decimal("0.01"), Decimal("-0.01"), Decimal("0.01")),
    ]  # fmt: skip
    reading = StoreReading(
        requests={"queued": 12, "submitted": 40},
        batches={"running": 2, "succeeded": 1},
        oldest={
            "pending_batch": datetime.fromtimestamp(1_795_000_000, UTC),
            "uncollected_batch": datetime.fromtimestamp(1_795_003_600, UTC),
        },
        spend=spend,
        budgets={
            "budget_limit": {"policy:default/day": 50},
            "budget_spent": {"policy:default/day": 6},
            "budget_reserved": {"policy:default/day": 4},
            "budget_remaining": {"policy:default/day": 40},
        },
    )
    m = Metrics(registry, store=lambda: reading, known_models={"gemini-2.5-flash"})
    m.prime(sources=["spool"], models=[("gemini", "gemini-2.5-flash")], reasons=["invalid_json"])
    m.record_ingested("spool", 10)
    m.record_quarantined("spool", "invalid_json")
    m.record_estimate("gemini", "gemini-2.5-flash", 1000, 100)
    m.record_batch_submitted("gemini", "gemini-2.5-flash")
    m.record_duplicate_batch("gemini", 0)
    m.record_batch_finished("gemini", "gemini-2.5-flash", now - timedelta(hours=3), now)
    m.record_estimate_error("gemini", "gemini-2.5-flash", 1100, 1000)
    m.record_provider_call("gemini")
    m.record_provider_error("gemini", RateLimited("429", retry_after=2))
    m.set_circuit_open("gemini", False)
    m.set_stage_interval("poll", 60)
    m.record_stage_run("poll", ok=True, finished_at=now, duration_seconds=0.4)
    m.record_stage_run("submit", ok=False, finished_at=now, duration_seconds=2.0)
    m.record_config_reload(True)
    return m


# -- rules -----------------------------------------------------------------------------------
def test_rules_are_valid() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    doc = yaml.safe_load(RULES_TEST.read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in rule_list()}
    assert alerts - firing == set(), "alerts without a firing test"
    assert alerts - quiet == set(), "alerts without a non-firing test"


def test_rules_use_only_defined_metrics() -> None:
    names = defined_names()
    for rule in rule_list():
        used = set(NAME.findall(rule["expr"]))
        assert used or any(name in rule["expr"] for name in EXTERNAL), rule["alert"]
        assert used <= names, (rule["alert"], used - names)


# -- a real scrape ---------------------------------------------------------------------------
def test_live_scrape_passes_promtool_check_metrics() -> None:
    registry = CollectorRegistry()
    metrics = populated(registry)
    with serve_metrics(registry, port=0) as server:
        assert server.host == "127.0.0.1"
        response = httpx.get(server.url, timeout=10)
    assert response.status_code == 200
    text = response.text
    result = run_promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == ""
    # Every metric planner defines has a sample in the scrape ("all metrics populated").
    sampled = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    expected = {n for n in metrics.metric_names() if not n.endswith("_created")}
    assert expected - sampled == set()
    assert 'model="other"' in text
    assert "unknown-model" not in text
    assert "process_start_time_seconds" in text  # the restart-loop alert needs it


def test_server_stops_and_frees_the_port() -> None:
    registry = CollectorRegistry()
    Metrics(registry, process_metrics=False)
    server = serve_metrics(registry, port=0)
    url = server.url
    assert httpx.get(url, timeout=10).status_code == 200
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=5)


def test_a_busy_metrics_port_is_one_input_error_naming_the_setting() -> None:
    registry = CollectorRegistry()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError) as info:
            serve_metrics(registry, port=port)
    assert str(info.value) == (
        f"metrics.listen 127.0.0.1:{port}: cannot listen: Address already in use; "
        "stop what holds it or choose another address"
    )


def test_series_count_stays_bounded() -> None:
    # The worst case budgeted in spec §5.2 at a realistic size: 20 sources, 3 providers with
    # 10 models each, every combination primed. Stays in the low thousands.
    registry = CollectorRegistry()
    m = Metrics(registry, store=StoreReading)
    models = [(p, f"model-{i}") for p in ("gemini", "openai", "compat") for i in range(10)]
    sources = [f"s{i}" for i in range(20)]
    m.prime(sources=sources, models=models, reasons=[r.value for r in Reason])
    m.prime_ledger([(s, p, model, lane.value) for s in sources for p, model in models[:10]
                    for lane in Lane])  # fmt: skip
    series = sum(
        1 for family in registry.collect() for s in family.samples if s.name.startswith("planner_")
    )
    assert series < 6000, series


# -- the dashboard ---------------------------------------------------------------------------
def test_dashboard_refers_only_to_defined_metrics() -> None:
    names = defined_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        found = set(NAME.findall(expr))
        assert found, expr
        assert found <= names, (expr, found - names)
        used |= found
    for topic in (
        "planner_savings_usd_total",
        "planner_cost_usd_total",
        "planner_interactive_equivalent_cost_usd_total",
        "planner_requests",
        "planner_batches",
        "planner_batch_turnaround_seconds_bucket",
        "planner_estimate_error_ratio_bucket",
        "planner_provider_errors_total",
        "planner_stage_last_success_timestamp_seconds",
    ):
        assert topic in used, topic


def test_dashboard_is_well_formed() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        assert panel["targets"], panel["title"]
        assert {t["refId"] for t in panel["targets"]} == {
            chr(65 + i) for i in range(len(panel["targets"]))
        }
        assert panel["datasource"]["uid"] == "${datasource}"


def test_name_pattern_would_catch_an_unknown_metric() -> None:
    assert not set(NAME.findall("rate(planner_nonexistent_total[5m])")) <= defined_names()
