"""End to end: each connector against its simulator with ALL faults on, into the real Kafka broker.

The World is the ground truth. Its clock is manual: the test writes changes, moves the source's
clock, and runs poll cycles, so late visibility (up to 120 s) costs no wall time. After the run the
raw topic is read back and compared with the World:

- every final version of every dossier/event/item is in Kafka, and every version that was visible
  at a successful poll (a version superseded before any poll could see it is legitimately absent);
- an event id, however often it appears, always carries the same payload (duplicates are
  re-deliveries, never different data under one id);
- no personal data; the cursor is in the compacted state topic.
"""

from __future__ import annotations

import asyncio
import json
import random
import unicodedata
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from connectors.motcua.connector import MotCuaConnector
from connectors.portal.connector import PortalConnector
from connectors.qlvb.connector import QlvbConnector
from connectors.sdk import Connector, KafkaSink, KafkaStateStore, SyncEngine
from connectors.sdk.testing import personal_data_problems
from hub.config import ConnectorInstance, KafkaSettings, TopicSettings
from hub.kafka import producer as make_producer
from hub.simulators._http import SIM_CONTEXT
from hub.simulators.clock import TZ, SimClock
from hub.simulators.faults import Faults
from hub.simulators.server import SimulatorServer
from hub.simulators.units import DEMO_PORTAL_CLIENTS, DEMO_QLVB_PASSWORD, DEMO_QLVB_USERNAME
from hub.simulators.world import World
from schemas.raw import RawRecord

pytestmark = pytest.mark.e2e

SEED = 20210115
UNITS = {"14767": "demo-key-14767", "380": "demo-key-380"}
NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Hoàng Cường"]
RETRY = {"max_attempts": 10, "base_delay_s": 0.05, "max_delay_s": 0.5, "timeout_s": 1.0}
PRIVACY_KEY = b"e2e-key"


class SimulatedCrash(BaseException):
    """Like kill -9 of the runner: nothing catches it."""


@pytest.fixture
def topics(kafka_topic) -> TopicSettings:
    return TopicSettings(
        raw_motcua=kafka_topic(partitions=2), raw_qlvb=kafka_topic(), raw_portal=kafka_topic(),
        raw_catalogue=kafka_topic(), dead_letter=kafka_topic(), connector_state=kafka_topic(compacted=True),
    )


@pytest.fixture
def kafka(kafka_broker) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)


@pytest.fixture
def producer(kafka):
    p = make_producer(kafka, "connectors-e2e")
    yield p
    p.close(5)


