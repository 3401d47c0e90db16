"""The connector runner: every enabled instance in one asyncio process, with /metrics and /healthz.

``dvc-hub connectors run`` builds a :class:`ConnectorRunner` from the settings. Each instance gets
its own :class:`~connectors.sdk.engine.SyncEngine` (its own rate limit, cursor, seen-set and
health); they share one pooled :class:`httpx.AsyncClient`, one idempotent Kafka producer and one
Prometheus registry served on ``settings.connector_runner`` (loopback by default):

- ``GET /metrics``: the ``dvchub_connector_*`` metrics of :mod:`hub.metrics`, and
  ``dvc_hub_pipeline_backlog{stage="connectors"}`` (instances not caught up);
- ``GET /healthz``: JSON, one entry per instance (status ``starting``/``ok``/``degraded``/``error``,
  last success, last error key and message, cursors), ``caught_up`` and ``backlog`` (instances not
  caught up); HTTP 503 only when every instance is in error.

A worker whose catalogue is empty writes a request to ``topics.requests`` (:mod:`hub.requests`);
the runner listens there (from the topic's end when it starts: it reads every catalogue at start
anyway) and has every engine deliver its catalogue streams whole on their next cycle
(:meth:`~connectors.sdk.engine.SyncEngine.request_resend`), at most once per
:data:`RESEND_MIN_INTERVAL_S` however many workers ask.

Stopping (SIGTERM, Ctrl-C, or setting the ``stop`` event) lets every engine finish the page it is on;
a cursor is only ever saved after its records are acknowledged, so stopping at any point is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from connectors.sdk.engine import ConnectorMetrics, SyncEngine
from connectors.sdk.registry import load_connector
from connectors.sdk.sinks import KafkaSink, RecordSink
from connectors.sdk.state import KafkaStateStore, StateStore
from hub.config import ConfigError, ConnectorInstance, Settings
from hub.kafka import consumer as make_consumer
from hub.kafka import producer as make_producer
from hub.pipeline import backlog_collector
from hub.requests import CatalogueRequest

__all__ = ["ConnectorRunner", "selected_instances"]

log = logging.getLogger(__name__)

STOP_GRACE_S = 20.0
#: The runner re-sends the catalogue at most this often, whatever the number of requests.
RESEND_MIN_INTERVAL_S = 60.0


def selected_instances(settings: Settings, names: Sequence[str] = ()) -> list[ConnectorInstance]:
    """The named instances (enabled or not), or every enabled instance when ``names`` is empty."""
    if names:
        return [settings.connector(n) for n in names]
    return [c for c in settings.connectors if c.enabled]


class ConnectorRunner:
    """Runs connector instances concurrently (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        instances: Sequence[ConnectorInstance],
        *,
        http: httpx.AsyncClient | None = None,
        sink: RecordSink | None = None,
        state_store: StateStore | None = None,
        registry: CollectorRegistry | None = None,
        serve_http: bool = True,
        listen_requests: bool | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.instances = list(instances)
        self.registry = registry or CollectorRegistry()
        self.metrics = ConnectorMetrics(self.registry)
        # dvc_hub_pipeline_backlog{stage="connectors"}: instances not caught up (hub.pipeline).
        self.registry.register(backlog_collector({"connectors": lambda: self.health()["backlog"]}))
        self.serve_http = serve_http
        self._http = http
        self._sink = sink
        self._store = state_store
        self._producer: Any = None
        self.engines: list[SyncEngine] = []
        self.bound_port: int | None = None
        self._site_runner: web.AppRunner | None = None
        #: Listen on the requests topic: by default when the runner talks to Kafka itself.
        self.listen_requests = listen_requests
        self._monotonic = monotonic
        self._last_resend: float | None = None
        #: Catalogue requests answered / ignored (rate limit, unreadable) since the start.
        self.resends = 0
        self.requests_ignored = 0

    def _build_engines(self, http: httpx.AsyncClient) -> list[SyncEngine]:
        engines, problems = [], []
        assert self._sink is not None
        assert self._store is not None
        key = self.settings.privacy.id_hash_key.get_secret_value().encode()
        for instance in self.instances:
            try:
                cls = load_connector(instance.type)
                on_retry = functools.partial(self.metrics.count_retry, instance.name, instance.type)
                connector = cls.from_instance(instance, http, on_retry=on_retry)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            engines.append(SyncEngine(connector, sink=self._sink, state_store=self._store,
                                      topics=self.settings.topics, privacy_key=key,
                                      share_free_text=self.settings.privacy.share_free_text, metrics=self.metrics))
        if problems:
            raise ConfigError("cannot start the connectors:\n" + "\n".join(problems))
        return engines

    def on_request(self, value: bytes | None) -> bool:
        """Handle one record of the requests topic; True when it made the engines re-send their catalogue."""
        try:
            request = CatalogueRequest.parse(value)
        except ValueError:
            self.requests_ignored += 1
            log.warning("connector runner: ignored a record of the requests topic that is not a catalogue request")
            return False
        now = self._monotonic()
        if self._last_resend is not None and now - self._last_resend < RESEND_MIN_INTERVAL_S:
            self.requests_ignored += 1
            log.info("connector runner: catalogue request of %s ignored (re-sent %.0f s ago)", request.app_id,
                     now - self._last_resend)
            return False
        self._last_resend = now
        streams = [f"{e.name}/{name}" for e in self.engines for name in e.request_resend("catalogue")]
        self.resends += 1
        log.warning("connector runner: worker %s has no catalogue for partitions %s; re-sending %s",
                    request.app_id, request.partitions, ", ".join(streams) or "nothing (no catalogue stream)")
        return True

    def _poll_requests(self, consumer: Any) -> list[bytes | None]:
        batches = consumer.poll(timeout_ms=1000)
        return [record.value for records in batches.values() for record in records]

    async def _listen_requests(self, stop: asyncio.Event) -> None:
        """Read the requests topic from its current end until ``stop``; never stops the connectors."""
        from kafka import TopicPartition

        kafka = self.settings.kafka.for_part("connectors")
        topic = self.settings.topics.requests
        try:
            consumer = await asyncio.to_thread(make_consumer, kafka, "connector-requests", group_id=None)
        except Exception as exc:  # noqa: BLE001 - the connectors run without it; the worker asks again
            log.warning("connector runner: cannot read %s (%s); catalogue requests go unanswered", topic, exc)
            return
        try:
            parts = await asyncio.to_thread(consumer.partitions_for_topic, topic)
            tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
            if not tps:
                log.warning("connector runner: topic %s does not exist; catalogue requests go unanswered", topic)
                return
            consumer.assign(tps)
            await asyncio.to_thread(consumer.seek_to_end, *tps)
            while not stop.is_set():
                try:
                    values = await asyncio.to_thread(self._poll_requests, consumer)
                except Exception as exc:  # noqa: BLE001 - the broker may be away a moment
                    log.warning("connector runner: reading %s failed (%s); retrying", topic, type(exc).__name__)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=5.0)
                    continue
                for value in values:
                    self.on_request(value)
        finally:
            await asyncio.to_thread(consumer.close)

    def health(self) -> dict[str, Any]:
        """Every instance's health; ``backlog``: the instances not caught up with their source.

        Before the engines are built (starting), the backlog is every configured instance.
        """
        instances = {e.name: e.health() for e in self.engines}
        statuses = {h["status"] for h in instances.values()}
        overall = "ok" if statuses <= {"ok"} else "error" if statuses == {"error"} else "degraded"
        caught_up = bool(instances) and all(h.get("caught_up") for h in instances.values())
        behind = sum(1 for h in instances.values() if not h.get("caught_up")) if self.engines else len(self.instances)
        return {"status": overall, "caught_up": caught_up, "backlog": behind, "instances": instances}

    async def _metrics(self, request: web.Request) -> web.Response:  # noqa: ARG002 - aiohttp handler
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:  # noqa: ARG002 - aiohttp handler
        body = self.health()
        status = 503 if body["status"] == "error" else 200
        return web.Response(text=json.dumps(body, ensure_ascii=False, default=str), status=status,
                            content_type="application/json")

    async def _start_http(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._site_runner = web.AppRunner(app, access_log=None)
        await self._site_runner.setup()
        endpoint = self.settings.connector_runner
        site = web.TCPSite(self._site_runner, endpoint.host, endpoint.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else endpoint.port
        log.info("connector runner: /metrics and /healthz on http://%s:%s", endpoint.host, self.bound_port)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop cleanly."""
        owns_http = self._http is None
        http = self._http or httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=40))
        if self._sink is None or self._store is None:
            kafka = self.settings.kafka.for_part("connectors")  # the connectors' own Kafka user (ACLs)
            self._producer = make_producer(kafka, "connector-runner")
            self._sink = self._sink or KafkaSink(self._producer)
            self._store = self._store or KafkaStateStore(self._producer, kafka,
                                                         self.settings.topics.connector_state)
        try:
            self.engines = self._build_engines(http)
            states = await self._store.load_all()
            for engine in self.engines:
                await engine.load_state(states.get(engine.name))
            if self.serve_http:
                await self._start_http()
            tasks = [asyncio.create_task(e.run(stop), name=f"connector-{e.name}") for e in self.engines]
            listen = self.listen_requests if self.listen_requests is not None else self._producer is not None
            if listen:
                tasks.append(asyncio.create_task(self._listen_requests(stop), name="connector-requests"))
            log.info("connector runner: %d instance(s) running", len(self.engines))
            await stop.wait()
            _done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S) if tasks else (set(), set())
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            if self._site_runner is not None:
                await self._site_runner.cleanup()
            if owns_http:
                await http.aclose()
            if self._producer is not None:
                await asyncio.to_thread(self._producer.close, 30)
