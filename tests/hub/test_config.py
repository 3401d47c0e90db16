"""Configuration: defaults, file, environment overrides, every error at once, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import ConfigError, load_settings, redacted_dump


def test_embedded_defaults_describe_thanh_hoa_city() -> None:
    s = load_settings()
    motcua = [c for c in s.connectors if c.type == "motcua"]
    assert len(motcua) == 35
    assert {c.unit_code for c in motcua} >= {"380", "14767"}
    assert [c.type for c in s.connectors if c.type != "motcua"] == ["qlvb", "portal"]
    assert s.worker.web_host == "127.0.0.1"  # loopback unless configured otherwise


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_HUB_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("DVC_HUB_PORTAL__AUTH__CLIENT_SECRET", "s3cret-from-env")
    s = load_settings()
    assert s.kafka.kafka_python_config()["bootstrap_servers"] == ["broker-a:9092", "broker-b:9092"]
    assert s.portal.auth.kind == "oauth2"
    assert s.portal.auth.client_secret.get_secret_value() == "s3cret-from-env"
    # The rest of the section still comes from the file.
    assert s.portal.auth.client_id == "dvc-hub"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[kafka]\npartitions = 0\nsecurity_protocol = "SASL_SSL"\n'
        '[[connectors]]\nname = "Bad Name"\ntype = "motcua"\nbase_url = "ftp://x"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = str(err.value)
    assert "kafka.partitions" in text
    assert "connectors.0.name" in text
    assert "connectors.0.base_url" in text
    assert "DVC_HUB_KAFKA__PARTITIONS" in text  # says how to fix it


def test_sasl_scram_settings_reach_the_kafka_clients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "sasl.toml"
    cfg.write_text(
        '[kafka]\nbootstrap_servers = "k1:9093"\nsecurity_protocol = "SASL_SSL"\n'
        'sasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "hub"\nssl_cafile = "/etc/ca.pem"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("DVC_HUB_KAFKA__SASL_PASSWORD", "pw")
    cfg_kwargs = load_settings(cfg).kafka.kafka_python_config()
    assert cfg_kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert cfg_kwargs["sasl_plain_password"] == "pw"
    assert cfg_kwargs["ssl_cafile"] == "/etc/ca.pem"


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_settings(tmp_path / "nope.toml")


def test_secrets_never_printed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_HUB_PRIVACY__ID_HASH_KEY", "very-secret-key-123")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "very-secret-key-123" not in out
    assert "demo-portal-secret" not in out
    dumped = json.loads(out)
    assert dumped["privacy"]["id_hash_key"] == "**********"
    assert "very-secret-key-123" not in json.dumps(redacted_dump(load_settings()))


def test_every_key_is_documented_and_the_reference_is_current() -> None:
    from hub.config_docs import render, undocumented

    assert undocumented() == []
    committed = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/configuration.md is stale: python -m hub.config_docs > docs/configuration.md"
