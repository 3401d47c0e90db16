"""Start-up in order (issue 12 item 3), in-process: no broker.

* the hub creates every topic the worker's tables and faust need (changelogs compacted, with the
  canonical topic's partitions; the leader topic; the requests topic), with ACLs to match;
* an error that is not the record's fault (faust's ``PartitionsMismatch``, Kafka) exits the worker
  and is never a dead letter; one that is the record's fault is a dead letter carrying what
  ``dvc-hub dlq replay`` needs;
* a worker whose catalogue is empty asks for it, the connector runner re-sends it whole, and the
  catalogue is back.

The real-broker side (topics checked before faust starts, repeated fresh starts) is in
``tests/streams/test_startup_e2e.py``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError
from faust.exceptions import PartitionsMismatch
from kafka.admin import ACLOperation, ResourceType
from kafka.errors import KafkaConnectionError

from connectors.sdk import MemorySink, MemoryStateStore
from connectors.sdk.runner import RESEND_MIN_INTERVAL_S, ConnectorRunner
from hub.commands.dlq import replay_key
from hub.config import Settings
from hub.deadletter import DeadLetter
from hub.kafka import hub_grants, hub_topics, worker_topics
from hub.requests import CatalogueRequest
from schemas.events import CatalogueEntry, DossierEvent
from streams.agents import dossier_state, normalizer
from streams.app import create_app, runtime_of
from streams.guard import WorkerFailedError, not_the_records_fault
from streams.normalize import Rejected
from streams.topics import CATALOGUE_TABLE, DOSSIER_TABLE, changelog_topic, decode_canonical, encode_canonical
from tests.connectors.fakes import FakeMotCua
from tests.connectors.test_contract import MOTCUA

from .gen import T0, catalogue, motcua, raw
from .test_agents import FakeEvent, FakeMessage, Sent, canonical_of, until

MA = "H56.14767-210104-00001"


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch) -> Any:
    app = create_app(Settings())
    app.finalize()
    app.flow_control.resume()
    runtime = runtime_of(app)
    runtime.sink = Sent()
    runtime.dossiers, runtime.catalogue_table, runtime.ready, runtime.active = {}, {}, True, {0}
    runtime.lag_known = True  # as after the first lag measurement
    runtime.crashes = []

    async def crash(reason: BaseException) -> None:
        runtime.crashes.append(reason)

    monkeypatch.setattr(app, "crash", crash)
    return runtime


def good(version: int = 1) -> bytes:
    return canonical_of(raw(motcua(MA, "14767", version, 4, proc="1.001.H56", level=4, channel="2",
                                   received=T0, due=T0, end=None, updated=T0)))


def letters(rt: Any) -> list[DeadLetter]:
    return [DeadLetter.parse(v) for _, v, _, _ in rt.sink.on(rt.topics.dead_letter.get_topic_name())]


class RawEvent:
    """A raw-topic event as the normaliser's ``handle`` sees it."""

    def __init__(self, value: bytes, topic: str, offset: int = 0) -> None:
        self.value, self.message = value, FakeMessage(0, offset, topic)


# --------------------------------------------------------------------------- topics and ACLs


@pytest.mark.parametrize("app_id", ["dvc-hub", "city-b"])
def test_the_hub_creates_the_worker_changelogs_leader_and_requests_topics(app_id):
    settings = Settings.model_validate({"worker": {"app_id": app_id}, "kafka": {"partitions": 6}})
    topics = {t.name: t for t in hub_topics(settings)}
    for table in (DOSSIER_TABLE, CATALOGUE_TABLE):
        changelog = topics[changelog_topic(settings, table)]
        assert changelog.name == f"{app_id}-{table}-changelog"
        # co-partitioned with the canonical topic the table is written from, and compacted
        assert changelog.num_partitions == topics[settings.topics.canonical].num_partitions == 6
        assert changelog.topic_configs["cleanup.policy"] == "compact"
    assert topics[f"{app_id}-__assignor-__leader"].num_partitions == 1
    assert topics[settings.topics.requests].num_partitions == 1
    # what the worker checks before faust starts: everything it uses, nothing it may not describe
    checked = {t.name for t in worker_topics(settings)}
    assert {changelog_topic(settings, DOSSIER_TABLE), settings.topics.requests, settings.topics.canonical} <= checked
    assert not checked & {settings.topics.connector_state, settings.topics.sync_state, settings.topics.audit}


