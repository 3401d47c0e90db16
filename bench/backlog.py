"""A province-year backlog drained through the simulated portal at its rate limit.

What the province saw (issue 12): the worker catching up through months of history keeps rewriting
every unit's figures while tens of thousands of dossier versions wait in the outbox, and the
portal takes about ``rate_limit_per_s`` requests per second. This benchmark replays that shape
against the portal sync **as it is checked out** (or a ``--baseline`` revision of it), through its
stable interfaces only:

* the portal sync is ``dvc-hub push run`` in a child process (``python -m hub.cli``), started from
  this checkout or from a temporary ``git worktree`` of the baseline revision, on a real Kafka
  broker with its own topics;
* the portal is the simulator (:func:`hub.simulators.portal.make_portal_app`, its default rate
  limit unless ``--rate``), served from a thread of this process so its holdings can be read;
* the input is what the worker writes, built with the domain code: raw one-stop snapshots
  (a year of dossiers of the registry's units, versions received → processing → finished, some
  left open, so a unit has figures in many periods) normalised by
  :func:`streams.normalize.normalize_motcua`, applied with :func:`streams.domain.state.apply`, counted
  by :class:`streams.domain.aggregates.Aggregates`; the outbox items are
  :func:`streams.agents.dossier_state.outbox_record` bytes signed with
  :func:`hub.sync.signing.sign`, the partials :class:`schemas.figures.UnitFigures`, the catalogue the
  worker's catalogue-table changelog.

The replay is cut, in order of the snapshots' change times, into ``updates`` steps spread over
``feed_s`` seconds; each step writes its dossier versions to the outbox and the changed partials of
every (partition, unit) it touched, as the worker does while it catches up. The run then waits until

(a) the portal holds every dossier at its newest version, and
(b) statistics converged: every (unit, period) body the portal holds equals the body built from
    the final partials (:func:`streams.domain.report.stats_body`, generation stamp ignored), the
    current month of every unit is held, and no statistics PUT arrived for ``quiet_s`` seconds,

or until ``timeout_s``. Measured from the first record fed: the time to drain the dossiers, the time
until the statistics converged, every request the portal received (by route and status: 429s
included), and the accepted statistics PUTs per (unit, period) (max, mean, p95).

Example::

    spec = BacklogSpec(units=3, dossiers=200, months=3, updates=3, feed_s=2.0)
    backlog = build_backlog(spec, datetime.now(TZ))
    result = run_backlog(bootstrap, Path("/tmp/run"), spec, backlog)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import statistics
import sys
import threading
import time
import tomllib
import uuid
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web

from bench.common import ROOT, percentile
from hub.broker import free_port
from hub.config import Settings, TopicSettings, load_settings
from hub.kafka import ensure_topics, hub_topics, producer
from hub.process import ChildProcess
from hub.simulators._http import SIM_CONTEXT
from hub.simulators.clock import SimClock
from hub.simulators.faults import Faults
from hub.simulators.portal import make_portal_app
from hub.simulators.world import World
from hub.sync.signing import sign
from schemas.calendar import TZ
from schemas.events import CatalogueEntry, Level
from schemas.figures import UnitFigures, merge_counts
from schemas.raw import RawRecord
from schemas.units import UnitRegistry, default_registry
from streams.domain.aggregates import Aggregates, Catalogue
from streams.domain.report import stats_body
from streams.domain.state import apply, view

__all__ = ["Backlog", "BacklogSpec", "PortalServer", "build_backlog", "expected_body", "run_backlog"]

#: Fields of a statistics body that are a stamp of when it was built, not a figure.
STAMP_FIELDS = frozenset({"thoi_diem_tong_hop"})
#: The portal simulator's routes, as its request counters name them.
ROUTE_STATS = "/api/v1/thongke/dvctt/{ky}/{ma_don_vi}"
ROUTE_DOSSIERS = "/api/v1/dongbo/hoso"
ROUTE_PROGRESS = "/api/v1/dongbo/tiendo"
ROUTE_LOOKUP = "/api/v1/dongbo/hoso/{ma_ho_so}"
ROUTE_TOKEN = "/oauth2/token"
#: Targets of issue 12: "at most a handful of PUTs per (unit, period)"; dossiers "within a few minutes".
TARGET_MAX_PUTS_PER_KEY = 5
TARGET_DRAIN_AFTER_FEED_S = 300.0
PORTAL_CLIENT = "dvc-hub"
PORTAL_SECRET = "demo-portal-secret"
PROCEDURES = 40


@dataclass(frozen=True)
class BacklogSpec:
    """The size and pace of one backlog (defaults: a province-year, scaled to run in minutes)."""

    units: int = 35
    dossiers: int = 20_000
    months: int = 12
    updates: int = 10
    feed_s: float = 60.0
    rate: float | None = None  # the portal simulator's rate limit; None = its default
    partitions: int = 4
    timeout_s: float = 1800.0
    quiet_s: float = 10.0
    seed: int = 12
    #: ``[portal]`` settings of the portal sync under test (values as TOML), e.g. {"stats_debounce_s": "5"}.
    portal_settings: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- the input


@dataclass
class Step:
    """What the worker writes in one step of its catch-up: outbox items, then the changed partials."""

    outbox: list[tuple[bytes, bytes]]
    partials: list[tuple[bytes, bytes]]


@dataclass
class Backlog:
    """The whole replay, built before anything is timed."""

    now: datetime
    units: list[str]
    steps: list[Step]
    catalogue: list[CatalogueEntry]
    #: MaHoSo -> (NgayCapNhat, TrangThaiHoSo) of the newest version fed: what the portal must hold at
    #: the end (the national format carries no version number; every version here has its own change time).
    final_versions: dict[str, tuple[str, str]]
    #: Unit -> the sum of its final partials (what the statistics must converge to).
    final_counts: dict[str, Counter[str]]
    registry: UnitRegistry

    @property
    def outbox_items(self) -> int:
        return sum(len(s.outbox) for s in self.steps)

    @property
    def partial_records(self) -> int:
        return sum(len(s.partials) for s in self.steps)

    def periods_with_figures(self) -> dict[str, list[str]]:
        """Unit -> the periods in which its final counts hold a non-zero figure."""
        out: dict[str, list[str]] = {}
        for unit, counts in self.final_counts.items():
            out[unit] = sorted({k.split("|", 4)[3] for k, v in counts.items() if v})
        return out


def _compact(dt: datetime) -> str:
    return dt.strftime("%Y%m%d%H%M%S")


def _procedure(k: int) -> tuple[str, int]:
    """Procedure number ``k``: its code and level (3 or 4)."""
    return f"1.00{3000 + k:04d}.000.00.00.H56", 3 + k % 2


def _versions(i: int, unit: str, rng: random.Random, start: datetime, now: datetime) -> list[dict[str, Any]]:
    """The snapshots of dossier ``i`` whose change time is before ``now``, oldest first."""
    span = (now - start).total_seconds() - 3 * 3600
    received = start + timedelta(seconds=rng.uniform(0, span))
    received = received.replace(microsecond=0)
    proc, level = _procedure(rng.randrange(PROCEDURES))
    due = received + timedelta(days=rng.randint(3, 15))
    never = rng.random() < 0.1  # forgotten dossiers: open at the end of every period since they came
    end = received + timedelta(days=rng.uniform(0.5, 25), hours=rng.randint(0, 8))
    final = rng.choice((9, 10, 10, 10))
    ma = f"H56.{unit}-{_compact(received)[2:8]}-{i:07d}"
    steps = [
        {"TrangThai": "2", "ThoiDiemXuLy": _compact(received), "PhongBanXuLy": "Bộ phận một cửa",
         "NoiDungXuLy": "Tiếp nhận hồ sơ"},
        {"TrangThai": "4", "ThoiDiemXuLy": _compact(received + timedelta(hours=2)),
         "PhongBanXuLy": "Công chức chuyên môn", "NoiDungXuLy": "Chuyển xử lý"},
        {"TrangThai": str(final), "ThoiDiemXuLy": _compact(end), "PhongBanXuLy": "Lãnh đạo UBND",
         "NoiDungXuLy": "Đã xử lý xong"},
    ]
    times = [received, received + timedelta(hours=2), end]
    n = 2 if never else 3
    out = []
    for v in range(1, n + 1):
        updated = times[v - 1]
        if updated >= now:
            break
        status = int(steps[v - 1]["TrangThai"])
        finished = v == 3
        out.append({
            "MaHoSo": ma, "PhienBan": v, "NgayCapNhat": _compact(updated),
            "MaTTHC": proc, "TenTTHC": "Đăng ký khai sinh", "MaLinhVuc": "HT", "TenLinhVuc": "Hộ tịch",
            "MaDonVi": unit, "MucDo": level, "KenhThucHien": ("1", "2", "2", "3")[i % 4],
            "TrangThaiHoSo": str(status),
            "NgayNopHoSo": _compact(received - timedelta(minutes=15)), "NgayTiepNhan": _compact(received),
            "NgayHenTra": _compact(due),
            "NgayKetThucXuLy": _compact(end) if finished else "",
            "NgayTra": _compact(end) if finished and status == 10 else "", "NgayTuChoi": "",
            "IdHash": f"h1:{zlib.crc32(ma.encode()):08x}", "LoaiDoiTuong": 1,
            "DuocThanhToanTrucTuyen": 1 if i % 7 == 0 else 0, "HoSoCoThanhPhanSoHoa": i % 2,
            "DanhSachGiayToKetQua": [], "QuaTrinhXuLy": steps[:v],
        })
    return out


def _raw(payload: dict[str, Any], fetched: datetime) -> RawRecord:
    ma, version, unit = payload["MaHoSo"], str(payload["PhienBan"]), payload["MaDonVi"]
    return RawRecord.model_validate({
        "schema_version": 1, "event_id": f"motcua:{ma}:{version}", "source": "motcua",
        "instance": f"motcua-{unit}", "kind": "dossier", "key": ma, "version": version,
        "fetched_at": fetched.isoformat(), "payload": payload,
    })


def build_backlog(spec: BacklogSpec, now: datetime, registry: UnitRegistry | None = None) -> Backlog:
    """The replay of ``spec`` up to ``now``: the worker's outbox items and partials, step by step."""
    from streams.agents.dossier_state import outbox_record  # imports faust: only when building
    from streams.normalize import normalize_motcua

    registry = registry or default_registry()
    units = [u.code for u in registry.units()][: max(1, spec.units)]
    rng = random.Random(spec.seed)
    start = now - timedelta(days=round(30.44 * spec.months))
    snapshots = [(p["NgayCapNhat"], i, p) for i in range(spec.dossiers)
                 for p in _versions(i, units[i % len(units)], rng, start, now)]
    snapshots.sort(key=lambda s: (s[0], s[1]))
    catalogue = [
        CatalogueEntry(event_id=f"cat:{unit}:{code}", source="motcua", unit_code=unit, procedure_code=code,
                       level_raw=level, level=Level.TOAN_TRINH if level == 4 else Level.MOT_PHAN,
                       valid_from=datetime(2020, 1, 1, tzinfo=TZ))
        for unit in units for code, level in map(_procedure, range(PROCEDURES))
    ]
    agg = Aggregates(registry, Catalogue(catalogue))
    states: dict[str, Any] = {}
    views: dict[str, Any] = {}
    latest: dict[bytes, UnitFigures] = {}
    final_versions: dict[str, tuple[str, str]] = {}
    n_steps = max(1, spec.updates)
    per_step = -(-len(snapshots) // n_steps) if snapshots else 0
    steps: list[Step] = []
    for k in range(n_steps):
        outbox: list[tuple[bytes, bytes]] = []
        dirty: set[tuple[int, str]] = set()
        for _, _, payload in snapshots[k * per_step : (k + 1) * per_step]:
            ev = normalize_motcua(_raw(payload, now), registry)
            ma = ev.ma_ho_so
            assert ma is not None
            partition = zlib.crc32(ma.encode()) % spec.partitions
            new_state = apply(states.get(ma), ev)
            if new_state is None:
                continue
            new_view = view(new_state)
            for unit in agg.apply_change(partition, views.get(ma), new_view):
                dirty.add((partition, unit))
            states[ma], views[ma] = new_state, new_view
            record = outbox_record(ev, now)
            national = orjson.loads(record)["dossier"]
            final_versions[ma] = (national["NgayCapNhat"], national["TrangThaiHoSo"])
            outbox.append((ma.encode(), record))
        partials = []
        for partition, unit in sorted(dirty):
            fig = agg.unit_figures(partition, unit, now)
            latest[fig.key()] = fig
            partials.append((fig.key(), fig.model_dump_json().encode()))
        steps.append(Step(outbox, partials))
    return Backlog(now=now, units=units, steps=steps, catalogue=catalogue, final_versions=final_versions,
                   final_counts=merge_counts(latest.values()), registry=registry)


def expected_body(backlog: Backlog, ky: str, unit: str) -> dict[str, Any] | None:
    """The statistics body of ``unit`` for ``ky`` from the final partials, without its stamp."""
    counts = backlog.final_counts.get(unit)
    if counts is None:
        return None
    try:
        from streams.domain.periods import period_bounds

        last_day = period_bounds(ky)[1] - timedelta(days=1)
    except ValueError:
        return None
    known = backlog.registry.lookup(unit, on=last_day) or backlog.registry.lookup(unit)
    if known is None:
        return None
    body = stats_body(ky, known, counts, Catalogue(backlog.catalogue), backlog.now)
    return _figures(body)


def _figures(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in STAMP_FIELDS}


# --------------------------------------------------------------------------- the portal


class PortalServer:
    """The portal simulator on 127.0.0.1, served by its own event loop in a thread of this process."""

    def __init__(self, rate: float | None) -> None:
        # A short request log: the counters (by route and status) are kept in full anyway, and a
        # log of 100-dossier bodies would cost the portal more than answering them.
        self.world = World(SimClock.live(), request_log_size=500)
        kwargs: dict[str, Any] = {} if rate is None else {"rate_limit_per_s": rate}
        self.app = make_portal_app(self.world, Faults(), {PORTAL_CLIENT: PORTAL_SECRET}, **kwargs)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="portal-simulator", daemon=True)
        self._error: BaseException | None = None

    @property
    def rate_limit_per_s(self) -> float:
        from hub.simulators import portal

        return float(self.app[portal._STATE].rate_limit_per_s)

    def __enter__(self) -> PortalServer:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the portal simulator did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except Exception as exc:  # noqa: BLE001 - whatever stopped the server is reported by __enter__
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server  # aiohttp exposes the bound port only here
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def counters(self) -> dict[str, Any]:
        """Requests received: total, by route, by status (429s included)."""
        stats = self.app[SIM_CONTEXT].stats
        return {"total": int(stats.requests), "by_route": dict(stats.by_route), "by_status": dict(stats.by_status)}

    def holdings(self) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]], int]:
        """(MaHoSo -> (NgayCapNhat, TrangThaiHoSo) held, (ky, unit) -> latest body, statistics PUTs so far)."""
        w = self.world
        with w.lock:
            held = {ma: (e["snapshot"].get("NgayCapNhat"), e["snapshot"].get("TrangThaiHoSo"))
                    for ma, e in w.portal_dossiers.items()}
            stats = dict(w.portal_stats)
            puts = len(w.portal_stats_history)
        return held, stats, puts

    def puts_per_key(self) -> Counter[tuple[str, str]]:
        with self.world.lock:
            return Counter((str(b.get("ky")), str(b.get("ma_don_vi"))) for b in self.world.portal_stats_history)


