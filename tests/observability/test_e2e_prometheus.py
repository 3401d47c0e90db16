"""End to end with the REAL Prometheus: it scrapes the hub's metric endpoints, evaluates the recording
and alert rules of deploy/prometheus/rules, and every dashboard panel's query is run against it.

Variant here: the endpoints are :class:`tests.observability.fake_hub.FakeHub` (two workers each owning
half the partitions, the connector runner, the portal sync), serving the catalogue's metrics for a
seeded Q1-2021 scenario whose ground truth is known. The checks themselves
(:func:`assert_every_recording_rule_returns_data`, :func:`assert_every_panel_returns_data`) take any
running :class:`hub.prometheus.PrometheusServer`, so the same checks run against the real worker fed by
the scenario once it is wired (see docs/operations.md, "Testing the observability stack").

Prometheus is required (Debian's `prometheus` package): without it these tests fail with the install
command, they never skip.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from hub.prometheus import PrometheusError, PrometheusServer, ScrapeTarget, default_rule_files, find_prometheus
from tests.observability.common import dashboards, query_panels, recording_rules, substitute
from tests.observability.fake_hub import FakeHub, GroundTruth, build_scenario

Q1 = 'period_kind="quarter", period="2021-Q1"'


def assert_every_recording_rule_returns_data(prom: PrometheusServer) -> None:
    unhealthy = [(r["name"], r.get("lastError")) for r in prom.rules() if r["health"] != "ok"]
    assert not unhealthy, f"rules failing in Prometheus: {unhealthy}"
    empty = [name for name in recording_rules()
             if not [s for s in prom.query(name) if not math.isnan(s.value)]]
    assert not empty, f"recording rules with no data: {empty}"


def assert_every_panel_returns_data(prom: PrometheusServer) -> int:
    checked = 0
    empty: list[tuple[str, str, str]] = []
    for board_name, board in dashboards().items():
        for panel in query_panels(board):
            for t in panel["targets"]:
                expr = substitute(t["expr"])
                if not [s for s in prom.query(expr) if not math.isnan(s.value)]:
                    empty.append((board_name, panel["title"], expr))
                checked += 1
    assert not empty, f"dashboard queries with no data: {empty}"
    return checked


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, GroundTruth]]:
    try:
        find_prometheus()
    except PrometheusError as exc:
        pytest.fail(str(exc), pytrace=False)
    truth = build_scenario()
    hub = FakeHub(truth)
    addrs = hub.start()
    prom = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"),
        [
            ScrapeTarget("dvchub-worker", [addrs["worker-0"], addrs["worker-1"]]),
            ScrapeTarget("dvchub-connectors", [addrs["connectors"]]),
            ScrapeTarget("dvchub-portal-sync", [addrs["portal-sync"]]),
        ],
        # Each worker serves ~1 MB (as a real one would with 35 units x 3 levels x 3 channels x 5
        # periods); 2 s leaves the scrape time to spare on a busy 2-core CI machine.
        scrape_interval="2s",
        evaluation_interval="1s",
        rule_files=default_rule_files(),
    )
    try:
        prom.start()
        prom.wait_for("count(up == 1) == 4", timeout=30)
        # rate() needs two samples of every counter; the rules need a few evaluations after that.
        prom.wait_for('min(count_over_time(up{job="dvchub-worker"}[1m])) >= 3', timeout=30)
        prom.wait_for("hub:dvchub_agent_records_in:rate5m > 0", timeout=30)
        prom.wait_for("city_indicator:dvchub_kpi766_score:avg", timeout=30)
        yield prom, truth
    finally:
        prom.close()
        hub.stop()


def test_rule_files_loaded_and_targets_up(live):
    prom, _ = live
    assert set(prom.target_health().values()) == {"up"}
    names = {r["name"] for r in prom.rules()}
    assert set(recording_rules()) <= names
    assert {"DvcHubWorkerDown", "DvcHubDeadLetterSpike", "DvcHubPortalBreakerOpen"} <= names


def test_every_recording_rule_returns_data(live):
    assert_every_recording_rule_returns_data(live[0])


def test_every_dashboard_panel_returns_data(live):
    assert assert_every_panel_returns_data(live[0]) >= 40


def test_period_variable_offers_the_scenario_periods(live):
    prom, _ = live
    quarters = {s.labels["period"] for s in prom.query('city:dvchub_dossiers_received:sum{period_kind="quarter"}')}
    months = {s.labels["period"] for s in prom.query('city:dvchub_dossiers_received:sum{period_kind="month"}')}
    assert quarters == {"2021-Q1"}
    assert months == {"2021-01", "2021-02", "2021-03"}


def test_each_worker_holds_only_a_share(live):
    prom, truth = live
    shares = prom.query(f"sum by (instance) (dvchub_dossiers_received{{{Q1}}})")
    assert len(shares) == 2
    assert all(0 < s.value < len(truth.dossiers) for s in shares)
    assert sum(s.value for s in shares) == len(truth.dossiers)


def test_online_dossiers_per_level_equal_the_published_figures(live):
    """domain.md §6: Q1-2021 online dossiers, level 3 / level 4, city-wide and at ward/commune level."""
    prom, truth = live
    by_level = {s.labels["level"]: s.value for s in prom.query(
        f'sum by (level) (tier_level_channel:dvchub_dossiers_received:sum{{channel="TRUC_TUYEN", {Q1}}})')}
    assert by_level == {"MOT_PHAN": 4445, "TOAN_TRINH": 3282}
    wards = {s.labels["level"]: s.value for s in prom.query(
        f'sum by (level) (tier_level_channel:dvchub_dossiers_received:sum{{tier="XA", channel="TRUC_TUYEN", {Q1}}})')}
    assert wards == {"MOT_PHAN": 3016, "TOAN_TRINH": 2933}
    desk = {s.labels["level"]: s.value for s in prom.query(
        f'sum by (level) (dvchub_dossiers_received{{unit="380", channel="TRUC_TUYEN", {Q1}}})')}
    assert desk == {"MOT_PHAN": 1429, "TOAN_TRINH": 349}
    assert truth.count(channel="TRUC_TUYEN", level="MOT_PHAN") == 4445  # the scenario itself is right


def test_totals_and_kpis_equal_the_ground_truth(live):
    prom, truth = live
    assert prom.query_value(f"sum(city:dvchub_dossiers_received:sum{{{Q1}}})") == len(truth.dossiers)
    for month in ("2021-01", "2021-02", "2021-03"):
        assert prom.query_value(f'city:dvchub_dossiers_received:sum{{period="{month}"}}') == truth.count(month=month)
    assert prom.query_value(f"city:dvchub_online_share:ratio{{{Q1}}}") == pytest.approx(truth.online_share, abs=1e-12)
    assert prom.query_value(f"city:dvchub_on_time:ratio{{{Q1}}}") == pytest.approx(truth.on_time_rate, abs=1e-12)
    assert prom.query_value("city:dvchub_level4_coverage:ratio") == pytest.approx(truth.level4_coverage, abs=1e-12)
    # 70 + 34 x 32 toàn trình of 111 + 34 x 41 online procedures: 76.9%, inside the 75-90% target.
    assert truth.level4_coverage == pytest.approx(1158 / 1505)
    assert prom.query_value("city:dvchub_level4_coverage:meets_target") == 1
    assert prom.query_value("city:dvchub_dossiers_overdue_now:sum") == truth.count(overdue=True)
    assert prom.query_value("sum(unit:dvchub_dossiers_open_now:sum)") == truth.count(outcome="open")
    per_unit = {s.labels["unit"]: s.value for s in prom.query("unit:dvchub_dossiers_overdue_now:sum")}
    assert per_unit == {u: truth.count(unit=u, overdue=True) for u in per_unit}
    assert sum(per_unit.values()) == truth.count(overdue=True)
    # Unit-wide figures exported by BOTH workers are counted once.
    assert prom.query_value('sum(unit_level:dvchub_procedures_offered:max{level="TOAN_TRINH"})') == 70 + 34 * 32


def test_no_alert_fires_on_a_healthy_hub(live):
    prom, _ = live
    assert prom.query('ALERTS{alertstate="firing"}') == []
    # ... and no scrape was ever missed (a timed-out scrape would make series vanish in between).
    assert prom.query("min_over_time(up[1m]) < 1") == []
