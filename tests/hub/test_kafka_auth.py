"""Which Kafka user each part of the hub connects as (KafkaSettings.for_part/effective), no broker."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from hub.config import ConfigError, EmbeddedBrokerSettings, KafkaSettings, KafkaUser, Settings, load_settings
from hub.credentials import CREDENTIALS_FILE, PARTS, load_or_create_credentials
from hub.kafka import hub_grants


def embedded(tmp_path: Path, bootstrap: str = "127.0.0.1:19092") -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        embedded_broker=EmbeddedBrokerSettings(data_dir=tmp_path / "kafka", port=19092, controller_port=19093),
    )


def test_each_part_uses_its_generated_user_on_the_embedded_broker(tmp_path: Path) -> None:
    settings = embedded(tmp_path)
    # Before the broker generated credentials (first `dvc-hub up`): plain, nothing invented.
    assert settings.kafka.kafka_python_config()["security_protocol"] == "PLAINTEXT"
    users = load_or_create_credentials(tmp_path / "kafka")
    assert stat.S_IMODE((tmp_path / "kafka" / CREDENTIALS_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "kafka").stat().st_mode) == 0o700
    seen = set()
    for part in PARTS:
        cfg = settings.kafka.for_part(part).kafka_python_config()
        assert cfg["security_protocol"] == "SASL_PLAINTEXT"
        assert cfg["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (cfg["sasl_plain_username"], cfg["sasl_plain_password"]) == users[part]
        seen.add(cfg["sasl_plain_password"])
    assert len(seen) == len(PARTS)
    assert settings.kafka.kafka_python_config()["sasl_plain_username"] == users["operator"][0]  # the CLI's default


def test_embedded_credentials_are_never_sent_to_another_broker(tmp_path: Path) -> None:
    load_or_create_credentials(tmp_path / "kafka")
    for bootstrap in ("kafka.example.org:19092", "127.0.0.1:9999", "127.0.0.1:19092,other:9092"):
        cfg = embedded(tmp_path, bootstrap).kafka.for_part("worker").kafka_python_config()
        assert cfg["security_protocol"] == "PLAINTEXT"
        assert "sasl_plain_password" not in cfg


def test_an_unreadable_by_others_check_refuses_a_leaked_credentials_file(tmp_path: Path) -> None:
    settings = embedded(tmp_path)
    load_or_create_credentials(tmp_path / "kafka")
    (tmp_path / "kafka" / CREDENTIALS_FILE).chmod(0o644)
    with pytest.raises(RuntimeError, match="chmod 600"):
        settings.kafka.for_part("worker").kafka_python_config()


def test_external_cluster_per_part_users_from_settings_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        '[kafka]\nbootstrap_servers = "kafka-1.example.org:9093"\nsecurity_protocol = "SASL_SSL"\n'
        'sasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "hub"\n'
        '[kafka.users.portal-sync]\nsasl_username = "hub-sync"\n'
        '[embedded_broker]\nenabled = false\n', encoding="utf-8")
    monkeypatch.setenv("DVC_HUB_KAFKA__SASL_PASSWORD", "shared")
    monkeypatch.setenv("DVC_HUB_KAFKA__USERS__PORTAL_SYNC__SASL_PASSWORD", "sync-secret")
    monkeypatch.setenv("DVC_HUB_KAFKA__USERS__WORKER__SASL_USERNAME", "hub-worker")
    monkeypatch.setenv("DVC_HUB_KAFKA__USERS__WORKER__SASL_PASSWORD", "worker-secret")
    settings = load_settings(config)
    worker = settings.kafka.for_part("worker").kafka_python_config()
    assert (worker["sasl_plain_username"], worker["sasl_plain_password"]) == ("hub-worker", "worker-secret")
    sync = settings.kafka.for_part("portal-sync").kafka_python_config()
    assert (sync["sasl_plain_username"], sync["sasl_plain_password"]) == ("hub-sync", "sync-secret")
    connectors = settings.kafka.for_part("connectors").kafka_python_config()
    assert (connectors["sasl_plain_username"], connectors["sasl_plain_password"]) == ("hub", "shared")
    assert connectors["security_protocol"] == "SASL_SSL"


def test_a_sasl_part_without_a_user_is_a_clear_error() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        users={"worker": KafkaUser(sasl_username="w", sasl_password=SecretStr("p"))},
    )
    assert kafka.for_part("worker").kafka_python_config()["sasl_plain_username"] == "w"
    with pytest.raises(ConfigError, match=r"kafka\.users\.connectors"):
        kafka.for_part("connectors").kafka_python_config()


def test_no_part_may_create_topics_and_only_the_worker_writes_canonical_events() -> None:
    settings = Settings()
    grants = hub_grants(settings)
    assert not [g for g in grants if g.operations and "CREATE" in {op.name for op in g.operations}]
    writers = {g.part for g in grants if g.name == settings.topics.canonical
               and {"WRITE", "ALL"} & {op.name for op in g.operations}}
    assert writers == {"worker"}
    outbox_writers = {g.part for g in grants if g.name == settings.topics.outbox
                      and {"WRITE", "ALL"} & {op.name for op in g.operations}}
    assert "connectors" not in outbox_writers
