"""Issue acceptance (foundation): `dvc-hub up` on live traffic shows non-zero counters and pushes statistics.

`up` runs as a user runs it (live generator, no scenario) with its own embedded broker, secured as in
a demo (SCRAM users generated on first start, ACLs per part: every hub process must find and use its
credentials); within two minutes /metrics must show received dossiers and the portal simulator must
have received a statistics PUT; an anonymous client is refused meanwhile; then `up` must stop by
itself (`--duration`) cleanly, exit code 0.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaError

from hub.config import load_settings
from tests.e2e.hubconfig import write_hub_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _received(metrics_url: str) -> float:
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("dvchub_dossiers_received{") and 'period_kind="year"' in line
    )


def _route_count(portal: str, route: str) -> int:
    try:
        routes = httpx.get(f"{portal}/_sim/stats", timeout=5).json()["by_route"]
    except (httpx.HTTPError, ValueError, KeyError):
        return 0
    return int(routes.get(route, 0))


def _stats_puts(portal: str) -> int:
    return _route_count(portal, "/api/v1/thongke/dvctt/{ky}/{ma_don_vi}")


def _anonymous_write_refused(bootstrap: str, topic: str) -> bool:
    try:
        # bootstrap_timeout_ms: kafka-python 3 would wait 30 s in the constructor for a connection the
        # broker refuses.
        producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=3000, max_block_ms=3000,
                                 bootstrap_timeout_ms=3000)
        try:
            producer.send(topic, b"forged").get(timeout=5)
        finally:
            producer.close(timeout=1)
    except KafkaError:
        return True
    return False


def test_live_demo_counts_pushes_and_stops_cleanly(tmp_path: Path) -> None:
    config, ports, _ = write_hub_config(tmp_path, None, poll_interval_s=1.0)
    settings = load_settings(config)
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "--config", str(config), "up", "--duration", "110"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            metrics = f"http://127.0.0.1:{ports.worker}/metrics"
            portal = f"http://127.0.0.1:{ports.portal}"
            deadline = time.monotonic() + 100
            while time.monotonic() < deadline and not (_received(metrics) > 0 and _stats_puts(portal) > 0):
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(2)
            assert _received(metrics) > 0, log.read_text()[-3000:]
            assert _stats_puts(portal) > 0, "no statistics PUT reached the portal within two minutes"
            # The worker's signed outbox items pass the portal sync's check (one key, found by both).
            assert _route_count(portal, "/api/v1/dongbo/hoso") > 0, "no dossier push reached the portal"
            assert _anonymous_write_refused(settings.kafka.bootstrap_servers, settings.topics.outbox)
            # Status is the whole pipeline: the worker's /api/v1/status has every stage, and the
            # backlog gauges are on the worker's and the connector runner's /metrics.
            pipeline = httpx.get(f"http://127.0.0.1:{ports.worker}/api/v1/status", timeout=10).json()["pipeline"]
            assert set(pipeline["stages"]) == {"connectors", "worker", "outbox", "statistics"}, pipeline
            assert pipeline["stages"]["connectors"]["state"] != "unknown", pipeline
            assert 'dvc_hub_pipeline_backlog{stage="worker"}' in httpx.get(metrics, timeout=10).text
            connector_metrics = httpx.get(f"http://127.0.0.1:{ports.connectors}/metrics", timeout=10).text
            assert 'dvc_hub_pipeline_backlog{stage="connectors"}' in connector_metrics
            data_dir = settings.embedded_broker.data_dir
            assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
            assert stat.S_IMODE((data_dir / "credentials.json").stat().st_mode) == 0o600
            assert proc.wait(180) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert f"metrics: http://127.0.0.1:{ports.worker}/metrics" in text
    # The demo profile: up says it starts the simulators and the live generator, and where they are.
    assert "starting: broker, simulators, live generator, worker, connectors, portal sync" in text
    assert f"portal http://127.0.0.1:{ports.portal}" in text
    assert "stopped." in text
