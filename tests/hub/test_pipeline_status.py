"""`dvc-hub status` is the whole pipeline: caught up only when every configured stage is.

The pure :func:`hub.pipeline.pipeline_status` on recorded bodies (connector runner /healthz, worker
/api/v1/status, portal sync /healthz with its ``backlog`` object), then the CLI's text and --json on
the same bodies, then the worker's view and the Prometheus gauge.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import hub.commands.up as up
from hub.cli import main
from hub.config import load_settings
from hub.pipeline import Fetched, PipelineView, backlog_collector, health_urls, pipeline_status

# ----------------------------------------------------------------------------- recorded bodies


def connectors_body(*behind: str) -> dict[str, Any]:
    names = ["motcua-14767", "motcua-16525", "qlvb"]
    return {
        "status": "ok",
        "caught_up": not behind,
        "backlog": len(behind),
        "instances": {n: {"status": "ok", "caught_up": n not in behind, "last_success": "2026-12-03T18:00:00Z"}
                      for n in names},
    }


def worker_body(lag: int = 0, *, ready: bool = True, lag_known: bool = True, partials: int = 0) -> dict[str, Any]:
    return {
        "app_id": "dvc-hub", "ready": ready, "partitions": [0, 1, 2, 3], "records_processed": 12_000,
        "lag": {"dvchub.raw.motcua": lag, "dvchub.raw.qlvb": 0}, "lag_known": lag_known,
        "caught_up": ready and lag_known and lag == 0, "partials_pending": partials,
    }


def portal_body(outbox: int = 0, dossiers: int = 0, stats: int = 0, *, caught_up: bool | None = None) -> dict[str, Any]:
    done = outbox == dossiers == stats == 0
    return {"status": "ok", "caught_up": done if caught_up is None else caught_up,
            "backlog": {"outbox": outbox, "dossiers_pending": dossiers, "stats_pending": stats}}


def status(connectors: Any = None, worker: Any = None, portal: Any = "default",
           scenario: Any = None) -> dict[str, Any]:
    def wrap(body: Any, default: dict[str, Any]) -> Fetched:
        if isinstance(body, Fetched):
            return body
        return Fetched(default if body is None else body, http_status=200)

    p: Fetched | None
    p = None if portal is None else wrap(None if portal == "default" else portal, portal_body())
    return pipeline_status(connectors=wrap(connectors, connectors_body()), worker=wrap(worker, worker_body()),
                           portal=p, scenario=scenario)


def states(st: dict[str, Any]) -> dict[str, str]:
    return {name: s["state"] for name, s in st["stages"].items()}


# ----------------------------------------------------------------------------- the pure function


def test_every_stage_at_zero_is_caught_up() -> None:
    st = status()
    assert st["caught_up"] is True
    assert states(st) == dict.fromkeys(("connectors", "worker", "outbox", "statistics"), "caught_up")
    assert {n: s["backlog"] for n, s in st["stages"].items()} == dict.fromkeys(st["stages"], 0)


@pytest.mark.parametrize(("portal", "stage", "backlog"), [
    (portal_body(outbox=40_000), "outbox", 40_000),
    (portal_body(outbox=0, dossiers=3), "outbox", 0),  # taken from the outbox, not accepted yet
    (portal_body(stats=7_000), "statistics", 7_000),
])
def test_a_portal_backlog_alone_is_not_caught_up(portal: dict[str, Any], stage: str, backlog: int) -> None:
    # The worker has no lag and the connectors are done: the old status said "caught up" here.
    st = status(portal=portal)
    assert st["caught_up"] is False
    assert st["stages"][stage]["state"] == "behind"
    assert st["stages"][stage]["backlog"] == backlog
    assert st["stages"]["worker"]["state"] == st["stages"]["connectors"]["state"] == "caught_up"


def test_a_portal_sync_still_starting_is_not_caught_up_even_at_zero() -> None:
    st = status(portal=portal_body(caught_up=False))
    assert st["caught_up"] is False
    assert st["stages"]["statistics"]["state"] == "behind"
    assert "starting" in st["stages"]["statistics"]["why"]


@pytest.mark.parametrize("which", ["connectors", "worker", "portal"])
def test_a_stage_that_cannot_be_reached_is_unknown_and_never_caught_up(which: str) -> None:
    down = Fetched.failed("ConnectError")
    st = status(**{which: down})
    assert st["caught_up"] is False
    stages = ["outbox", "statistics"] if which == "portal" else [which]
    for name in stages:
        assert st["stages"][name]["state"] == "unknown"
        assert st["stages"][name]["backlog"] is None
        assert "ConnectError" in st["stages"][name]["why"]


@pytest.mark.parametrize("body", [
    {"status": "ok"},  # a portal sync without the backlog contract
    {"status": "ok", "caught_up": True, "backlog": {"outbox": "many", "dossiers_pending": 0, "stats_pending": 0}},
    {"status": "ok", "caught_up": True, "backlog": {"outbox": 0, "dossiers_pending": 0}},
    {"status": "ok", "caught_up": True, "backlog": {"outbox": -1, "dossiers_pending": 0, "stats_pending": 0}},
])
def test_a_portal_sync_that_does_not_report_its_backlog_is_unknown(body: dict[str, Any]) -> None:
    st = status(portal=body)
    assert st["caught_up"] is False
    assert "unknown" in states(st).values()


def test_a_disabled_portal_is_left_out_not_counted() -> None:
    st = status(portal=None)
    assert st["caught_up"] is True
    assert set(st["stages"]) == {"connectors", "worker"}
    assert set(st["left_out"]) == {"outbox", "statistics"}
    assert status(portal=None, worker=worker_body(lag=5))["caught_up"] is False


@pytest.mark.parametrize(("worker", "state", "backlog"), [
    (worker_body(lag=1234), "behind", 1234),
    (worker_body(ready=False), "behind", 0),
    (worker_body(partials=4), "behind", 0),
    (worker_body(lag_known=False), "unknown", None),
    ({"app_id": "dvc-hub"}, "unknown", None),
])
def test_the_worker_stage(worker: dict[str, Any], state: str, backlog: int | None) -> None:
    st = status(worker=worker)
    assert st["stages"]["worker"]["state"] == state
    assert st["stages"]["worker"]["backlog"] == backlog
    assert st["caught_up"] is False


def test_connectors_behind_are_counted_and_named() -> None:
    st = status(connectors=connectors_body("qlvb", "motcua-16525"))
    stage = st["stages"]["connectors"]
    assert (stage["state"], stage["backlog"], stage["behind"]) == ("behind", 2, ["motcua-16525", "qlvb"])
    assert st["caught_up"] is False
    # The runner answers 503 with its body when every instance is in error: the body still counts.
    no_instances = status(connectors={"status": "ok", "caught_up": False, "instances": {}})
    assert no_instances["stages"]["connectors"]["state"] == "behind"


def test_a_scenario_still_playing_holds_caught_up_back() -> None:
    playing = {"scenario": "thanhhoa-2021", "released": 900, "total": 1000, "done": False}
    st = status(scenario=playing)
    assert st["caught_up"] is False
    assert (st["stages"]["scenario"]["state"], st["stages"]["scenario"]["backlog"]) == ("behind", 100)
    assert status(scenario={**playing, "released": 1000, "done": True})["caught_up"] is True
    # Live traffic is not a stage: it never ends.
    assert "scenario" not in status(scenario={"scenario": None, "live": True})["stages"]


# ----------------------------------------------------------------------------- the CLI on recorded bodies


def _bodies(config: Path | None, **bodies: Fetched) -> dict[str, Fetched]:
    urls = health_urls(load_settings(config))
    return {urls[name]: fetched for name, fetched in bodies.items() if name in urls}


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import hub.kafka

    class Admin:
        def close(self) -> None:
            pass

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub.kafka, "admin", lambda *_a, **_k: Admin())
    return tmp_path


def _run_status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bodies: dict[str, Fetched],
                *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(up, "fetch", lambda url: bodies.get(url, Fetched.failed("ConnectError")))
    code = main(["status", *argv])
    return code, capsys.readouterr().out


def test_status_json_says_not_caught_up_behind_an_outbox_backlog(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = _bodies(None, connectors=Fetched(connectors_body(), http_status=200),
                     worker=Fetched(worker_body(), http_status=200),
                     portal=Fetched(portal_body(outbox=40_123, stats=7_001), http_status=200))
    code, out = _run_status(monkeypatch, capsys, bodies, "--json")
    assert code == 0
    st = json.loads(out)
    assert st["caught_up"] is False
    assert st["stages"]["outbox"]["backlog"] == 40_123
    assert st["stages"]["statistics"]["backlog"] == 7_001
    assert st["stages"]["worker"]["state"] == "caught_up"
    assert all(p["up"] for p in st["parts"].values())

    bodies = _bodies(None, connectors=Fetched(connectors_body(), http_status=200),
                     worker=Fetched(worker_body(), http_status=200), portal=Fetched(portal_body(), http_status=200))
    code, out = _run_status(monkeypatch, capsys, bodies, "--json")
    assert json.loads(out)["caught_up"] is True


def test_status_text_shows_each_stage_and_its_backlog(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = _bodies(None, connectors=Fetched(connectors_body("qlvb"), http_status=200),
                     worker=Fetched(worker_body(lag=321), http_status=200))  # the portal sync is down
    code, out = _run_status(monkeypatch, capsys, bodies)
    assert code == 1  # a part is down
    parts = out.split("\n\n")[0].splitlines()  # the parts come first, then the stages
    assert "portal-sync  DOWN" in parts
    assert "worker       up" in parts
    stage_rows = [line for line in out.splitlines() if line.split()[:2] in (["worker", "behind"],
                                                                            ["connectors", "behind"])]
    assert any(" 321 " in row for row in stage_rows), out
    assert any(" 1 " in row for row in stage_rows), out
    outbox_row = next(line for line in out.splitlines() if line.startswith("outbox "))
    assert "UNKNOWN" in outbox_row
    assert "?" in outbox_row
    assert "NOT caught up" in out
    assert "outbox, statistics unknown" in out
    assert "pipeline     caught up" not in out


def test_status_leaves_a_disabled_portal_out(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DVC_HUB_PORTAL__ENABLED", "false")
    bodies = _bodies(None, connectors=Fetched(connectors_body(), http_status=200),
                     worker=Fetched(worker_body(), http_status=200))
    code, out = _run_status(monkeypatch, capsys, bodies)
    assert code == 0
    assert "portal-sync" not in out
    assert "left out: portal.enabled = false" in out
    assert "pipeline     caught up" in out


# ----------------------------------------------------------------------------- worker view, gauge


def test_the_worker_view_fetches_the_others_at_most_once_per_ttl() -> None:
    calls: list[str] = []

    def fetcher(url: str, _timeout: float) -> Fetched:
        calls.append(url)
        if url.endswith(":9466/healthz"):
            return Fetched(portal_body(stats=12), http_status=200)
        return Fetched(connectors_body(), http_status=200)

    view = PipelineView(load_settings(), ttl_s=60.0, fetcher=fetcher)

    async def twice() -> tuple[dict[str, Any], dict[str, Any]]:
        return await view.current(worker_body()), await view.current(worker_body(lag=9))

    first, second = asyncio.run(twice())
    assert len(calls) == 2  # connectors + portal, once
    assert first["stages"]["statistics"]["backlog"] == 12
    assert first["caught_up"] is False
    assert second["stages"]["worker"]["backlog"] == 9  # the worker's own figures are always fresh


def test_backlog_gauge_has_no_sample_until_measured() -> None:
    value: list[int | None] = [None]
    registry = CollectorRegistry()
    registry.register(backlog_collector({"worker": lambda: value[0]}))
    assert b'dvc_hub_pipeline_backlog{stage="worker"}' not in generate_latest(registry)
    value[0] = 42
    assert b'dvc_hub_pipeline_backlog{stage="worker"} 42.0' in generate_latest(registry)
    with pytest.raises(ValueError, match="unknown pipeline stage"):
        backlog_collector({"workers": lambda: 0})


def test_the_worker_exports_its_lag_as_the_worker_stage() -> None:
    from hub.config import Settings
    from streams.app import create_app, runtime_of

    rt = runtime_of(create_app(Settings()))
    assert rt.backlog() is None
    assert b'dvc_hub_pipeline_backlog{stage="worker"}' not in generate_latest(rt.registry)
    rt._lag, rt.lag_known = {"dvchub.raw.motcua": 7, "dvchub.raw.qlvb": 5}, True
    assert b'dvc_hub_pipeline_backlog{stage="worker"} 12.0' in generate_latest(rt.registry)
    assert rt.status()["caught_up"] is False  # the worker's own field keeps its meaning


def test_the_connector_runner_counts_instances_not_caught_up() -> None:
    from connectors.sdk.runner import ConnectorRunner, selected_instances

    settings = load_settings()
    runner = ConnectorRunner(settings, selected_instances(settings), serve_http=False)
    # Before the engines are built every configured instance is behind.
    assert runner.health()["backlog"] == len(selected_instances(settings)) > 0
    text = generate_latest(runner.registry).decode()
    assert f'dvc_hub_pipeline_backlog{{stage="connectors"}} {float(len(selected_instances(settings)))}' in text