def test_the_requests_topic_is_written_by_the_worker_and_read_by_the_connectors_only():
    settings = Settings()
    name = settings.topics.requests
    grants = [g for g in hub_grants(settings) if g.resource == ResourceType.TOPIC and g.name == name]
    ops = {g.part: set(g.operations) for g in grants}
    assert ACLOperation.WRITE in ops["worker"]
    assert ACLOperation.READ in ops["connectors"]
    assert ACLOperation.WRITE not in ops["connectors"]
    assert "portal-sync" not in ops


# --------------------------------------------------------------------------- whose fault is it?


def _raised_inside(module: str, exc: Exception) -> Exception:
    """``exc`` as if raised by code of ``module`` (the innermost frame decides)."""
    scope: dict[str, Any] = {"__name__": module, "exc": exc}
    try:
        exec("raise exc", scope)
    except Exception as caught:  # noqa: BLE001
        return caught
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "exc",
    [
        PartitionsMismatch("the changelog topic has 1 partition, the source topic 4"),
        KafkaTimeoutError(),
        NotLeaderForPartitionError(),
        KafkaConnectionError("broker away"),
        ConnectionResetError(),
        TimeoutError(),
        _raised_inside("faust.tables.base", RuntimeError("Cannot modify table outside of agent/stream.")),
        _raised_inside("aiokafka.producer.producer", RuntimeError("producer closed")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_platform_errors_are_not_the_records_fault(exc):
    assert not_the_records_fault(exc)


@pytest.mark.parametrize(
    "exc",
    [Rejected("out_of_range", "year 9999"), ValueError("year 10000 is out of range"), KeyError("p"),
     _raised_inside("streams.domain.aggregates", OverflowError("date value out of range"))],
    ids=lambda e: type(e).__name__,
)
def test_errors_of_the_record_or_of_the_hubs_own_code_are(exc):
    assert not not_the_records_fault(exc)


class RefusingTable(dict[bytes, bytes]):
    """A table whose writes faust refuses, as it did while the changelog was not in its metadata."""

    def __setitem__(self, key: bytes, value: bytes) -> None:
        raise PartitionsMismatch(f"source topic has 4 partitions, changelog {key!r} has 1")


@pytest.mark.parametrize("kind", ["dossier", "catalogue"])
async def test_a_refused_table_write_exits_the_worker_and_is_no_dead_letter(rt, kind):
    value = good() if kind == "dossier" else canonical_of(raw(catalogue("14767", "1.001.H56", 4)))
    if kind == "dossier":
        rt.dossiers = RefusingTable()
    else:
        rt.catalogue_table = RefusingTable()
    with pytest.raises(PartitionsMismatch):
        await dossier_state.handle(rt, FakeEvent(value, offset=5))
    assert letters(rt) == []

    # Through the agent: its guard crashes the app (the worker exits 1, the offset is not committed).
    agent = rt.app.agents["dossier_state"]
    async with agent.test_context() as ctx:
        await ctx.put(key=b"k", value=value, wait=False)
        await until(lambda: rt.crashes)
    [reason] = rt.crashes
    assert isinstance(reason, WorkerFailedError)
    assert "PartitionsMismatch" in str(reason)
    assert letters(rt) == []


async def test_an_outbox_send_that_fails_exits_the_worker_and_is_no_dead_letter(rt):
    async def broker_away(*_: Any) -> None:
        raise KafkaTimeoutError

    rt.sink = broker_away
    with pytest.raises(KafkaTimeoutError):
        await dossier_state.handle(rt, FakeEvent(good(), offset=1))


async def test_a_canonical_send_that_fails_exits_the_normaliser_and_is_no_dead_letter(rt):
    sent = rt.sink

    async def refuse_canonical(topic: str, *args: Any) -> None:
        if topic == rt.topics.canonical.get_topic_name():
            raise NotLeaderForPartitionError
        await sent(topic, *args)

    rt.sink = refuse_canonical
    topic = rt.topics.raw["catalogue"].get_topic_name()
    with pytest.raises(NotLeaderForPartitionError):
        await normalizer.handle(rt, "normalize_catalogue", topic, RawEvent(raw(catalogue("14767", "P1", 4)), topic))
    rt.sink = sent
    assert letters(rt) == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # a forged canonical event: the unit is not in the registry
        (lambda: good().replace(b'"14767"', b'"99999"'), "unknown_unit"),
        # out of the bounds
        (lambda: encode_canonical(DossierEvent.model_validate_json(good()).model_copy(update={"version": 10**15})),
         "out_of_range"),
    ],
)
async def test_a_canonical_event_at_fault_is_a_dead_letter_that_can_be_replayed(rt, value, reason):
    body = value()
    await dossier_state.handle(rt, FakeEvent(body, partition=0, offset=9))
    [letter] = letters(rt)
    assert (letter.stage, letter.reason, letter.topic, letter.partition, letter.offset) == (
        "state", reason, "canonical", 0, 9)
    # What `dvc-hub dlq replay` sends back: the event (ids kept), to the dossier's key and partition.
    assert letter.payload is not None
    replayed = decode_canonical(json.dumps(letter.payload, ensure_ascii=False).encode())
    original = decode_canonical(body)
    assert isinstance(replayed, DossierEvent)
    assert (replayed.event_id, replayed.ma_ho_so, replayed.version, replayed.unit_code, replayed.status) == (
        original.event_id, original.ma_ho_so, original.version, original.unit_code, original.status)
    assert replay_key(letter.payload, letter) == MA.encode()
    assert letter.event_id == original.event_id


