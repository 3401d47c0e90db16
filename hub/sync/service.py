"""``dvc-hub push run``: the service that pushes the outbox to the provincial portal.

Two lanes share the portal's rate limit (:class:`~hub.sync.delivery.PriorityRateLimiter`, dossiers
first, statistics a reserved share) and its circuit breaker:

**Dossier lane** — for every batch it takes from the outbox topic (a consumer group with **manual**
commits, at most ``portal.consumer_max_poll_records`` records per poll):

1. check and parse the records (forged or unreadable ones go to the dead-letter topic);
2. keep the newest version of each dossier; drop what the portal already holds (sync state);
3. push dossiers in batches of ≤ ``portal.batch_size`` — ``isUpdating: "False"`` for dossiers the
   portal does not hold yet, ``"True"`` for those it does; on ``error_code`` 3/-3 the batch is sent
   again as ``"True"``; a refused batch is split in halves until the refused dossier is alone, and
   that one goes to the dead-letter topic;
4. push each dossier's progress rows beyond its high-water mark;
5. hand every ``OutboxStats`` record to the statistics lane (latest wins per key);
6. write the sync state of everything pushed to the compacted sync-state topic (acks=all);
7. only then commit the batch's offsets — on a partition holding a statistics record whose key is
   not settled yet, only up to that record.

**Statistics lane** (:class:`~hub.sync.stats.StatsLane`) — the newest body per (period, unit),
built from the compacted partials topic and the live catalogue, pushed when quiet or at most once
per ``portal.stats_min_interval_s`` while it keeps changing, only if it differs from what the
portal acknowledged; each push is recorded in the sync state.

A crash anywhere re-delivers the uncommitted records and rebuilds the statistics from the partials
and the sync state; the sync state, the deterministic ``Idempotency-Key`` and, after a lost answer, a
look-up of the dossier make the re-delivery harmless. While the portal is down both lanes wait in
the circuit breaker and the consumer stays paused (it keeps polling, so the group does not evict it,
but fetches nothing): the uncommitted offsets are the queue. No stretch of work holds the asyncio
loop (and with it aiokafka's heartbeat) for more than a few milliseconds: parsing and building
yield (:class:`~hub.sync.stats.Pause`). ``docs/portal-sync.md`` has the full argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.helpers import create_ssl_context

from connectors.sdk.auth import build_authenticator
from hub.config import KafkaSettings, Settings
from hub.deadletter import DeadLetter
from hub.sync.api import make_api_app, server_ssl_context
from hub.sync.client import EXISTS_CODES, PortalClient, Reply
from hub.sync.delivery import BREAKER_CODE, Backoff, BreakerState, CircuitBreaker, Deliverer, PriorityRateLimiter
from hub.sync.errors import Rejected
from hub.sync.metrics import SyncMetrics
from hub.sync.outbox import (
    DossierState,
    OutboxItem,
    StatsState,
    canonical_json,
    idempotency_key,
    new_progress_rows,
    newest_per_dossier,
    parse_item,
    parse_state,
    portal_dossier,
    portal_progress_row,
    progress_row_key,
    stats_item,
    stats_state_key,
)
from hub.sync.signing import verify
from hub.sync.stats import DomainStatsBuilder, LiveCatalogue, Pause, PendingStats, StatsBuilder, StatsLane, live_periods
from schemas.figures import OutboxDossier, OutboxStats, UnitFigures
from schemas.units import UnitRegistry, default_registry

log = logging.getLogger(__name__)

__all__ = ["REPLAY_HEADER", "SyncService", "aiokafka_config"]

#: Header ``dvc-hub dlq replay`` puts on a replayed record.
REPLAY_HEADER = "dlq.replayed"
#: The simulator (and, we assume, the portal) takes at most 1000 progress rows per request.
PROGRESS_ROWS_PER_POST = 500
Position = tuple[str, int, int]  # topic, partition, offset


def aiokafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments for aiokafka clients from the hub's Kafka settings (for its part)."""
    kafka = kafka.effective()
    cfg: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap_servers, "security_protocol": kafka.security_protocol}
    if kafka.security_protocol.startswith("SASL"):
        cfg["sasl_mechanism"] = kafka.sasl_mechanism
        cfg["sasl_plain_username"] = kafka.sasl_username
        cfg["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    if kafka.security_protocol.endswith("SSL"):
        cfg["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile,
            password=kafka.ssl_password.get_secret_value() if kafka.ssl_password else None,
        )
    return cfg


class _Batch:
    """The items of one consumed batch and where each came from."""

    def __init__(self) -> None:
        self.dossiers: list[OutboxDossier] = []
        self.stats: list[OutboxStats] = []
        self.position: dict[str, Position] = {}
        #: Items replayed from the dead-letter topic (``dvc-hub dlq replay``): pushed even if refused before.
        self.replayed: set[str] = set()


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts the group's assignments and forgets what the service held for revoked partitions."""

    def __init__(self, service: SyncService) -> None:
        self._service = service
        #: Partition assignments received (1 for a consumer that never left its group).
        self.assignments = 0
        self.revocations = 0

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.revocations += 1 if revoked else 0
        for tp in revoked:
            self._service._held.pop(tp, None)
            self._service._committed.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.assignments += 1
        log.info("outbox partitions assigned: %s (assignment %d)", sorted(tp.partition for tp in assigned),
                 self.assignments)


class SyncService:
    """The portal sync: outbox consumer (dossier lane), statistics lane, read API and metrics.

    ``now`` is the reporting clock (which periods are "current"); ``transport`` replaces the network
    in tests; ``builder`` builds statistics bodies — by default :class:`~hub.sync.stats.DomainStatsBuilder`
    over the configured unit registry and :attr:`catalogue`, the live view of the worker's catalogue
    table changelog that :meth:`run` keeps following (:mod:`hub.sync.stats`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        now: Callable[[], datetime] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        builder: StatsBuilder | None = None,
        metrics: SyncMetrics | None = None,
        group_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        # Every Kafka client of the portal sync authenticates as the portal sync's own user.
        settings = settings.model_copy(update={"kafka": settings.kafka.for_part("portal-sync")})
        self.settings = settings
        self.portal = settings.portal
        self.topics = settings.topics
        self.metrics = metrics or SyncMetrics()
        self._now = now or (lambda: datetime.now(UTC))
        self._transport = transport
        #: The procedure catalogue as the workers hold it (followed from the changelog while running).
        self.catalogue = LiveCatalogue()
        retract: StatsBuilder | None = None
        if builder is None:
            registry = UnitRegistry.load(settings.unit_registry) if settings.unit_registry else default_registry()
            domain = DomainStatsBuilder(registry, self.catalogue)
            builder, retract = domain, domain.always
        self._builder = builder
        self.group_id = group_id or f"{settings.kafka.client_id_prefix}-portal-sync"
        self.dossiers: dict[str, DossierState] = {}
        self.stats_acked: dict[str, StatsState] = {}
        self.breaker = CircuitBreaker(
            self.portal.breaker_failure_threshold, self.portal.breaker_reset_s, on_change=self._breaker_changed
        )
        self.deliverer = Deliverer(
            Backoff(self.portal.retry.base_delay_s, self.portal.retry.max_delay_s, rng),
            self.breaker,
            self.metrics,
            max_attempts=self.portal.retry.max_attempts,
        )
        which = self.portal.stats_live_periods
        #: The statistics lane (its pending map is the statistics backlog).
        self.stats = StatsLane(
            now=self._now, builder=builder, retract=retract, debounce_s=self.portal.stats_debounce_s,
            min_interval_s=self.portal.stats_min_interval_s, interval_s=self.portal.stats_interval_s,
            history_from=self.portal.stats_history_start, history_to=self.portal.stats_history_end,
            live=lambda at: live_periods(at, which), rebuild_s=1.0,
        )
        #: One rate limit for both lanes: dossiers first, statistics a reserved share.
        self.limiter = PriorityRateLimiter(self.portal.rate_limit_per_s, reserved_share=self.portal.stats_rate_share)
        self.ready = asyncio.Event()
        self.api_port: int | None = None
        self.rebalances = _Rebalances(self)
        self._producer: AIOKafkaProducer | None = None
        self._outbox_key = b""
        self._client: PortalClient | None = None
        self._stats_client: PortalClient | None = None
        self._pending_since: dict[str, datetime | None] = {"dossier": None, "progress": None, "stats": None}
        #: Outbox statistics records whose key is not settled yet: partition -> offset -> (key, ticket).
        self._held: dict[TopicPartition, dict[int, tuple[str, int]]] = {}
        self._committed: dict[TopicPartition, int] = {}
        #: Dossiers of the batch in hand not yet accepted or settled (the dossier backlog).
        self._dossiers_pending = 0
        #: Outbox records not committed by the group (end offset minus committed), refreshed every few seconds.
        self._outbox_backlog: int | None = None
        self._partials_loaded = False

    # ------------------------------------------------------------------ read side (API)

    def dossier_state(self, ma_ho_so: str) -> DossierState | None:
        """The sync state of one dossier, or None if the hub never pushed it."""
        return self.dossiers.get(ma_ho_so)

    def stats_body(self, ky: str, unit: str) -> dict[str, Any] | None:
        """The statistics body the hub holds for ``unit`` and ``ky`` (from the partials)."""
        return self.stats.body(ky, unit)

    def stats_units(self) -> list[str]:
        """Units with figures."""
        return self.stats.units()

    def backlog(self) -> dict[str, int]:
        """What is not done yet: outbox records uncommitted, dossiers in hand, statistics bodies pending."""
        outbox = self._outbox_backlog
        return {
            "outbox": outbox if outbox is not None else 0,
            "dossiers_pending": self._dossiers_pending,
            "stats_pending": len(self.stats.pending),
        }

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: alive, the backlog per lane, and whether everything is caught up."""
        backlog = self.backlog()
        running = self.ready.is_set() and self.stats.ready and self._outbox_backlog is not None
        return {"status": "ok", "caught_up": running and not any(backlog.values()), "backlog": backlog}

    def _update_backlog_gauge(self) -> None:
        backlog = self.backlog()
        self.metrics.pipeline_backlog.labels(stage="outbox").set(backlog["outbox"])
        self.metrics.pipeline_backlog.labels(stage="statistics").set(backlog["stats_pending"])

    def _breaker_changed(self, state: BreakerState) -> None:
        self.metrics.breaker_state.set(BREAKER_CODE[state])
        self.metrics.breaker_transitions.labels(to=state).inc()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Uncommitted work is simply re-delivered on the next start."""
        kcfg = aiokafka_config(self.settings.kafka)
        prefix = self.settings.kafka.client_id_prefix
        producer = AIOKafkaProducer(
            **kcfg, client_id=f"{prefix}-portal-sync", acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        self._producer = producer
        self._outbox_key = self.settings.kafka.outbox_key()
        tasks: list[asyncio.Task[None]] = []
        runner: web.AppRunner | None = None
        consumer: AIOKafkaConsumer | None = None
        http = httpx.AsyncClient(
            base_url=self.portal.base_url, timeout=self.portal.retry.timeout_s, transport=self._transport,
            limits=httpx.Limits(max_connections=10),
        )
        try:
            await self._load_state(kcfg)
            self.stats.load_acked(self.stats_acked, datetime.now(UTC))
            auth = build_authenticator(self.portal.auth, base_url=self.portal.base_url).httpx_auth(http)
            self._client = PortalClient(http, auth, self.limiter.lane("dossier"))
            self._stats_client = PortalClient(http, auth, self.limiter.lane("stats"))
            tasks.append(asyncio.create_task(self._follow_partials(kcfg, stop), name="partials"))
            tasks.append(asyncio.create_task(self._follow_catalogue(kcfg, stop), name="catalogue"))
            tasks.append(asyncio.create_task(self._run_stats(stop), name="stats"))
            runner = web.AppRunner(make_api_app(self, self.settings.api.tokens, self.metrics.registry))
            await runner.setup()
            site = web.TCPSite(runner, self.settings.portal_sync.host, self.settings.portal_sync.port,
                               ssl_context=server_ssl_context(self.settings.api))
            await site.start()
            server: Any = site._server  # aiohttp exposes the bound port only here
            if server is not None and getattr(server, "sockets", None):
                self.api_port = int(server.sockets[0].getsockname()[1])
            consumer = AIOKafkaConsumer(
                **kcfg, client_id=f"{prefix}-portal-sync", group_id=self.group_id,
                enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
                session_timeout_ms=int(self.portal.consumer_session_timeout_s * 1000),
                heartbeat_interval_ms=int(self.portal.consumer_heartbeat_interval_s * 1000),
                max_poll_interval_ms=int(self.portal.consumer_max_poll_interval_s * 1000),
                rebalance_timeout_ms=int(self.portal.consumer_max_poll_interval_s * 1000),
                max_poll_records=self.portal.consumer_max_poll_records,
            )
            consumer.subscribe([self.topics.outbox], listener=self.rebalances)
            await consumer.start()
            tasks.append(asyncio.create_task(self._watch_backlog(consumer, stop), name="backlog"))
            self.ready.set()
            log.info("portal sync running (API on port %s)", self.api_port)
            await self._consume(consumer, stop)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.limiter.aclose()
            if consumer is not None:
                await consumer.stop()
            if runner is not None:
                await runner.cleanup()
            await http.aclose()
            await producer.stop()

    async def _load_state(self, kcfg: dict[str, Any]) -> None:
        """Read the compacted sync-state topic to its end (the state survives restarts)."""
        pause = Pause()
        for record in await _read_to_end(kcfg, self.topics.sync_state):
            await pause()
            if record.value is None:
                continue
            try:
                state = parse_state(record.value)
            except ValueError:
                log.warning("skipping an unreadable sync-state record at offset %s", record.offset)
                continue
            if isinstance(state, DossierState):
                self.dossiers[state.ma_ho_so] = state
            else:
                self.stats_acked[stats_state_key(state.ky, state.ma_don_vi)] = state
        log.info("sync state loaded: %d dossiers, %d statistics", len(self.dossiers), len(self.stats_acked))

    def _stats_inputs_complete(self) -> None:
        if not self.stats.ready and self._partials_loaded and self.catalogue.caught_up.is_set():
            self.stats.ready = True
            log.info("statistics inputs loaded (%d partials, catalogue of %d records): statistics lane running",
                     len(self.stats.partials), self.catalogue.records)

    async def _follow_partials(self, kcfg: dict[str, Any], stop: asyncio.Event) -> None:
        """Follow the compacted partials topic from its beginning, for as long as we run."""
        consumer = AIOKafkaConsumer(**kcfg, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            parts = await _partitions(consumer, self.topics.partials)
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)
            pause = Pause()
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=200)
                for records in batch.values():
                    for record in records:
                        await pause()  # a partial is a unit's whole count set: parse a few, then yield
                        if record.value is None:
                            continue
                        try:
                            self.stats.apply(UnitFigures.model_validate_json(record.value))
                        except ValueError:
                            log.warning("skipping an unreadable partial at offset %s", record.offset)
                if not self._partials_loaded:
                    positions = [await consumer.position(tp) for tp in parts]
                    if all(pos >= end[tp] for pos, tp in zip(positions, parts, strict=True)):
                        self._partials_loaded = True
                        self._stats_inputs_complete()
        finally:
            await consumer.stop()

    async def _follow_catalogue(self, kcfg: dict[str, Any], stop: asyncio.Event) -> None:
        """Keep :attr:`catalogue` current from the worker's catalogue changelog, for as long as we run.

        The changelog is created by the worker (faust) with the table's partition count, so this
        never creates it (a metadata request for *all* topics auto-creates nothing): until it
        exists the catalogue is empty and complete. It is read from the beginning, then followed;
        every effective change makes every unit's statistics due again.
        """
        from streams.topics import CATALOGUE_TABLE, changelog_topic  # imports faust: only when running

        topic = changelog_topic(self.settings, CATALOGUE_TABLE)
        consumer = AIOKafkaConsumer(**kcfg, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            parts = await _await_partitions(consumer, topic, stop, self.catalogue.caught_up)
            self._stats_inputs_complete()
            if not parts:
                return
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)
            pause = Pause()
            while not stop.is_set():
                changed = False
                batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                for records in batch.values():
                    for record in records:
                        changed |= self.catalogue.apply(record.value)
                        await pause()
                if changed and self.catalogue.caught_up.is_set():
                    self.stats.catalogue_changed()
                positions = [await consumer.position(tp) for tp in parts]
                if not self.catalogue.caught_up.is_set() and all(
                    pos >= end[tp] for pos, tp in zip(positions, parts, strict=True)
                ):
                    self.catalogue.caught_up.set()
                    self.stats.catalogue_changed()
                    self._stats_inputs_complete()
                    log.info("procedure catalogue loaded from %s: %d records (%d unreadable skipped)",
                             topic, self.catalogue.records, self.catalogue.unreadable)
        finally:
            self.catalogue.caught_up.set()  # never hold statistics back because this follower ended
            self._stats_inputs_complete()
            await consumer.stop()

    async def _run_stats(self, stop: asyncio.Event) -> None:
        await self.stats.run(stop, self._push_stats, concurrency=self.portal.stats_concurrency)

    async def _watch_backlog(self, consumer: AIOKafkaConsumer, stop: asyncio.Event, every_s: float = 2.0) -> None:
        """Refresh the outbox backlog (end offsets minus the group's commits) and the backlog gauges."""
        parts: list[TopicPartition] = []
        while not stop.is_set():
            try:
                if not parts:
                    parts = [TopicPartition(self.topics.outbox, p)
                             for p in sorted(consumer.partitions_for_topic(self.topics.outbox) or ())]
                if parts:
                    end = await consumer.end_offsets(parts)
                    total = 0
                    for tp in parts:
                        committed = self._committed.get(tp)
                        if committed is None:
                            committed = await consumer.committed(tp) or 0
                        total += max(0, end[tp] - committed)
                    self._outbox_backlog = total
            except (KafkaError, IllegalStateError) as exc:
                log.debug("outbox backlog not refreshed: %s", exc)
            self._update_backlog_gauge()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    # ------------------------------------------------------------------ consume loop

    async def _consume(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        max_records = self.portal.consumer_max_poll_records
        while not stop.is_set():
            records = await consumer.getmany(timeout_ms=300, max_records=max_records)
            if not records:
                await self._commit(consumer)  # statistics settled meanwhile free their offsets
                continue
            task = asyncio.create_task(self._process(records))
            assigned = consumer.assignment()
            consumer.pause(*assigned)
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=1.0)
                    self._update_oldest()
                    if stop.is_set() and not task.done():
                        # Stopping: the batch is abandoned uncommitted and re-delivered on restart.
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                        break
                    if not task.done():
                        # Paused: fetches nothing, but proves to the group coordinator we are alive.
                        consumer.pause(*consumer.assignment())
                        await consumer.getmany(timeout_ms=0)
                if task.cancelled():
                    return
                task.result()
            finally:
                consumer.resume(*consumer.assignment())
                self._dossiers_pending = 0
                self._pending_since = {**dict.fromkeys(self._pending_since), "stats": self._pending_since["stats"]}
                self._update_oldest()
            await self._commit(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit, per assigned partition, the position — or the first statistics record not settled yet."""
        offsets: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            held = self._held.get(tp, {})
            for offset, (key, ticket) in list(held.items()):
                if self.stats.settled(key, ticket):
                    del held[offset]
            try:
                target = await consumer.position(tp)
            except IllegalStateError:
                continue
            if held:
                target = min(target, *held)
            if target > self._committed.get(tp, -1):
                offsets[tp] = target
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError, IllegalStateError) as exc:
            # A rebalance took the partitions: their new owner re-delivers; the sync state absorbs it.
            log.warning("offset commit failed (%s); the batch will be re-delivered and deduplicated", exc)
        else:
            self._committed.update(offsets)

    def _update_oldest(self) -> None:
        now = datetime.now(UTC)
        pending = self.stats.pending
        if not pending:
            self._pending_since["stats"] = None
        for kind, since in self._pending_since.items():
            age = (now - since).total_seconds() if since is not None else 0.0
            self.metrics.oldest_unpushed.labels(kind=kind).set(max(0.0, age))

    async def _process(self, records: dict[TopicPartition, list[Any]]) -> None:
        batch = _Batch()
        pause = Pause()
        for tp, recs in records.items():
            for record in recs:
                await self._take(batch, tp, record)
                await pause()
        newest = newest_per_dossier(batch.dossiers)
        todo = [item for item in newest.values() if not self._settled(item, batch)]
        self._dossiers_pending = len(todo)
        if todo:
            self._pending_since["dossier"] = _aware(min(i.created_at for i in todo))
            self._pending_since["progress"] = self._pending_since["dossier"]
        for stat in batch.stats:
            # Latest wins in the lane; the record's offset stays uncommitted until its key is settled.
            ticket = self.stats.offer(stat, replayed=stat.item_id in batch.replayed)
            key = stats_state_key(stat.ky, stat.ma_don_vi)
            topic, partition, offset = batch.position[stat.item_id]
            if not self.stats.settled(key, ticket):
                self._held.setdefault(TopicPartition(topic, partition), {})[offset] = (key, ticket)
                if self._pending_since["stats"] is None:
                    self._pending_since["stats"] = _aware(stat.created_at)
        await self._push_dossiers(todo, batch)

    async def _take(self, batch: _Batch, tp: TopicPartition, record: Any) -> None:
        refused = verify(self._outbox_key, record.key, record.value or b"", record.headers)
        if refused is not None:
            # Not written by the hub: never pushed. The dead letter keeps neither the payload nor
            # an excerpt (a forgery may carry anyone's personal data), only where it was found.
            await self._dead_letter(
                "unauthenticated", f"{refused}; the item was not pushed. If the worker and the portal sync "
                "run with different kafka.outbox_signing_key values, give them the same one",
                position=(tp.topic, tp.partition, record.offset), event_id=None, payload=None,
            )
            return
        try:
            item: OutboxItem = parse_item(record.value or b"")
        except ValueError as exc:
            await self._dead_letter(
                "schema", str(exc), position=(tp.topic, tp.partition, record.offset), event_id=None, payload=None,
                raw=record.value,
            )
            return
        batch.position[item.item_id] = (tp.topic, tp.partition, record.offset)
        if any(name == REPLAY_HEADER for name, _ in (record.headers or ())):
            batch.replayed.add(item.item_id)
        if isinstance(item, OutboxDossier):
            batch.dossiers.append(item)
        else:
            batch.stats.append(item)

    def _settled(self, item: OutboxDossier, batch: _Batch) -> bool:
        state = self.dossiers.get(item.ma_ho_so)
        if state is None:
            return False
        if state.rejected_item_id == item.item_id and item.item_id not in batch.replayed:
            return True  # refused and dead-lettered already; only an operator's replay retries it
        if not state.on_portal:
            return False
        if state.version > item.version:
            return True
        return state.version == item.version and not new_progress_rows(item.progress, state)

    # ------------------------------------------------------------------ dossiers and progress

    def _state(self, ma_ho_so: str) -> DossierState:
        return self.dossiers.get(ma_ho_so) or DossierState(ma_ho_so=ma_ho_so)

    async def _push_dossiers(self, items: list[OutboxDossier], batch: _Batch) -> None:
        size = self.portal.batch_size
        needs_push = [i for i in items if not (self._state(i.ma_ho_so).on_portal and
                                              self._state(i.ma_ho_so).version >= i.version)]
        progress_only = [i for i in items if i not in needs_push]
        known = [i for i in needs_push if self._state(i.ma_ho_so).on_portal]
        fresh = [i for i in needs_push if not self._state(i.ma_ho_so).on_portal]
        for group, updating in ((fresh, False), (known, True)):
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                accepted = await self._push_dossier_chunk(chunk, updating, batch)
                await self._push_progress(accepted, batch, dossier_accepted=True)
        for start in range(0, len(progress_only), size):
            await self._push_progress(progress_only[start : start + size], batch, dossier_accepted=False)

    async def _push_dossier_chunk(
        self, chunk: list[OutboxDossier], updating: bool, batch: _Batch
    ) -> list[OutboxDossier]:
        """Push one batch of dossiers; returns those the portal accepted (rejected ones are dead-lettered)."""
        assert self._client is not None
        client = self._client
        sent = [portal_dossier(i.dossier, send_id_number=self.portal.send_id_number) for i in chunk]
        body = {"isUpdating": "True" if updating else "False", "data": sent}
        key = idempotency_key("dossier", [i.item_id for i in chunk], body)

        async def attempt(lost: bool) -> Reply:
            if lost and await self._settle_lost(sent):
                return Reply("0", "settled by look-up after a lost answer")
            return await client.send("POST", "/api/v1/dongbo/hoso", body, key)

        try:
            reply = await self.deliverer.run("dossier", attempt)
        except Rejected as exc:
            self.metrics.pushes.labels(kind="dossier", outcome="rejected").inc()
            if len(chunk) > 1:
                # The whole batch is refused for one bad dossier: halve until it stands alone.
                half = len(chunk) // 2
                return [
                    *await self._push_dossier_chunk(chunk[:half], updating, batch),
                    *await self._push_dossier_chunk(chunk[half:], updating, batch),
                ]
            await self._reject(chunk[0], exc, batch)
            return []
        if reply.error_code in EXISTS_CODES and not updating:
            self.metrics.pushes.labels(kind="dossier", outcome="exists").inc()
            return await self._push_dossier_chunk(chunk, True, batch)
        self.metrics.pushes.labels(kind="dossier", outcome="ok").inc()
        for item in chunk:
            state = self._state(item.ma_ho_so)
            state.version, state.item_id, state.on_portal = item.version, item.item_id, True
            self.dossiers[item.ma_ho_so] = state
        return chunk

    async def _settle_lost(self, sent: list[dict[str, Any]]) -> bool:
        """After a lost answer: does the portal already hold every dossier of this batch, as sent?

        Every dossier is looked up: after a restart a batch can mix dossiers stored by an earlier,
        differently composed batch with others never stored, so two probes would not prove anything.
        When any differs, the caller resends the same body with the same Idempotency-Key.
        """
        assert self._client is not None
        # One at a time, stopping at the first miss: during an outage that is one failing request
        # per attempt, not a burst of batch_size.
        for dossier in sent:
            held = await self._client.lookup_dossier(str(dossier.get("MaHoSo")))
            if held is None or canonical_json(held) != canonical_json(dossier):
                return False
        log.info("a lost answer settled by look-up: the portal holds the whole batch")
        return True

    async def _push_progress(self, items: list[OutboxDossier], batch: _Batch, *, dossier_accepted: bool) -> None:
        """Push the new progress rows of ``items`` (their dossiers are on the portal), then save their state."""
        assert self._client is not None
        client = self._client
        pending: list[tuple[OutboxDossier, list[dict[str, Any]]]] = []
        for item in items:
            rows = new_progress_rows(item.progress, self._state(item.ma_ho_so))
            if rows:
                pending.append((item, rows))
        group: list[tuple[OutboxDossier, list[dict[str, Any]]]] = []
        count = 0
        groups: list[list[tuple[OutboxDossier, list[dict[str, Any]]]]] = []
        for entry in pending:
            if group and count + len(entry[1]) > PROGRESS_ROWS_PER_POST:
                groups.append(group)
                group, count = [], 0
            group.append(entry)
            count += len(entry[1])
        if group:
            groups.append(group)
        rejected: set[str] = set()
        for g in groups:
            rejected |= await self._post_progress(client, g, batch)
        for item in items:
            state = self._state(item.ma_ho_so)
            if item.ma_ho_so not in rejected:
                for entry_item, rows in pending:
                    if entry_item is item:
                        state.advance(rows)
                state.outcome, state.detail, state.rejected_item_id = "pushed", "", ""
            state.at = datetime.now(UTC)
            self.dossiers[item.ma_ho_so] = state
            await self._save_state(item.ma_ho_so.encode(), state.model_dump_json().encode())
            self._dossiers_pending = max(0, self._dossiers_pending - 1)
        if dossier_accepted or pending:
            log.debug("pushed %d dossiers, %d with new progress", len(items), len(pending))

    async def _post_progress(
        self, client: PortalClient, group: list[tuple[OutboxDossier, list[dict[str, Any]]]], batch: _Batch
    ) -> set[str]:
        share = self.settings.privacy.share_free_text
        rows = [portal_progress_row(item.ma_ho_so, row, share_free_text=share)
                for item, item_rows in group for row in item_rows]
        body = {"data": rows}
        ids = [f"{item.ma_ho_so}:{progress_row_key(row)}" for item, item_rows in group for row in item_rows]
        key = idempotency_key("progress", ids, body)

        async def attempt(_lost: bool) -> Reply:
            # No look-up exists for progress rows: a resend with the same key returns the first answer.
            return await client.send("POST", "/api/v1/dongbo/tiendo", body, key)

        try:
            await self.deliverer.run("progress", attempt)
        except Rejected as exc:
            self.metrics.pushes.labels(kind="progress", outcome="rejected").inc()
            if len(group) > 1:
                half = len(group) // 2
                return (await self._post_progress(client, group[:half], batch)) | (
                    await self._post_progress(client, group[half:], batch)
                )
            item = group[0][0]
            await self._reject(item, exc, batch, what="progress")
            return {item.ma_ho_so}
        self.metrics.pushes.labels(kind="progress", outcome="ok").inc()
        return set()

    async def _reject(self, item: OutboxDossier, exc: Rejected, batch: _Batch, what: str = "dossier") -> None:
        state = self._state(item.ma_ho_so)
        state.outcome, state.detail, state.at = "rejected", f"{what}: {exc.message}"[:500], datetime.now(UTC)
        state.rejected_item_id = item.item_id
        self.dossiers[item.ma_ho_so] = state
        if what == "dossier":
            self._dossiers_pending = max(0, self._dossiers_pending - 1)
        await self._dead_letter(
            "portal_rejected", f"the portal refused the {what} of dossier {item.ma_ho_so} (error_code "
            f"{exc.error_code}): {exc.message}. Fix the source data or the mapping, then `dvc-hub dlq replay`.",
            position=batch.position.get(item.item_id), event_id=item.item_id, payload=item.model_dump(mode="json"),
            codes={"MaHoSo": item.ma_ho_so, "error_code": exc.error_code},
        )
        if what == "dossier":
            await self._save_state(item.ma_ho_so.encode(), state.model_dump_json().encode())

    # ------------------------------------------------------------------ statistics

    async def _push_stats(self, pending: PendingStats) -> StatsState:
        """PUT one pending body (the statistics lane calls this); returns the sync state written."""
        assert self._stats_client is not None
        client = self._stats_client
        path = f"/api/v1/thongke/dvctt/{pending.ky}/{pending.unit}"
        body = pending.body
        key = idempotency_key("stats", [pending.item_id], body)

        async def attempt(_lost: bool) -> Reply:
            # "Latest replaces": resending the same body is harmless, and the key makes it a no-op.
            return await client.send("PUT", path, body, key)

        state = StatsState(ky=pending.ky, ma_don_vi=pending.unit, digest=pending.digest, item_id=pending.item_id)
        try:
            await self.deliverer.run("stats", attempt)
        except Rejected as exc:
            self.metrics.pushes.labels(kind="stats", outcome="rejected").inc()
            # The digest is kept: the same body is not pushed (nor dead-lettered) again, a changed one is.
            state.outcome, state.detail = "rejected", exc.message[:500]
            item = stats_item(pending.ky, pending.unit, body, datetime.now(UTC))
            await self._dead_letter(
                "portal_rejected", f"the portal refused the statistics of unit {item.ma_don_vi} for period "
                f"{item.ky} (error_code {exc.error_code}): {exc.message}. Fix the cause, then `dvc-hub dlq replay`.",
                position=None, event_id=item.item_id, payload=item.model_dump(mode="json"),
                codes={"ma_don_vi": item.ma_don_vi, "ky": item.ky, "error_code": exc.error_code},
            )
        else:
            self.metrics.pushes.labels(kind="stats", outcome="ok").inc()
            state.outcome = "pushed"
        state.at = datetime.now(UTC)
        self.stats_acked[pending.key] = state
        await self._save_state(pending.key.encode(), state.model_dump_json().encode())
        return state

    # ------------------------------------------------------------------ Kafka writes

    async def _save_state(self, key: bytes, value: bytes) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(self.topics.sync_state, value, key=key)

    async def _dead_letter(
        self,
        reason: str,
        detail: str,
        *,
        position: Position | None,
        event_id: str | None,
        payload: dict[str, Any] | None,
        raw: bytes | None = None,
        codes: dict[str, object] | None = None,
    ) -> None:
        assert self._producer is not None
        topic, partition, offset = position or (self.topics.outbox, None, None)
        letter = DeadLetter.make(
            stage="portal_sync", reason=reason, detail=detail, source="portal", topic=topic,
            partition=partition, offset=offset, event_id=event_id, payload=payload, raw=raw,
            keep_text=self.settings.privacy.share_free_text, codes=codes,
        )
        await self._producer.send_and_wait(
            self.topics.dead_letter, letter.value(), key=letter.key(), headers=letter.headers()
        )
        self.metrics.dead_letters.labels(stage="portal_sync", reason=letter.reason).inc()
        log.warning("dead-lettered %s (%s)", event_id or f"{topic}:{partition}:{offset}", reason)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await consumer._client.force_metadata_update()  # aiokafka has no public "refresh metadata"
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} not found; create the hub's topics first (dvc-hub up does)")


async def _await_partitions(
    consumer: AIOKafkaConsumer, topic: str, stop: asyncio.Event, absent: asyncio.Event, poll_s: float = 2.0
) -> list[TopicPartition]:
    """The partitions of ``topic`` once it exists (checked every ``poll_s``); ``absent`` is set while it does not.

    Returns [] when ``stop`` is set first.
    """
    while not stop.is_set():
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()  # aiokafka has no public "refresh metadata"
            parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        absent.set()  # nothing to wait for: no worker has written a catalogue yet
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)
    return []


async def _read_to_end(kcfg: dict[str, Any], topic: str) -> list[Any]:
    """Every record of ``topic`` from the beginning to its current end (no consumer group)."""
    consumer = AIOKafkaConsumer(**kcfg, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out: list[Any] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()
