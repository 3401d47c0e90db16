"""A stand-in for the hub's metric endpoints, fed by a small seeded scenario with a known ground truth.

It serves exactly what the real processes serve (every metric of the :mod:`hub.metrics` catalogue,
built with its factories and a scrape-time domain collector, as ``streams.collector`` does), from
several "workers" that each own half of the partitions, plus the connector runner and the portal sync.
The end-to-end test points the REAL Prometheus at it and checks the dashboards' queries and the
recording rules against :class:`GroundTruth`.

The scenario is Thanh Hóa City's Q1-2021 (domain.md §6): online dossiers of level 3 / level 4 are
exactly 1 429 / 349 at the city desk and 3 016 / 2 933 over the 34 wards and communes (4 445 / 3 282
for the whole city); procedures offered online are 41 + 70 at the city desk and 9 + 32 per ward.
Everything else (in-person dossiers, outcomes, overdue) is seeded random.
"""

from __future__ import annotations

import csv
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from hub import metrics as m

ROOT = Path(__file__).resolve().parents[2]
UNITS_CSV = ROOT / "schemas" / "reference" / "units-thanhhoa-city-2021.csv"

PARTITIONS = 4
MONTHS = ("2021-01", "2021-02", "2021-03")
QUARTER = "2021-Q1"
YEAR = "2021"
LEVELS = ("KHONG_TRUC_TUYEN", "MOT_PHAN", "TOAN_TRINH")
OFFERED = {"HUYEN": {"MOT_PHAN": 41, "TOAN_TRINH": 70, "KHONG_TRUC_TUYEN": 12},
           "XA": {"MOT_PHAN": 9, "TOAN_TRINH": 32, "KHONG_TRUC_TUYEN": 4}}
ONLINE_TARGET = {("HUYEN", "MOT_PHAN"): 1429, ("HUYEN", "TOAN_TRINH"): 349,
                 ("XA", "MOT_PHAN"): 3016, ("XA", "TOAN_TRINH"): 2933}


@dataclass(frozen=True)
class Dossier:
    code: str
    unit: str
    tier: str
    level: str
    channel: str
    month: str
    outcome: str  # early | on_time | late | open
    overdue: bool

    @property
    def partition(self) -> int:
        return zlib.crc32(self.code.encode()) % PARTITIONS


@dataclass
class GroundTruth:
    """The scenario's dossiers and the figures a correct hub must show."""

    units: dict[str, str]  # code -> tier
    dossiers: list[Dossier] = field(default_factory=list)

    def count(self, **where: str | bool) -> int:
        return sum(1 for d in self.dossiers if all(getattr(d, k) == v for k, v in where.items()))

    @property
    def online_share(self) -> float:
        return self.count(channel="TRUC_TUYEN") / len(self.dossiers)

    @property
    def on_time_rate(self) -> float:
        finished = [d for d in self.dossiers if d.outcome != "open"]
        return sum(d.outcome in {"early", "on_time"} for d in finished) / len(finished)

    @property
    def level4_coverage(self) -> float:
        tiers = Counter(self.units.values())
        tt = sum(OFFERED[t]["TOAN_TRINH"] * n for t, n in tiers.items())
        online = sum((OFFERED[t]["TOAN_TRINH"] + OFFERED[t]["MOT_PHAN"]) * n for t, n in tiers.items())
        return tt / online