async def test_a_catalogue_entry_at_fault_is_replayed_to_its_unit_key(rt, monkeypatch):
    def broken(*_: Any) -> Any:  # a bug of the hub met by this entry's data
        raise ValueError("cannot place this validity range")

    monkeypatch.setattr(rt.catalogue, "add", broken)
    body = canonical_of(raw(catalogue("14767", "1.001.H56", 4)))
    await dossier_state.handle(rt, FakeEvent(body, partition=2, offset=3))
    [letter] = letters(rt)
    assert (letter.reason, letter.partition) == ("unexpected", 2)
    assert letter.payload is not None
    assert isinstance(decode_canonical(json.dumps(letter.payload).encode()), CatalogueEntry)
    assert replay_key(letter.payload, letter) == b"14767"
    assert rt.crashes == []


async def test_a_raw_record_that_trips_a_bug_is_a_dead_letter_with_the_record(rt, monkeypatch):
    def bug(*_: Any) -> Any:
        raise ZeroDivisionError

    monkeypatch.setattr(normalizer, "normalize", bug)
    topic = rt.topics.raw["motcua"].get_topic_name()
    value = raw(motcua(MA, "14767", 1, 4, proc="1.001.H56", level=4, channel="2", received=T0, due=T0, end=None,
                       updated=T0))
    assert not await normalizer.handle(rt, "normalize_motcua", topic, RawEvent(value, topic, offset=4))
    [letter] = letters(rt)
    assert (letter.stage, letter.reason, letter.topic, letter.offset) == ("normalize", "unexpected", topic, 4)
    assert letter.payload is not None
    assert replay_key(letter.payload, letter) == MA.encode()


# --------------------------------------------------------------------------- the catalogue asked for again


