"""Acceptance: the portal sync through a compressed fault schedule, against the real broker and the portal simulator.

Schedule (each phase a few seconds, outbox items arriving in waves throughout):
5xx bursts -> 429 + resets after storing -> (crash and restart of the service) -> timeouts, token
revocation, "system error" bodies -> a maintenance window (timeouts) -> quiet. Afterwards the portal
must hold exactly the newest version of every dossier, every progress row exactly once, the latest
statistics per (period, unit), no name or phone, and the breaker must have opened and closed
without a hot loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from hub.config import (
    HttpEndpointSettings,
    KafkaSettings,
    OAuth2ClientCredentials,
    PortalSettings,
    RetrySettings,
    Settings,
    TopicSettings,
    WorkerSettings,
)
from hub.deadletter import DeadLetter
from hub.simulators.clock import TZ, SimClock
from hub.simulators.faults import Faults
from hub.simulators.portal import make_portal_app, revoke_all_tokens
from hub.simulators.world import World
from hub.sync.metrics import SyncMetrics
from hub.sync.outbox import portal_dossier, stats_digest
from hub.sync.service import SyncService
from hub.sync.signing import sign
from schemas.events import CatalogueEntry, Level
from schemas.figures import OutboxDossier, UnitFigures, merge_counts
from schemas.units import default_registry
from streams.domain.aggregates import Catalogue
from streams.domain.report import stats_body
from streams.topics import CATALOGUE_TABLE, changelog_topic

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPORT_NOW = datetime(2021, 3, 20, 10, 0, tzinfo=TZ)
STATUSES = ["2", "4", "5", "4", "9", "10"]
UNITS = ["14767", "14770", "380"]
TRAP_NAME = "Nguyễn Văn Bẫy"
TRAP_PHONE = "0912345678"
PROC = "1.003560.000.00.00.H56"


def make_item(ma: str, version: int, unit: str) -> OutboxDossier:
    rows = [
        {"TrangThai": STATUSES[i], "ThoiDiemXuLy": f"2021031{i}0900{i:02d}", "PhongBanXuLy": "Bộ phận một cửa",
         "NoiDungXuLy": f"Bước {i + 1}"}
        for i in range(version)
    ]
    dossier = {
        "MaHoSo": ma, "PhienBan": version, "MaTTHC": PROC, "MaDonVi": unit, "MucDo": 3,
        "KenhThucHien": "2", "TrangThaiHoSo": rows[-1]["TrangThai"], "NgayTiepNhan": "20210310090000",
        "NgayHenTra": "20210320170000", "NgayKetThucXuLy": "", "QuaTrinhXuLy": rows, "IdHash": "h1:abc",
    }
    return OutboxDossier(
        item_id=f"dossier:{ma}:{version}", ma_ho_so=ma, version=version,
        created_at=datetime.now(UTC), dossier=dossier, progress=rows,
    )


def counts(scale: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for period in ("2021-03", "2021-Q1", "2021"):
        out[f"received|MOT_PHAN|TRUC_TUYEN|{period}|"] = 10 * scale
        out[f"received|MOT_PHAN|TRUC_TIEP|{period}|"] = 4 * scale
        out[f"finished_early|MOT_PHAN|TRUC_TUYEN|{period}|"] = 3 * scale
        out[f"finished_late|MOT_PHAN|TRUC_TUYEN|{period}|"] = scale
        out[f"open_end|TOAN_TRINH|TRUC_TUYEN|{period}|"] = 2 * scale
        out[f"received|TOAN_TRINH|TRUC_TUYEN|{period}|"] = 5 * scale
        out[f"procedure_dossiers|MOT_PHAN|TRUC_TUYEN|{period}|{PROC}"] = 10 * scale
    return out


def catalogue_entry(unit: str, proc: str, muc_do: int) -> CatalogueEntry:
    return CatalogueEntry(event_id=f"cat:{unit}:{proc}", source="motcua", unit_code=unit, procedure_code=proc,
                          level_raw=muc_do, level=Level.TOAN_TRINH if muc_do == 4 else Level.MOT_PHAN,
                          valid_from=datetime(2020, 1, 1, tzinfo=TZ))


async def write_catalogue(producer: AIOKafkaProducer, topic: str, entries: list[CatalogueEntry]) -> None:
    """As the worker's catalogue table does: one changelog record per entry and partition (broadcast)."""
    for entry in entries:
        for partition in (0, 1):
            key = f"{partition}|{entry.unit_code}|{entry.procedure_code}|{entry.valid_from.isoformat()}".encode()
            value = json.dumps({"p": partition, "o": 0, "e": entry.model_dump(mode="json")}).encode()
            await producer.send_and_wait(topic, value, key=key, partition=partition)


