"""Outbox items are authenticated (hub.sync.signing): a forged item never reaches the portal.

No broker: the portal sync's batch processing runs in-process on hand-made consumer records, with a
mock portal and a producer that records what would be written (dead letters, sync state).
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from pydantic import SecretStr

from hub.config import KafkaSettings, Settings
from hub.credentials import OUTBOX_KEY_FILE
from hub.deadletter import DeadLetter
from hub.sync.signing import MAC_HEADER, sign, verify
from schemas.figures import OutboxDossier
from streams.agents import dossier_state
from streams.app import create_app, runtime_of

from .test_sync_units import reply, service_with

KEY = "k" * 40
OTHER_KEY = "o" * 40
TRAP_NAME = "Nguyễn Thị Giả Mạo"


@dataclass
class Record:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    offset: int = 0


class Recorder:
    """Stands in for the service's AIOKafkaProducer: keeps every record it is asked to write."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, Any]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> None:
        self.sent.append((topic, value, key, headers))


def dossier_value(ma: str, version: int = 1) -> bytes:
    item = OutboxDossier(item_id=f"dossier:{ma}:{version}", ma_ho_so=ma, version=version,
                         created_at=datetime.now(UTC), dossier={"MaHoSo": ma, "PhienBan": version,
                                                                "ChuHoSo": TRAP_NAME}, progress=[])
    return item.model_dump_json().encode()


def signed(ma: str, key: str = KEY, offset: int = 0) -> Record:
    value = dossier_value(ma)
    return Record(ma.encode(), value, sign(key.encode(), ma.encode(), value), offset)


def forgeries() -> dict[str, Record]:
    """Every way an outbox record can fail the check: each must be refused."""
    genuine = signed("H56.14767-210310-00002")
    other_value = dossier_value("H56.14767-210310-00003")
    return {
        "no header": Record(b"H56.14767-210310-00001", dossier_value("H56.14767-210310-00001")),
        "another key": signed("H56.14767-210310-00004", key=OTHER_KEY),
        "another value's MAC": Record(b"H56.14767-210310-00003", other_value, genuine.headers),
        "altered value": Record(genuine.key, genuine.value.replace(b'"PhienBan":1', b'"PhienBan":9'),
                                genuine.headers),
        "moved to another key": Record(b"H56.14767-210310-00005", genuine.value, genuine.headers),
        "garbage header": Record(b"H56.14767-210310-00006", dossier_value("H56.14767-210310-00006"),
                                 [(MAC_HEADER, b"v1:" + b"0" * 64)]),
        "unversioned header": Record(b"H56.14767-210310-00007", dossier_value("H56.14767-210310-00007"),
                                     [(MAC_HEADER, b"deadbeef")]),
        "two headers": Record(genuine.key, genuine.value, [*genuine.headers, (MAC_HEADER, b"v1:00")]),
    }


@pytest.mark.parametrize("name", list(forgeries()))
def test_each_kind_of_forgery_fails_verification(name: str) -> None:
    record = forgeries()[name]
    assert verify(KEY.encode(), record.key, record.value, record.headers) is not None
    good = signed("H56.14767-210310-00002")
    assert verify(KEY.encode(), good.key, good.value, good.headers) is None


async def test_forged_items_are_dead_lettered_without_payload_and_never_pushed() -> None:
    service, portal, _ = service_with(lambda request: reply("0"))
    # service_with replaces _dead_letter; this test checks the real one (what the letter holds).
    service._dead_letter = type(service)._dead_letter.__get__(service)  # type: ignore[method-assign]
    recorder = Recorder()
    service._producer = recorder  # type: ignore[assignment]
    service._outbox_key = KEY.encode()
    bad = list(forgeries().values())
    good = signed("H56.14767-210310-00099", offset=len(bad))
    records = [Record(r.key, r.value, r.headers, offset) for offset, r in enumerate(bad)] + [good]
    await service._process({TopicPartition("dvchub.outbox.portal", 0): records})  # type: ignore[arg-type]

    pushed = [d["MaHoSo"] for call in portal.calls if call.url.path == "/api/v1/dongbo/hoso"
              for d in json.loads(call.content)["data"]]
    assert pushed == ["H56.14767-210310-00099"]
    letters = [DeadLetter.parse(value) for topic, value, _, _ in recorder.sent
               if topic == service.topics.dead_letter]
    assert len(letters) == len(bad)
    assert {letter.reason for letter in letters} == {"unauthenticated"}
    assert sorted(letter.offset for letter in letters) == list(range(len(bad)))
    for letter in letters:
        assert letter.payload is None
        assert letter.event_id is None
    everything = b"".join(value + (key or b"") for _, value, key, _ in recorder.sent)
    assert TRAP_NAME.encode() not in everything
    assert "Giả Mạo" not in json.dumps([letter.model_dump(mode="json") for letter in letters], ensure_ascii=False)
    assert service.metrics.value("dvchub_dead_letters_total", stage="portal_sync", reason="unauthenticated") == len(bad)


