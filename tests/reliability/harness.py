"""The full hub on the real broker, driven by the seeded scenario, with an independent oracle.

:class:`HubUnderTest` starts, for one test, everything ``dvc-hub up`` starts — but each part on its
own so a test can kill it: the simulators (in this process, a :class:`ScenarioPlayer` feeding their
World), the connector runner, one or two stream workers and the portal sync (each a child process
``python -m hub.cli --config X ...`` with its log captured), and a real Prometheus scraping them
every second. It knows the :class:`GroundTruth` of the scenario it plays, and checks every counter
three ways::

    with HubUnderTest(tmp_path, kafka_broker.bootstrap, scale=0.02) as hub:
        hub.start()
        hub.wait_caught_up()
        hub.check_figures()          # hub state == Prometheus == ground truth, or a readable diff

Failures print which figure differs in which of the three views, plus the tail of every log.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from kafka import TopicPartition

from hub.broker import EmbeddedBroker, free_port
from hub.commands.report import live_counts
from hub.commands.up import _simulator_credentials
from hub.config import Settings, load_settings
from hub.kafka import consumer, ensure_topics, hub_topics, producer
from hub.process import ChildProcess
from hub.prometheus import PrometheusServer, ScrapeTarget
from hub.scenario.player import ScenarioPlayer
from hub.scenario.thanhhoa2021 import build_scenario
from hub.scenario.truth import GroundTruth
from hub.simulators.clock import SimClock
from hub.simulators.faults import Faults
from hub.simulators.server import SimulatorServer
from hub.simulators.world import World
from schemas.figures import split_key
from streams.domain.periods import period_bounds
from tests.e2e.hubconfig import write_hub_config

ROOT = Path(__file__).resolve().parents[2]

#: A figure: (metric, unit, level name, channel name, period).
Key = tuple[str, str, str, str, str]

LEVELS = {1: "KHONG_TRUC_TUYEN", 2: "KHONG_TRUC_TUYEN", 3: "MOT_PHAN", 4: "TOAN_TRINH"}
CHANNELS = {"1": "TRUC_TIEP", "2": "TRUC_TUYEN", "3": "BUU_CHINH"}
#: The counters checked three ways: truth metric -> (Prometheus metric, extra label matcher).
PROM_METRICS: dict[str, tuple[str, str]] = {
    "received": ("dvchub_dossiers_received", ""),
    "finished_early": ("dvchub_dossiers_finished", 'timeliness="early",'),
    "finished_on_time": ("dvchub_dossiers_finished", 'timeliness="on_time",'),
    "finished_late": ("dvchub_dossiers_finished", 'timeliness="late",'),
    "refused": ("dvchub_dossiers_refused", ""),
    "withdrawn": ("dvchub_dossiers_withdrawn", ""),
}
PERIOD_KINDS = ("month", "quarter", "year")


# --------------------------------------------------------------------------- waiting


def wait_until(pred: Callable[[], Any], timeout: float, what: str, on_fail: Callable[[], str] = lambda: "",
               interval: float = 0.5) -> Any:
    """Poll ``pred`` until truthy; on timeout fail with ``what``, the last value and ``on_fail()``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError):
            last = pred()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last={str(last)[:500]}\n{on_fail()}")


# --------------------------------------------------------------------------- child processes


