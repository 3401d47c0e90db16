"""docker-compose.yml checked structurally (CI has no Docker engine): services, pinned images, ports,
mounted files, and agreement with the Prometheus and Grafana configuration it mounts."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from tests.observability.common import COMPOSE_FILE, GRAFANA_DIR, PROM_DIR, ROOT, load_yaml

HUB_COMMANDS = {
    "simulators": ["simulate"],
    "connectors": ["connectors", "run"],
    "worker": ["worker"],
    "portal-sync": ["push", "run"],
}


@pytest.fixture(scope="module")
def compose():
    return load_yaml(COMPOSE_FILE)


def _kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(ROOT / "deploy" / "kafka" / "pom.xml").getroot().find("m:properties/m:kafka.version", ns)
    assert version is not None
    assert version.text
    return version.text.strip()


def test_services(compose):
    assert set(compose["services"]) == {"kafka", *HUB_COMMANDS, "prometheus", "grafana"}


def test_images_are_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: image {image!r} has no tag"
        assert not image.endswith(":latest"), f"{name}: pin a version, not :latest"


def test_kafka_is_the_official_image_at_the_embedded_brokers_version_in_kraft_mode(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{_kafka_version()}"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "healthcheck" in kafka


def test_hub_services_run_the_hub_image_with_their_command(compose):
    dockerfile = ROOT / compose["services"]["worker"]["build"]["dockerfile"]
    assert dockerfile.is_file()
    text = dockerfile.read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["dvc-hub"]' in text
    for src in re.findall(r"^COPY (\S+)", text, flags=re.MULTILINE):
        for part in src.split():
            assert (ROOT / part).exists(), f"Dockerfile copies {part}, which does not exist"
    for name, cmd in HUB_COMMANDS.items():
        svc = compose["services"][name]
        assert svc["image"] == "dvc-hub:0.1.0"
        assert svc["build"]["context"] == "."
        assert svc["command"][: len(cmd)] == cmd, name


def test_hub_processes_reach_kafka_and_listen_on_all_interfaces(compose):
    s = compose["services"]
    for name in ("connectors", "worker", "portal-sync"):
        env = s[name]["environment"]
        assert env["DVC_HUB_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert env["DVC_HUB_EMBEDDED_BROKER__ENABLED"] == "false", name
        assert s[name]["depends_on"]["kafka"]["condition"] == "service_healthy", name
    assert s["worker"]["environment"]["DVC_HUB_WORKER__WEB_HOST"] == "0.0.0.0"
    assert s["connectors"]["environment"]["DVC_HUB_CONNECTOR_RUNNER__HOST"] == "0.0.0.0"
    assert s["portal-sync"]["environment"]["DVC_HUB_PORTAL_SYNC__HOST"] == "0.0.0.0"


def test_published_ports_are_loopback_only(compose):
    published = {}
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            host_ip, host_port, _container_port = port.split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published[int(host_port)] = name
    assert published[9090] == "prometheus"
    assert published[3000] == "grafana"
    assert published[6066] == "worker"
    assert len(published) == len(set(published))


def test_every_mounted_file_exists(compose):
    mounts = 0
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
                mounts += 1
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    assert mounts >= 4


def test_prometheus_scrapes_the_services_compose_runs(compose):
    prom = compose["services"]["prometheus"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    config = load_yaml(ROOT / mounted["/etc/prometheus/prometheus.yml"])
    assert ROOT / mounted["/etc/prometheus/prometheus.yml"] == PROM_DIR / "prometheus-compose.yml"
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert targets["dvchub-worker"] == ["worker:6066"]
    # The connector runner and portal sync live in the simulators' network namespace.
    assert compose["services"]["connectors"]["network_mode"] == "service:simulators"
    assert compose["services"]["portal-sync"]["network_mode"] == "service:simulators"
    assert targets["dvchub-connectors"] == ["simulators:9465"]
    assert targets["dvchub-portal-sync"] == ["simulators:9466"]
    for rule_file in config["rule_files"]:
        assert (PROM_DIR / rule_file).is_file()
    assert mounted["/etc/prometheus/rules"] == "./deploy/prometheus/rules"


def test_grafana_gets_the_provisioning_and_dashboards(compose):
    grafana = compose["services"]["grafana"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert ROOT / mounted["/etc/grafana/provisioning"] == GRAFANA_DIR / "provisioning"
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dvc-hub.yml")["providers"][0]
    assert ROOT / mounted[provider["options"]["path"]] == GRAFANA_DIR / "dashboards"
    datasource = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    # No password in the file: compose refuses to start without GRAFANA_ADMIN_PASSWORD.
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
