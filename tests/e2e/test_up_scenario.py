"""Issue acceptance: `dvc-hub up --scenario thanhhoa-2021 --fast` on the real broker reproduces domain.md §6.

The whole hub runs as a user runs it — `dvc-hub up` in a subprocess with simulators, connectors,
worker and portal sync — against the session's real Kafka broker. When `dvc-hub status` says the
pipeline has caught up, `dvc-hub report --period 2021-Q1` and the worker's `/metrics` must give the
city's published figures exactly, and the portal simulator must have received statistics pushes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.broker import EmbeddedBroker
from hub.prometheus import PrometheusServer
from hub.scenario.thanhhoa2021 import build_scenario
from hub.scenario.truth import GroundTruth
from tests.e2e.hubconfig import write_hub_config
from tests.observability.test_e2e_prometheus import (
    assert_every_panel_returns_data,
    assert_every_recording_rule_returns_data,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _cli(config: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "--config", str(config), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
    )


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture
def running_hub(kafka_broker: EmbeddedBroker, tmp_path: Path):
    config, ports, _ = write_hub_config(tmp_path, kafka_broker.bootstrap, poll_interval_s=0.5)
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "--config", str(config), "up", "--scenario", "thanhhoa-2021", "--fast"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield config, ports, tmp_path, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_scenario_reproduces_the_city_figures(running_hub) -> None:
    config, ports, cwd, proc = running_hub
    deadline = time.monotonic() + 720
    status: dict = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, (cwd / "up.log").read_text()[-4000:]
        res = _cli(config, "status", "--json", cwd=cwd, timeout=30)
        if res.stdout.strip().startswith("{"):
            status = json.loads(res.stdout)
            if status.get("caught_up"):
                break
        time.sleep(3)
    assert status.get("caught_up"), f"not caught up in time: {json.dumps(status)[:3000]}\n" + (
        (cwd / "up.log").read_text()[-3000:]
    )
    up_log = (cwd / "up.log").read_text()
    assert f"metrics: http://127.0.0.1:{ports.worker}/metrics" in up_log

    # The report the city publishes, from the hub's live state.
    res = _cli(config, "report", "--period", "2021-Q1", "--format", "json", cwd=cwd)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    city, wards, desk = report["whole_city"], report["wards_communes"], report["city_desk"]
    assert city["levels"]["MOT_PHAN"]["received_online"] == 4445
    assert city["levels"]["TOAN_TRINH"]["received_online"] == 3282
    assert wards["levels"]["MOT_PHAN"]["received_online"] == 3016
    assert wards["levels"]["TOAN_TRINH"]["received_online"] == 2933
    assert desk["levels"]["MOT_PHAN"]["received_online"] == 1429
    assert desk["levels"]["TOAN_TRINH"]["received_online"] == 349
    offered = desk["procedures_offered"]
    assert (offered["MOT_PHAN"], offered["TOAN_TRINH"]) == (41, 70)
    dien_bien = next(u for u in report["units"] if u["code"] == "14767")
    offered = dien_bien["procedures_offered"]
    assert (offered["MOT_PHAN"], offered["TOAN_TRINH"]) == (9, 32)

    res = _cli(config, "report", "--from", "2020-09", "--to", "2021-03", "--unit", "14767", "--format", "json",
               cwd=cwd)
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)["units"][0]
    assert row["code"] == "14767"
    assert row["levels"]["ALL"]["received_online"] == 724

    res = _cli(config, "report", "--period", "2020", "--format", "json", cwd=cwd)
    year2020 = json.loads(res.stdout)["whole_city"]["levels"]
    assert (year2020["MOT_PHAN"]["received_online"], year2020["TOAN_TRINH"]["received_online"]) == (3414, 126)

    # /metrics: online dossiers received in Q1-2021 by level, whole city and ward/commune tier.
    metrics = httpx.get(f"http://127.0.0.1:{ports.worker}/metrics", timeout=10).text
    online = {"channel": "TRUC_TUYEN", "period": "2021-Q1", "period_kind": "quarter"}
    assert _metric_sum(metrics, "dvchub_dossiers_received", level="MOT_PHAN", **online) == 4445
    assert _metric_sum(metrics, "dvchub_dossiers_received", level="TOAN_TRINH", **online) == 3282
    assert _metric_sum(metrics, "dvchub_dossiers_received", level="MOT_PHAN", tier="XA", **online) == 3016
    assert _metric_sum(metrics, "dvchub_dossiers_received", level="TOAN_TRINH", tier="XA", **online) == 2933
    year = {"channel": "TRUC_TUYEN", "period": "2020", "period_kind": "year"}
    assert _metric_sum(metrics, "dvchub_dossiers_received", level="MOT_PHAN", **year) == 3414
    assert _metric_sum(metrics, "dvchub_dossiers_received", level="TOAN_TRINH", **year) == 126

    # Three ways: the hub's state (report) = Prometheus (the server `up` started, with the
    # repository's rules) = a recount from the scenario's ground truth, for every unit and level.
    truth = GroundTruth(build_scenario())
    prom = PrometheusServer(cwd / "prom-client", [], port=ports.prometheus)
    q1 = 'period="2021-Q1", period_kind="quarter"'
    queries = {
        "received_online": f'sum by (unit, level) (dvchub_dossiers_received{{{q1}, channel="TRUC_TUYEN"}})',
        "finished_late": f'sum by (unit, level) (dvchub_dossiers_finished{{{q1}, timeliness="late"}})',
    }
    deadline = time.monotonic() + 60
    while True:  # Prometheus scrapes every few seconds: wait for the caught-up values
        in_prom = {
            (name, smp.labels["unit"], smp.labels["level"]): smp.value
            for name, expr in queries.items() for smp in prom.query(expr)
        }
        online = sum(v for (name, _, _), v in in_prom.items() if name == "received_online")
        if online == 4445 + 3282 or time.monotonic() > deadline:
            break
        time.sleep(2)
    levels = {"MOT_PHAN": 3, "TOAN_TRINH": 4}
    by_unit = {u["code"]: u for u in report["units"]}
    mismatches = []
    for unit in (u.code for u in truth.scenario.units):
        for level, muc_do in levels.items():
            row = by_unit[unit]["levels"][level] if unit in by_unit else {}
            for name, want in (
                ("received_online", truth.figure("received", unit=unit, level=muc_do, channel="2")),
                ("finished_late", truth.figure("finished_late", unit=unit, level=muc_do)),
            ):
                hub_state = row.get(name, 0)
                prom_value = in_prom.get((name, unit, level), 0)
                if not want == hub_state == prom_value:
                    mismatches.append((name, unit, level, want, hub_state, prom_value))
    assert not mismatches, mismatches[:10]
    assert_every_recording_rule_returns_data(prom)
    assert_every_panel_returns_data(prom)
