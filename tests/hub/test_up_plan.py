"""Production mode: `up` starts the demo's simulators only in the demo profile (or when configured)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import hub.commands.up as up
from hub.cli import main
from hub.config import Settings, load_settings
from tests.hub.test_secrets import production_config, set_real_secrets


def started(settings: Settings, scenario: str | None = None) -> dict[str, bool]:
    return {p.name: p.start for p in up.plan_parts(settings, scenario)}


def test_the_demo_profile_starts_the_simulators_and_the_live_generator() -> None:
    plan = started(load_settings())  # the embedded defaults: profile = "demo"
    assert plan == {"broker": True, "simulators": True, "live generator": True, "worker": True,
                    "connectors": True, "portal sync": True, "prometheus": True}
    plan = started(load_settings(), "thanhhoa-2021")
    assert plan["simulators"]
    assert plan["scenario"]
    assert not plan["live generator"]


def test_a_production_configuration_starts_the_hubs_own_parts_only(tmp_path: Path) -> None:
    settings = load_settings(production_config(tmp_path))
    parts = {p.name: p for p in up.plan_parts(settings)}
    assert {n for n, p in parts.items() if p.start} == {"worker", "connectors", "portal sync"}
    assert not parts["simulators"].start
    assert 'profile = "production"' in parts["simulators"].why
    assert not parts["live generator"].start
    assert "embedded_broker.enabled = false" in parts["broker"].why
    assert "prometheus.enabled = false" in parts["prometheus"].why


@pytest.mark.parametrize(("profile", "enabled", "expected"), [
    ("production", True, True), ("demo", False, False), ("demo", None, True), ("production", None, False),
])
def test_simulators_enabled_overrides_the_profile(profile: str, enabled: bool | None, expected: bool) -> None:
    settings = Settings(profile=profile, simulators={"enabled": enabled})  # type: ignore[arg-type]
    assert started(settings)["simulators"] is expected
    assert started(settings)["live generator"] is expected


def test_a_zero_live_rate_runs_the_simulators_without_traffic() -> None:
    settings = Settings(profile="demo", simulators={"live_rate_per_s": 0})  # type: ignore[arg-type]
    parts = {p.name: p for p in up.plan_parts(settings)}
    assert parts["simulators"].start
    assert not parts["live generator"].start
    assert "live_rate_per_s = 0" in parts["live generator"].why
    with pytest.raises(ValueError, match="live_rate_per_s"):
        Settings(simulators={"live_rate_per_s": -1})  # type: ignore[arg-type]


def test_a_scenario_needs_the_simulators_and_says_so() -> None:
    with pytest.raises(up.PlanError, match=r"simulators\.enabled = true"):
        up.plan_parts(Settings(profile="production"), "thanhhoa-2021")


def test_up_scenario_on_production_exits_2_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_real_secrets(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(production_config(tmp_path)), "up", "--scenario", "thanhhoa-2021"]) == 2
    err = capsys.readouterr().err
    assert "simulators" in err
    assert "DVC_HUB_SIMULATORS__ENABLED=true" in err


def test_up_on_production_says_what_it_starts_and_never_starts_a_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import hub.kafka

    class StopError(Exception):
        pass

    def no_simulators(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a production up started the simulators")

    def stop_at_children(*_a: Any, **_k: Any) -> None:
        raise StopError

    set_real_secrets(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(up.signal, "signal", lambda *_a: None)
    monkeypatch.setattr(hub.kafka, "ensure_topics", lambda *_a, **_k: [])
    monkeypatch.setattr(up, "Simulators", no_simulators)
    monkeypatch.setattr(up, "Child", stop_at_children)
    with pytest.raises(StopError):
        main(["--config", str(production_config(tmp_path)), "up"])
    out = capsys.readouterr().out
    assert "starting: worker, connectors, portal sync" in out
    assert "not starting: broker, simulators, live generator, prometheus" in out
    assert "simulators: not started" in out


def test_places_to_look_name_no_simulator_when_none_runs(tmp_path: Path) -> None:
    settings = load_settings(production_config(tmp_path))
    lines = up.places_to_look(settings, simulators=None, prometheus=None, logs=Path("logs"), scenario=None)
    assert "simulators" not in lines
    assert not any(f":{port}" in v for v in lines.values() for port in (8101, 8102, 8103)), lines
    assert lines["metrics"] == "http://127.0.0.1:6066/metrics"
    demo = up.places_to_look(load_settings(), simulators={"portal": "http://127.0.0.1:8103"}, prometheus=None,
                             logs=Path("logs"), scenario=None)
    assert demo["simulators"] == "portal http://127.0.0.1:8103"