class Proc(ChildProcess):
    """One hub process (``python -m hub.cli --config X <args>``), its log appended across restarts."""

    def __init__(self, name: str, args: list[str], config: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(
            [sys.executable, "-m", "hub.cli", "--config", str(config), *args], cwd / "logs" / f"{name}.log",
            env={"PYTHONPATH": str(ROOT), **(env or {})}, cwd=cwd,
            die_with_parent=True,  # a killed pytest must not leave hub processes behind
        )
        self.name = name
        self.args = args

    def restart(self) -> None:
        """Crash it (SIGKILL) and start it again."""
        self.kill9()
        self.start()


class TimedWorld(World):
    """A World whose request log also records the wall-clock time (the scenario's clock is historical)."""

    def log_request(self, entry: dict[str, Any]) -> None:
        super().log_request({**entry, "wall": time.monotonic()})


def dedicated_broker(data_dir: Path) -> EmbeddedBroker:
    """A broker of one test's own (never the session's: it gets killed), dying with pytest."""
    port, controller = free_port(), free_port()
    while controller == port:
        controller = free_port()
    broker = EmbeddedBroker(data_dir, port, controller, die_with_parent=True, secure=False)
    broker.start(timeout=120)
    return broker


class LivePlayer:
    """Replays a scenario's changes into a World on a *live* (possibly skewed) clock, as fast as asked.

    Unlike :class:`ScenarioPlayer` (manual clock, historical ``NgayCapNhat``), every dossier version is
    stamped with the source's own skewed "now" and may commit late (``faults.visible_delay()``, real
    seconds): the situation of a source whose clock runs ahead of or behind the hub's. The final
    snapshots' business content is the scenario's, so :class:`GroundTruth` stays the oracle.
    """

    def __init__(self, world: World, scenario: Any, faults: Faults, chunk: int = 100, pause_s: float = 0.2) -> None:
        self.world, self.scenario, self.faults, self.chunk, self.pause_s = world, scenario, faults, chunk, pause_s
        changes: list[tuple[Any, int, int, int]] = []
        for i, lc in enumerate(scenario.dossiers):
            changes.extend((v.at, 0, i, j) for j, v in enumerate(lc.versions))
            changes.extend((p.at, 1, i, j) for j, p in enumerate(lc.portal))
        changes.extend((d.at, 2, k, 0) for k, d in enumerate(scenario.documents))
        self.changes = sorted(changes)
        self.released = 0
        self.done = False
        self._thread = threading.Thread(target=self._run, name="live-player", daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def progress(self) -> tuple[int, int]:
        return self.released, len(self.changes)

    def _run(self) -> None:
        for unit in self.scenario.units:
            self.world.set_catalogue(unit.code, self.scenario.catalogue_rows(unit.code))
        latest = time.monotonic()
        for n, (_, kind, i, j) in enumerate(self.changes, 1):
            if self._stop.is_set():
                return
            if kind == 0:
                delay = self.faults.visible_delay()
                self.world.upsert_dossier(self.scenario.dossiers[i].snapshot(j), visible_delay=delay)
                latest = max(latest, time.monotonic() + delay.total_seconds())
            elif kind == 1:
                self.world.upsert_portal_item(self.scenario.dossiers[i].portal[j].item)
            else:
                d = self.scenario.documents[i]
                self.world.add_document_event(d.unit, d.loai, d.at, d.van_ban, d.ma_ho_so)
            self.released = n
            if n % self.chunk == 0:
                self._stop.wait(self.pause_s)
        self._stop.wait(max(0.0, latest - time.monotonic()) + 1.0)
        self.done = True


# --------------------------------------------------------------------------- the hub under test


class HubUnderTest:
    """Simulators + scenario + connector runner + worker(s) + portal sync + Prometheus (module docstring)."""

    def __init__(
        self,
        tmp_path: Path,
        bootstrap: str,
        *,
        scale: float = 0.02,
        seed: int = 2021,
        partitions: int = 2,
        workers: int = 1,
        portal_sync: bool = True,
        prometheus: bool = True,
        source_faults: Faults | None = None,
        portal_faults: Faults | None = None,
        player_faults: Faults | None = None,
        clock: SimClock | None = None,
        poll_interval_s: float = 0.5,
        extra_config: str = "",
        chunk_size: int = 50,
        tick_s: float = 0.25,
    ) -> None:
        self.tmp = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.config, self.ports, self.prefix = write_hub_config(
            tmp_path, bootstrap, partitions=partitions, poll_interval_s=poll_interval_s, extra=extra_config,
        )
        self.settings: Settings = load_settings(self.config)
        ensure_topics(self.settings.kafka, hub_topics(self.settings))
        self.partitions = partitions
        self.scenario = build_scenario(seed=seed, scale=scale)
        self.truth = GroundTruth(self.scenario)
        self.world = TimedWorld(clock or SimClock.manual(self.scenario.start), seed=seed, request_log_size=1_000_000)
        units, qlvb, clients = _simulator_credentials(self.settings)
        self.source_faults = source_faults or Faults(seed=seed)
        self.portal_faults = portal_faults or Faults(seed=seed + 2)
        self.sims = SimulatorServer(
            self.world, units=units, motcua_faults=self.source_faults, qlvb_faults=Faults(seed=seed + 1),
            portal_faults=self.portal_faults, qlvb_username=qlvb[0], qlvb_password=qlvb[1], portal_clients=clients,
            motcua_port=self.ports.motcua, qlvb_port=self.ports.qlvb, portal_port=self.ports.portal, seed=seed,
            # The portal's server clock is the wall clock, as in `dvc-hub up --scenario`: the scenario
            # moves the World's clock by days at a time, which expired tokens on every chunk and, worse,
            # the portal's 24 h Idempotency-Key window between a push and its retry a second later,
            # so a retried progress POST after a lost answer was stored twice (the lost-answer test).
            portal_clock=SimClock.live(),
        )
        self.player: ScenarioPlayer | LivePlayer = (
            ScenarioPlayer(self.world, self.scenario, fast=True, faults=player_faults, chunk_size=chunk_size,
                           tick_s=tick_s)
            if self.world.clock.is_manual else LivePlayer(self.world, self.scenario, player_faults or Faults())
        )
        self.connectors = Proc("connectors", ["connectors", "run"], self.config, tmp_path)
        self.workers = [
            Proc(f"worker-{i}", ["worker", "--web-port", str(self.ports.worker if i == 0 else free_port())],
                 self.config, tmp_path)
            for i in range(workers)
        ]
        self.sync = Proc("portal-sync", ["push", "run"], self.config, tmp_path) if portal_sync else None
        self.prometheus: PrometheusServer | None = None
        if prometheus:
            self.prometheus = PrometheusServer(
                tmp_path / "prometheus",
                [
                    ScrapeTarget("dvchub-worker", [f"127.0.0.1:{self.worker_port(w)}" for w in self.workers]),
                    ScrapeTarget("dvchub-connectors", [f"127.0.0.1:{self.ports.connectors}"]),
                    ScrapeTarget("dvchub-portal-sync", [f"127.0.0.1:{self.ports.portal_sync}"]),
                ],
                scrape_interval="1s",
            )
        self.started = time.monotonic()

    # ------------------------------------------------------------------ life cycle

    @staticmethod
    def worker_port(w: Proc) -> int:
        return int(w.args[w.args.index("--web-port") + 1])

    @property
    def procs(self) -> list[Proc]:
        return [self.connectors, *self.workers, *([self.sync] if self.sync else [])]

    def start(self, *, play: bool = True) -> HubUnderTest:
        """Start the simulators, every process and Prometheus; then (``play``) the scenario."""
        # The source systems publish their catalogues before the hub ever connects, as in a city;
        # the players publish them again (the same rows) when they start.
        for unit in self.scenario.units:
            self.world.set_catalogue(unit.code, self.scenario.catalogue_rows(unit.code))
        self.sims.start()
        for p in self.procs:
            p.start()
        if self.prometheus is not None:
            self.prometheus.start()
        self.wait_ready()
        if play:
            self.player.start()
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        wait_until(lambda: all(self.worker_status(w) for w in self.workers), timeout, "the workers to answer",
                   self.logs)
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{self.ports.connectors}/healthz", timeout=3).status_code
                   < 500, timeout, "the connector runner to answer", self.logs)

    def close(self) -> None:
        self.player.stop()
        for p in reversed(self.procs):
            with contextlib.suppress(Exception):
                p.stop()
        if self.prometheus is not None:
            with contextlib.suppress(Exception):
                self.prometheus.stop()
        with contextlib.suppress(Exception):
            self.sims.stop()

    def __enter__(self) -> HubUnderTest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs(self) -> str:
        """The tail of every process log (for failure messages)."""
        return "\n".join(f"--- {p.name} (alive={p.alive()}, starts={p.starts})\n{p.tail()}" for p in self.procs)

    # ------------------------------------------------------------------ state of the parts

    def worker_status(self, w: Proc) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.worker_port(w)}/api/v1/status", timeout=3)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def connectors_health(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.ports.connectors}/healthz", timeout=3)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def supervise(self) -> None:
        """Restart a worker that exited on its own, as ``dvc-hub up``, systemd or Kubernetes would.

        A worker exits by itself when its stall watchdog fires (``streams.watchdog``); the restart
        is part of the recovery the tests demand, and it is logged in the worker's log.
        """
        for w in self.workers:
            w.restart_if_exited()

    def workers_caught_up(self) -> bool:
        self.supervise()
        statuses = [self.worker_status(w) for w in self.workers]
        if any(s is None for s in statuses):
            return False
        owned = sorted(p for s in statuses if s for p in s["partitions"])
        return owned == list(range(self.partitions)) and all(
            s and s["caught_up"] and s["partials_pending"] == 0 for s in statuses
        )

    def scenario_done(self) -> bool:
        return self.player.done

    # ------------------------------------------------------------------ the three views

    def comparable(self, key: Key) -> bool:
        """Whether the hub and the oracle observe ``key`` at the same instant.

        "Open / overdue at the end of P" is observed by the oracle at the scenario's end
        (2021-04-01 00:00), by the hub at its wall clock: for a period ending after the scenario
        (2021, 2021-04, ...) the two legitimately differ, so only periods over by then are compared.
        """
        if key[0] not in ("open_end", "overdue_end"):
            return True
        return period_bounds(key[4])[1] <= self.scenario.end.date()

    def truth_figures(self) -> dict[Key, int]:
        """The oracle: GroundTruth's recount, with the hub's level/channel names."""
        out: Counter[Key] = Counter()
        for (metric, unit, level, channel, period), n in self.truth.figures().items():
            out[(metric, unit, LEVELS[level], CHANNELS[channel], period)] += n
        return {k: v for k, v in out.items() if v and self.comparable(k)}

    def hub_figures(self) -> dict[Key, int]:
        """The hub's own state: the latest partials of every partition, merged (what the report reads)."""
        out: Counter[Key] = Counter()
        for unit, counts in live_counts(self.settings).items():
            for key, n in counts.items():
                metric, level, channel, period, extra = split_key(key)
                if level != "*" and channel != "*" and not extra:
                    out[(metric, unit, level, channel, period)] += n
        return {k: v for k, v in out.items() if v and self.comparable(k)}

    def prometheus_figures(self) -> dict[Key, int]:
        """What Prometheus scraped: ``sum by`` over workers, one ``period_kind`` at a time."""
        assert self.prometheus is not None
        out: dict[Key, int] = {}
        for metric, (name, extra) in PROM_METRICS.items():
            for kind in PERIOD_KINDS:
                expr = f'sum by (unit, level, channel, period) ({name}{{{extra}period_kind="{kind}"}})'
                for s in self.prometheus.query(expr):
                    if s.value:
                        key = (metric, s.labels["unit"], s.labels["level"], s.labels["channel"], s.labels["period"])
                        out[key] = int(s.value)
        return out

    def wait_caught_up(self, timeout: float = 600) -> None:
        """Scenario played, workers at lag 0 and partials published, hub state = recount of the truth.

        Converging on the oracle is part of "caught up": a lost event never converges and the wait
        fails with the diff.
        """
        want = self.truth_figures()
        wait_until(self.scenario_done, timeout, "the scenario player to finish", self.logs)
        deadline = time.monotonic() + timeout

        def converged() -> bool:
            return self.workers_caught_up() and self.hub_figures() == want

        try:
            wait_until(converged, max(10.0, deadline - time.monotonic()), "the hub to converge on the ground truth",
                       interval=3.0)
        except AssertionError:
            got = self.hub_figures()
            raise AssertionError(
                "the hub did not converge on the ground truth:\n" + diff3(got, None, want) + "\n" + self.logs()
            ) from None

    def check_figures(self, timeout: float = 30) -> None:
        """Every counter three ways: hub state == Prometheus == GroundTruth (the Prometheus metrics)."""
        want = self.truth_figures()
        got = self.hub_figures()
        assert got == want, "hub state differs from the ground truth:\n" + diff3(got, None, want)
        want_prom = {k: v for k, v in want.items() if k[0] in PROM_METRICS}
        assert want_prom, "the scenario produced no counter at all"
        prom: dict[Key, int] = {}

        def scraped() -> bool:
            nonlocal prom
            prom = self.prometheus_figures()
            return prom == want_prom

        try:
            wait_until(scraped, timeout, "Prometheus to show the figures")
        except AssertionError:
            raise AssertionError("Prometheus differs:\n" + diff3(
                {k: v for k, v in got.items() if k[0] in PROM_METRICS}, prom, want_prom)) from None

    # ------------------------------------------------------------------ Kafka helpers

    def produce_raw(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        prod = producer(self.settings.kafka, "reliability-tests")
        n = 0
        try:
            for key, value in records:
                prod.send(topic, key=key, value=value)
                n += 1
            prod.flush()
        finally:
            prod.close()
        return n

    def read_topic(self, topic: str, timeout_s: float = 30.0) -> list[Any]:
        """Every record of ``topic`` from the beginning to the end offsets of now."""
        cons = consumer(self.settings.kafka, "reliability-tests")
        try:
            parts = cons.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return []
            cons.assign(tps)
            cons.seek_to_beginning(*tps)
            ends = cons.end_offsets(tps)
            out: list[Any] = []
            deadline = time.monotonic() + timeout_s
            while any(cons.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
                for recs in cons.poll(timeout_ms=500, max_records=10_000).values():
                    out.extend(recs)
            return out
        finally:
            cons.close()

    def all_topics(self) -> list[str]:
        """Every topic of this hub: its configured topics plus the workers' changelogs/internal ones."""
        from hub.kafka import admin

        client = admin(self.settings.kafka, "reliability-tests")
        try:
            names = set(client.list_topics())
        finally:
            client.close()
        mine = {t for t in names if t.startswith((self.prefix, self.settings.worker.app_id))}
        return sorted(mine)


def diff3(hub: dict[Key, int], prom: dict[Key, int] | None, truth: dict[Key, int], limit: int = 25) -> str:
    """A table of the figures that differ: hub state / Prometheus / ground truth."""
    keys = sorted(set(hub) | set(truth) | set(prom or {}))
    rows = []
    for k in keys:
        h, t = hub.get(k, 0), truth.get(k, 0)
        p = prom.get(k, 0) if prom is not None else None
        if h != t or (p is not None and p != t):
            rows.append(f"  {'|'.join(k):70} hub={h:<6} prometheus={'-' if p is None else p:<6} truth={t}")
    return f"{len(rows)} figures differ (of {len(keys)}):\n" + "\n".join(rows[:limit])


__all__ = ["HubUnderTest", "Key", "LivePlayer", "Proc", "TimedWorld", "dedicated_broker", "diff3", "wait_until"]
