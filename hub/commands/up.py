"""``dvc-hub up`` and ``dvc-hub status``: the whole hub on one machine, and how it is doing.

``up`` starts, in order, and shows progress while it does:

1. the embedded Kafka broker (unless ``embedded_broker.enabled`` is false: then it uses
   ``kafka.bootstrap_servers`` as it is) and the hub's topics;
2. the simulators of the source systems (in this process, so a scenario can drive them), fed
   either by the live generator or by a scenario (``--scenario thanhhoa-2021 [--fast]``);
3. the Faust worker, the connector runner and the portal sync, each as a child process
   (``dvc-hub worker``, ``dvc-hub connectors run``, ``dvc-hub push run``) with its log in
   ``.dvc-hub/logs/``; a child that dies is restarted with a backoff;
4. Prometheus, when Debian's ``prometheus`` is installed.

Then it prints one line per place to look (``metrics: http://...``) and waits. Ctrl-C or SIGTERM
stops everything in reverse order. ``up`` writes ``.dvc-hub/up.json`` (its parts, their URLs and
the scenario's progress) for ``dvc-hub status``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from hub.config import DEMO_QLVB_PASSWORD, Settings, config_origin, load_settings, require_secrets
from hub.pipeline import Fetched, fetch, health_urls, pipeline_status
from hub.process import ChildProcess

STATE_DIR = Path(".dvc-hub")
STATE_FILE = STATE_DIR / "up.json"


def _say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- child processes


class Child(ChildProcess):
    """A supervised child process of ``up``: restarted with a backoff if it dies.

    In its own session (Ctrl-C reaches ``up`` only; ``up`` stops the children in order).
    """

    def __init__(
        self, name: str, argv: list[str], log_path: Path, health_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(argv, log_path, env=env, new_session=True)
        self.name = name
        self.health_url = health_url
        self.next_restart = 0.0

    @property
    def restarts(self) -> int:
        """Times the child died and was started again."""
        return self.exits

    def supervise(self) -> str | None:
        """Restart a dead child (backoff 1, 2, 4 ... 60 s); returns a line to print, if any."""
        if self.alive() or self.proc is None:
            return None
        now = time.monotonic()
        if self.next_restart == 0.0:
            code = self.returncode
            delay = min(60.0, 2.0**self.restarts)
            self.next_restart = now + delay
            return f"{self.name}: exited with code {code}; restarting in {delay:.0f} s (log: {self.log_path})"
        if now >= self.next_restart:
            self.next_restart = 0.0
            self.restart_if_exited()
            return f"{self.name}: restarted (restart #{self.restarts})"
        return None


def _hub_argv(config: str | None, *command: str) -> list[str]:
    base = [sys.executable, "-m", "hub.cli"]
    if config:
        base += ["--config", str(Path(config).resolve())]
    return [*base, *command]


def _portal_sync_env(
    settings: Settings, scenario_start: datetime | None, scenario_end: datetime | None = None
) -> dict[str, str]:
    """Extra environment of the portal sync child: the statistics history during a scenario.

    A scenario replays its whole history, so the hub holds every dossier from the scenario's first
    month on and the statistics of those periods are complete: they are pushed too, not only the
    periods around the wall clock (which, for a replay of 2021, have no figures at all). The history
    ends with the scenario's last month: a dossier still open then carries "open at the period's end"
    into every later month up to today, and those periods (five times as many, for a replay of 2021
    in 2026) say nothing the scenario's do not. Children read the same configuration file as ``up``,
    and the environment beats the file, so the settings travel as ``DVC_HUB_PORTAL__STATS_HISTORY_FROM``
    and ``..._TO``. A history the user chose (file or environment) is kept.

        >>> from schemas.calendar import TZ
        >>> _portal_sync_env(load_settings(), datetime(2020, 1, 1, tzinfo=TZ), datetime(2021, 4, 1, tzinfo=TZ))
        {'DVC_HUB_PORTAL__STATS_HISTORY_FROM': '2020-01', 'DVC_HUB_PORTAL__STATS_HISTORY_TO': '2021-03'}
        >>> _portal_sync_env(load_settings(), None)  # live traffic: the periods around now only
        {}
    """
    portal = settings.portal
    if scenario_start is None or portal.stats_history_from is not None or portal.stats_history_to is not None:
        return {}
    from schemas.calendar import TZ

    env = {"DVC_HUB_PORTAL__STATS_HISTORY_FROM": scenario_start.astimezone(TZ).strftime("%Y-%m")}
    if scenario_end is not None:
        # ``end`` is after every event: the last month is the one just before it.
        env["DVC_HUB_PORTAL__STATS_HISTORY_TO"] = (scenario_end.astimezone(TZ) - timedelta(seconds=1)).strftime("%Y-%m")
    return env


def _portal_sync_scheme(settings: Settings) -> str:
    """``https`` when the read API (and the portal sync's /metrics, /healthz) serves TLS."""
    return "https" if settings.api.tls_certfile is not None else "http"


def _wait_http(url: str, timeout: float, child: Child | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            return False
        with contextlib.suppress(httpx.HTTPError):
            # A child of this process on loopback: its certificate (api.tls_*) may be self-signed.
            if httpx.get(url, timeout=2.0, verify=False).status_code < 500:  # noqa: S501
                return True
        time.sleep(0.5)
    return False


# --------------------------------------------------------------------------- simulators


def _simulator_credentials(settings: Settings) -> tuple[dict[str, str], tuple[str, str], dict[str, str]]:
    """Make the simulators accept exactly the credentials the configuration holds."""
    units: dict[str, str] = {}
    qlvb = ("dvc-hub", DEMO_QLVB_PASSWORD)
    clients: dict[str, str] = {}
    for c in settings.connectors:
        auth = c.auth
        if c.type == "motcua" and c.unit_code and auth.kind == "api_key":
            units[c.unit_code] = auth.api_key.get_secret_value()
        elif c.type == "qlvb" and auth.kind == "basic":
            qlvb = (auth.username, auth.password.get_secret_value())
        elif c.type == "portal" and auth.kind == "oauth2":
            clients[auth.client_id] = auth.client_secret.get_secret_value()
    if settings.portal.auth.kind == "oauth2":
        clients[settings.portal.auth.client_id] = settings.portal.auth.client_secret.get_secret_value()
    return units, qlvb, clients


class Simulators:
    """The three simulated source systems plus what feeds them (live generator or scenario)."""

    def __init__(self, settings: Settings, scenario: str | None, fast: bool, faults: str | None, seed: int,
                 *, live: bool = True) -> None:
        from hub.simulators.clock import SimClock
        from hub.simulators.faults import Faults
        from hub.simulators.server import SimulatorServer
        from hub.simulators.world import World

        self.scenario_name = scenario
        self.faults = Faults.from_spec(faults) if faults else Faults()
        units, qlvb, clients = _simulator_credentials(settings)
        self.player: Any = None
        self.generator: Any = None
        #: When the scenario's history begins (None for live traffic).
        self.scenario_start: datetime | None = None
        self.scenario_end: datetime | None = None
        if scenario:
            from hub.scenario.player import ScenarioPlayer
            from hub.scenario.thanhhoa2021 import build_scenario

            if scenario != "thanhhoa-2021":
                raise SystemExit(f"unknown scenario {scenario!r}; the shipped one is thanhhoa-2021")
            built = build_scenario(seed=seed)
            clock = SimClock.manual(built.start)
            self.world = World(clock, seed=seed)
            self.player = ScenarioPlayer(self.world, built, fast=fast, faults=self.faults)
            self.scenario_start = built.start
            self.scenario_end = built.end
        else:
            from hub.simulators.live import LiveGenerator

            clock = SimClock.live()
            self.world = World(clock, seed=seed)
            if live:  # else the simulators serve what is in them, and nothing new arrives
                self.generator = LiveGenerator(self.world, rate_per_s=settings.simulators.live_rate_per_s,
                                               seed=seed)
        self.server = SimulatorServer(
            self.world, units=units, motcua_faults=self.faults, qlvb_faults=self.faults, portal_faults=self.faults,
            qlvb_username=qlvb[0], qlvb_password=qlvb[1], portal_clients=clients, seed=seed,
            # A scenario replays history at high speed on the sources' clock; the portal's own
            # server clock (token expiry, idempotency window) keeps real time.
            portal_clock=SimClock.live() if scenario else None,
            host=settings.simulators.host, motcua_port=settings.simulators.motcua_port,
            qlvb_port=settings.simulators.qlvb_port, portal_port=settings.simulators.portal_port,
        )
        self._thread: threading.Thread | None = None
        self._stop_generator = threading.Event()

    def start(self) -> None:
        self.server.start()
        if self.player is not None:
            self.player.start()
        elif self.generator is not None:
            self._thread = threading.Thread(
                target=self.generator.run_forever, args=(self._stop_generator,), name="live-generator", daemon=True
            )
            self._thread.start()

    def progress(self) -> dict[str, Any]:
        if self.player is not None:
            released, total = self.player.progress()
            return {"scenario": self.scenario_name, "released": released, "total": total, "done": self.player.done}
        return {"scenario": None, "live": self.generator is not None, "dossiers": len(self.world.final_dossiers())}

    def stop(self) -> None:
        if self.player is not None:
            self.player.stop()
        self._stop_generator.set()
        if self._thread is not None:
            self._thread.join(5)
        self.server.stop()


# --------------------------------------------------------------------------- what up starts


class PlanError(ValueError):
    """``up``'s options ask for a part the configuration leaves off (the message says what to set)."""


@dataclass(frozen=True)
class Part:
    """One part of the hub ``up`` starts or leaves out, and why."""

    name: str
    start: bool
    why: str


def simulators_enabled(settings: Settings) -> bool:
    """``simulators.enabled``, or when it is not set: on in the demo profile only."""
    enabled = settings.simulators.enabled
    return settings.profile == "demo" if enabled is None else enabled


def plan_parts(settings: Settings, scenario: str | None = None) -> list[Part]:
    """What ``up`` starts on ``settings`` (with ``--scenario`` or not), and why each part is or is not.

    The simulators and the live generator are the demo's stand-ins for the source systems and the
    portal: they run in the demo profile or when ``simulators.enabled = true``; a production
    configuration starts the hub's own parts only. Raises :class:`PlanError` for ``--scenario``
    without the simulators (a scenario plays into them).

        >>> from hub.config import Settings
        >>> [(p.name, p.start) for p in plan_parts(Settings(profile="demo"))][:3]
        [('broker', True), ('simulators', True), ('live generator', True)]
        >>> [p.name for p in plan_parts(Settings(profile="production")) if not p.start]
        ['simulators', 'live generator']
    """
    sims = simulators_enabled(settings)
    how = ("simulators.enabled = true" if settings.simulators.enabled
           else "simulators.enabled = false" if settings.simulators.enabled is not None
           else f'profile = "{settings.profile}"')
    if scenario and not sims:
        raise PlanError(
            f"up --scenario {scenario} plays the scenario into the simulators, and they are off ({how}): "
            "set simulators.enabled = true (or DVC_HUB_SIMULATORS__ENABLED=true), or use the demo profile, "
            "or leave out --scenario to run the hub on its configured sources"
        )
    eb = settings.embedded_broker
    parts = [
        Part("broker", eb.enabled,
             f"embedded Kafka on 127.0.0.1:{eb.port}" if eb.enabled
             else f"embedded_broker.enabled = false: the hub uses {settings.kafka.bootstrap_servers}"),
        Part("simulators", sims,
             f"the demo's source systems and portal ({how})" if sims
             else f"{how}: the connectors read the configured source systems, the portal sync pushes to "
                  f"portal.base_url (simulators.enabled = true starts the simulators anyway)"),
    ]
    rate = settings.simulators.live_rate_per_s
    if not sims:
        parts.append(Part("live generator", False, "it feeds the simulators, which are off"))
    elif scenario:
        parts.append(Part("live generator", False, f"scenario {scenario} feeds the simulators instead"))
    elif rate <= 0:
        parts.append(Part("live generator", False, "simulators.live_rate_per_s = 0: no generated traffic"))
    else:
        parts.append(Part("live generator", True, f"{rate:g} new dossiers per second"))
    if scenario:
        parts.append(Part("scenario", True, f"{scenario} into the simulators"))
    enabled = sum(1 for c in settings.connectors if c.enabled)
    parts += [
        Part("worker", True, "the hub's stream worker"),
        Part("connectors", True, f"{enabled} enabled connector instance(s)"),
        Part("portal sync", settings.portal.enabled,
             f"pushes to {settings.portal.base_url}" if settings.portal.enabled else "portal.enabled = false"),
        Part("prometheus", settings.prometheus.enabled,
             "when Debian's prometheus is installed" if settings.prometheus.enabled
             else "prometheus.enabled = false"),
    ]
    return parts


def describe_plan(parts: list[Part]) -> list[str]:
    """The lines ``up`` prints before it starts: what it starts, what it does not, and why."""
    on = [p for p in parts if p.start]
    off = [p for p in parts if not p.start]
    lines = ["starting: " + ", ".join(p.name for p in on)]
    lines += [f"  {p.name}: {p.why}" for p in on]
    if off:
        lines.append("not starting: " + ", ".join(p.name for p in off))
        lines += [f"  {p.name}: {p.why}" for p in off]
    return lines


def places_to_look(settings: Settings, *, simulators: dict[str, str] | None, prometheus: str | None,
                   logs: Path, scenario: str | None) -> dict[str, str]:
    """The lines ``up`` prints once the hub is up: only the parts that run (no simulator URL without them)."""
    w = f"http://{settings.worker.web_host}:{settings.worker.web_port}"
    lines = {
        "metrics": f"{w}/metrics",
        "figures": f"{w}/api/v1/figures",
        "connector metrics": f"http://{settings.connector_runner.host}:{settings.connector_runner.port}/metrics",
    }
    if settings.portal.enabled:
        ps = f"{_portal_sync_scheme(settings)}://{settings.portal_sync.host}:{settings.portal_sync.port}"
        lines["portal sync metrics"] = f"{ps}/metrics"
        lines["read API"] = f"{ps}/openapi.json"
    if prometheus is not None:
        lines["prometheus"] = prometheus
    if simulators is not None:
        lines["simulators"] = ", ".join(f"{name} {url}" for name, url in simulators.items())
    lines["logs"] = str(logs)
    lines["status"] = "dvc-hub status"
    lines["report"] = "dvc-hub report --period 2021-Q1" if scenario else "dvc-hub report --period <yyyy-Qn>"
    return lines


# --------------------------------------------------------------------------- up


def _start_prometheus(settings: Settings) -> Any:
    """Start Debian's Prometheus on the hub's targets with the repository's rules; None if not installed."""
    from hub.prometheus import (
        PrometheusError,
        PrometheusServer,
        default_rule_files,
        find_prometheus,
        hub_scrape_targets,
    )

    cfg = settings.prometheus
    try:
        find_prometheus()
    except PrometheusError:
        return None
    server = PrometheusServer(
        cfg.data_dir, hub_scrape_targets(settings), host=cfg.host, port=cfg.port,
        scrape_interval=cfg.scrape_interval, rule_files=default_rule_files(),
    )
    server.start()
    return server


def _write_state(state: dict[str, Any]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(STATE_FILE)


def _up(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    notice = require_secrets(settings, "up", str(config_origin(args.config)))
    if notice:
        _say(f"DVC Hub {notice} (profile = \"demo\" in {config_origin(args.config)})")
    try:
        plan = {p.name: p for p in plan_parts(settings, args.scenario)}
    except PlanError as exc:
        print(f"dvc-hub up: {exc}", file=sys.stderr)
        return 2
    for line in describe_plan(list(plan.values())):
        _say(line)
    logs = STATE_DIR / "logs"
    total = 5
    stopping = threading.Event()

    def _on_signal(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    broker = None
    children: list[Child] = []
    sims: Simulators | None = None
    prometheus: Any = None
    try:
        # 1. broker
        if settings.embedded_broker.enabled:
            from hub.broker import EmbeddedBroker

            eb = settings.embedded_broker
            broker = EmbeddedBroker(eb.data_dir, eb.port, eb.controller_port, num_partitions=settings.kafka.partitions)
            _say(f"[1/{total}] broker: starting Kafka on 127.0.0.1:{eb.port} (first run fetches the jars once)...")
            status = broker.start(timeout=180)
            _say(f"[1/{total}] broker: up at {status.bootstrap} (pid {status.pid}), data in {eb.data_dir}")
        else:
            _say(f"[1/{total}] broker: using {settings.kafka.bootstrap_servers} (embedded broker disabled)")
        from hub.kafka import ensure_topics, hub_topics

        created = ensure_topics(settings.kafka, hub_topics(settings))
        _say(f"[1/{total}] topics: {len(created)} created, {len(hub_topics(settings)) - len(created)} existed")

        # 2. simulators (demo profile, or simulators.enabled)
        if plan["simulators"].start:
            feed = plan["live generator"]
            what = (f"scenario {args.scenario}{' (fast)' if args.fast else ''}" if args.scenario
                    else "live generator" if feed.start else f"no live generator: {feed.why}")
            _say(f"[2/{total}] simulators: starting the one-stop, QLVB and portal simulators ({what})...")
            sims = Simulators(settings, args.scenario, args.fast, args.faults, args.seed,
                              live=feed.start)
            sims.start()
        else:
            _say(f"[2/{total}] simulators: not started ({plan['simulators'].why})")

        # 3. children
        _say(f"[3/{total}] worker, connectors, portal sync: starting...")
        worker = Child(
            "worker", _hub_argv(args.config, "worker"), logs / "worker.log",
            f"http://{settings.worker.web_host}:{settings.worker.web_port}/healthz",
        )
        connectors = Child(
            "connectors", _hub_argv(args.config, "connectors", "run"), logs / "connectors.log",
            f"http://{settings.connector_runner.host}:{settings.connector_runner.port}/healthz",
        )
        children = [worker, connectors]
        if settings.portal.enabled:
            portal_env = _portal_sync_env(
                settings, sims.scenario_start if sims is not None else None,
                sims.scenario_end if sims is not None else None,
            )
            if portal_env:
                month = portal_env["DVC_HUB_PORTAL__STATS_HISTORY_FROM"]
                last = portal_env.get("DVC_HUB_PORTAL__STATS_HISTORY_TO")
                _say(f"[3/{total}] portal sync: pushes the statistics of every period from {month}"
                     f"{f' to {last}' if last else ' on'} (the scenario replays it all; "
                     f"portal.stats_history_from={month}{f', stats_history_to={last}' if last else ''})")
            children.append(
                Child(
                    "portal-sync", _hub_argv(args.config, "push", "run"), logs / "portal-sync.log",
                    f"{_portal_sync_scheme(settings)}://{settings.portal_sync.host}:{settings.portal_sync.port}/healthz",
                    env=portal_env,
                )
            )
        for c in children:
            c.start()
        for c in children:
            assert c.health_url is not None
            if _wait_http(c.health_url, 120, c):
                _say(f"[3/{total}] {c.name}: up (pid {c.proc.pid if c.proc else '?'})")
            else:
                _say(f"[3/{total}] {c.name}: NOT answering at {c.health_url} yet; see {c.log_path}")

        # 4. prometheus
        if not settings.prometheus.enabled:
            _say(f"[4/{total}] prometheus: disabled in the configuration")
        else:
            try:
                prometheus = _start_prometheus(settings)
            except Exception as exc:  # noqa: BLE001 - optional part: say why and go on
                _say(f"[4/{total}] prometheus: could not start ({exc}); the hub runs without it")
            if prometheus is None:
                _say(f"[4/{total}] prometheus: not started (install it: apt-get install prometheus)")
            else:
                _say(f"[4/{total}] prometheus: up at {prometheus.url}")

        # 5. where to look
        _say(f"[5/{total}] DVC Hub is up. Places to look:")
        sim_urls = None if sims is None else {"one-stop": f"{sims.server.motcua_url}/donvi/<unit>",
                                              "QLVB": sims.server.qlvb_url, "portal": sims.server.portal_url}
        lines = places_to_look(settings, simulators=sim_urls, prometheus=prometheus.url if prometheus else None,
                               logs=logs, scenario=args.scenario)
        for k, v in lines.items():
            _say(f"{k}: {v}")

        started = time.monotonic()
        while not stopping.is_set():
            for c in children:
                msg = c.supervise()
                if msg:
                    _say(msg)
            _write_state(
                {
                    "pid": os.getpid(),
                    "updated_at": datetime.now(UTC).isoformat(),
                    "config": str(Path(args.config).resolve()) if args.config else None,
                    "broker": settings.kafka.bootstrap_servers,
                    "urls": lines,
                    "parts": {
                        c.name: {"pid": c.proc.pid if c.proc else None, "alive": c.alive(), "health": c.health_url,
                                 "restarts": c.restarts}
                        for c in children
                    },
                    "simulators": sims.progress() if sims is not None else None,
                    "prometheus": prometheus.url if prometheus is not None else None,
                }
            )
            if args.duration and time.monotonic() - started >= args.duration:
                break
            stopping.wait(1.0)
        _say("stopping...")
        return 0
    finally:
        for c in reversed(children):
            _say(f"stopping {c.name}...")
            c.stop(timeout=20.0)
        if prometheus is not None:
            with contextlib.suppress(Exception):
                prometheus.stop()
        try:
            if sims is not None:
                sims.stop()
        finally:
            if broker is not None and not args.keep_broker:
                _say("stopping broker...")
                broker.stop()
        with contextlib.suppress(FileNotFoundError):
            STATE_FILE.unlink()
        _say("stopped.")


# --------------------------------------------------------------------------- status


def _read_state() -> dict[str, Any]:
    if STATE_FILE.exists():
        with contextlib.suppress(ValueError):
            state = json.loads(STATE_FILE.read_text(encoding="utf-8"))
            if isinstance(state, dict):
                return state
    return {}


def _part(fetched: Fetched, **extra: Any) -> dict[str, Any]:
    up = fetched.http_status is not None and fetched.http_status < 400
    return {"up": up, **extra, "detail": fetched.body if fetched.body is not None else fetched.error}


def collect_status(settings: Settings, fetcher: Callable[[str], Fetched] | None = None) -> dict[str, Any]:
    """Whether each part is up, and each stage's backlog: the pipeline has caught up only when all have.

    ``fetcher`` reads one health URL (tests pass recorded bodies). ``caught_up``, ``stages`` and
    ``left_out`` are :func:`hub.pipeline.pipeline_status`'s, with the scenario of a running ``up``.
    """
    fetcher = fetcher or fetch
    state = _read_state()
    parts: dict[str, Any] = {}
    try:
        from hub.kafka import admin

        # A probe: kafka-python 3 would wait its 30 s bootstrap default for a broker that is not there.
        client = admin(settings.kafka, "status", bootstrap_timeout_ms=3000, request_timeout_ms=3000)
        client.close()
        parts["broker"] = {"up": True, "at": settings.kafka.bootstrap_servers}
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        parts["broker"] = {"up": False, "at": settings.kafka.bootstrap_servers, "error": type(exc).__name__}
    urls = health_urls(settings)
    fetched = {name: fetcher(url) for name, url in urls.items()}
    parts["worker"] = _part(fetched["worker"], url=urls["worker"].removesuffix("/api/v1/status"))
    parts["connectors"] = _part(fetched["connectors"])
    if "portal" in fetched:
        parts["portal-sync"] = _part(fetched["portal"])
    if state.get("prometheus"):
        parts["prometheus"] = {"up": fetcher(f"{state['prometheus']}/-/ready").http_status == 200,
                               "url": state["prometheus"]}
    sims = state.get("simulators") or {}
    pipeline = pipeline_status(connectors=fetched["connectors"], worker=fetched["worker"],
                               portal=fetched.get("portal"), scenario=sims)
    return {
        "up": all(p["up"] for p in parts.values()),
        "caught_up": pipeline["caught_up"],
        "stages": pipeline["stages"],
        "left_out": pipeline["left_out"],
        "parts": parts,
        "simulators": sims,
    }


_STATE_TEXT = {"caught_up": "caught up", "behind": "behind", "unknown": "UNKNOWN"}


def format_status(st: dict[str, Any]) -> str:
    """The text ``dvc-hub status`` prints: each part up or down, each stage with its backlog."""
    out = [f"{name:12} {'up' if p['up'] else 'DOWN'}" for name, p in st["parts"].items()]
    out.append("")
    out.append(f"{'stage':12} {'state':10} {'backlog':>8}  why")
    for name, stage in st["stages"].items():
        backlog = "?" if stage["backlog"] is None else str(stage["backlog"])
        out.append(f"{name:12} {_STATE_TEXT.get(stage['state'], stage['state']):10} {backlog:>8}  {stage['why']}")
    for name, why in st.get("left_out", {}).items():
        out.append(f"{name:12} {'-':10} {'-':>8}  left out: {why}")
    out.append("")
    if st["caught_up"]:
        out.append("pipeline     caught up")
    else:
        behind = [n for n, s in st["stages"].items() if s["state"] == "behind"]
        unknown = [n for n, s in st["stages"].items() if s["state"] == "unknown"]
        why = []
        if behind:
            why.append(f"{', '.join(behind)} behind")
        if unknown:
            why.append(f"{', '.join(unknown)} unknown")
        out.append(f"pipeline     NOT caught up ({'; '.join(why)})")
    return "\n".join(out)


def _status(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    st = collect_status(settings)
    if args.json:
        print(json.dumps(st, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_status(st))
    return 0 if st["up"] else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``up`` and ``status``."""
    up = subparsers.add_parser(
        "up", help="start everything: broker, simulators, worker, connectors, portal sync, Prometheus",
        description="Start the whole hub on this machine and wait; Ctrl-C stops it all.",
    )
    up.add_argument("--scenario", help="play a seeded scenario instead of live traffic (thanhhoa-2021)")
    up.add_argument("--fast", action="store_true", help="play the scenario as fast as the pipeline takes it")
    up.add_argument("--faults", help="simulator faults, e.g. 'p_5xx=0.05,p_429=0.05' (docs/simulators.md)")
    up.add_argument("--seed", type=int, default=2021, help="seed of the generator or scenario")
    up.add_argument("--duration", type=float, default=0.0, help="stop by itself after this many seconds")
    up.add_argument("--keep-broker", action="store_true", help="leave the broker running on exit")
    up.set_defaults(func=_up)
    st = subparsers.add_parser("status", help="is each part up, and has the pipeline caught up?")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)


__all__ = ["Part", "PlanError", "collect_status", "format_status", "plan_parts", "register"]
