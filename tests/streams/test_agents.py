"""The agents in-process (faust ``test_context``, memory store, no broker): outputs and dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter

from hub.config import Settings
from hub.deadletter import DeadLetter
from schemas.events import CanonicalEvent, DossierEvent
from schemas.figures import OutboxDossier
from streams.agents import dossier_state
from streams.app import create_app, runtime_of
from streams.topics import decode_canonical

from .gen import T0, catalogue, document, motcua, raw

EVENTS: TypeAdapter[CanonicalEvent] = TypeAdapter(CanonicalEvent)


class Sent(list[tuple[str, bytes | None, bytes, Any, int | None]]):
    async def __call__(self, topic: str, key: bytes | None, value: bytes, headers: Any, partition: int | None) -> None:
        self.append((topic, key, value, headers, partition))

    def on(self, topic: str) -> list[tuple[bytes | None, bytes, Any, int | None]]:
        return [(k, v, h, p) for t, k, v, h, p in self if t == topic]


@pytest.fixture
def rt():
    app = create_app(Settings())
    app.finalize()
    app.flow_control.resume()
    runtime = runtime_of(app)
    runtime.sink = Sent()
    return runtime


async def until(pred: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def dossier(version: int = 1, unit: str = "14767", status: int = 4) -> bytes:
    return raw(motcua("H56.14767-210104-00001", unit, version, status, proc="1.001.H56", level=4, channel="2",
                      received=T0, due=T0, end=None, updated=T0))


async def test_normaliser_produces_canonical_event_keyed_by_dossier(rt):
    agent = rt.app.agents["normalize_motcua"]
    async with agent.test_context() as ctx:
        await ctx.put(key=b"H56.14767-210104-00001", value=dossier(), wait=False)
        await until(lambda: rt.sink.on(rt.topics.canonical.get_topic_name()))
    [(key, value, _, partition)] = rt.sink.on(rt.topics.canonical.get_topic_name())
    ev = decode_canonical(value)
    assert isinstance(ev, DossierEvent)
    assert key == b"H56.14767-210104-00001"
    assert partition is None
    assert (ev.unit_code, ev.version, ev.status) == ("14767", 1, 4)
    assert "ChuHoSo" not in value.decode()
    assert rt.metrics.value("dvchub_agent_records_out_total", agent="normalize_motcua") == 1


async def test_catalogue_entry_is_broadcast_to_every_partition(rt):
    agent = rt.app.agents["normalize_catalogue"]
    async with agent.test_context() as ctx:
        await ctx.put(key=b"14767", value=raw(catalogue("14767", "1.001.H56", 4)), wait=False)
        await until(lambda: len(rt.sink) >= rt.settings.kafka.partitions)
    parts = sorted(p for _, _, _, p in rt.sink.on(rt.topics.canonical.get_topic_name()))
    assert parts == list(range(rt.settings.kafka.partitions))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{oops", "invalid_json"),
        (orjson.dumps({"event_id": "a:b:1"}), "schema"),
        (dossier(unit="99999"), "unknown_unit"),
        (raw(motcua("H56.380-1", "380", 1, 4, proc="P", level=4, channel="9", received=T0, due=T0, end=None,
                    updated=T0)), "schema"),
        (dossier(status=42), "unknown_status"),
    ],
)
async def test_bad_records_become_dead_letters_and_the_agent_keeps_going(rt, value, reason):
    agent = rt.app.agents["normalize_motcua"]
    canonical, dlq = rt.topics.canonical.get_topic_name(), rt.topics.dead_letter.get_topic_name()
    async with agent.test_context() as ctx:
        await ctx.put(key=b"k", value=value, wait=False)
        await ctx.put(key=b"H56.14767-210104-00001", value=dossier(), wait=False)
        await until(lambda: rt.sink.on(canonical))
    [(_, body, headers, _)] = rt.sink.on(dlq)
    letter = DeadLetter.parse(body)
    assert (letter.stage, letter.reason) == ("normalize", reason)
    assert dict(headers)["dlq.reason"] == reason.encode()
    assert letter.offset == 0
    assert dict(headers)["dlq.offset"] == b"0"
    assert len(rt.sink.on(canonical)) == 1  # the good record after it went through
    assert rt.metrics.value("dvchub_dead_letters_total", stage="normalize", reason=reason) == 1
    # an unknown unit is counted by reason, never as a new unit label
    assert "99999" not in repr(list(rt.aggregates.totals()))


class FakeMessage:
    def __init__(self, partition: int, offset: int, topic: str = "canonical") -> None:
        self.partition, self.offset, self.topic, self.timestamp = partition, offset, topic, None


class FakeEvent:
    def __init__(self, value: bytes, partition: int = 0, offset: int = 0) -> None:
        self.value, self.message = value, FakeMessage(partition, offset)


def canonical_of(value: bytes) -> bytes:
    from schemas.raw import RawRecord
    from schemas.units import default_registry
    from streams.normalize import normalize
    from streams.topics import encode_canonical

    return encode_canonical(normalize(RawRecord.model_validate_json(value), default_registry()))


async def test_state_agent_is_idempotent_and_replays_resend_the_outbox(rt):
    rt.dossiers, rt.ready, rt.active = {}, True, {0}
    outbox = rt.topics.outbox.get_topic_name()
    v1, v2 = canonical_of(dossier(1)), canonical_of(dossier(2, status=10))
    await dossier_state.handle(rt, FakeEvent(v1, offset=10))
    await dossier_state.handle(rt, FakeEvent(v2, offset=11))
    await dossier_state.handle(rt, FakeEvent(v1, offset=12))  # stale version, later in the topic
    await dossier_state.handle(rt, FakeEvent(v2, offset=13))  # duplicate, later in the topic
    items = [OutboxDossier.model_validate_json(v) for _, v, _, _ in rt.sink.on(outbox)]
    assert [i.item_id for i in items] == ["dossier:H56.14767-210104-00001:1", "dossier:H56.14767-210104-00001:2"]
    # The record is written with orjson, not through the model: it must still be the model's JSON.
    assert items[1].version == 2
    assert items[1].ma_ho_so == "H56.14767-210104-00001"
    assert items[1].created_at.utcoffset() is not None
    assert items[1].dossier["TrangThaiHoSo"] == "10"
    assert items[1].dossier["MaHoSo"] == items[1].ma_ho_so
    assert items[1].dossier["NgayNopHoSo"].isdigit()
    assert len(items[1].dossier["NgayNopHoSo"]) == 14
    # a replay after a crash: the table already holds v2 written at offset 11
    await dossier_state.handle(rt, FakeEvent(v2, offset=11))
    assert len(rt.sink.on(outbox)) == 3
    m = rt.metrics
    assert [m.value("dvchub_state_applies_total", outcome=o) for o in ("applied", "stale", "duplicate", "replayed")] \
        == [2, 1, 1, 1]
    state = orjson.loads(rt.dossiers[b"H56.14767-210104-00001"])
    assert (state["p"], state["o"]) == (0, 11)
    # the aggregates equal a rebuild from the table
    before = {u: dict(c) for u, c in rt.aggregates.totals().items()}
    rt.rebuild({0})
    assert {u: dict(c) for u, c in rt.aggregates.totals().items()} == before
    assert rt.aggregates.dossier_count() == 1


async def test_state_agent_dead_letters_bad_canonical_events(rt):
    rt.dossiers, rt.ready, rt.active = {}, True, {0}
    await dossier_state.handle(rt, FakeEvent(b'{"type": "dossier"}', offset=3))
    good = canonical_of(raw(document(7, "H56.14767-210104-00001", "14767", "KY_SO", T0)))
    await dossier_state.handle(rt, FakeEvent(good, offset=4))
    [(_, body, _, _)] = rt.sink.on(rt.topics.dead_letter.get_topic_name())
    assert DeadLetter.parse(body).reason == "schema"
    assert b"H56.14767-210104-00001" in rt.dossiers


async def test_partials_publish_changed_units_only(rt):
    rt.dossiers, rt.ready, rt.active = {}, True, {0}
    rt._last_full_publish = time.monotonic()  # not due for a full refresh
    await dossier_state.handle(rt, FakeEvent(canonical_of(dossier(1)), offset=1))
    assert await rt.publish_partials() == 1
    assert await rt.publish_partials() == 0
    [(key, value, _, _)] = rt.sink.on(rt.topics.partials.get_topic_name())
    assert key == b"0|14767"
    assert orjson.loads(value)["counts"]["received|TOAN_TRINH|TRUC_TUYEN|2021-01|"] == 1
    assert datetime.fromisoformat(orjson.loads(value)["generated_at"]).tzinfo is not None


def test_report_says_how_to_start_the_broker_when_unreachable(tmp_path, capsys):
    import argparse

    from hub.commands.report import _run

    cfg = tmp_path / "hub.toml"
    cfg.write_text('[kafka]\nbootstrap_servers = "127.0.0.1:1"\n', encoding="utf-8")
    args = argparse.Namespace(config=str(cfg), period="2021-Q1", date_from=None, date_to=None, unit=None,
                              format="table")
    assert _run(args) == 1
    assert "dvc-hub broker start" in capsys.readouterr().err


def test_report_refuses_a_bad_period(tmp_path, capsys):
    import argparse

    from hub.commands.report import _run

    args = argparse.Namespace(config=None, period="2021-Q7", date_from=None, date_to=None, unit=None,
                              format="table")
    assert _run(args) == 2
    assert "YYYY-Qn" in capsys.readouterr().err
