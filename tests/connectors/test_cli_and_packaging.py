"""Entry-point discovery of a third-party package, the scaffold, and the operator commands."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.sdk import load_connector
from connectors.sdk.registry import entry_points
from hub.cli import main

VENV_BIN = Path(sys.executable).parent
THIRD_PARTY = '''
from typing import Any
from connectors.sdk import Body, Connector, Page, SnapshotStream

class Rows(SnapshotStream):
    name = "rows"
    path = "/rows"
    kind = "catalogue"
    topic = "raw_catalogue"
    primary_key = "id"

    def parse_page(self, body: Body) -> Page:
        return Page(body.json())

class VendorXConnector(Connector):
    type = "vendor_x"
    title = "Vendor X one-stop (third party)"
    streams = (Rows,)
'''


@pytest.fixture
def third_party_site(tmp_path, monkeypatch) -> Iterator[Path]:
    """A package installed the way pip leaves it (module + .dist-info with entry_points.txt)."""
    site = tmp_path / "site"
    (site / "vendor_x_conn").mkdir(parents=True)
    (site / "vendor_x_conn" / "__init__.py").write_text("")
    (site / "vendor_x_conn" / "connector.py").write_text(THIRD_PARTY)
    info = site / "dvc_hub_vendor_x-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dvc-hub-vendor-x\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        '[dvc_hub.connectors]\nvendor_x = vendor_x_conn.connector:VendorXConnector\n')
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("vendor_x_conn.connector", None)
    sys.modules.pop("vendor_x_conn", None)


def test_a_connector_in_its_own_package_is_discovered_through_its_entry_point(third_party_site):
    assert "vendor_x" in entry_points()
    cls = load_connector("vendor_x")
    assert cls.__name__ == "VendorXConnector"
    env = {**os.environ, "PYTHONPATH": str(third_party_site)}
    out = subprocess.run([str(VENV_BIN / "dvc-hub"), "connectors", "list", "--no-state"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "vendor_x" in out
    assert "Vendor X one-stop (third party)" in out


def test_unknown_type_lists_the_installed_ones():
    from hub.config import ConfigError

    with pytest.raises(ConfigError, match=r"installed types: .*motcua"):
        load_connector("no_such_vendor")


def test_scaffold_output_passes_the_contract_kit(tmp_path, capsys):
    assert main(["connectors", "new", "acme_motcua", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "acme_motcua"
    assert (root / "pyproject.toml").read_text().count('acme_motcua = "acme_motcua.connector:AcmeMotcuaConnector"')
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings"],
                            cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 passed" in result.stdout
    assert main(["connectors", "new", "acme_motcua", "--dir", str(tmp_path)]) == 2  # never overwrites
    assert main(["connectors", "new", "Bad-Name", "--dir", str(tmp_path)]) == 2


def write_config(path: Path, sims, *, api_key: str = "demo-key-14767", extra: str = "", broker: str = "") -> Path:
    path.write_text(textwrap.dedent(f'''
        [kafka]
        bootstrap_servers = "{broker or '127.0.0.1:1'}"
        [connector_runner]
        host = "127.0.0.1"
        port = 0
        [[connectors]]
        name = "motcua-14767"
        type = "motcua"
        base_url = "{sims.motcua_base_url('14767')}"
        unit_code = "14767"
        poll_interval_s = 0.2
        auth = {{ kind = "api_key", api_key = "{api_key}" }}
        [[connectors]]
        name = "qlvb"
        type = "qlvb"
        base_url = "{sims.qlvb_url}"
        poll_interval_s = 0.2
        auth = {{ kind = "basic", username = "dvc-hub", password = "demo-qlvb-password" }}
        [[connectors]]
        name = "portal"
        type = "portal"
        base_url = "{sims.portal_url}"
        poll_interval_s = 0.2
        auth = {{ kind = "oauth2", client_id = "dvc-hub", client_secret = "demo-portal-secret" }}
        {extra}
    '''))
    return path


@pytest.fixture
def sims():
    from hub.simulators.server import SimulatorServer

    with SimulatorServer(units={"14767": "demo-key-14767"}) as server:
        server.world.upsert_dossier({"MaHoSo": "H56.14767-210115-00001", "MaDonVi": "14767", "TrangThaiHoSo": "2"})
        yield server


def test_check_prints_one_stable_key_and_exit_code(tmp_path, sims, capsys):
    good = write_config(tmp_path / "good.toml", sims)
    for name in ("motcua-14767", "qlvb", "portal"):
        assert main(["--config", str(good), "connectors", "check", name]) == 0
        assert capsys.readouterr().out.splitlines()[0] == "ok"
    bad = write_config(tmp_path / "bad.toml", sims, api_key="SECRET-WRONG-KEY")
    assert main(["--config", str(bad), "connectors", "check", "motcua-14767"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "invalid_auth"
    assert "SECRET-WRONG-KEY" not in out
    sims.stop()
    assert main(["--config", str(good), "connectors", "check", "qlvb"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == "cannot_connect"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        body: bytes = answer.read()
        return body


@pytest.mark.e2e
def test_runner_serves_metrics_and_health_then_state_and_reset(tmp_path, sims, kafka_broker, capsys):
    from connectors.sdk.runner import ConnectorRunner, selected_instances
    from hub.config import load_settings
    from hub.kafka import ensure_topics, hub_topics

    config = write_config(tmp_path / "hub.toml", sims, broker=kafka_broker.bootstrap)
    settings = load_settings(config)
    ensure_topics(settings.kafka, hub_topics(settings))
    sims.world.add_document_event("14767", "KY_SO", sims.world.clock.now(), {"so_ky_hieu": "1/QĐ"}, None)
    runner = ConnectorRunner(settings, selected_instances(settings))

    async def scenario() -> tuple[dict[str, Any], str]:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        health: dict[str, Any] = {}
        for _ in range(100):
            await asyncio.sleep(0.2)
            if runner.bound_port:
                url = f"http://127.0.0.1:{runner.bound_port}/healthz"
                body = await asyncio.to_thread(fetch, url)
                health = json.loads(body)
                if health["status"] == "ok" and all(i["records_total"] for i in health["instances"].values()
                                                    if i["type"] != "portal"):
                    break
        url = f"http://127.0.0.1:{runner.bound_port}/metrics"
        metrics = (await asyncio.to_thread(fetch, url)).decode()
        stop.set()
        await asyncio.wait_for(task, timeout=30)  # a clean stop
        return health, metrics

    health, metrics = asyncio.run(scenario())
    assert health["status"] == "ok", health
    assert 'dvchub_connector_records_total{connector="motcua-14767",type="motcua"}' in metrics
    assert 'dvchub_connector_up{connector="qlvb",type="qlvb"} 1.0' in metrics

    capsys.readouterr()
    assert main(["--config", str(config), "connectors", "state", "qlvb"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["cursors"]["events"]["id"] >= 1_000_000
    assert main(["--config", str(config), "connectors", "reset", "qlvb", "--to", "42"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "connectors", "state", "qlvb"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["cursors"]["events"] == {"id": 42}
    assert state["written_by"] == "reset"
    assert main(["--config", str(config), "connectors", "list"]) == 0
    assert '"id": 42' in capsys.readouterr().out
