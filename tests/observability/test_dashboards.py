"""Structure of the provisioned Grafana dashboards and datasource (no Grafana needed)."""

from __future__ import annotations

import importlib.util
import json

from tests.observability.common import (
    DASHBOARDS_DIR,
    DATASOURCES_DIR,
    GRAFANA_DIR,
    dashboards,
    in_catalogue,
    load_yaml,
    metric_names,
    query_panels,
    recording_rules,
)


def _datasource_uid() -> str:
    sources = [ds for f in sorted(DATASOURCES_DIR.glob("*.yml")) for ds in load_yaml(f)["datasources"]]
    assert len(sources) == 1
    assert sources[0]["type"] == "prometheus"
    return str(sources[0]["uid"])


def test_the_two_dashboards_exist_with_unique_uids_and_vietnamese_titles():
    boards = dashboards()
    assert {b["title"] for b in boards.values()} == {"DVCTT — Tổng quan", "Hub — Vận hành"}
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids) == 2
    for b in boards.values():
        assert b["schemaVersion"] >= 39
        ids = [p["id"] for p in b["panels"]]
        assert len(set(ids)) == len(ids), "panel ids must be unique within a dashboard"


def test_every_panel_has_a_query_a_title_a_description_and_the_provisioned_datasource():
    uid = _datasource_uid()
    for name, board in dashboards().items():
        panels = query_panels(board)
        assert len(panels) >= 10, name
        for panel in panels:
            where = f"{name}: {panel['title']!r}"
            assert panel["title"], where
            assert panel["description"], where
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
            assert panel["targets"], f"{where} has no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs), where
            for t in panel["targets"]:
                assert t["expr"].strip(), where
                assert t["datasource"]["uid"] == uid, where
            pos = panel["gridPos"]
            assert pos["x"] >= 0, where
            assert pos["x"] + pos["w"] <= 24, where


def test_every_metric_a_dashboard_uses_exists():
    recorded = set(recording_rules())
    for name, board in dashboards().items():
        for panel in query_panels(board):
            for t in panel["targets"]:
                raw, rec = metric_names(t["expr"])
                unknown = sorted(n for n in raw if not in_catalogue(n))
                assert not unknown, f"{name} {panel['title']!r}: not in hub/metrics.py: {unknown}"
                assert rec <= recorded, f"{name} {panel['title']!r}: undefined recording rules {rec - recorded}"


def test_domain_queries_pin_one_period_kind():
    """Summing across period kinds would count a dossier three times."""
    period_series = ("dvchub_dossiers_", "online_share", "on_time", "procedures_without_dossier", "kpi766")
    for board in dashboards().values():
        for panel in query_panels(board):
            for t in panel["targets"]:
                raw, rec = metric_names(t["expr"])
                names = raw | rec
                if any(k in n for n in names for k in period_series) and not any(
                        k in n for n in names for k in ("_now", "coverage", "target:")):
                    assert 'period_kind="$period_kind"' in t["expr"], (panel["title"], t["expr"])


def test_overview_has_the_period_variables():
    board = dashboards()["dvctt-tong-quan.json"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"period_kind", "period"}
    assert "quarter" in variables["period_kind"]["query"]
    assert variables["period"]["datasource"]["uid"] == _datasource_uid()


def test_dashboards_are_the_generators_output():
    spec = importlib.util.spec_from_file_location("generate_dashboards", GRAFANA_DIR / "generate_dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert _datasource_uid() == module.DATASOURCE_UID
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS_DIR.glob("*.json")}
    assert rendered == on_disk, "dashboards are stale: run `python deploy/grafana/generate_dashboards.py`"
    for text in on_disk.values():
        json.loads(text)


def test_dashboard_provider_points_where_compose_mounts_the_dashboards():
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dvc-hub.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/dvc-hub"
