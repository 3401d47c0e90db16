"""hub.prometheus: finding the binary, rendering the configuration, starting and querying the real server."""

from __future__ import annotations

import json

import httpx
import pytest

from hub.config import load_settings
from hub.prometheus import (
    PrometheusError,
    PrometheusServer,
    ScrapeTarget,
    default_rule_files,
    find_prometheus,
    hub_scrape_targets,
    render_config,
)
from tests.observability.common import RULES_DIR, run_promtool


def test_find_prometheus_reports_how_to_install(tmp_path):
    with pytest.raises(PrometheusError, match="apt-get install -y prometheus"):
        find_prometheus(tmp_path / "nope")


def test_the_real_binary_is_installed():
    assert find_prometheus().name == "prometheus"


def test_hub_scrape_targets_follow_the_settings(monkeypatch):
    monkeypatch.setenv("DVC_HUB_WORKER__WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("DVC_HUB_WORKER__WEB_PORT", "7000")
    targets = {t.job: list(t.targets) for t in hub_scrape_targets(load_settings())}
    assert targets == {
        "dvchub-worker": ["127.0.0.1:7000"],  # bound to all interfaces, reached over loopback
        "dvchub-connectors": ["127.0.0.1:9465"],
        "dvchub-portal-sync": ["127.0.0.1:9466"],
    }


def test_rendered_config_passes_promtool(tmp_path):
    cfg = render_config(hub_scrape_targets(load_settings()), scrape_interval="5s", rule_files=default_rule_files())
    assert [r.rsplit("/", 1)[1] for r in cfg["rule_files"]] == ["alerts.yml", "recording.yml"]
    assert default_rule_files() == sorted(RULES_DIR.glob("*.yml"))
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    proc = run_promtool("check", "config", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_duplicate_job_names_are_refused():
    with pytest.raises(PrometheusError, match="unique"):
        render_config([ScrapeTarget("a", ["x:1"]), ScrapeTarget("a", ["x:2"])])


def test_a_refused_configuration_fails_start_with_prometheus_own_words(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("groups: [{name: x, rules: [{record: 'bad name', expr: 'up'}]}]", encoding="utf-8")
    prom = PrometheusServer(tmp_path / "p", [ScrapeTarget("x", ["127.0.0.1:1"])], rule_files=[broken])
    with pytest.raises(PrometheusError, match="promtool check config") as err:
        prom.start(timeout=20)
    assert "bad name" in str(err.value) or "invalid" in str(err.value).lower()
    assert not prom.running
    prom.close()


def test_start_query_and_stop(tmp_path):
    with PrometheusServer(tmp_path, [ScrapeTarget("self", ["127.0.0.1:1"])], scrape_interval="1s") as prom:
        assert prom.running
        assert prom.query_value("vector(42)") == 42.0
        assert prom.query("scalar(vector(1.5))")[0].value == 1.5
        samples = prom.wait_for('up{job="self"}', timeout=15)
        assert samples[0].labels["job"] == "self"
        assert samples[0].value == 0.0  # nothing listens on port 1
        with pytest.raises(PrometheusError, match=r"parse error|bad_data"):
            prom.query("sum(")
        with pytest.raises(PrometheusError, match="expected exactly one"):
            prom.query_value('up{job="none"}')
        with pytest.raises(PrometheusError, match="still returned 0"):
            prom.wait_for('up{job="none"}', timeout=0.5)
        # No local user can stop, reload or wipe it over HTTP: lifecycle and admin APIs are off.
        assert not any("lifecycle" in a or "admin-api" in a for a in prom.command(find_prometheus()))
        for path in ("/-/quit", "/-/reload", "/api/v1/admin/tsdb/delete_series?match[]=up"):
            assert httpx.post(f"{prom.url}{path}", timeout=5).status_code >= 400, path
        assert prom.running
    assert not _running(prom)
    prom.stop()  # twice is fine


def _running(prom: PrometheusServer) -> bool:
    # A function call, so the type checker does not carry "running is True" over from the block above.
    return prom.running


def test_a_portal_sync_serving_tls_is_scraped_over_https(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_HUB_API__TLS_CERTFILE", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("DVC_HUB_API__TLS_KEYFILE", str(tmp_path / "key.pem"))
    jobs = {j["job_name"]: j for j in render_config(hub_scrape_targets(load_settings()))["scrape_configs"]}
    assert jobs["dvchub-portal-sync"]["scheme"] == "https"
    assert "scheme" not in jobs["dvchub-worker"]
