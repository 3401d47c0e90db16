"""Paths and helpers shared by the observability tests (rules, dashboards, compose, Prometheus)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub import metrics as catalogue

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
RULES_DIR = PROM_DIR / "rules"
RULE_TESTS_DIR = PROM_DIR / "tests"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
DATASOURCES_DIR = GRAFANA_DIR / "provisioning" / "datasources"
COMPOSE_FILE = ROOT / "docker-compose.yml"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"

#: Grafana/e2e substitutions for the dashboards' template variables.
VARIABLES = {"$period_kind": "quarter", "$period": "2021-Q1", "$__rate_interval": "1m"}

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_RECORDED = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*(?::[a-zA-Z0-9_]+)+\b")
_RAW = re.compile(r"\bdvchub_[a-z0-9_]+\b")


def promtool() -> str:
    """The promtool binary; FAILS (never skips) with the install command when it is missing."""
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if not found:
        pytest.fail("promtool is required: install it with `apt-get install -y prometheus` (it ships promtool)",
                    pytrace=False)
    return found


def run_promtool(*args: str, stdin: bytes | None = None, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], input=stdin.decode() if stdin is not None else None, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def all_rules() -> list[dict[str, Any]]:
    return [rule for f in rule_files() for g in load_yaml(f)["groups"] for rule in g["rules"]]


def recording_rules() -> dict[str, str]:
    return {r["record"]: r["expr"] for r in all_rules() if "record" in r}


def alert_rules() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in all_rules() if "alert" in r}


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def query_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows excluded), nested rows included."""
    out: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def substitute(expr: str) -> str:
    for var in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(var, VARIABLES[var])
    return expr


def metric_names(expr: str) -> tuple[set[str], set[str]]:
    """(raw dvchub_* metric names, recorded level:metric:op names) used in a PromQL expression."""
    text = _QUOTED.sub('""', expr)
    recorded = set(_RECORDED.findall(text))
    text = _RECORDED.sub(" ", text)
    return set(_RAW.findall(text)), recorded


def in_catalogue(name: str) -> bool:
    """``name`` is a catalogue metric, or a series of one (a histogram's _bucket/_sum/_count)."""
    specs = {s.name: s for s in catalogue.ALL_METRICS}
    if name in specs:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in specs and specs[base].type == "histogram":
            return True
    return False
