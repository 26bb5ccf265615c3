"""The PromQL expressions shipped in Grafana/: every dashboard target and every alerting rule."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import yaml

from tandem_stack import GRAFANA_DIR

DASHBOARD = GRAFANA_DIR / "tandem-dashboard.json"
ALERTS = GRAFANA_DIR / "alerts.yml"
ALERTS_TEST = GRAFANA_DIR / "alerts_test.yml"

# $name, ${name} and ${name:format}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


@dataclass(frozen=True)
class DashboardQuery:
    panel: str
    row: Optional[str]
    ref_id: str
    legend: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.row} / {self.panel} [{self.ref_id}]"


def load_dashboard(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def iter_panels(dashboard: dict) -> Iterator[tuple[Optional[str], dict]]:
    """(row title, panel) for every non-row panel, including panels inside collapsed rows."""
    row = None
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            row = panel.get("title")
            for inner in panel.get("panels", []):
                yield row, inner
            continue
        yield row, panel


def dashboard_queries(dashboard: Optional[dict] = None) -> list[DashboardQuery]:
    dashboard = dashboard or load_dashboard()
    queries = []
    for row, panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                queries.append(DashboardQuery(panel["title"], row, target.get("refId", "?"),
                                              target.get("legendFormat", ""), target["expr"]))
    return queries


def find_query(title: str, ref_id: str = "A") -> DashboardQuery:
    matches = [q for q in dashboard_queries() if q.panel == title and q.ref_id == ref_id]
    if len(matches) != 1:
        raise KeyError(f"dashboard has {len(matches)} targets for panel {title!r} refId {ref_id}")
    return matches[0]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replaces Grafana variables the way Grafana would before sending the query; unknown ones fail."""

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no test value for Grafana variable ${name} in: {expr}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


@dataclass(frozen=True)
class AlertRule:
    group: str
    name: str
    expr: str
    rule: dict


def alert_rules(path: Path = ALERTS) -> list[AlertRule]:
    doc = yaml.safe_load(path.read_text())
    rules = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rules.append(AlertRule(group["name"], rule["alert"], rule["expr"], rule))
    return rules
