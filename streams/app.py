"""The Faust application of the hub: topics, tables, agents, timers and web views, built from settings.

:func:`create_app` is the only entry point. It builds a fresh :class:`faust.App` (no module-level
app, so tests can run several with different settings in one process) and a :class:`HubRuntime`
that holds everything the agents share: the unit registry, the metrics, and the **derived**
in-memory :class:`~streams.domain.aggregates.Aggregates`.

Why the counts cannot double on a crash (the whole argument; ``docs/streams.md`` has the long
form):

1. The ``dossiers`` table is the single source of truth: ``MaHoSo -> state`` where state is
   what :func:`streams.domain.state.apply` made of every event seen, and ``apply`` is idempotent
   (an event of an older or equal version changes nothing and returns ``None``).
2. The figures are never persisted. On every partition assignment, *after* faust has restored the
   table from its changelog, the aggregates of each active partition are rebuilt from the table
   (:meth:`HubRuntime.rebuild`). So whatever a SIGKILL interrupted — a changelog write that
   reached Kafka before the offset commit, or one that did not — the replayed events meet the
   table as Kafka has it, and the figures are recomputed from that table.
3. ``processing_guarantee="at_least_once"``, ``producer_acks=-1`` (all in-sync replicas) and
   faust flushes the producer before every offset commit, so no processed event is lost either.

Example (no broker needed to build it)::

    >>> from hub.config import Settings
    >>> app = create_app(Settings())
    >>> sorted(a for a in app.agents)[:2]
    ['dossier_state', 'normalize_catalogue']
    >>> runtime_of(app).settings.worker.app_id
    'dvc-hub'
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import faust
import orjson
from prometheus_client import CollectorRegistry

from hub.config import Settings
from hub.deadletter import REASONS, DeadLetter
from hub.pipeline import PipelineView, backlog_collector
from schemas.units import UnitRegistry, default_registry
from streams.bounds import InputBounds
from streams.collector import DomainCollector, PipelineMetrics
from streams.domain.aggregates import Aggregates, Catalogue
from streams.domain.periods import metric_window
from streams.domain.state import view
from streams.merged import PartialsReader
from streams.offsets import HubApp
from streams.topics import HubTopics, declare_tables, declare_topics
from streams.watchdog import Positions, StallWatch, WorkerStalledError, recovery_positions

log = logging.getLogger(__name__)

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

#: Defaults of the worker's timing settings (``hub.config.WorkerSettings``; the app reads the settings).
PARTIALS_INTERVAL_S = 1.0
PARTIALS_FULL_REFRESH_S = 30.0
LAG_INTERVAL_S = 2.0
COMMIT_INTERVAL_S = 1.0
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 2.0

#: Producer batch per partition. aiokafka makes a send wait when its partition's batch is full
#: until the batch is drained, and keeps one request in flight per broker: with faust's 16 KiB
#: default every ~10 outbox items waited a produce round trip (the "waiting on the network" of the
#: first profile). 512 KiB stays under the broker's 1 MiB record-batch limit.
PRODUCER_BATCH_BYTES = 512 * 1024
#: Long enough to fill batches under load, short enough to be invisible next to the commit interval.
PRODUCER_LINGER_S = 0.01
#: Records one fetch may return per partition, and records an agent may have buffered. Bigger
#: values let the agents take full batches instead of waking up for a handful of records.
FETCH_BYTES_PER_PARTITION = 4 * 1024 * 1024
STREAM_BUFFER_MAXSIZE = 16_384
MAX_POLL_RECORDS = 2_000

#: (topic name, key, value, headers) -> delivered to the producer's buffer.
Sink = Callable[[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int | None], Awaitable[None]]


def local_now() -> datetime:
    """Now, aware, in the city's time zone (domain.md: all local times are Asia/Ho_Chi_Minh)."""
    return datetime.now(LOCAL_TZ)


def _registry(settings: Settings) -> UnitRegistry:
    return UnitRegistry.load(settings.unit_registry) if settings.unit_registry else default_registry()