# --------------------------------------------------------------------------- the portal sync under test


def _toml_value(text: str) -> str:
    """``text`` as a TOML value: itself when it parses as one (numbers, booleans, quoted strings), else quoted."""
    try:
        tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return json.dumps(text)
    return text


_SCHEMA_PROBE = (
    "import json; from hub.config import PortalSettings, TopicSettings; "
    "print(json.dumps({'topics': TopicSettings().model_dump(), 'portal': sorted(PortalSettings.model_fields)}))"
)


def tree_schema(tree: Path | None) -> dict[str, Any]:
    """The topic defaults and ``[portal]`` setting names of a checkout (another revision may differ)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _SCHEMA_PROBE], cwd=tree or ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    schema: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return schema


def write_sync_config(
    run_dir: Path, bootstrap: str, portal_port: int, spec: BacklogSpec, schema: dict[str, Any] | None = None,
) -> tuple[Path, Settings, dict[str, str]]:
    """A hub TOML for the portal sync under test: fresh topics and group, the portal simulator, signed outbox.

    ``schema`` (:func:`tree_schema`) is that of the checkout the sync runs from: only the topics and
    ``[portal]`` settings it knows are written, so one command line serves a baseline revision that
    predates a setting (the settings it does not know are returned, and left out).
    """
    uid = uuid.uuid4().hex[:8]
    prefix = f"bench-backlog-{uid}"
    defaults = schema["topics"] if schema else TopicSettings().model_dump()
    known = set(schema["portal"]) if schema else None
    names = {attr: f"{prefix}.{default}" for attr, default in defaults.items()}
    topics = "\n".join(f'{k} = "{v}"' for k, v in names.items())
    chosen = {k: v for k, v in spec.portal_settings.items() if known is None or k in known}
    ignored = {k: v for k, v in spec.portal_settings.items() if k not in chosen}
    portal = "\n".join(f"{k} = {_toml_value(v)}" for k, v in chosen.items())
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"hub-backlog-{uid}.toml"
    path.write_text(
        f"""
