"""Group stability (issue 12 item 4): a slow portal and a large statistics load never cost the portal
sync its Kafka group membership, and dossiers are not held up behind the statistics.

Real broker, the portal simulator behind a transport that delays every answer. 35 units with two
years of history (``stats_history_from``) make ~1,200 (unit, period) bodies out of partials with
thousands of count keys each — the load that used to hold the asyncio loop for tens of seconds
(building every body from the whole counts) and let the group coordinator expire the session.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
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
from hub.simulators.clock import TZ, SimClock
from hub.simulators.faults import Faults
from hub.simulators.portal import make_portal_app
from hub.simulators.world import World
from hub.sync.metrics import SyncMetrics
from hub.sync.service import SyncService
from hub.sync.signing import sign
from schemas.figures import UnitFigures, count_key
from tests.sync.test_e2e_portal_sync import OUTBOX_KEY, make_item

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

REPORT_NOW = datetime(2021, 12, 20, 10, 0, tzinfo=TZ)
UNITS = [f"{14700 + n}" for n in range(35)]
PERIODS = ([f"{y}-{m:02d}" for y in (2020, 2021) for m in range(1, 13)]
           + [f"{y}-Q{q}" for y in (2020, 2021) for q in range(1, 5)] + ["2020", "2021"])
METRICS = ("received", "finished_early", "finished_on_time", "finished_late", "open_end", "overdue_end")


class SlowTransport(httpx.AsyncBaseTransport):
    """The network, with every answer ``delay_s`` late (a portal under load)."""

    def __init__(self, delay_s: float) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._delay = delay_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        await asyncio.sleep(self._delay)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def heavy_counts(scale: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ky in PERIODS:
        for metric in METRICS:
            for level in ("MOT_PHAN", "TOAN_TRINH", "KHONG_TRUC_TUYEN"):
                for channel in ("TRUC_TUYEN", "TRUC_TIEP"):
                    counts[count_key(metric, level, channel, ky)] = scale
        for proc in range(40):
            counts[count_key("procedure_dossiers", "MOT_PHAN", "TRUC_TUYEN", ky, f"P{proc}")] = 1
    return counts


async def test_a_slow_portal_and_a_statistics_flood_cost_no_rebalance(kafka_broker, kafka_topic):
    world = World(SimClock.live())
    app = make_portal_app(world, Faults(seed=5), {"dvc-hub": "portal-secret"}, rate_limit_per_s=100)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    topics = TopicSettings(
        outbox=kafka_topic(partitions=2), sync_state=kafka_topic(compacted=True),
        partials=kafka_topic(partitions=2, compacted=True), dead_letter=kafka_topic(), audit=kafka_topic(),
    )
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, outbox_signing_key=SecretStr(OUTBOX_KEY)),
        topics=topics,
        portal=PortalSettings(
            base_url=f"http://127.0.0.1:{port}",
            auth=OAuth2ClientCredentials(client_id="dvc-hub", client_secret=SecretStr("portal-secret")),
            batch_size=20, rate_limit_per_s=40, stats_debounce_s=0.5, stats_min_interval_s=60,
            stats_interval_s=3600, stats_history_from="2020-01", stats_concurrency=4,
            # A short session: one blocked stretch of 6 s and the coordinator evicts the consumer.
            consumer_session_timeout_s=6, consumer_heartbeat_interval_s=1, consumer_max_poll_records=100,
            retry=RetrySettings(base_delay_s=0.05, max_delay_s=0.5, timeout_s=5.0),
        ),
        portal_sync=HttpEndpointSettings(port=0),
        worker=WorkerSettings(app_id=f"e2e-stability-{uuid.uuid4().hex[:8]}"),
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", linger_ms=20)
    await producer.start()
    for unit in UNITS:
        for partition in (0, 1):
            p = UnitFigures(partition=partition, unit_code=unit, unit_tier="XA", generated_at=datetime.now(UTC),
                            counts=heavy_counts(partition + 1))
            await producer.send(topics.partials, p.model_dump_json().encode(), key=p.key(), partition=partition)
    dossiers = {f"H56.{UNITS[n % 35]}-211201-{n:05d}": UNITS[n % 35] for n in range(300)}
    for ma, unit in dossiers.items():
        value = make_item(ma, 2, unit).model_dump_json().encode()
        headers = sign(OUTBOX_KEY.encode(), ma.encode(), value)
        await producer.send(topics.outbox, value, key=ma.encode(), headers=headers)
    await producer.flush()

    lag = {"max": 0.0}
    done = asyncio.Event()

    async def watch_loop() -> None:  # how long the loop is ever held: the heartbeat runs on it too
        while not done.is_set():
            t0 = time.monotonic()
            await asyncio.sleep(0.05)
            lag["max"] = max(lag["max"], time.monotonic() - t0 - 0.05)

    metrics = SyncMetrics()
    service = SyncService(settings, now=lambda: REPORT_NOW, metrics=metrics,
                          group_id=f"stability-{uuid.uuid4().hex[:6]}", transport=SlowTransport(0.25))
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop())
    task = asyncio.create_task(service.run(stop))
    stats_pending_when_dossiers_done = -1
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert not task.done(), task.exception()
            if set(world.portal_dossiers) == set(dossiers):
                stats_pending_when_dossiers_done = len(service.stats.pending)
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(8)  # more than a session timeout of statistics work, still in the group
        health = service.health()
        puts = sum(1 for r in world.requests(app="portal") if r["method"] == "PUT")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        done.set()
        await watcher
        await producer.stop()
        await runner.cleanup()

    assert set(world.portal_dossiers) == set(dossiers), "dossiers missing at the portal"
    # The statistics were a real load, and still pending when the last dossier arrived: dossiers first.
    assert service.stats.built >= 35 * len(PERIODS)
    assert stats_pending_when_dossiers_done > 100, stats_pending_when_dossiers_done
    assert puts > 10, "the statistics lane pushed nothing: starved"
    # The group never dropped the consumer: one assignment, no revocation.
    assert service.rebalances.assignments == 1, service.rebalances.assignments
    assert service.rebalances.revocations == 0
    assert lag["max"] < 1.0, f"the loop was held for {lag['max']:.2f} s"
    # The backlog contract: dossiers done, statistics still going, not caught up.
    assert health["backlog"]["outbox"] == 0, health
    assert health["backlog"]["dossiers_pending"] == 0, health
    assert health["backlog"]["stats_pending"] > 0, health
    assert health["caught_up"] is False, health
    assert metrics.value("dvc_hub_pipeline_backlog", stage="statistics") > 0
    assert metrics.value("dvc_hub_pipeline_backlog", stage="outbox") == 0
