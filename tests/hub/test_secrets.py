"""No silent default secret: only ``profile = "demo"`` has demo secrets; anything else must set its own."""

from __future__ import annotations

import json
import secrets
import textwrap
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import (
    DEFAULTS_FILE,
    DEMO_NOTICE,
    ConfigError,
    Settings,
    is_demo_secret,
    load_settings,
    redacted_dump,
)

#: Every secret a two-connector production configuration needs, and its variable.
ENV = {
    "DVC_HUB_PRIVACY__ID_HASH_KEY": "privacy.id_hash_key",
    "DVC_HUB_API__TOKENS": "api.tokens",
    "DVC_HUB_PORTAL__AUTH__CLIENT_SECRET": "portal.auth.client_secret",
    "DVC_HUB_CONNECTORS__MOTCUA_14767__AUTH__API_KEY": "connectors[motcua-14767].auth.api_key",
    "DVC_HUB_CONNECTORS__QLVB__AUTH__PASSWORD": "connectors[qlvb].auth.password",
}


def production_config(tmp_path: Path, extra: str = "") -> Path:
    """A configuration that, like a copy of the defaults with the profile line deleted, has no secret."""
    path = tmp_path / "city.toml"
    path.write_text(textwrap.dedent("""
        [kafka]
        bootstrap_servers = "127.0.0.1:1"
        [embedded_broker]
        enabled = false
        [prometheus]
        enabled = false
        [[connectors]]
        name = "motcua-14767"
        type = "motcua"
        base_url = "http://127.0.0.1:8101/donvi/14767"
        unit_code = "14767"
        auth = { kind = "api_key" }
        [[connectors]]
        name = "qlvb"
        type = "qlvb"
        base_url = "http://127.0.0.1:8102"
        auth = { kind = "basic", username = "dvc-hub" }
    """) + extra, encoding="utf-8")
    return path


def set_real_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {env: secrets.token_urlsafe(32) for env in ENV}
    values["DVC_HUB_API__TOKENS"] = json.dumps([secrets.token_urlsafe(24)])
    for env, value in values.items():
        monkeypatch.setenv(env, value)
    return values


def test_embedded_defaults_are_an_explicit_demo_profile_and_hold_no_secret() -> None:
    text = DEFAULTS_FILE.read_text(encoding="utf-8")
    assert 'profile = "demo"' in text.splitlines()
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        assert not any(f"{k} =" in code for k in ("api_key", "password", "client_secret", "id_hash_key", "tokens"))
    s = load_settings()
    assert s.profile == "demo"
    assert s.secret_problems() == []
    # The demo profile fills in what the simulators accept.
    assert s.connector("motcua-14767").auth.api_key.get_secret_value() == "demo-key-14767"  # type: ignore[union-attr]


def test_no_secret_has_a_default_outside_the_demo_profile(tmp_path: Path) -> None:
    s = load_settings(production_config(tmp_path))
    assert s.profile == "production"
    assert s.privacy.id_hash_key.get_secret_value() == ""
    assert s.api.tokens == []
    assert s.portal.auth.client_secret.get_secret_value() == ""  # type: ignore[union-attr]
    assert s.connector("qlvb").auth.password.get_secret_value() == ""  # type: ignore[union-attr]
    # The demo profile's fill-in never leaks into another configuration (shared default sub-models).
    Settings(profile="demo")
    assert Settings().privacy.id_hash_key.get_secret_value() == ""
    assert Settings().api.tokens == []


def test_config_check_fails_naming_every_missing_secret_and_its_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(production_config(tmp_path)), "config", "check"]) == 1
    err = capsys.readouterr().err
    for env, key in ENV.items():
        assert env.split("=")[0] in err
        assert key in err


@pytest.mark.parametrize("command", [["up"], ["worker"], ["connectors", "run"], ["push", "run"]])
def test_every_long_running_command_refuses_to_start_without_its_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main(["--config", str(production_config(tmp_path)), *command]) == 2
    err = capsys.readouterr().err
    assert "DVC_HUB_PRIVACY__ID_HASH_KEY" in err
    assert "DVC_HUB_CONNECTORS__MOTCUA_14767__AUTH__API_KEY" in err


@pytest.mark.parametrize("env", sorted(ENV))
def test_a_public_demo_value_is_refused_like_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: str
) -> None:
    set_real_secrets(monkeypatch)
    demo = {"DVC_HUB_API__TOKENS": '["demo-api-token"]', "DVC_HUB_PRIVACY__ID_HASH_KEY": "demo-only-change-me",
            "DVC_HUB_PORTAL__AUTH__CLIENT_SECRET": "demo-portal-secret",
            "DVC_HUB_CONNECTORS__MOTCUA_14767__AUTH__API_KEY": "demo-key-14767",
            "DVC_HUB_CONNECTORS__QLVB__AUTH__PASSWORD": "demo-qlvb-password"}
    monkeypatch.setenv(env, demo[env])
    assert main(["--config", str(production_config(tmp_path)), "config", "check"]) == 1
    err = capsys.readouterr().err
    assert "public demo value" in err
    assert env in err


def test_the_one_list_knows_every_value_the_repository_publishes() -> None:
    from hub.simulators.units import DEMO_PORTAL_CLIENTS, DEMO_QLVB_PASSWORD, demo_api_keys

    published = [DEMO_QLVB_PASSWORD, *DEMO_PORTAL_CLIENTS.values(), *demo_api_keys(["380", "16525", "99999"]).values()]
    demo = Settings(profile="demo")
    published += [demo.privacy.id_hash_key.get_secret_value(), *(t.get_secret_value() for t in demo.api.tokens)]
    assert all(is_demo_secret(v) for v in published), published
    assert not is_demo_secret(secrets.token_urlsafe(32))