# The backlog benchmark: its own broker topics, the portal simulator, the demo profile's public secrets.
profile = "demo"

[kafka]
bootstrap_servers = "{bootstrap}"
partitions = {spec.partitions}
client_id_prefix = "{prefix}"
outbox_signing_key = "{secrets.token_hex(32)}"

[embedded_broker]
enabled = false

[worker]
app_id = "{prefix}"
data_dir = "{(run_dir / f"worker-{uid}").as_posix()}"
web_port = {free_port()}

[connector_runner]
port = {free_port()}

[portal_sync]
port = {free_port()}

[portal]
enabled = true
base_url = "http://127.0.0.1:{portal_port}"
{portal}

[portal.auth]
kind = "oauth2"
client_id = "{PORTAL_CLIENT}"
client_secret = "{PORTAL_SECRET}"

[topics]
{topics}
""",
        encoding="utf-8",
    )
    settings = load_settings(path)
    # The topics that checkout has; the sync creates any it needs besides (``push run`` does).
    ensure_topics(settings.kafka, [t for t in hub_topics(settings) if t.name in names.values()])
    return path, settings, ignored


def _create_catalogue_topic(settings: Settings, backlog: Backlog) -> None:
    """The worker's catalogue-table changelog (faust creates it; here the bench plays the worker)."""
    from kafka.admin import NewTopic

    from streams.agents.dossier_state import catalogue_key
    from streams.topics import CATALOGUE_TABLE, changelog_topic

    topic = changelog_topic(settings, CATALOGUE_TABLE)
    parts = settings.kafka.partitions
    ensure_topics(settings.kafka, [NewTopic(topic, parts, settings.kafka.replication_factor,
                                            topic_configs={"cleanup.policy": "compact"})])
    prod = producer(settings.kafka, "bench-catalogue", linger_ms=20)
    try:
        for entry in backlog.catalogue:  # broadcast: one row per partition, as the worker's table holds it
            body = entry.model_dump(mode="json")
            for p in range(parts):
                prod.send(topic, key=catalogue_key(p, entry), value=orjson.dumps({"p": p, "o": 0, "e": body}),
                          partition=p)
        prod.flush()
    finally:
        prod.close()