async def test_an_empty_catalogue_is_asked_for_at_most_once_per_interval(rt):
    requests_topic = rt.topics.requests.get_topic_name()
    interval = rt.settings.worker.catalogue_request_interval_s
    assert await rt.request_catalogue_if_empty(now=1000.0)
    [(key, value, _, _)] = rt.sink.on(requests_topic)
    request = CatalogueRequest.parse(value)
    assert (key, request.app_id, request.partitions) == (b"catalogue", rt.group, [0])
    assert not await rt.request_catalogue_if_empty(now=1000.0 + interval - 1)  # rate-limited
    assert await rt.request_catalogue_if_empty(now=1000.0 + interval)
    assert len(rt.sink.on(requests_topic)) == 2

    # Not while the raw catalogue topic has records this app has not read yet (or the lag is not
    # known yet), nor when not ready.
    rt._lag = {rt.topics.raw["catalogue"].get_topic_name(): 3}
    assert not await rt.request_catalogue_if_empty(now=10**6)
    rt._lag, rt.lag_known = {}, False
    assert not await rt.request_catalogue_if_empty(now=10**6)
    rt.lag_known, rt.ready = True, False
    assert not await rt.request_catalogue_if_empty(now=10**6)
    rt.ready = True

    # Not once the catalogue has a row.
    await dossier_state.handle(rt, FakeEvent(canonical_of(raw(catalogue("14767", "1.001.H56", 4))), offset=1))
    assert not await rt.request_catalogue_if_empty(now=10**7)
    assert len(rt.sink.on(requests_topic)) == 2


async def test_a_catalogue_request_is_never_sent_with_the_interval_at_zero():
    settings = Settings.model_validate({"worker": {"catalogue_request_interval_s": 0}})
    app = create_app(settings)
    runtime = runtime_of(app)
    runtime.sink = Sent()
    runtime.ready, runtime.active, runtime.lag_known = True, {0}, True
    assert not await runtime.request_catalogue_if_empty(now=1e9)
    assert runtime.sink == []


def _runner(fake: FakeMotCua, now: list[float]) -> tuple[ConnectorRunner, MemorySink, httpx.AsyncClient]:
    # On loopback: plain http is refused anywhere else (it would carry the API key in clear text).
    instance = MOTCUA.model_copy(update={"base_url": "http://127.0.0.1:9/donvi/14767"})
    settings = Settings.model_validate({"connectors": [instance]})
    sink = MemorySink()
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    runner = ConnectorRunner(settings, settings.connectors, http=http, sink=sink, state_store=MemoryStateStore(),
                             serve_http=False, listen_requests=False, monotonic=lambda: now[0])
    runner.engines = runner._build_engines(http)
    return runner, sink, http


def _catalogue_rows(sink: MemorySink) -> list[Any]:
    return [r for topic, r in sink.records if topic == "dvchub.raw.catalogue"]


async def test_empty_catalogue_request_resend_and_the_catalogue_is_back(rt):
    """The whole loop: a worker that lost its catalogue asks, the runner re-sends it whole, the worker has it."""
    fake = FakeMotCua()
    now = [0.0]
    runner, sink, http = _runner(fake, now)
    async with http:
        [engine] = runner.engines
        await engine.run_once()
        first = _catalogue_rows(sink)
        assert len(first) == len(fake.catalogue) == 1
        await engine.run_once()  # seen, and not due before its refresh interval: nothing again
        assert len(_catalogue_rows(sink)) == 1

        # The worker's catalogue is empty (its rows were lost): it asks.
        assert rt.catalogue_missing()
        await rt.request_catalogue_if_empty(now=0.0)
        [(_, request, _, _)] = rt.sink.on(rt.topics.requests.get_topic_name())
        assert runner.on_request(request)
        await engine.run_once()
        again = _catalogue_rows(sink)[1:]
        assert [r.event_id for r in again] == [r.event_id for r in first]  # the same rows, ids kept

        # A second request within the runner's interval is absorbed; garbage is ignored.
        now[0] = RESEND_MIN_INTERVAL_S - 1
        assert not runner.on_request(request)
        assert not runner.on_request(b"not a request")
        await engine.run_once()
        assert len(_catalogue_rows(sink)) == 2

    # The re-sent rows reach the worker: normalised, broadcast, applied; the catalogue is back.
    topic = rt.topics.raw["catalogue"].get_topic_name()
    for i, record in enumerate(again):
        await normalizer.handle(rt, "normalize_catalogue", topic, RawEvent(record.model_dump_json().encode(), topic, i))
    canonical = rt.topics.canonical.get_topic_name()
    broadcast = [(v, p) for k, v, _, p in rt.sink.on(canonical)]
    for j, (value, partition) in enumerate(broadcast):
        await dossier_state.handle(rt, FakeEvent(value, partition=partition or 0, offset=j))
    assert not rt.catalogue_missing()
    rows = dict(rt.catalogue_table)
    # Idempotent: the same rows once more change nothing.
    for j, (value, partition) in enumerate(broadcast):
        await dossier_state.handle(rt, FakeEvent(value, partition=partition or 0, offset=100 + j))
    assert dict(rt.catalogue_table) == rows
    assert {orjson.loads(v)["e"]["unit_code"] for v in rows.values()} == {"14767"}
    assert letters(rt) == []
    assert rt.crashes == []