#: The outbox HMAC key the test's writers share with the portal sync (the worker's role here).
OUTBOX_KEY = "e2e-outbox-signing-key-0123456789abcdef"

#: The catalogue the worker holds before the sync starts, and what it learns while the sync runs.
CATALOGUE_AT_START = [catalogue_entry("14767", PROC, 3), catalogue_entry("14767", "P-4A", 4),
                      catalogue_entry("14770", PROC, 3)]
CATALOGUE_LATER = [catalogue_entry("14767", "P-4B", 4), catalogue_entry("14767", "P-3C", 3),
                   catalogue_entry("14770", "P-4A", 4)]


async def test_portal_sync_exactly_once_through_faults(kafka_broker, kafka_topic):
    started = time.monotonic()
    world = World(SimClock.live())
    faults = Faults(seed=11)
    app = make_portal_app(world, faults, {"dvc-hub": "portal-secret"}, rate_limit_per_s=20)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    topics = TopicSettings(
        outbox=kafka_topic(partitions=3), sync_state=kafka_topic(compacted=True),
        partials=kafka_topic(compacted=True), dead_letter=kafka_topic(), audit=kafka_topic(),
    )
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, outbox_signing_key=SecretStr(OUTBOX_KEY)),
        topics=topics,
        portal=PortalSettings(
            base_url=f"http://127.0.0.1:{port}",
            auth=OAuth2ClientCredentials(client_id="dvc-hub", client_secret=SecretStr("portal-secret")),
            batch_size=10, rate_limit_per_s=15, stats_debounce_s=0.3, stats_interval_s=3600,
            breaker_failure_threshold=3, breaker_reset_s=1.5,
            retry=RetrySettings(max_attempts=12, base_delay_s=0.05, max_delay_s=1.0, timeout_s=1.0),
        ),
        portal_sync=HttpEndpointSettings(port=0),
        worker=WorkerSettings(app_id=f"e2e-sync-{uuid.uuid4().hex[:8]}"),
    )
    # The worker's catalogue table changelog (faust creates it; here the test plays the worker).
    catalogue_topic = changelog_topic(settings, CATALOGUE_TABLE)
    create_compacted(kafka_broker.bootstrap, catalogue_topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    await write_catalogue(producer, catalogue_topic, CATALOGUE_AT_START)

    dossiers = {f"H56.{UNITS[n % 3]}-210310-{n:05d}": (UNITS[n % 3], 1 + n % 5) for n in range(90)}
    bad = "H56.14767-210310-99999"
    sent: list[OutboxDossier] = []

    async def wave(up_to: int, stale: bool = False) -> None:
        for ma, (unit, final) in dossiers.items():
            for version in range(1, min(up_to, final) + 1):
                item = make_item(ma, version, unit)
                if ma.endswith("00007"):  # a trap: names and phones must never leave the hub
                    item.dossier["ChuHoSo"] = TRAP_NAME
                    item.dossier["SoDienThoai"] = TRAP_PHONE
                if version >= up_to - 1 or stale:  # earlier versions again: duplicates
                    sent.append(item)
                    value = item.model_dump_json().encode()
                    await producer.send(topics.outbox, value, key=ma.encode(),
                                        headers=sign(OUTBOX_KEY.encode(), ma.encode(), value))
        await producer.flush()

    async def partials(scale_0: int) -> None:
        now = datetime.now(UTC)
        for part, unit, scale in ((0, "14767", scale_0), (1, "14767", 1), (0, "14770", 2)):
            p = UnitFigures(partition=part, unit_code=unit, unit_tier="XA", generated_at=now, counts=counts(scale))
            await producer.send_and_wait(topics.partials, p.model_dump_json().encode(), key=p.key())

    def start_service(metrics: SyncMetrics) -> tuple[SyncService, asyncio.Event, asyncio.Task[None]]:
        service = SyncService(settings, now=lambda: REPORT_NOW, metrics=metrics, group_id="e2e-portal-sync")
        stop = asyncio.Event()
        return service, stop, asyncio.create_task(service.run(stop))

    async def traffic(at_least: int, min_s: float = 2.0, max_s: float = 8.0) -> None:
        """Let a phase last until the portal saw ``at_least`` requests in it (bounded)."""
        before, t0 = len(world.requests(app="portal")), time.monotonic()
        while time.monotonic() - t0 < max_s:
            if time.monotonic() - t0 >= min_s and len(world.requests(app="portal")) - before >= at_least:
                return
            await asyncio.sleep(0.2)

    metrics_a = SyncMetrics()
    service_a, _stop_a, task_a = start_service(metrics_a)
    # Phase A: 5xx bursts, the bad dossier, the first statistics.
    faults.update({"p_5xx": 0.35})
    bad_item = make_item(bad, 1, "14767")
    bad_item.dossier["TrangThaiHoSo"] = "99"
    bad_value = bad_item.model_dump_json().encode()
    await producer.send_and_wait(topics.outbox, bad_value, key=bad.encode(),
                                 headers=sign(OUTBOX_KEY.encode(), bad.encode(), bad_value))
    await wave(2)
    await partials(1)
    await traffic(20)
    # Phase B: 429s with Retry-After, answers lost after the portal stored the push.
    faults.update({"p_5xx": 0.0, "p_429": 0.25, "retry_after_s": 1, "p_reset_after_store": 0.3})
    await wave(3, stale=True)
    await traffic(20)
    # Crash: the service dies without a clean shutdown; a new one takes over from the committed offsets.
    task_a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task_a
    metrics = SyncMetrics()
    service, stop, task = start_service(metrics)
    # Phase C: timeouts, revoked tokens, "system error" bodies.
    faults.update({"p_429": 0.0, "p_reset_after_store": 0.1, "p_timeout": 0.15, "timeout_s": 2.0,
                   "timeout_drop": True, "revoke_every": 7, "p_error_body": 0.1})
    await wave(4)
    # The worker learns more procedures while the sync runs: the sync must follow its changelog.
    await write_catalogue(producer, catalogue_topic, CATALOGUE_LATER)
    await traffic(15)
    revoke_all_tokens(app)
    await traffic(10, min_s=1.0)
    # Phase C lasts until its "system error" body met a push. Statistics are coalesced now, so a
    # phase can hold few requests, and a phase of fixed length left that fault to chance (it missed
    # about one run in seven). Changed figures make the statistics lane push again.
    for scale in range(4, 10):
        if app_stats(app)["error_body"]:
            break
        await partials(scale)
        await traffic(6, min_s=6.0, max_s=12.0)
    # Phase D: a maintenance window in which every request hangs; the figures change meanwhile.
    faults.update({"p_timeout": 0.0, "p_reset_after_store": 0.0, "revoke_every": 0, "p_error_body": 0.0,
                   "maintenance_mode": "timeout", "maintenance_s": 7.0, "timeout_s": 2.0})
    await wave(5)
    await partials(3)
    await asyncio.sleep(8)
    maintenance_requests = sum(1 for r in world.requests(app="portal") if r.get("fault") == "maintenance")
    faults.update({"maintenance_s": 0.0})

    # Expected end state.
    newest = {ma: make_item(ma, final, unit) for ma, (unit, final) in dossiers.items()}
    final_partials = [
        UnitFigures(partition=pt, unit_code=u, unit_tier="XA", generated_at=datetime.now(UTC), counts=counts(s))
        for pt, u, s in ((0, "14767", 3), (1, "14767", 1), (0, "14770", 2))
    ]
    merged = merge_counts(final_partials)
    registry = default_registry()
    catalogue = Catalogue(CATALOGUE_AT_START + CATALOGUE_LATER)
    expected_bodies = {
        (ky, unit): stats_body(ky, registry.lookup(unit), c, catalogue, REPORT_NOW)  # type: ignore[arg-type]
        for unit, c in merged.items() for ky in ("2021-03", "2021-Q1", "2021")
    }
    expected_stats = {k: stats_digest(v) for k, v in expected_bodies.items()}
    expected_rows = {(ma, r["TrangThai"], r["ThoiDiemXuLy"]) for ma, item in newest.items() for r in item.progress}

    def done() -> bool:
        with world.lock:
            held = {ma: e["snapshot"].get("PhienBan") for ma, e in world.portal_dossiers.items()}
            rows = {(r["MaHoSo"], r["TrangThai"], r["ThoiDiemXuLy"]) for r in world.portal_progress}
            stats = {k: stats_digest(v) for k, v in world.portal_stats.items()}
        return (held == {ma: i.version for ma, i in newest.items()} and rows == expected_rows
                and stats == expected_stats)

    deadline = time.monotonic() + 60
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)
    idle_before = len(world.requests(app="portal"))
    await asyncio.sleep(1.5)
    idle_requests = len(world.requests(app="portal")) - idle_before
    stop.set()
    await asyncio.wait_for(task, 30)

    # --- the portal holds exactly the newest version of every dossier (and never the bad one)
    assert set(world.portal_dossiers) == set(newest), "dossiers missing or extra at the portal"
    for ma, item in newest.items():
        entry = world.portal_dossiers[ma]
        assert entry["snapshot"] == portal_dossier(item.dossier, send_id_number=False), ma
        assert entry["changes"] <= item.version, f"{ma}: an older version overwrote a newer one"
    # --- every progress row exactly once
    arrived = Counter((r["MaHoSo"], r["TrangThai"], r["ThoiDiemXuLy"]) for r in world.portal_progress)
    assert set(arrived) == expected_rows
    assert max(arrived.values()) == 1, f"duplicated progress rows: {[k for k, v in arrived.items() if v > 1][:5]}"
    # --- the latest statistics per (period, unit) are the domain's own body, with the live catalogue
    assert {k: stats_digest(v) for k, v in world.portal_stats.items()} == expected_stats
    for key, body in expected_bodies.items():
        assert world.portal_stats[key] == body, key
    # 14767 offers P1 and P-3C at level 3, P-4A and P-4B at level 4 (half of it learnt mid-run);
    # only P1 received dossiers, so three offered procedures had none.
    assert world.portal_stats[("2021-Q1", "14767")]["thu_tuc"] == {
        "muc_do_3": 2, "muc_do_4": 2, "khong_phat_sinh_ho_so": 3}
    assert world.portal_stats[("2021-03", "14770")]["thu_tuc"] == {
        "muc_do_3": 1, "muc_do_4": 1, "khong_phat_sinh_ho_so": 1}
    assert service.catalogue.records == 2 * len(CATALOGUE_AT_START + CATALOGUE_LATER)
    # --- no body applied twice in a row
    history: dict[tuple[str, str], list[str]] = {}
    for body in world.portal_stats_history:
        history.setdefault((body["ky"], body["ma_don_vi"]), []).append(stats_digest(body))
    for key, digests in history.items():
        assert all(a != b for a, b in itertools.pairwise(digests)), f"{key}: same statistics PUT twice"
    # --- no personal data ever left the hub
    for request in world.requests(app="portal"):
        text = json.dumps(request.get("body"), ensure_ascii=False)
        assert TRAP_NAME not in text
        assert TRAP_PHONE not in text
        assert "ChuHoSo" not in text
        assert "SoDienThoai" not in text
        assert "IdHash" not in text
    # --- the bad dossier is a dead letter, once per delivery, with the portal's reason
    letters = await read_all(kafka_broker.bootstrap, topics.dead_letter)
    parsed = [DeadLetter.parse(v) for v in letters]
    assert len(parsed) == 1, "the refused dossier is dead-lettered once, even across the restart"
    assert {d.event_id for d in parsed} == {f"dossier:{bad}:1"}
    assert all(d.stage == "portal_sync" and d.reason == "portal_rejected" for d in parsed)
    assert bad not in world.portal_dossiers
    # --- the faults really happened
    injected = app_stats(app)
    for fault in ("5xx", "429", "reset_after_store", "timeout", "maintenance", "error_body"):
        assert injected[fault] > 0, f"fault {fault} never fired: {dict(injected)}"
    # Every lost answer was settled by a look-up or by the portal replaying its first answer.
    lookups = sum(1 for r in world.requests(app="portal") if r["method"] == "GET")
    assert lookups + injected["idempotent_replay"] > 0
    statuses = Counter(r["status"] for r in world.requests(app="portal"))
    assert statuses[401] > 0, "no token was revoked"
    # --- breaker opened and closed; no hot loop in the outage or when idle
    assert metrics.value("dvchub_portal_breaker_transitions_total", to="open") >= 1
    assert metrics.value("dvchub_portal_breaker_transitions_total", to="closed") >= 1
    assert metrics.value("dvchub_portal_breaker_state") == 0
    assert maintenance_requests <= 20, f"{maintenance_requests} requests during a 7 s outage: a hot loop"
    assert idle_requests == 0
    # --- no 401 storm: one token request per 401 at most (plus the first token of each service)
    # (token requests that themselves met an injected fault do not count: they issued nothing)
    tokens = sum(1 for r in world.requests(app="portal", path_prefix="/oauth2/token")
                 if r["status"] == 200 and r["fault"] is None)
    assert tokens <= statuses[401] + 2, (tokens, statuses[401])
    assert metrics.value("dvchub_portal_pushes_total", kind="dossier", outcome="ok") > 0
    print(f"\nportal requests: {sum(statuses.values())} {dict(statuses)}; injected: {dict(injected)}; "
          f"maintenance requests: {maintenance_requests}; elapsed {time.monotonic() - started:.1f}s")

    await producer.stop()
    await runner.cleanup()
    assert service_a is not service


