"""The Grafana dashboard and the alerting rules in docs/monitoring ask only for metrics the service
exposes (names read back from a scrape with prometheus_client's parser), and docs/service.md shows
the same three alerts as the rule file."""

from __future__ import annotations

import json
import re

import yaml
from fixtures import REPO
from prometheus_client.parser import text_string_to_metric_families

from burnscope.operators.monitoring.core import ServiceMetrics

MONITORING = REPO / "docs" / "monitoring"
_NAME = re.compile(r"\bburnscope_[a-z_]+\b")


def _exposed() -> set[str]:
    m = ServiceMetrics()
    m.set_model(type("Info", (), {"name": "m", "weights": "w", "backend": "b", "precision": "p", "device": "d", "demo": True})())
    m.watch_outbox(lambda: {("pacs", "pending"): 1})
    m.add_callback("burnscope_gpu_memory_bytes", "x", ["kind"], lambda: {("allocated",): 1})
    names = set()
    for family in text_string_to_metric_families(m.text().decode()):
        names.update(s.name for s in family.samples)
    return names


def test_dashboard_and_alerts_use_exposed_metrics():
    exposed = _exposed()
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    exprs += [r["expr"] for r in rules]
    used = {n for e in exprs for n in _NAME.findall(e)}
    assert used and used <= exposed, used - exposed
    assert len(dashboard["panels"]) >= 10 and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert {r["alert"] for r in rules} == {"BurnscopeReportsFailing", "BurnscopeOutboxGrowing", "BurnscopeLatencyOverSLO"}


def test_the_service_page_shows_the_rule_files_alerts():
    page = (REPO / "docs" / "service.md").read_text()
    squash = lambda text: re.sub(r"\s+", "", text)  # noqa: E731
    for rule in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]:
        assert rule["alert"] in page and squash(rule["expr"]) in squash(page)