def read_topic(kafka: KafkaSettings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[tuple[bytes | None, bytes | None]] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                out.extend((r.key, r.value) for r in records)
        return out
    finally:
        consumer.close()


def raw_records(kafka: KafkaSettings, topic: str) -> list[RawRecord]:
    out = []
    for key, value in read_topic(kafka, topic):
        assert value is not None
        record = RawRecord.model_validate_json(value)
        assert key == record.key.encode()
        out.append(record)
    return out


def assert_duplicates_identical_and_clean(records: list[RawRecord], forbidden: tuple[str, ...] = ()) -> None:
    by_id: dict[str, list[RawRecord]] = defaultdict(list)
    for r in records:
        by_id[r.event_id].append(r)
        assert r.event_id == f"{r.source}:{r.key}:{r.version}"
    for event_id, copies in by_id.items():
        payloads = {json.dumps(c.payload, sort_keys=True, ensure_ascii=False) for c in copies}
        assert len(payloads) == 1, f"{event_id} delivered with different payloads"
    problems = [p for r in records for p in personal_data_problems(r.payload, forbidden, r.event_id)]
    assert not problems, problems[:10]
    text = json.dumps([r.payload for r in records], ensure_ascii=False)
    assert unicodedata.normalize("NFC", text) == text, "NFD text reached Kafka"


def make_engine(cls: type[Connector], inst: ConnectorInstance, http, producer, kafka, topics) -> SyncEngine:
    connector = cls.from_instance(inst, http)
    store = KafkaStateStore(producer, kafka, topics.connector_state)
    return SyncEngine(connector, sink=KafkaSink(producer), state_store=store, topics=topics, privacy_key=PRIVACY_KEY)


async def settle(engines: list[SyncEngine], limit: int = 12) -> None:
    """Cycles until a whole round is clean and produces nothing."""
    for _ in range(limit):
        for e in engines:
            await e.run_once()
        if all(e.caught_up for e in engines):
            return
    raise AssertionError(f"not caught up after {limit} rounds: {[e.health() for e in engines]}")


def dossier(rng: random.Random, unit: str, n: int) -> dict[str, Any]:
    return {
        "MaHoSo": f"H56.{unit}-210115-{n:05d}", "MaDonVi": unit, "MaTTHC": "1.003560.000.00.00.H56",
        "TenTTHC": "Đăng ký khai sinh", "MucDo": rng.choice([3, 4]), "KenhThucHien": rng.choice(["1", "2", ""]),
        "TrangThaiHoSo": "2", "NgayNopHoSo": "20210115081500", "NgayHenTra": "20210118170000",
        "ChuHoSo": rng.choice(NAMES), "SoGiayToChuHoSo": f"0380900{n:05d}", "SoDienThoai": f"09123{n:05d}",
        "QuaTrinhXuLy": [{"TrangThai": "2", "ThoiDiemXuLy": "20210115082010", "NoiDungXuLy": "Tiếp nhận hồ sơ"}],
    }


def test_motcua_all_faults_with_a_crash_between_produce_and_cursor_save(kafka, topics, producer):
    start = datetime(2021, 1, 15, 8, 0, tzinfo=TZ)
    world = World(SimClock.manual(start), SEED)
    faults = Faults.all_on(SEED)
    rng = random.Random(SEED)
    for unit in UNITS:
        world.set_catalogue(unit, [{"MaTTHC": f"1.00{i}.000.00.00.H56", "TenTTHC": "Thủ tục", "MucDo": 3 + i % 2,
                                    "CoPhi": True, "KetQuaBanGiay": True, "HieuLucTu": "20200101000000",
                                    "HieuLucDen": ""} for i in range(5)])
    visible_at_ok_polls: set[tuple[str, int]] = set()

    async def scenario(sims: SimulatorServer) -> None:
        instances = [
            ConnectorInstance(name=f"motcua-{u}", type="motcua", base_url=sims.motcua_base_url(u), unit_code=u,
                              auth={"kind": "api_key", "api_key": k}, page_size=25, rate_limit_per_s=200,
                              # Look back on every cycle: the hardest setting for late visibility.
                              retry=RETRY, options={"lookback_every_s": 0})
            for u, k in UNITS.items()
        ]
        async with httpx.AsyncClient() as http:
            engines = [make_engine(MotCuaConnector, i, http, producer, kafka, topics) for i in instances]
            counter = 0
            for round_no in range(10):
                for _ in range(30):
                    unit = rng.choice(list(UNITS))
                    counter += 1
                    n = rng.randint(1, max(1, counter // 2))  # new dossiers and updates of old ones
                    snap = dossier(rng, unit, n)
                    history = world.dossier_history(snap["MaHoSo"])
                    if history:
                        snap["TrangThaiHoSo"] = rng.choice(["4", "5", "9", "10"])
                    world.upsert_dossier(snap, visible_delay=faults.visible_delay())
                    if rng.random() < 0.3:
                        world.clock.advance(timedelta(seconds=1))  # many dossiers share each second
                if round_no == 4:
                    def crash(state):
                        raise SimulatedCrash

                    engines[0].before_save = crash
                    with pytest.raises(SimulatedCrash):
                        await engines[0].run_once()
                    # "Restart": a new process loads the cursor from the state topic.
                    engines[0] = make_engine(MotCuaConnector, instances[0], http, producer, kafka, topics)
                now = world.clock.now()
                for engine in engines:
                    report = await engine.run_once()
                    if report.ok:
                        unit = engine.connector.instance.unit_code or ""
                        visible = world.visible_dossiers(unit, now)
                        visible_at_ok_polls.update((v["MaHoSo"], v["PhienBan"]) for v in visible)
                world.clock.advance(timedelta(seconds=20))
            world.clock.advance(timedelta(seconds=300))  # every late commit is visible now
            await settle(engines)

    with SimulatorServer(world, units=UNITS, motcua_faults=faults) as sims:
        asyncio.run(scenario(sims))
        injected = sims.motcua_app[SIM_CONTEXT].stats.injected
    assert all(injected[k] for k in ("429", "5xx", "reset", "error_body")), injected  # the traps fired

    records = raw_records(kafka, topics.raw_motcua)
    delivered = {(r.key, int(r.version)) for r in records}
    finals = {(ma, v["PhienBan"]) for ma, v in world.final_dossiers().items()}
    assert finals <= delivered, f"final versions missing: {sorted(finals - delivered)[:5]}"
    missing = sorted(visible_at_ok_polls - delivered)
    assert not missing, f"versions visible at a successful poll missing: {missing[:5]}"
    assert len(world.all_versions()) > len(finals)  # the scenario really had superseded versions
    assert_duplicates_identical_and_clean(records, tuple(NAMES))
    catalogue = raw_records(kafka, topics.raw_catalogue)
    assert {r.key for r in catalogue} == {f"{u}|1.00{i}.000.00.00.H56" for u in UNITS for i in range(5)}
    states = asyncio.run(KafkaStateStore(producer, kafka, topics.connector_state).load_all())
    for unit in UNITS:
        latest = max((v["NgayCapNhat"], v["MaHoSo"]) for v in world.visible_dossiers(unit))
        cursor = states[f"motcua-{unit}"].cursors["dossiers"]
        assert (cursor["tu"], cursor["sau"]) == latest


def test_qlvb_all_faults(kafka, topics, producer):
    world = World(SimClock.manual(datetime(2021, 1, 16, 8, 0, tzinfo=TZ)), SEED)
    faults = Faults.all_on(SEED + 1)
    faults.update({"p_hostile_xml": 0.1, "p_duplicate": 0.3})  # more of the XML traps than all_on

    async def scenario(sims: SimulatorServer) -> None:
        inst = ConnectorInstance(name="qlvb", type="qlvb", base_url=sims.qlvb_url, page_size=40,
                                 rate_limit_per_s=200, retry=RETRY,
                                 auth={"kind": "basic", "username": DEMO_QLVB_USERNAME, "password": DEMO_QLVB_PASSWORD})
        async with httpx.AsyncClient() as http:
            engine = make_engine(QlvbConnector, inst, http, producer, kafka, topics)
            for round_no in range(6):
                for i in range(60):
                    n = round_no * 60 + i
                    world.add_document_event(
                        "14767", ["DANG_KY", "TRINH_KY", "KY_SO", "BAN_HANH"][n % 4], world.clock.now(),
                        {"so_ky_hieu": f"{n}/QĐ-UBND", "trich_yeu": "Quyết định cấp giấy khai sinh",
                         "ngay_ban_hanh": "2021-01-16", "nguoi_ky": NAMES[n % 3], "ky_so": "true"},
                        f"H56.14767-210115-{n % 50:05d}" if n % 3 else None,
                    )
                await engine.run_once()
                world.clock.advance(timedelta(seconds=30))
            await settle([engine])

    with SimulatorServer(world, units=UNITS, qlvb_faults=faults) as sims:
        asyncio.run(scenario(sims))
        injected = sims.qlvb_app[SIM_CONTEXT].stats.injected
    assert injected["duplicate"], injected
    assert any(k.startswith("hostile_xml") for k in injected), injected

    records = raw_records(kafka, topics.raw_qlvb)
    expected = {f"qlvb:{e['ma_ho_so'] or 'doc-' + str(e['id'])}:{e['id']}" for e in world.document_events()}
    assert expected == {r.event_id for r in records}
    ids = [e["id"] for e in world.document_events()]
    assert ids[-1] - ids[0] + 1 > len(ids)  # the id sequence really had gaps
    assert_duplicates_identical_and_clean(records, tuple(NAMES))
    letters = [json.loads(v) for _, v in read_topic(kafka, topics.dead_letter) if v]
    assert {d["reason"] for d in letters} <= {"hostile_xml", "invalid_xml"}
    assert not any(n in json.dumps(letters, ensure_ascii=False) for n in NAMES)


def test_portal_all_faults_move_during_paging_and_token_revocation(kafka, topics, producer):
    world = World(SimClock.manual(datetime(2021, 1, 19, 8, 0, tzinfo=TZ)), SEED)
    faults = Faults.all_on(SEED + 2)
    faults.update({"p_move": 0.2, "revoke_every": 15})
    world.set_catalogue("14767", [{"MaTTHC": "1.003560.000.00.00.H56", "TenTTHC": "Đăng ký khai sinh", "MucDo": 4}])
    rng = random.Random(SEED)

    async def scenario(sims: SimulatorServer) -> None:
        client_id, secret = next(iter(DEMO_PORTAL_CLIENTS.items()))
        inst = ConnectorInstance(name="portal", type="portal", base_url=sims.portal_url, page_size=20,
                                 rate_limit_per_s=18, retry=RETRY, options={"catalogue_units": ["14767"]},
                                 auth={"kind": "oauth2", "client_id": client_id, "client_secret": secret})
        async with httpx.AsyncClient() as http:
            engine = make_engine(PortalConnector, inst, http, producer, kafka, topics)
            for _round in range(5):
                for _ in range(25):
                    n = rng.randint(0, 80)
                    world.upsert_portal_item({
                        "ma_ho_so": f"H56.14767-210119-{n:05d}", "ma_tthc": "1.003560.000.00.00.H56",
                        "ma_don_vi": "14767", "muc_do": 4, "thoi_diem_nop": "2021-01-19T08:00:00+07:00",
                        "trang_thai": rng.choice(["DA_NOP", "DA_CHUYEN_MOT_CUA"]),
                        "thanh_toan": None, "danh_gia": {"hai_long": rng.random() < 0.8,
                                                         "thoi_diem": "2021-01-19T10:00:00+07:00"},
                    })
                    if rng.random() < 0.4:
                        world.clock.advance(timedelta(seconds=1))
                await engine.run_once()
                world.clock.advance(timedelta(seconds=10))
            await settle([engine])
            assert engine.connector.client.auth.fetches >= 2  # type: ignore[attr-defined]

    with SimulatorServer(world, units=UNITS, portal_faults=faults) as sims:
        asyncio.run(scenario(sims))
        log = world.requests(app="portal")
        injected = sims.portal_app[SIM_CONTEXT].stats.injected
    assert injected["move"], injected
    assert injected["revoke"], injected

    records = raw_records(kafka, topics.raw_portal)
    delivered = {r.event_id for r in records}
    finals = {f"portal:{i['ma_ho_so']}:{datetime.fromisoformat(i['cap_nhat_luc']).isoformat(timespec='seconds')}"
              for i in world.portal_items()}
    assert finals <= delivered, sorted(finals - delivered)[:5]
    assert any(e.get("fault") == "reset" for e in log) or any(e["status"] == 429 for e in log)
    unauthorised = [e for e in log if e["status"] == 401]
    bearer_calls = [e for e in log if e["path"] != "/oauth2/token"]
    assert unauthorised
    assert len(unauthorised) <= len(bearer_calls) // 10
    assert_duplicates_identical_and_clean(records)
    assert {r.key for r in raw_records(kafka, topics.raw_catalogue)} == {"14767|1.003560.000.00.00.H56"}