def create_compacted(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="dvc-hub-tests")
    try:
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()


def app_stats(app: web.Application) -> Counter[str]:
    from hub.simulators._http import SIM_CONTEXT

    return app[SIM_CONTEXT].stats.injected


async def read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        out: list[bytes] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch and out:
                break
            out.extend(r.value for recs in batch.values() for r in recs if r.value is not None)
        return out
    finally:
        await consumer.stop()



async def test_dead_letter_replay_is_audited_and_idempotent(kafka_broker, kafka_topic):
    from hub.commands.dlq import replay

    world = World(SimClock.live())
    app = make_portal_app(world, Faults(seed=3), {"dvc-hub": "portal-secret"})
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    topics = TopicSettings(
        outbox=kafka_topic(partitions=2), sync_state=kafka_topic(compacted=True),
        partials=kafka_topic(compacted=True), dead_letter=kafka_topic(), audit=kafka_topic(),
    )
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, outbox_signing_key=SecretStr(OUTBOX_KEY)),
        topics=topics,
        portal=PortalSettings(base_url=f"http://127.0.0.1:{port}",
                              auth=OAuth2ClientCredentials(client_id="dvc-hub",
                                                           client_secret=SecretStr("portal-secret")),
                              retry=RetrySettings(base_delay_s=0.05, max_delay_s=0.5, timeout_s=2.0)),
        portal_sync=HttpEndpointSettings(port=0),
    )
    # A dossier the portal once refused (say, before a mapping fix) sits in the dead-letter topic.
    ma = "H56.14767-210310-00500"
    item = make_item(ma, 3, "14767")
    letter = DeadLetter.make(stage="portal_sync", reason="portal_rejected", detail="refused", source="portal",
                             topic=topics.outbox, partition=0, offset=0, event_id=item.item_id,
                             payload=item.model_dump(mode="json"))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait(topics.dead_letter, letter.value(), key=letter.key(), headers=letter.headers())
    # Forged outbox items (anyone with write access to the topic, without the hub's key): never pushed.
    forged = {f"H56.14767-210310-0090{n}": make_item(f"H56.14767-210310-0090{n}", 1, "14767") for n in range(2)}
    for (fake_ma, fake), headers in zip(forged.items(), ([], sign(b"not-the-hub-key" * 3, b"x", b"y")), strict=True):
        fake.dossier["ChuHoSo"] = TRAP_NAME
        value = fake.model_dump_json().encode()
        await producer.send_and_wait(topics.outbox, value, key=fake_ma.encode(), headers=headers)
    await producer.stop()

    service = SyncService(settings, now=lambda: REPORT_NOW, group_id="e2e-replay")
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await asyncio.wait_for(service.ready.wait(), 30)
    assert await asyncio.to_thread(replay, settings, [0], None, False) == (1, 0)
    assert await asyncio.to_thread(replay, settings, [0], None, False) == (0, 1)  # audited: skipped
    assert await asyncio.to_thread(replay, settings, [0], None, True) == (1, 0)  # forced: a real duplicate
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(world.portal_progress) < 3:
        await asyncio.sleep(0.3)
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.wait_for(task, 30)
    await runner.cleanup()

    assert world.portal_dossiers[ma]["writes"] == 1
    assert len(world.portal_progress) == 3  # the three rows, once, despite two replays
    audit = [json.loads(v) for v in await read_all(kafka_broker.bootstrap, topics.audit)]
    assert [a["dead_letter_offset"] for a in audit] == [0, 0]
    assert all(a["action"] == "dlq.replay" and a["who"] and a["event_id"] == item.item_id for a in audit)
    assert not set(forged) & set(world.portal_dossiers)
    refused = [DeadLetter.parse(v) for v in await read_all(kafka_broker.bootstrap, topics.dead_letter)]
    refused = [d for d in refused if d.reason == "unauthenticated"]
    assert len(refused) == len(forged)
    assert all(d.payload is None and TRAP_NAME not in d.model_dump_json() for d in refused)