class HubRuntime:
    """Everything the agents, timers and views of one app share.

    The aggregates are derived from the ``dossiers`` table (see the module docstring); the
    ``catalogue`` likewise from the ``catalogue`` table. Both are rebuilt on every recovery.
    """

    def __init__(self, app: faust.App, settings: Settings, topics: HubTopics, dossiers: Any, catalogue: Any) -> None:
        self.app = app
        self.settings = settings
        self.topics = topics
        self.dossiers = dossiers
        self.catalogue_table = catalogue
        self.units = _registry(settings)
        #: What the normaliser and the state agent accept (dates, versions, codes): settings.bounds.
        self.bounds = InputBounds(settings.bounds)
        self.catalogue = Catalogue()
        self.aggregates = Aggregates(self.units, self.catalogue)
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = PipelineMetrics(self.registry)
        self.registry.register(DomainCollector(self, local_now))
        # dvc_hub_pipeline_backlog{stage="worker"}: the lag summed over the source topics, once measured.
        self.registry.register(backlog_collector({"worker": self.backlog}))
        #: The ``pipeline`` section of ``/api/v1/status``: every stage, the other parts' health cached.
        self.pipeline = PipelineView(settings)
        self.clock: Callable[[], datetime] = local_now
        #: Canonical-topic partitions this worker owns and has rebuilt.
        self.active: set[int] = set()
        #: False between a revocation and the rebuild after recovery: nothing is published then.
        self.ready = False
        self.dirty: set[tuple[int, str]] = set()
        self.units_by_partition: dict[int, set[str]] = {}
        self._lag: dict[str, int] = {}
        self.lag_known = False
        self.stall_watch = StallWatch(settings.worker.stall_timeout_s)
        self.recovery_watch = StallWatch(settings.worker.stall_timeout_s)
        self._last_full_publish = 0.0
        self.sink: Sink = self._send_via_faust
        #: Reader of the partials topic for the merged gauges; started with the worker (not in tests
        #: that run agents in-process).
        self.partials_reader: PartialsReader | None = None
        #: Records whose delivery failed after the producer's own retries (logged, counted).
        self.send_failures = 0
        #: Table rows a rebuild could not count: dead letters to send (rebuilds are synchronous), and
        #: the rows already reported, so that every later rebuild does not report them again.
        self.pending_dead_letters: list[DeadLetter] = []
        self._reported_rows: set[tuple[str, int, int]] = set()
        #: Distinct table rows the rebuilds skipped since the start (``/api/v1/status``).
        self.skipped_rows = 0
        #: The guarded timer and task callbacks by name (streams.agents.partials.register).
        self.callbacks: dict[str, Callable[[], Awaitable[None]]] = {}
        self._outbox_key: bytes | None = None
        #: Catalogue requests sent (:meth:`request_catalogue_if_empty`), and when the last one went.
        self.catalogue_requests = 0
        self._last_catalogue_request: float | None = None

    @property
    def outbox_key(self) -> bytes:
        """The HMAC key of outbox items (:mod:`hub.sync.signing`), read once, on the first item."""
        if self._outbox_key is None:
            self._outbox_key = self.settings.kafka.outbox_key()
        return self._outbox_key

    # ------------------------------------------------------------------ sending

    async def _send_via_faust(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None,
        partition: int | None,
    ) -> None:
        # Straight to faust's producer, not through ``Topic.send``: the channel machinery around it
        # (FutureMessage, PendingMessage, codecs, callbacks) cost as much CPU per record as the
        # domain code (py-spy profile in docs/benchmarks.md §1), and the hub needs none of it: keys
        # and values are bytes already and every topic is created by ``hub.kafka.ensure_topics``.
        # At-least-once is unchanged: faust flushes this same producer before each offset commit.
        fut = cast("asyncio.Future[Any]", await self.app.producer.send(topic, key, value, partition, None, headers))
        fut.add_done_callback(self._on_delivered)

    def _on_delivered(self, fut: Any) -> None:
        # What faust's own send does with a failed delivery (log it; the producer has retried);
        # the record is named by nothing but its topic: keys may be dossier codes, never payloads.
        if not fut.cancelled() and fut.exception() is not None:
            self.send_failures += 1
            log.error("a record could not be delivered after the producer's retries: %r", fut.exception())

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Produce one record through the configured sink (faust's producer; a list in tests)."""
        await self.sink(topic, key, value, headers, partition)

    async def settle_writes(self) -> None:
        """Wait until faust's producer buffer has handed every queued record to the Kafka client.

        Table writes are queued there (``send_soon``) and produced by a background task. faust's
        flush before an offset commit gives up waiting on that queue after 0.1 s without progress
        (``ProducerBuffer.flush_atmost``), so a changelog record still queued then would not be
        covered by the commit. Agents that write tables call this before their batch is acked;
        it returns at once when the queue is empty.
        """
        buffer = getattr(getattr(self.app, "producer", None), "buffer", None)
        if buffer is None or self.sink != self._send_via_faust:  # tests with a list as the sink
            return
        try:
            while buffer.size:
                await buffer.flush_atmost(buffer.size)
        except RuntimeError:  # the producer is stopping: nothing is committed after this either
            log.warning("producer stopped with %d queued records; they will be reprocessed", buffer.size)

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Send a dead letter and count it; never raises (a failing DLQ must not stop the stream)."""
        # The reason is a metric label: only the fixed vocabulary, whatever built the letter.
        reason = letter.reason if letter.reason in REASONS else "unexpected"
        self.metrics.dead_letters.labels(stage=letter.stage, reason=reason).inc()
        try:
            await self.send(self.topics.dead_letter.get_topic_name(), letter.key(), letter.value(), letter.headers())
        except Exception:
            log.exception("could not send a dead letter (stage=%s reason=%s)", letter.stage, letter.reason)

    # ------------------------------------------------------------------ derived state

    def mark(self, partition: int, units: Iterable[str]) -> None:
        """Remember that these units' figures in ``partition`` changed (published by the timer)."""
        known = self.units_by_partition.setdefault(partition, set())
        for unit in units:
            known.add(unit)
            self.dirty.add((partition, unit))

    def revoke(self) -> None:
        """A rebalance started: stop publishing until the rebuild after recovery."""
        self.ready = False

    def rebuild(self, active: set[int]) -> None:
        """Recompute the catalogue and the aggregates of every active partition from the tables."""
        started = time.monotonic()
        for p in self.active - active:
            self.aggregates.drop_partition(p)
            self.units_by_partition.pop(p, None)
        self.active = set(active)
        self.rebuild_catalogue()
        self._rebuild_partitions(self.active)
        self.ready = True
        self._last_full_publish = 0.0  # publish every key of the rebuilt partitions now
        log.info(
            "rebuilt aggregates of partitions %s (%d dossiers, %d catalogue changes) in %.2fs",
            sorted(active), self.aggregates.dossier_count(), self.catalogue.version, time.monotonic() - started,
        )

    def _rebuild_partitions(self, partitions: set[int]) -> None:
        views: dict[int, list[Any]] = {p: [] for p in partitions}
        rows: dict[int, int] = {}  # id(view) -> canonical offset of the row it came from
        for key, raw in self.dossiers.items():
            if raw is None:
                continue
            try:
                rec = orjson.loads(raw)
                bucket = views.get(rec["p"])
                if bucket is None:  # a standby or formerly owned partition kept by the store
                    continue
                v = view(rec["s"])
            except Exception as exc:  # noqa: BLE001 - one bad row must not keep the worker from getting ready
                self._skip_row("dossiers", key, raw, exc)
                continue
            if v is not None:
                bucket.append(v)
                rows[id(v)] = int(rec.get("o", -1))
        for p, vs in views.items():
            def skipped(v: Any, exc: Exception, p: int = p) -> None:
                self._skip_row("dossiers", v.ma_ho_so.encode(), None, exc, partition=p, offset=rows.get(id(v), -1))

            self.aggregates.rebuild(p, vs, on_error=skipped)
            self.mark(p, {str(v.unit_code) for v in vs} | self.units_by_partition.get(p, set()))

    def _skip_row(self, table: str, key: Any, raw: Any, exc: Exception, *, partition: int | None = None,
                  offset: int | None = None) -> None:
        """Leave a table row out of the figures: log it (no content), count it, queue one dead letter.

        Such a row was written by an older hub (before the input bounds) or forged on the changelog;
        the figures of every other dossier are still exact. The row stays in the table: once its
        dossier is sent again with plausible data, the new version replaces it.
        """
        if partition is None or offset is None:
            try:
                rec = orjson.loads(raw) if raw is not None else {}
                partition, offset = int(rec.get("p", -1)), int(rec.get("o", -1))
            except Exception:  # noqa: BLE001 - not even JSON: nothing more to say about it
                partition, offset = -1, -1
        where = (table, partition, offset)
        if where in self._reported_rows:
            return
        self._reported_rows.add(where)
        self.skipped_rows += 1
        log.error("rebuild: skipped a %s row of partition %s (last changed by canonical offset %s): %s; "
                  "its dossier counts nowhere until a plausible version of it arrives",
                  table, partition, offset, type(exc).__name__)
        self.pending_dead_letters.append(DeadLetter.make(
            stage="state", reason="unexpected",
            detail=f"a {table} table row could not be counted when the figures were rebuilt "
                   f"({type(exc).__name__}); it is left out of the figures. Send the dossier again from its "
                   "source (the row was written before the input bounds, or not by the hub)",
            source="canonical", topic=self.topics.canonical.get_topic_name(),
            partition=partition if partition >= 0 else None, offset=offset if offset >= 0 else None,
            event_id=self._printable_key(key), codes={"MaHoSo": self._printable_key(key)},
        ))

    def _printable_key(self, key: Any) -> str | None:
        """The row's dossier code when it is one the bounds accept (a forged key may hold anything)."""
        try:
            code = bytes(key).decode("utf-8")
            self.bounds.check_code(code, "key", "dossier")
        except Exception:  # noqa: BLE001 - not a code: the partition and offset identify the row
            return None
        return code

    async def flush_dead_letters(self) -> None:
        """Send the dead letters that synchronous code (a rebuild) queued."""
        while self.pending_dead_letters:
            await self.dead_letter(self.pending_dead_letters.pop(0))

    def rebuild_catalogue(self) -> None:
        """The catalogue, from the ``catalogue`` table rows of the active partitions.

        Catalogue entries are broadcast to every partition of the canonical topic (see
        :mod:`streams.agents.normalizer`), so each partition holds the whole catalogue. A row that
        cannot be read is left out (:meth:`_skip_row`).
        """
        from schemas.events import CatalogueEntry

        cat = Catalogue()
        for key, raw in self.catalogue_table.items():
            if raw is None:
                continue
            try:
                rec = orjson.loads(raw)
                if rec["p"] in self.active:
                    cat.add(CatalogueEntry.model_validate(rec["e"]))
            except Exception as exc:  # noqa: BLE001 - as for dossier rows
                self._skip_row("catalogue", key, raw, exc)
        self.catalogue = cat
        self.aggregates.set_catalogue(cat)

    def catalogue_missing(self) -> bool:
        """True when this ready worker has active partitions and not one catalogue row for them.

        The catalogue is rebuilt from the table's rows of the active partitions on every recovery
        and grows with every entry applied, so an empty one means none arrived or survived: the
        figures that depend on it (procedures offered, fees, paper results) are zero everywhere.
        """
        return self.ready and bool(self.active) and self.catalogue.version == 0

    async def request_catalogue_if_empty(self, now: float | None = None) -> bool:
        """Ask the connectors for the whole catalogue when it is missing; True when a request was sent.

        At most one request per ``worker.catalogue_request_interval_s`` (0: never). Not before the
        consumer lag is known, nor while the raw catalogue topic still has records this app has not
        read: they may be the catalogue (a fresh start reads it from there, without asking).
        The connectors answer by re-sending every catalogue row (:mod:`hub.requests`); rows this
        worker has already are duplicates and change nothing.
        """
        from hub.requests import CatalogueRequest

        interval = self.settings.worker.catalogue_request_interval_s
        if interval <= 0 or not self.catalogue_missing():
            return False
        if not self.lag_known or self._lag.get(self.topics.raw["catalogue"].get_topic_name(), 0) > 0:
            return False
        now = time.monotonic() if now is None else now
        if self._last_catalogue_request is not None and now - self._last_catalogue_request < interval:
            return False
        self._last_catalogue_request = now
        request = CatalogueRequest(app_id=self.group, partitions=sorted(self.active))
        await self.send(self.topics.requests.get_topic_name(), request.key(), request.value())
        self.catalogue_requests += 1
        log.warning("the catalogue of partitions %s is empty: asked the connectors to send it again "
                    "(next request in %.0f s at the earliest)", sorted(self.active), interval)
        return True

    def refresh_stale(self) -> None:
        """Rebuild the partitions whose figures predate a catalogue change (fee, paper result, level).

        Called before figures are read or published rather than on every catalogue entry, so a
        catalogue load of thousands of rows costs a few rebuilds, not thousands.
        """
        stale = set(self.aggregates.stale_partitions()) & self.active
        if stale and self.ready:
            self._rebuild_partitions(stale)

    # ------------------------------------------------------------------ live views (collector, web)

    def domain_samples(self, now: datetime) -> Iterable[Any]:
        """Domain gauges: this worker's partitions (additive) and the merged city-wide copy (766, catalogue)."""
        from streams.merged import merged_gauges

        self.refresh_stale()
        window = self.metric_window(now)
        return [*self.aggregates.prometheus_samples(now, window), *merged_gauges(self, now, window)]

    def metric_window(self, now: datetime) -> frozenset[str]:
        """The periods ``/metrics`` exports: now's year and ``metrics.years_back`` years before it."""
        return metric_window(now.astimezone(LOCAL_TZ).year, self.settings.metrics.years_back)

    def state_dossiers(self) -> int:
        """Dossiers (with a one-stop view) in this worker's active partitions."""
        return self.aggregates.dossier_count()

    def lag(self) -> Mapping[str, int]:
        """Consumer lag per source topic for this app's group (refreshed every few seconds)."""
        return dict(self._lag)

    def backlog(self) -> int | None:
        """Source records not processed yet (lag summed over the source topics); None until measured."""
        return sum(self._lag.values()) if self.lag_known else None

    @property
    def group(self) -> str:
        """The consumer group: faust uses the app id."""
        return str(self.app.conf.id)

    def status(self) -> dict[str, Any]:
        """This worker's own part of ``GET /api/v1/status`` (the view adds ``pipeline``, :mod:`hub.pipeline`).

        ``caught_up`` is this worker's alone (ready, lag measured and zero); the whole pipeline's is
        ``pipeline.caught_up``.
        """
        m = self.metrics
        agents = sorted(self.app.agents)
        records_in = {a: int(m.records_in.current(agent=a)) for a in agents}
        return {
            "app_id": self.group,
            "ready": self.ready,
            "partitions": sorted(self.active),
            "records_in": records_in,
            "records_processed": sum(records_in.values()),
            "dossiers": self.state_dossiers(),
            "lag": self.lag(),
            "lag_known": self.lag_known,
            "caught_up": self.ready and self.lag_known and all(v == 0 for v in self._lag.values()),
            "partials_pending": len(self.dirty),
            "send_failures": self.send_failures,
            "skipped_rows": self.skipped_rows,
        }

    # ------------------------------------------------------------------ timers

    async def publish_partials(self, *, full: bool = False) -> int:
        """Publish the :class:`UnitFigures` of every changed (partition, unit); all of them when ``full``."""
        if not self.ready:
            return 0
        self.refresh_stale()
        await self.flush_dead_letters()
        if full or time.monotonic() - self._last_full_publish >= self.settings.worker.partials_full_refresh_s:
            self._last_full_publish = time.monotonic()
            keys = {(p, u) for p in self.active for u in self.units_by_partition.get(p, set())}
            keys |= {(p, u) for p in self.active for u in self.aggregates.units(p)}
            self.dirty.clear()
        else:
            keys, self.dirty = self.dirty, set()
        now = self.clock()
        topic = self.topics.partials.get_topic_name()
        sent = 0
        for p, unit in sorted(keys):
            if p not in self.active:
                continue
            fig = self.aggregates.unit_figures(p, unit, now)
            await self.send(topic, fig.key(), fig.model_dump_json().encode())
            sent += 1
        return sent

    async def refresh_lag(self) -> None:
        """Group lag per source topic (end offset − committed offset), measured with kafka-python.

        The same measurement feeds the stall watchdog (:mod:`streams.watchdog`): a partition with
        records waiting and no progress for ``worker.stall_timeout_s`` crashes the worker on purpose,
        for its supervisor to restart it.
        """
        try:
            self._lag, positions = await asyncio.to_thread(self._measure_lag)
            self.lag_known = True
        except Exception as exc:  # noqa: BLE001 — the broker may be briefly away; keep the last figures
            log.warning("could not measure consumer lag: %s", exc)
            self.stall_watch.forget()  # nothing can move while the broker is away
            self.recovery_watch.forget()
            return
        if not self.ready:  # recovering or rebalancing: partitions are paused on purpose
            self.stall_watch.forget()
            await self._watch_recovery()
            return
        self.recovery_watch.forget()
        # Only this worker's partitions: another worker's stall is that worker's to detect.
        mine = {(tp.topic, tp.partition) for tp in self.app.assignor.assigned_actives()}
        stalls = self.stall_watch.observe({tp: p for tp, p in positions.items() if tp in mine}, time.monotonic())
        if stalls:
            what = "; ".join(s.describe() for s in stalls)
            log.error("worker stalled: %s. faust has stopped fetching (faust issues #629, #523); exiting so that "
                      "the supervisor restarts the worker, which resumes from the committed offsets", what)
            await self.app.crash(WorkerStalledError(what))

    async def _watch_recovery(self) -> None:
        """The stall watchdog for table recovery: changelog partitions with records left and none read.

        faust's recovery waits without a limit for the changelog records it still needs; a worker
        whose recovery reads nothing (seen in CI: two changelog partitions, no record in four
        minutes, faust logging "No event received for active tp" every five seconds) never gets
        ready. The watch is the same as for the source topics, with the recovery's own positions:
        the last changelog offset applied and the highwater it must reach.
        """
        recovery = cast(Any, self.app.tables).recovery  # faust's TableManager (its type omits it)
        if not recovery.in_recovery:
            self.recovery_watch.forget()
            return
        positions = recovery_positions(recovery)
        stalls = self.recovery_watch.observe(positions, time.monotonic())
        if stalls:
            what = "; ".join(s.describe() for s in stalls)
            log.error("table recovery stalled: %s. faust reads no changelog records; exiting so that the "
                      "supervisor restarts the worker, which recovers its tables again", what)
            await self.app.crash(WorkerStalledError(f"table recovery stalled: {what}"))

    _lag_clients: tuple[Any, Any] | None = None

    def _measure_lag(self) -> tuple[dict[str, int], Positions]:
        from kafka import TopicPartition

        from hub.kafka import admin, consumer

        if self._lag_clients is None:
            self._lag_clients = (
                admin(self.settings.kafka, "worker-lag"),
                consumer(self.settings.kafka, "worker-lag"),
            )
        adm, cons = self._lag_clients
        committed = adm.list_group_offsets({self.group: None}).get(self.group, {})
        out: dict[str, int] = {}
        positions: dict[tuple[str, int], tuple[int, int]] = {}
        for name in self.topics.source_topic_names():
            parts = cons.partitions_for_topic(name) or set()
            tps = [TopicPartition(name, p) for p in sorted(parts)]
            if not tps:
                continue
            ends = cons.end_offsets(tps)
            begins = cons.beginning_offsets(tps)
            total = 0
            for tp in tps:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
                total += max(0, ends[tp] - done)
                positions[(name, tp.partition)] = (done, ends[tp])
            out[name] = total
        return out, positions

    def start_partials_reader(self) -> None:
        """Start reading the partials topic for the merged gauges (see :mod:`streams.merged`)."""
        if self.partials_reader is None:
            self.partials_reader = PartialsReader(self.settings)
            self.partials_reader.start()

    def close(self) -> None:
        """Close the lag clients and the partials reader (the faust app closes its own clients)."""
        if self.partials_reader is not None:
            self.partials_reader.stop()
            self.partials_reader = None
        if self._lag_clients is not None:
            for c in self._lag_clients:
                try:
                    c.close()
                except Exception:  # noqa: BLE001, S112 — best effort at shutdown
                    continue
            self._lag_clients = None


def _credentials(settings: Settings) -> Any:
    """faust's ``broker_credentials`` for the worker's own Kafka user (:meth:`KafkaSettings.for_part`)."""
    k = settings.kafka.for_part("worker").effective()
    if k.security_protocol.startswith("SASL"):
        import ssl

        ctx = None
        if k.security_protocol == "SASL_SSL":
            ctx = ssl.create_default_context(cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
            ctx.check_hostname = k.ssl_check_hostname
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            mechanism=k.sasl_mechanism,
            ssl_context=ctx,
        )
    if k.security_protocol == "SSL":
        import ssl

        ctx = ssl.create_default_context(cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
        ctx.check_hostname = k.ssl_check_hostname
        if k.ssl_certfile:
            ctx.load_cert_chain(
                str(k.ssl_certfile), str(k.ssl_keyfile) if k.ssl_keyfile else None,
                k.ssl_password.get_secret_value() if k.ssl_password else None,
            )
        return faust.SSLCredentials(ctx)
    return None


def _check_store(store: str) -> None:
    if store.startswith("rocksdb://"):
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            raise SystemExit(
                "worker.store = rocksdb:// needs the `rocksdict` package: pip install 'faust-streaming[rocksdict]', "
                "or use --store memory://"
            ) from None


def create_app(settings: Settings) -> faust.App:
    """Build the hub's faust app from ``settings`` (see the module docstring)."""
    # Every Kafka client of the worker (faust's, the lag and partials readers) is the worker's user.
    settings = settings.model_copy(update={"kafka": settings.kafka.for_part("worker")})
    w, k = settings.worker, settings.kafka
    _check_store(w.store)
    # HubApp: faust's App whose consumer never skips offsets it did not process (streams/offsets.py).
    app = HubApp(
        w.app_id,
        broker=k.faust_broker_url(),
        broker_credentials=_credentials(settings),
        broker_client_id=f"{k.client_id_prefix}-worker",
        broker_commit_interval=w.commit_interval_s,
        broker_session_timeout=w.session_timeout_s,
        broker_heartbeat_interval=w.heartbeat_interval_s,
        # Throughput settings: see the constants above and docs/streams.md "Throughput".
        broker_max_poll_records=MAX_POLL_RECORDS,
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
        stream_buffer_maxsize=STREAM_BUFFER_MAXSIZE,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        store=w.store,
        datadir=str(w.data_dir),
        processing_guarantee=w.processing_guarantee,
        producer_acks=-1,
        producer_linger=PRODUCER_LINGER_S,
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        # faust creates no topic: every one, its tables' changelogs and leader topic included, is
        # created by the hub and checked before faust starts (hub.kafka.hub_topics, dvc-hub worker).
        # faust declaring them itself raced its own agents on a fresh start (PartitionsMismatch).
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_bind=w.web_host,
        web_host=w.web_host,
        web_port=w.web_port,
        # faust would serve raw table contents (personal data adjacent) on /table/: off, and loopback anyway.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        autodiscover=False,
    )
    topics = declare_topics(app, settings)
    dossiers, catalogue = declare_tables(app, settings)
    rt = HubRuntime(app, settings, topics, dossiers, catalogue)
    setattr(app, _RUNTIME_ATTR, rt)  # faust.App has no slot for user state
    rereads = rt.metrics.rereads
    for name in topics.source_topic_names():
        rereads.labels(topic=name)  # a series from the start: rate() reads 0, not "no data"
    app.on_reread = lambda topic: rereads.labels(topic=topic).inc()

    from streams.agents import dossier_state, normalizer, partials
    from streams.web import register_views

    for source in topics.raw:
        normalizer.register(app, rt, source)
    dossier_state.register(app, rt)
    rt.callbacks = partials.register(app, rt)
    register_views(app, rt)
    return app


_RUNTIME_ATTR = "_dvchub_runtime"


def runtime_of(app: faust.App) -> HubRuntime:
    """The :class:`HubRuntime` that :func:`create_app` attached to ``app``."""
    rt = getattr(app, _RUNTIME_ATTR, None)
    if not isinstance(rt, HubRuntime):
        raise TypeError("this faust app was not built by streams.app.create_app")
    return rt