def load_units() -> dict[str, str]:
    with UNITS_CSV.open(encoding="utf-8") as f:
        return {r["ma_dvhc"]: r["cap"] for r in csv.DictReader(f)}


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` split into ``parts`` non-negative integers that add up exactly."""
    cuts = sorted(rng.randint(0, total) for _ in range(parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


def build_scenario(seed: int = 2021) -> GroundTruth:
    rng = random.Random(seed)
    units = load_units()
    truth = GroundTruth(units)
    wards = [u for u, t in units.items() if t == "XA"]
    per_unit: Counter[tuple[str, str, str]] = Counter()  # (unit, level, channel) -> n
    for (tier, level), total in ONLINE_TARGET.items():
        targets = ["380"] if tier == "HUYEN" else wards
        for unit, n in zip(targets, _split(total, len(targets), rng), strict=True):
            per_unit[unit, level, "TRUC_TUYEN"] += n
    for unit in units:
        for level in LEVELS:
            per_unit[unit, level, "TRUC_TIEP"] += rng.randint(20, 120)
        per_unit[unit, "MOT_PHAN", "BUU_CHINH"] += rng.randint(0, 5)
    seq = 0
    for (unit, level, channel), n in sorted(per_unit.items()):
        for _ in range(n):
            seq += 1
            outcome = rng.choices(("early", "on_time", "late", "open"), (50, 30, 8, 12))[0]
            truth.dossiers.append(Dossier(
                code=f"H56.{unit}-2021-{seq:06d}", unit=unit, tier=units[unit], level=level, channel=channel,
                month=rng.choice(MONTHS), outcome=outcome, overdue=outcome == "open" and rng.random() < 0.3,
            ))
    return truth


def _quarter_of(month: str) -> str:
    return f"{month[:4]}-Q{(int(month[5:]) - 1) // 3 + 1}"


def unit_wide_figures(truth: GroundTruth) -> dict[str, list[tuple[list[str], float]]]:
    """Catalogue and Decision 766 samples of every unit (computed once: they do not change)."""
    out: dict[str, list[tuple[list[str], float]]] = {"offered": [], "without": [], "rate": [], "score": []}
    by_unit: dict[str, list[Dossier]] = {}
    for d in truth.dossiers:
        by_unit.setdefault(d.unit, []).append(d)
    for unit, tier in sorted(truth.units.items()):
        for level, n in OFFERED[tier].items():
            out["offered"].append(([unit, tier, level], n))
        for period, kind in ((QUARTER, "quarter"), (YEAR, "year"), *((mo, "month") for mo in MONTHS)):
            out["without"].append(([unit, tier, "MOT_PHAN", period, kind], 2 if tier == "XA" else 5))
            unit_d = [d for d in by_unit.get(unit, []) if kind != "month" or d.month == period]
            fin_d = [d for d in unit_d if d.outcome != "open"]
            on_time = sum(d.outcome in {"early", "on_time"} for d in fin_d) / max(len(fin_d), 1)
            online = sum(d.channel == "TRUC_TUYEN" for d in unit_d) / max(len(unit_d), 1)
            out["rate"].append(([unit, tier, "2.1", period, kind], on_time))
            out["score"].append(([unit, tier, "2.1", period, kind], 20 * on_time))
            out["rate"].append(([unit, tier, "3.3", period, kind], online))
            out["score"].append(([unit, tier, "3.3", period, kind], 0.0))
    return out


class DomainShare(Collector):
    """The domain gauges of one worker: only the dossiers of the partitions it owns, at scrape time."""

    def __init__(self, truth: GroundTruth, partitions: set[int]) -> None:
        self.truth = truth
        self.partitions = partitions
        self.unit_wide = unit_wide_figures(truth)
        self._cache: list[Metric] | None = None

    def collect(self) -> Iterator[Metric]:
        # The scenario is static, so the families are built once; the real collector reads live state.
        if self._cache is None:
            self._cache = list(self._build())
        return iter(self._cache)

    def _build(self) -> Iterator[Metric]:
        mine = [d for d in self.truth.dossiers if d.partition in self.partitions]
        received = m.gauge_family(m.DOSSIERS_RECEIVED)
        finished = m.gauge_family(m.DOSSIERS_FINISHED)
        opened = m.gauge_family(m.DOSSIERS_OPEN)
        refused = m.gauge_family(m.DOSSIERS_REFUSED)
        withdrawn = m.gauge_family(m.DOSSIERS_WITHDRAWN)
        rec: Counter[tuple[str, ...]] = Counter()
        fin: Counter[tuple[str, ...]] = Counter()
        opn: Counter[tuple[str, ...]] = Counter()
        for d in mine:
            for period, kind in ((d.month, "month"), (_quarter_of(d.month), "quarter"), (d.month[:4], "year")):
                key: tuple[str, ...] = (d.unit, d.tier, d.level, d.channel, period, kind)
                rec[key] += 1
                if d.outcome == "open":
                    opn[key] += 1
                else:
                    fin[(*key, d.outcome)] += 1
        for key, n in sorted(rec.items()):
            received.add_metric(list(key), n)
            refused.add_metric(list(key), 0)
            withdrawn.add_metric(list(key), 0)
            opened.add_metric(list(key), opn[key])
        for fkey, fn in sorted(fin.items()):
            finished.add_metric(list(fkey), fn)
        yield from (received, finished, opened, refused, withdrawn)

        open_now = m.gauge_family(m.DOSSIERS_OPEN_NOW)
        overdue_now = m.gauge_family(m.DOSSIERS_OVERDUE_NOW)
        live: Counter[tuple[str, ...]] = Counter()
        late: Counter[tuple[str, ...]] = Counter()
        for d in mine:
            if d.outcome == "open":
                live[d.unit, d.tier, d.level, d.channel] += 1
                late[d.unit, d.tier, d.level, d.channel] += d.overdue
        for lkey, ln in sorted(live.items()):
            open_now.add_metric(list(lkey), ln)
            overdue_now.add_metric(list(lkey), late[lkey])
        yield from (open_now, overdue_now)

        # Unit-wide figures: every worker exports the same copy (rules take them once, with max).
        offered = m.gauge_family(m.PROCEDURES_OFFERED)
        without = m.gauge_family(m.PROCEDURES_WITHOUT_DOSSIER)
        rate = m.gauge_family(m.KPI766_RATE)
        score = m.gauge_family(m.KPI766_SCORE)
        for family, kind in ((offered, "offered"), (without, "without"), (rate, "rate"), (score, "score")):
            for labels, value in self.unit_wide[kind]:
                family.add_metric(labels, value)
        yield from (offered, without, rate, score)

        state = m.gauge_family(m.DOSSIERS_IN_STATE)
        state.add_metric([], len(mine))
        lag = m.gauge_family(m.CONSUMER_LAG)
        for topic in ("dvchub.raw.motcua", "dvchub.raw.qlvb", "dvchub.dossier-events"):
            lag.add_metric(["dvc-hub", topic], 3)
        yield from (state, lag)


class Endpoint:
    """One registry served over HTTP on a loopback port (one "process")."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.registry = CollectorRegistry()
        self.port = 0
        self._server: object | None = None

    def start(self) -> str:
        server, _thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self._server = server
        self.port = server.server_port
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        server = self._server
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
        self._server = None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class FakeHub:
    """Two workers (partitions {0, 1} and {2, 3}), the connector runner and the portal sync.

    A ticker thread moves the counters forward (records flowing, a few dead letters), as a live hub
    does, so that rate() and histogram_quantile() have something to compute.
    """

    AGENTS = ("normalize_motcua", "normalize_qlvb", "dossier_state")

    def __init__(self, truth: GroundTruth) -> None:
        self.truth = truth
        self.workers = [Endpoint("worker-0"), Endpoint("worker-1")]
        self.connectors = Endpoint("connectors")
        self.portal = Endpoint("portal-sync")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker_metrics = []
        for i, w in enumerate(self.workers):
            share = DomainShare(truth, {2 * i, 2 * i + 1})
            list(share.collect())  # build the families now, not under the first scrape's timeout
            w.registry.register(share)
            self._worker_metrics.append((
                m.counter(m.AGENT_RECORDS_IN, w.registry), m.counter(m.AGENT_RECORDS_OUT, w.registry),
                m.counter(m.DEAD_LETTERS, w.registry), m.counter(m.STATE_APPLIES, w.registry),
                m.histogram(m.PROCESSING_LATENCY, w.registry),
            ))
            rereads = m.counter(m.CONSUMER_REREADS, w.registry)
            for topic in ("dvchub.raw.motcua", "dvchub.dossier-events"):
                rereads.labels(topic=topic)  # at 0 from the start, as the worker's (streams/app.py)
        reg = self.connectors.registry
        self.polls = m.counter(m.CONNECTOR_POLLS, reg)
        self.records = m.counter(m.CONNECTOR_RECORDS, reg)
        self.errors = m.counter(m.CONNECTOR_ERRORS, reg)
        self.cursor_age = m.gauge(m.CONNECTOR_CURSOR_AGE, reg)
        self.last_success = m.gauge(m.CONNECTOR_LAST_SUCCESS, reg)
        self.up = m.gauge(m.CONNECTOR_UP, reg)
        self.connector_names = [(f"motcua-{u}", "motcua") for u in sorted(truth.units)] + [
            ("qlvb", "qlvb"), ("portal", "portal")]
        reg = self.portal.registry
        self.pushes = m.counter(m.PORTAL_PUSHES, reg)
        self.retries = m.counter(m.PORTAL_RETRIES, reg)
        self.breaker = m.gauge(m.PORTAL_BREAKER_STATE, reg)
        self.transitions = m.counter(m.PORTAL_BREAKER_TRANSITIONS, reg)
        self.transitions.labels(to="closed").inc()
        self.oldest = m.gauge(m.PORTAL_OLDEST_UNPUSHED, reg)
        self.backlog = m.gauge(m.PIPELINE_BACKLOG, reg)
        self._tick(first=True)

    @property
    def endpoints(self) -> list[Endpoint]:
        return [*self.workers, self.connectors, self.portal]

    def _tick(self, *, first: bool = False) -> None:
        now = time.time()
        for i, (rin, rout, dead, applies, latency) in enumerate(self._worker_metrics):
            for agent in self.AGENTS:
                rin.labels(agent=agent).inc(10 + i)
                rout.labels(agent=agent).inc(10 + i)
                latency.labels(agent=agent).observe(0.02 * (1 + i))
            dead.labels(stage="normalize", reason="schema_invalid").inc(1 if first else 0.1)
            applies.labels(outcome="applied").inc(9)
            applies.labels(outcome="duplicate").inc(1)
            applies.labels(outcome="stale").inc(0)
        for name, kind in self.connector_names:
            self.polls.labels(connector=name, type=kind, outcome="ok").inc()
            self.polls.labels(connector=name, type=kind, outcome="error").inc(0)
            self.records.labels(connector=name, type=kind).inc(3)
            self.errors.labels(connector=name, type=kind, reason="http_5xx").inc(0)
            self.cursor_age.labels(connector=name, type=kind).set(120)
            self.last_success.labels(connector=name, type=kind).set(now)
            self.up.labels(connector=name, type=kind).set(1)
        for kind in ("dossier", "progress", "stats"):
            self.pushes.labels(kind=kind, outcome="ok").inc(5)
            self.retries.labels(kind=kind, reason="http_503").inc(0.5)
            self.oldest.labels(kind=kind).set(2)
        for stage in ("outbox", "statistics"):  # the portal sync's stages of the pipeline backlog
            self.backlog.labels(stage=stage).set(0)
        self.breaker.set(0)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._tick()

    def start(self) -> dict[str, str]:
        """Start every endpoint and the ticker; returns ``{name: "host:port"}``."""
        addrs = {e.name: e.start() for e in self.endpoints}
        self._thread = threading.Thread(target=self._run, name="fake-hub-ticker", daemon=True)
        self._thread.start()
        return addrs

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for e in self.endpoints:
            e.stop()
