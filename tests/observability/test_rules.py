"""promtool over the Prometheus configuration and rules, and what the rules must cover.

promtool is required (Debian's `prometheus` package): these tests fail, never skip, without it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hub.config import TargetSettings
from hub.metrics import ALL_METRICS
from tests.observability.common import (
    OPERATIONS_DOC,
    PROM_DIR,
    RULE_TESTS_DIR,
    alert_rules,
    in_catalogue,
    load_yaml,
    metric_names,
    recording_rules,
    rule_files,
    run_promtool,
)
from tests.observability.fake_hub import FakeHub, build_scenario


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-compose.yml"])
def test_promtool_check_config(config):
    proc = run_promtool("check", "config", config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 rule files found" in proc.stdout + proc.stderr


def test_promtool_check_rules():
    proc = run_promtool("check", "rules", *(str(p) for p in rule_files()))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Both files were read and hold rules (a YAML mistake can make promtool see zero rules).
    assert len(re.findall(r"SUCCESS: \d+ rules found", proc.stdout + proc.stderr)) == len(rule_files()) == 2


def test_promtool_test_rules():
    tests = sorted(RULE_TESTS_DIR.glob("*.yml"))
    assert tests, "no promtool unit tests in deploy/prometheus/tests"
    proc = run_promtool("test", "rules", *(str(p) for p in tests))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(tests), proc.stdout


def test_promtool_test_rules_can_fail(tmp_path):
    # The unit tests are only worth something if a wrong expectation fails them.
    text = (RULE_TESTS_DIR / "recording_test.yml").read_text(encoding="utf-8")
    broken = text.replace("value: 1200", "value: 1201", 1).replace("../rules/", str(PROM_DIR / "rules") + "/")
    assert broken != text
    path = tmp_path / "broken_test.yml"
    path.write_text(broken, encoding="utf-8")
    proc = run_promtool("test", "rules", str(path))
    assert proc.returncode != 0
    assert "FAILED" in proc.stdout + proc.stderr
    assert "1.201E+03" in proc.stdout + proc.stderr


def _unit_tests() -> list[dict[str, Any]]:
    return [t for f in sorted(RULE_TESTS_DIR.glob("*.yml")) for t in load_yaml(f)["tests"]]


def test_every_recording_rule_has_a_promtool_test():
    tested: set[str] = set()
    for test in _unit_tests():
        for case in test.get("promql_expr_test", []):
            tested |= metric_names(case["expr"])[1]
    missing = sorted(set(recording_rules()) - tested)
    assert not missing, f"recording rules without a promql_expr_test: {missing}"


def test_every_alert_is_tested_firing_and_silent():
    firing: set[str] = set()
    silent: set[str] = set()
    for test in _unit_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    alerts = set(alert_rules())
    assert alerts - firing == set(), f"alerts never tested firing: {sorted(alerts - firing)}"
    assert alerts - silent == set(), f"alerts never tested silent: {sorted(alerts - silent)}"


def test_alerts_have_severity_summary_and_a_runbook_section():
    doc = OPERATIONS_DOC.read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", doc, flags=re.MULTILINE)}
    for name, rule in alert_rules().items():
        assert re.fullmatch(r"DvcHub[A-Za-z]+", name), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/operations.md#{name.lower()}", (name, url)
        assert name.lower() in anchors, f"docs/operations.md has no section '{name}' for the runbook link"


def test_targets_mirror_the_configuration():
    rules = recording_rules()
    t = TargetSettings()
    assert rules["target:dvchub_online_share:ratio"] == f"vector({t.online_share:g})"
    assert rules["target:dvchub_level3_coverage:ratio"] == f"vector({t.level3_coverage:g})"
    assert rules["target:dvchub_level4_coverage_min:ratio"] == f"vector({t.level4_coverage_min:g})"
    assert rules["target:dvchub_level4_coverage_max:ratio"] == f"vector({t.level4_coverage_max:g})"


def test_rules_use_only_catalogue_metrics_and_defined_recordings():
    recorded = set(recording_rules())
    for rule in [*recording_rules().values(), *(a["expr"] for a in alert_rules().values())]:
        raw, rec = metric_names(rule)
        assert all(in_catalogue(n) for n in raw), (rule, sorted(n for n in raw if not in_catalogue(n)))
        assert rec <= recorded, (rule, rec - recorded)


def test_promtool_check_metrics_over_a_real_scrape():
    """Every catalogue metric, exposed through hub.metrics' factories as the processes do, lints clean."""
    hub = FakeHub(build_scenario())
    exposed: set[str] = set()
    for endpoint in hub.endpoints:  # one scrape per "process", as Prometheus sees them
        text = endpoint.exposition()
        exposed |= {line.split(b" ")[2].decode() for line in text.splitlines() if line.startswith(b"# TYPE")}
        proc = run_promtool("check", "metrics", stdin=text)
        assert proc.returncode == 0, (endpoint.name, proc.stdout + proc.stderr)
        assert proc.stdout.strip() == "", (endpoint.name, proc.stdout)
        assert proc.stderr.strip() == "", (endpoint.name, proc.stderr)
    assert {m.name for m in ALL_METRICS} <= exposed, sorted({m.name for m in ALL_METRICS} - exposed)


def test_promtool_check_metrics_of_the_real_modules():
    """The registries the portal sync and the stream worker really build lint clean too."""
    from hub.sync.metrics import SyncMetrics
    from streams.collector import PipelineMetrics

    sync = SyncMetrics()
    sync.pushes.labels(kind="dossier", outcome="ok").inc()
    sync.retries.labels(kind="dossier", reason="http_503").inc()
    worker = CollectorRegistry()
    pm = PipelineMetrics(worker)
    pm.records_in.labels(agent="normalize_motcua").inc()
    pm.latency.labels(agent="normalize_motcua").observe(0.1)
    for registry in (sync.registry, worker):
        proc = run_promtool("check", "metrics", stdin=generate_latest(registry))
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_metrics_doc_covers_every_metric_and_recording_rule():
    from tests.observability.common import METRICS_DOC

    doc = METRICS_DOC.read_text(encoding="utf-8")
    missing = [m.name for m in ALL_METRICS if f"`{m.name}`" not in doc]
    missing += [r for r in recording_rules() if f"`{r}`" not in doc]
    assert not missing, f"docs/metrics.md does not document: {missing}"
