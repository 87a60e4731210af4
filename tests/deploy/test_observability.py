"""Prometheus configurations, alert rules and the Grafana dashboard: they parse, and every
speechmesh metric they query is one the services export (names from services/runtime/metrics.py).
promtool, when installed (Debian's `prometheus` package), also checks the PromQL itself."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.conftest import run

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_metrics() -> set[str]:
    """Series names the services export (counters with _total, histograms with their parts)."""
    import prometheus_client

    from speechmesh.runtime import metrics

    names = set()
    for value in vars(metrics).values():
        if isinstance(value, prometheus_client.Counter):
            names.add(value._name + "_total")
        elif isinstance(value, prometheus_client.Histogram):
            names.update(value._name + suffix for suffix in HISTOGRAM_SUFFIXES)
        elif isinstance(value, prometheus_client.Gauge):
            names.add(value._name)
    source = (ROOT / "services/runtime/metrics.py").read_text()
    # Collector-made families (device memory) are named in the source.
    names.update(re.findall(r'GaugeMetricFamily\(\s*"(speechmesh_\w+)"', source))
    return names


def queried_metrics(expression: str) -> set[str]:
    return set(re.findall(r"\b(speechmesh_\w+)", expression))


def dashboard_expressions(path) -> list[str]:
    dashboard = json.loads(path.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_the_services_export_what_the_dashboard_shows():
    names = exported_metrics()
    for needed in (
        "speechmesh_requests_total",
        "speechmesh_request_duration_seconds_bucket",
        "speechmesh_queue_depth",
        "speechmesh_active_streams",
        "speechmesh_real_time_factor_bucket",
        "speechmesh_device_memory_allocated_bytes",
    ):
        assert needed in names


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_existing_metrics(path):
    names = exported_metrics()
    expressions = dashboard_expressions(path)
    assert len(expressions) >= 10
    for expression in expressions:
        assert queried_metrics(expression) <= names, expression
    shown = set().union(*(queried_metrics(e) for e in expressions))
    # The list: request rate, latency, queue depth, real-time factor, GPU memory.
    for metric in (
        "speechmesh_requests_total",
        "speechmesh_request_duration_seconds_bucket",
        "speechmesh_queue_depth",
        "speechmesh_real_time_factor_bucket",
        "speechmesh_device_memory_allocated_bytes",
    ):
        assert metric in shown, metric
    dashboard = json.loads(path.read_text())
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    uids = {d["uid"] for d in datasource["datasources"]}
    for panel in dashboard["panels"]:
        if "datasource" in panel:
            assert panel["datasource"]["uid"] in uids


def test_alerts_query_existing_metrics():
    names = exported_metrics()
    rules = alert_rules()
    assert len(rules) >= 5
    for rule in rules:
        assert queried_metrics(rule["expr"]) <= names, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_kubernetes_scrape_config_keeps_the_labels_the_adapter_and_dashboard_use():
    config = yaml.safe_load((PROMETHEUS / "kubernetes.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod", "app", "__metrics_path__", "__address__"} <= targets


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (optional: apt-get install prometheus)")
    return found


def test_promtool_checks_compose_config_and_rules(tmp_path):
    promtool = _promtool()
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_promtool_parses_the_dashboard_queries(path, tmp_path):
    """Each query as a recording rule (Grafana's $variables replaced), so promtool parses it."""
    promtool = _promtool()
    rules = []
    for index, expression in enumerate(dashboard_expressions(path)):
        expression = expression.replace("$__rate_interval", "5m").replace("$app", ".*")
        rules.append({"record": f"dashboard:query_{index}", "expr": expression})
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(tmp_path / "rules.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