def test_the_statistics_push_stats_enqueues_are_signed_and_accepted() -> None:
    """``dvc-hub push stats --from`` writes to the outbox: its records pass the sync's check."""
    from datetime import UTC, date, datetime

    from hub.commands.push import outbox_records
    from hub.sync.stats import DomainStatsBuilder, history_items
    from schemas.figures import UnitFigures, count_key
    from schemas.units import default_registry

    now = datetime(2026, 5, 4, tzinfo=UTC)
    partial = UnitFigures(partition=0, unit_code="14767", unit_tier="XA", generated_at=now,
                          counts={count_key("received", "TOAN_TRINH", "TRUC_TUYEN", "2021-03"): 2})
    items = history_items([partial], DomainStatsBuilder(default_registry(), None), now, date(2021, 1, 1))
    records = outbox_records(items, KEY.encode())
    assert [key for key, _, _ in records] == [b"stats|2021-03|14767"]
    for key, value, headers in records:
        assert verify(KEY.encode(), key, value, headers) is None
        assert verify(OTHER_KEY.encode(), key, value, headers) is not None


async def test_the_worker_signs_every_outbox_item_with_the_shared_key() -> None:
    from tests.streams.test_agents import FakeEvent, Sent, canonical_of, dossier

    settings = Settings(kafka=KafkaSettings(outbox_signing_key=SecretStr(KEY)))
    app = create_app(settings)
    app.finalize()
    rt = runtime_of(app)
    rt.sink = Sent()
    rt.dossiers, rt.ready, rt.active = {}, True, {0}
    await dossier_state.handle(rt, FakeEvent(canonical_of(dossier(1)), offset=1))
    [(key, value, headers, _)] = rt.sink.on(rt.topics.outbox.get_topic_name())
    assert verify(KEY.encode(), key, value, headers) is None
    assert verify(OTHER_KEY.encode(), key, value, headers) is not None
    assert orjson.loads(value)["ma_ho_so"].encode() == key


def test_a_generated_outbox_key_is_private_and_shared_by_every_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    settings = Settings(embedded_broker={"data_dir": data_dir})  # type: ignore[arg-type]
    first = settings.kafka.for_part("worker").outbox_key()
    again = Settings(embedded_broker={"data_dir": data_dir}).kafka.for_part("portal-sync").outbox_key()  # type: ignore[arg-type]
    assert first == again
    assert len(first) == 32
    assert stat.S_IMODE((data_dir / OUTBOX_KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    other = Settings(embedded_broker={"data_dir": tmp_path / "elsewhere"}).kafka.outbox_key()  # type: ignore[arg-type]
    assert other != first


def test_a_configured_key_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        KafkaSettings(outbox_signing_key=SecretStr("short"))



class OffsetsConsumer:
    """Stands in for the outbox consumer in :meth:`SyncService._commit`: positions in, commits out."""

    def __init__(self, positions: dict[TopicPartition, int]) -> None:
        self.positions = positions
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


async def test_an_outbox_statistics_record_holds_its_offset_until_its_key_is_settled() -> None:
    """Nothing only in memory: a `push stats --from` body folded into the lane is re-delivered after a crash."""
    from hub.sync.outbox import StatsState, stats_item

    service, _, _ = service_with(lambda request: reply("0"))
    service._producer = Recorder()  # type: ignore[assignment]
    service._outbox_key = KEY.encode()
    tp = TopicPartition("dvchub.outbox.portal", 0)
    item = stats_item("2019-05", "14767", {"ky": "2019-05", "ma_don_vi": "14767", "n": 1}, datetime.now(UTC))
    value = item.model_dump_json().encode()
    key = b"stats|2019-05|14767"
    records = [signed("H56.14767-210310-00001", offset=0), Record(key, value, sign(KEY.encode(), key, value), 1),
               signed("H56.14767-210310-00002", offset=2)]
    await service._process({tp: records})  # type: ignore[arg-type]
    consumer = OffsetsConsumer({tp: 3})
    await service._commit(consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{tp: 1}]  # the dossiers are done, the statistics record is not
    assert service.backlog()["stats_pending"] == 1
    # The lane pushes it (and the portal acknowledges): the offset is free.
    pending = service.stats.pending["stats|2019-05|14767"]
    service.stats.done(pending, StatsState(ky="2019-05", ma_don_vi="14767", digest=pending.digest, outcome="pushed"))
    await service._commit(consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{tp: 1}, {tp: 3}]
    assert service.backlog()["stats_pending"] == 0