class SyncProc(ChildProcess):
    """``dvc-hub push run`` of one checkout (``tree``; default this one), read through its /healthz."""

    def __init__(self, config: Path, run_dir: Path, name: str, port: int, tree: Path | None = None) -> None:
        argv = [sys.executable, "-m", "hub.cli", "--config", str(config), "push", "run"]
        # ``python -m`` puts the working directory first on sys.path, ahead of this editable install.
        super().__init__(argv, run_dir / f"push-{name}.log", cwd=tree or ROOT, die_with_parent=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        self.http.close()

    def health(self) -> dict[str, Any] | None:
        """The JSON of ``GET /healthz`` (whatever its status: a sync may answer 503 while behind), or None."""
        try:
            r = self.http.get("/healthz")
        except httpx.HTTPError:
            return None
        with contextlib.suppress(ValueError):
            body = r.json()
            return body if isinstance(body, dict) else {"status_code": r.status_code}
        return {"status_code": r.status_code}


# --------------------------------------------------------------------------- the run


class _Feeder(threading.Thread):
    """Writes the steps of a backlog at their times: outbox items (signed), then partials."""

    def __init__(self, settings: Settings, backlog: Backlog, feed_s: float) -> None:
        super().__init__(name="backlog-feeder", daemon=True)
        self.settings, self.backlog, self.feed_s = settings, backlog, feed_s
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        s = self.settings
        key = s.kafka.outbox_key()
        prod = producer(s.kafka, "bench-feeder", linger_ms=20, batch_size=512 * 1024)
        steps = self.backlog.steps
        try:
            t0 = self.started_at = time.monotonic()
            for k, step in enumerate(steps):
                at = t0 + (self.feed_s * k / (len(steps) - 1) if len(steps) > 1 else 0.0)
                time.sleep(max(0.0, at - time.monotonic()))
                for rkey, value in step.outbox:
                    prod.send(s.topics.outbox, key=rkey, value=value, headers=sign(key, rkey, value))
                prod.flush()  # the items of a step before the figures that count them, as the worker does
                for rkey, value in step.partials:
                    prod.send(s.topics.partials, key=rkey, value=value)
                prod.flush()
            self.ended_at = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - whatever stopped the feed is raised by the run loop
            self.error = exc
        finally:
            prod.close()


def _dist(values: list[int]) -> dict[str, float]:
    if not values:
        return {"max": 0, "mean": 0.0, "p95": 0, "min": 0}
    return {"max": max(values), "mean": round(statistics.fmean(values), 2),
            "p95": int(percentile([float(v) for v in values], 95)), "min": min(values)}


def _month(d: date) -> str:
    return f"{d.year}-{d.month:02d}"


def run_backlog(
    bootstrap: str, run_dir: Path, spec: BacklogSpec, backlog: Backlog, *, name: str = "current",
    tree: Path | None = None, sample_s: float = 0.5,
) -> dict[str, Any]:
    """Drain ``backlog`` through the portal sync of ``tree`` (default: this checkout) and the portal simulator."""
    current_month = _month(datetime.now(TZ).date())
    required = {(current_month, u) for u, periods in backlog.periods_with_figures().items() if current_month in periods}
    expected_cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    def expected(key: tuple[str, str]) -> dict[str, Any] | None:
        if key not in expected_cache:
            expected_cache[key] = expected_body(backlog, key[0], key[1])
        return expected_cache[key]

    samples: list[tuple[float, int, int, int]] = []
    health_samples: list[tuple[float, bool, Any]] = []
    with PortalServer(spec.rate) as portal:
        cfg, settings, ignored = write_sync_config(run_dir, bootstrap, portal.port, spec, tree_schema(tree))
        if ignored and tree is None:
            raise SystemExit(f"--set: this checkout has no [portal] setting {', '.join(sorted(ignored))}; "
                             "see docs/configuration.md for the names")
        _create_catalogue_topic(settings, backlog)
        sync = SyncProc(cfg, run_dir, name, settings.portal_sync.port, tree)
        feeder = _Feeder(settings, backlog, spec.feed_s)
        sync.start()
        error: str | None = None
        try:
            ready_by = time.monotonic() + 120
            while sync.health() is None and time.monotonic() < ready_by:
                if not sync.alive():
                    raise RuntimeError(f"the portal sync exited at start:\n{sync.tail()}")
                time.sleep(0.25)
            # The sync serves /healthz before its outbox consumer joins; give it a moment to be ready.
            time.sleep(1.0)
            feeder.start()
            while feeder.started_at is None:
                time.sleep(0.01)
            t0 = feeder.started_at
            deadline = t0 + spec.timeout_s
            drained_at: float | None = None
            matched_since: float | None = None
            last_put_at: float | None = None
            last_puts = 0
            mismatched: list[tuple[str, str]] = []
            while True:
                now = time.monotonic()
                held, stats, puts = portal.holdings()
                if puts != last_puts:
                    last_puts, last_put_at = puts, now
                at_newest = sum(1 for ma, v in backlog.final_versions.items() if held.get(ma) == v)
                samples.append((round(now - t0, 2), at_newest, puts, portal.counters()["total"]))
                fed = feeder.ended_at is not None
                if fed and drained_at is None and at_newest == len(backlog.final_versions):
                    drained_at = now
                mismatched = [k for k, body in stats.items() if _figures(body) != expected(k)]
                mismatched += [k for k in required if k not in stats]
                matched_since = (matched_since or now) if fed and not mismatched else None
                # /healthz every 2 s: the sync logs each request, and its claim changes slowly.
                health = sync.health() if len(samples) % max(1, round(2.0 / sample_s)) == 1 else None
                if health is not None and "caught_up" in health:
                    behind = not (drained_at is not None and matched_since is not None)
                    health_samples.append((round(now - t0, 2), behind, health.get("caught_up")))
                quiet = last_put_at is None or now - last_put_at >= spec.quiet_s
                if drained_at is not None and matched_since is not None and quiet:
                    break
                if feeder.error is not None:
                    raise RuntimeError(f"feeding the backlog failed: {feeder.error!r}")
                if not sync.alive():
                    error = f"the portal sync exited:\n{sync.tail()}"
                    break
                if now >= deadline:
                    error = f"not converged within {spec.timeout_s:g} s"
                    break
                time.sleep(sample_s)
            end = time.monotonic()
        finally:
            sync.stop(30)
        counters = portal.counters()
        per_key = portal.puts_per_key()
        held, stats, puts = portal.holdings()
    routes, status = counters["by_route"], counters["by_status"]
    put_counts = list(per_key.values())
    claims = [c for _, behind, c in health_samples if behind and c is True]
    caught_up_at = next((t for t, behind, c in health_samples if not behind and c is True), None)
    result: dict[str, Any] = {
        "name": name,
        "converged": error is None,
        "error": error,
        "hub_rate_limit_per_s": settings.portal.rate_limit_per_s,
        "portal_settings_ignored": ignored,
        "portal_rate_limit_per_s": portal.rate_limit_per_s,
        "dossiers_drained_s": round(drained_at - t0, 1) if drained_at is not None else None,
        "dossiers_drained_after_feed_s": (round(drained_at - feeder.ended_at, 1)
                                          if drained_at is not None and feeder.ended_at is not None else None),
        "stats_converged_s": round(matched_since - t0, 1) if matched_since is not None else None,
        "last_stats_put_s": round(last_put_at - t0, 1) if last_put_at is not None else None,
        "feed_s": round(feeder.ended_at - t0, 1) if feeder.ended_at is not None else None,
        "run_s": round(end - t0, 1),
        "requests": {
            "total": counters["total"],
            "stats_puts": routes.get(ROUTE_STATS, 0),
            "dossier_posts": routes.get(ROUTE_DOSSIERS, 0),
            "progress_posts": routes.get(ROUTE_PROGRESS, 0),
            "lookups": routes.get(ROUTE_LOOKUP, 0),
            "tokens": routes.get(ROUTE_TOKEN, 0),
            "429": status.get("429", 0),
            "by_status": status,
            "by_route": routes,
        },
        "stats": {
            "accepted_puts": puts,
            "keys": len(per_key),
            "puts_per_key": _dist(put_counts),
            "periods_held": sorted({k[0] for k in stats}),
            "mismatched_keys": [list(k) for k in sorted(mismatched)[:20]],
            "mismatched_count": len(mismatched),
            "required_keys": len(required),
            "worst_keys": [[k[0], k[1], n] for k, n in per_key.most_common(5)],
        },
        "dossiers": {
            "expected": len(backlog.final_versions),
            "held": len(held),
            "at_newest": sum(1 for ma, v in backlog.final_versions.items() if held.get(ma) == v),
        },
        "healthz": {
            "reports_caught_up": bool(health_samples),
            "caught_up_first_s": caught_up_at,
            "caught_up_while_behind": len(claims),
            "samples": len(health_samples),
        },
        "samples": samples[:: max(1, len(samples) // 400)],
        "log": str(sync.log_path),
    }
    result["target"] = {
        "max_puts_per_key": TARGET_MAX_PUTS_PER_KEY,
        "drain_after_feed_s": TARGET_DRAIN_AFTER_FEED_S,
        "met": bool(
            result["converged"] and result["stats"]["puts_per_key"]["max"] <= TARGET_MAX_PUTS_PER_KEY
            and (result["dossiers_drained_after_feed_s"] or 0.0) <= TARGET_DRAIN_AFTER_FEED_S
        ),
    }
    return result


def backlog_bench(bootstrap: str, run_dir: Path, spec: BacklogSpec, *, baseline: str | None = None) -> dict[str, Any]:
    """Build the backlog once; drain it through this checkout's portal sync, then (optionally) the baseline's."""
    from bench.profile import checkout, revision

    t = time.monotonic()
    backlog = build_backlog(spec, datetime.now(TZ))
    built_s = time.monotonic() - t
    periods = backlog.periods_with_figures()
    n_periods = [len(p) for p in periods.values()]
    runs = {"current": run_backlog(bootstrap, run_dir, spec, backlog, name="current")}
    runs["current"]["revision"] = revision("HEAD")
    if baseline is not None:
        with checkout(baseline) as tree:
            runs["baseline"] = run_backlog(bootstrap, run_dir, spec, backlog, name="baseline", tree=tree)
        runs["baseline"]["revision"] = revision(baseline)
    spec_dict = asdict(spec)
    return {
        "benchmark": "backlog",
        "input": {
            **spec_dict,
            "outbox_items": backlog.outbox_items,
            "partial_records": backlog.partial_records,
            "dossiers_fed": len(backlog.final_versions),
            "units_fed": len(backlog.units),
            "periods_with_figures_per_unit": _dist(n_periods),
            "built_s": round(built_s, 1),
        },
        "runs": runs,
    }