@pytest.mark.parametrize("key", ["x" * 64, "0123456789" * 2, "short-but-random-Qz7", "ab" * 20])
def test_the_id_hash_key_must_be_long_and_random(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    set_real_secrets(monkeypatch)
    monkeypatch.setenv("DVC_HUB_PRIVACY__ID_HASH_KEY", key)
    assert main(["--config", str(production_config(tmp_path)), "config", "check"]) == 1
    err = capsys.readouterr().err
    assert "privacy.id_hash_key" in err
    assert "32" in err


def test_with_every_secret_from_the_environment_the_configuration_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    values = set_real_secrets(monkeypatch)
    path = production_config(tmp_path)
    assert main(["--config", str(path), "config", "check"]) == 0
    assert "configuration ok" in capsys.readouterr().out
    s = load_settings(path)
    key = values["DVC_HUB_CONNECTORS__MOTCUA_14767__AUTH__API_KEY"]
    assert s.connector("motcua-14767").auth.api_key.get_secret_value() == key  # type: ignore[union-attr]
    assert s.connector("qlvb").auth.username == "dvc-hub"  # the rest of the instance still comes from the file
    # A variable for an instance that does not exist is a typo, said so rather than ignored.
    monkeypatch.setenv("DVC_HUB_CONNECTORS__MOTCUA_99__AUTH__API_KEY", "x")
    with pytest.raises(ConfigError, match="MOTCUA_99"):
        load_settings(path)


def test_up_on_the_embedded_defaults_says_it_runs_the_demo_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import hub.broker
    import hub.commands.up

    class StopError(Exception):
        pass

    def no_broker(*_args: object, **_kwargs: object) -> None:
        raise StopError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub.broker, "EmbeddedBroker", no_broker)
    monkeypatch.setattr(hub.commands.up.signal, "signal", lambda *_a: None)
    with pytest.raises(StopError):
        main(["up"])
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if DEMO_NOTICE in line], out


# ----------------------------------------------------------------------------- credentials in clear text


@pytest.mark.parametrize("url", ["http://10.0.0.9/donvi/14767", "http://motcua.thanhhoa.gov.vn/donvi/14767",
                                 "http://[2001:db8::1]/x", "http://localhost.example.org/x"])
def test_credentials_never_go_over_plain_http_off_loopback(tmp_path: Path, url: str) -> None:
    path = production_config(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("http://127.0.0.1:8101/donvi/14767", url),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"connectors\.motcua-14767\.base_url .*https"):
        load_settings(path)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8101", "http://127.9.9.9:1", "http://[::1]:8101",
                                 "http://localhost:8101", "https://motcua.thanhhoa.gov.vn"])
def test_loopback_or_https_may_carry_credentials(tmp_path: Path, url: str) -> None:
    path = production_config(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("http://127.0.0.1:8101/donvi/14767", url),
                    encoding="utf-8")
    load_settings(path)


def test_a_url_with_userinfo_or_a_credentialed_portal_needs_https(tmp_path: Path) -> None:
    path = production_config(tmp_path, textwrap.dedent("""
        [[connectors]]
        name = "catalogue"
        type = "portal"
        base_url = "http://hub:pw@catalogue.example.vn/api"
    """))
    with pytest.raises(ConfigError, match=r"connectors\.catalogue\.base_url") as err:
        load_settings(path)
    assert "pw" not in str(err.value)
    path = production_config(tmp_path, '[portal]\nbase_url = "http://lgsp.thanhhoa.gov.vn"\n')
    with pytest.raises(ConfigError, match=r"portal\.base_url"):
        load_settings(path)
    # Without credentials plain http is allowed (a public catalogue).
    load_settings(production_config(tmp_path, '[[connectors]]\nname = "c"\ntype = "portal"\n'
                                              'base_url = "http://catalogue.example.vn"\n'))


# ----------------------------------------------------------------------------- config show


def test_config_show_masks_credentials_in_urls_and_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = production_config(tmp_path, textwrap.dedent("""
        [[connectors]]
        name = "catalogue"
        type = "portal"
        base_url = "https://hub:Pa55word@catalogue.example.vn/api?unit=380&access_token=TOK3N&Signature=S1G"
        [connectors.options]
        api_key = "OPT-K3Y"
        nested = { client_secret = "N3ST", list = [{ password = "L1ST" }] }
        mirror = "https://m1rror-user:M1RR0R@mirror.example.vn/?sig=S1G2"
        catalogue_units = ["380"]
    """))
    assert main(["--config", str(path), "config", "show"]) == 0
    out = capsys.readouterr().out
    for secret in ("Pa55word", "TOK3N", "S1G", "OPT-K3Y", "N3ST", "L1ST", "M1RR0R", "m1rror-user", "hub:"):
        assert secret not in out, secret
    shown = json.loads(out)["connectors"][-1]
    assert shown["base_url"].startswith("https://***@catalogue.example.vn/api?unit=380&")
    assert shown["options"]["catalogue_units"] == ["380"]  # nothing else is hidden
    assert json.dumps(redacted_dump(load_settings(path))) == json.dumps(json.loads(out))