def test_a_catalogue_request_is_small_and_says_nothing_personal():
    req = CatalogueRequest(app_id="dvc-hub", partitions=list(range(4)))
    body = json.loads(req.value())
    assert set(body) == {"type", "app_id", "partitions", "reason", "at"}
    assert len(req.value()) < 200


async def test_the_request_timer_keeps_the_worker_up_when_the_broker_is_away(rt, monkeypatch):
    async def away() -> bool:
        raise KafkaTimeoutError

    monkeypatch.setattr(rt, "request_catalogue_if_empty", away)
    await rt.callbacks["request_catalogue"]()
    assert rt.crashes == []
    await asyncio.sleep(0)


async def test_faust_refusing_the_catalogue_write_as_on_the_fresh_start_exits_the_worker(monkeypatch):
    """The issue's failure, through faust's own check: the changelog's partitions differ in the metadata.

    faust verifies, before every table write until one succeeds, that the changelog topic has as
    many partitions as the source topic in its consumer's metadata snapshot; on the fresh start it
    had not caught up with the just-declared changelog, and every catalogue entry was refused. It
    was a payload-less dead letter each time; now the worker exits and the entry is applied again.
    """
    app = create_app(Settings())
    app.finalize()
    app.flow_control.resume()
    runtime = runtime_of(app)
    runtime.sink = Sent()
    runtime.ready, runtime.active = True, {0}
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    monkeypatch.setattr(app, "crash", crash)
    changelog = changelog_topic(runtime.settings, CATALOGUE_TABLE)
    canonical = runtime.topics.canonical.get_topic_name()
    snapshot = {canonical: 4, changelog: 1}  # the changelog not (fully) in the metadata yet
    monkeypatch.setattr(type(app.consumer), "topic_partitions", lambda _self, topic: snapshot.get(topic))
    agent = app.agents["dossier_state"]
    async with agent.test_context() as ctx:
        await ctx.put(key=b"14767", value=canonical_of(raw(catalogue("14767", "1.001.H56", 4))), wait=False)
        await until(lambda: crashes)
    [reason] = crashes
    assert "PartitionsMismatch" in str(reason)
    assert letters(runtime) == []


async def test_dlq_replay_sends_a_state_letter_back_to_its_partition_under_its_key(rt, monkeypatch):
    from hub.commands import dlq

    forged = good().replace(b'"14767"', b'"99999"')  # refused: unknown unit (a unit added later)
    await dossier_state.handle(rt, FakeEvent(forged, partition=3, offset=9))
    [letter] = letters(rt)
    sent: list[tuple[str, bytes, bytes, int | None]] = []

    class Producer:
        def send(self, topic: str, value: bytes, key: bytes, headers: Any = None, partition: int | None = None) -> Any:
            sent.append((topic, key, value, partition))
            return self

        def get(self, timeout: float) -> None:
            return None

        def flush(self) -> None:
            return None

        def close(self) -> None:
            return None

    settings = Settings()
    monkeypatch.setattr(dlq, "_letters_at", lambda _s, offsets, _p: [(o, letter) for o in offsets if o == 7])
    monkeypatch.setattr(dlq, "producer", lambda *_a, **_k: Producer())
    assert dlq.replay(settings, [7], None, force=True) == (1, 0)
    [(topic, key, value, partition)] = [s for s in sent if s[0] != settings.topics.audit]
    assert (topic, key, partition) == ("canonical", MA.encode(), 3)
    assert decode_canonical(value).event_id == decode_canonical(forged).event_id
