"""The pipeline, stage by stage: has the hub caught up with its sources?

One dossier change travels **connectors** (poll a source, produce to Kafka) → **worker** (normalise,
keep the dossier state, count, write the outbox) → **outbox** (the portal sync pushes each dossier to
the province) and **statistics** (the portal sync pushes each changed (unit, period) body). The hub
has caught up only when every stage has: a worker with no lag says nothing about 40,000 outbox
records the portal sync has not pushed yet.

:func:`pipeline_status` is the one place that decides, from the bodies the parts' health
endpoints answered (nothing else: it is pure and unit-tested on recorded bodies):

======================  ====================================================  ==============================
stage                   backlog                                               from
======================  ====================================================  ==============================
``connectors``          connector instances not caught up with their source   connector runner ``/healthz``
``worker``              consumer lag summed over the source topics            worker ``/api/v1/status``
``outbox``              outbox records the portal sync has not committed      portal sync ``/healthz``
``statistics``          (unit, period) bodies that differ from the portal's   portal sync ``/healthz``
``scenario``            scenario changes not released yet (``up --scenario``)  ``.dvc-hub/up.json``
======================  ====================================================  ==============================

Each stage is ``caught_up``, ``behind`` (with its backlog and why) or ``unknown`` (the part did not
answer, or answered without the figures): an unknown stage never counts as caught up. The portal
stages are left out when ``portal.enabled`` is false (pass ``portal=None``).

``dvc-hub status`` prints the result; the worker's ``GET /api/v1/status`` carries it as
``pipeline`` (:class:`PipelineView`, which fetches the other parts' health off the event loop,
cached for a couple of seconds). The backlogs are also the Prometheus gauge
``dvc_hub_pipeline_backlog{stage}`` (:func:`backlog_collector`): the worker exports ``worker``, the
connector runner ``connectors``, the portal sync ``outbox`` and ``statistics``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from hub.config import Settings

__all__ = [
    "STAGES",
    "Fetched",
    "PipelineView",
    "backlog_collector",
    "fetch",
    "health_urls",
    "pipeline_status",
]

StageState = Literal["caught_up", "behind", "unknown"]

#: Every stage in pipeline order (the scenario, a test harness, is not one of the hub's stages).
STAGES = ("connectors", "worker", "outbox", "statistics")

#: At most this many connector instance names are listed as behind (the count is always exact).
MAX_NAMES = 10


@dataclass(frozen=True)
class Fetched:
    """What one part's health endpoint answered: its JSON object, or why there is none.

    ``body`` is None when the part could not be reached or did not answer with a JSON object;
    ``error`` then says what happened (an exception class name or an HTTP status).
    """

    body: Mapping[str, Any] | None
    error: str | None = None
    #: The HTTP status of the answer (None when there was none).
    http_status: int | None = None

    @classmethod
    def failed(cls, error: str) -> Fetched:
        """A part that did not answer."""
        return cls(None, error)


def _count(value: Any) -> int | None:
    """A backlog figure: a non-negative int, or None for anything else (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:  # NaN, or a negative that no backlog can be
        return None
    return int(value)


def _stage(state: StageState, backlog: int | None, why: str, **detail: Any) -> dict[str, Any]:
    return {"state": state, "backlog": backlog, "why": why, **detail}


def _unreachable(fetched: Fetched, part: str) -> dict[str, Any]:
    return _stage("unknown", None, f"{part} did not answer ({fetched.error or 'no JSON body'})")


def connectors_stage(fetched: Fetched) -> dict[str, Any]:
    """The connector runner's ``/healthz``: instances not caught up with their source."""
    body = fetched.body
    if body is None:
        return _unreachable(fetched, "the connector runner")
    instances = body.get("instances")
    if not isinstance(instances, Mapping):
        return _stage("unknown", None, "the connector runner's /healthz has no instances")
    behind = sorted(str(name) for name, h in instances.items() if not (isinstance(h, Mapping) and h.get("caught_up")))
    if not instances:
        return _stage("behind", 0, "no connector instance is running yet", instances=0)
    if behind:
        return _stage("behind", len(behind), f"{len(behind)} of {len(instances)} connector instances have not "
                      "read their source to the end", instances=len(instances), behind=behind[:MAX_NAMES])
    return _stage("caught_up", 0, "every connector instance has read its source to the end",
                  instances=len(instances))


def worker_stage(fetched: Fetched) -> dict[str, Any]:
    """The worker's ``/api/v1/status``: consumer lag per source topic, ready, partials published."""
    body = fetched.body
    if body is None:
        return _unreachable(fetched, "the worker")
    lag = body.get("lag")
    if not isinstance(lag, Mapping) or not body.get("lag_known"):
        return _stage("unknown", None, "the worker has not measured its consumer lag yet")
    per_topic = {str(t): _count(v) for t, v in lag.items()}
    if any(v is None for v in per_topic.values()):
        return _stage("unknown", None, "the worker reported a lag that is not a count", lag=lag)
    lag_by_topic = {t: v for t, v in per_topic.items() if v is not None}
    total = sum(lag_by_topic.values())
    pending = _count(body.get("partials_pending", 0)) or 0
    if not body.get("ready"):
        return _stage("behind", total, "the worker is rebalancing or recovering its tables", lag=lag_by_topic)
    if total:
        return _stage("behind", total, f"{total} source records not processed yet", lag=lag_by_topic)
    if pending:
        return _stage("behind", 0, f"{pending} changed unit figures not published yet", lag=lag_by_topic,
                      partials_pending=pending)
    return _stage("caught_up", 0, "every source record is processed", lag=lag_by_topic)


def portal_stages(fetched: Fetched) -> dict[str, dict[str, Any]]:
    """The portal sync's ``/healthz`` ``backlog`` object: the ``outbox`` and ``statistics`` stages."""
    body = fetched.body
    if body is None:
        stage = _unreachable(fetched, "the portal sync")
        return {"outbox": stage, "statistics": dict(stage)}
    backlog = body.get("backlog")
    if not isinstance(backlog, Mapping):
        stage = _stage("unknown", None, "the portal sync's /healthz reports no backlog (an older portal sync?)")
        return {"outbox": stage, "statistics": dict(stage)}
    outbox, dossiers, stats = (_count(backlog.get(k)) for k in ("outbox", "dossiers_pending", "stats_pending"))
    # The sync's own caught_up also says it is running with its catalogue and partials read: zero
    # figures from a sync that is still starting are not a finished job.
    starting = body.get("caught_up") is not True
    out: dict[str, dict[str, Any]] = {}
    if outbox is None or dossiers is None:
        out["outbox"] = _stage("unknown", None, "the portal sync's backlog has no outbox figures")
    elif outbox or dossiers:
        out["outbox"] = _stage("behind", outbox, f"{outbox} outbox records not committed, {dossiers} dossiers "
                               "not yet accepted by the portal", dossiers_pending=dossiers)
    elif starting:
        out["outbox"] = _stage("behind", 0, "the portal sync is starting", dossiers_pending=0)
    else:
        out["outbox"] = _stage("caught_up", 0, "every outbox record is at the portal", dossiers_pending=0)
    if stats is None:
        out["statistics"] = _stage("unknown", None, "the portal sync's backlog has no statistics figure")
    elif stats:
        out["statistics"] = _stage("behind", stats, f"{stats} (unit, period) statistics not pushed yet")
    elif starting:
        out["statistics"] = _stage("behind", 0, "the portal sync is starting (catalogue or partials not read)")
    else:
        out["statistics"] = _stage("caught_up", 0, "the portal holds the statistics the hub computes")
    return out


def scenario_stage(progress: Mapping[str, Any]) -> dict[str, Any] | None:
    """The scenario ``up`` plays (its ``simulators`` progress in up.json); None for live traffic."""
    name = progress.get("scenario")
    if not name:
        return None
    released, total = _count(progress.get("released")), _count(progress.get("total"))
    left = max(0, total - released) if released is not None and total is not None else None
    if progress.get("done"):
        return _stage("caught_up", 0, f"scenario {name}: every change released", scenario=name)
    return _stage("behind", left, f"scenario {name}: {released}/{total} changes released", scenario=name)


def pipeline_status(
    *,
    connectors: Fetched,
    worker: Fetched,
    portal: Fetched | None,
    scenario: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every configured stage's state and backlog, and whether the whole pipeline has caught up.

    ``portal=None``: the portal sync is disabled (``portal.enabled = false``), its stages are left
    out. ``scenario``: ``up``'s simulator progress, if any. Returns ``{"caught_up": bool, "stages":
    {name: {"state", "backlog", "why", ...}}, "left_out": {name: why}}``; ``caught_up`` is true only
    when every stage listed is ``caught_up``.

        >>> ok = Fetched({"status": "ok", "caught_up": True,
        ...               "backlog": {"outbox": 0, "dossiers_pending": 0, "stats_pending": 3}})
        >>> st = pipeline_status(connectors=Fetched({"instances": {"qlvb": {"caught_up": True}}}),
        ...                      worker=Fetched({"ready": True, "lag_known": True, "lag": {"raw": 0}}), portal=ok)
        >>> st["caught_up"], st["stages"]["statistics"]["state"], st["stages"]["statistics"]["backlog"]
        (False, 'behind', 3)
    """
    stages: dict[str, dict[str, Any]] = {
        "connectors": connectors_stage(connectors),
        "worker": worker_stage(worker),
    }
    left_out: dict[str, str] = {}
    if portal is None:
        left_out = {"outbox": "portal.enabled = false", "statistics": "portal.enabled = false"}
    else:
        stages.update(portal_stages(portal))
    if scenario is not None:
        sc = scenario_stage(scenario)
        if sc is not None:
            stages["scenario"] = sc
    return {
        "caught_up": all(s["state"] == "caught_up" for s in stages.values()),
        "stages": stages,
        "left_out": left_out,
    }


# --------------------------------------------------------------------------- fetching


def health_urls(settings: Settings) -> dict[str, str]:
    """The health endpoint of each part, as configured (``portal`` only when the portal is enabled)."""
    urls = {
        "connectors": f"http://{settings.connector_runner.host}:{settings.connector_runner.port}/healthz",
        "worker": f"http://{settings.worker.web_host}:{settings.worker.web_port}/api/v1/status",
    }
    if settings.portal.enabled:
        # The portal sync serves its read API, /metrics and /healthz on one listener: https with api.tls_*.
        scheme = "https" if settings.api.tls_certfile is not None else "http"
        urls["portal"] = f"{scheme}://{settings.portal_sync.host}:{settings.portal_sync.port}/healthz"
    return urls


def fetch(url: str, timeout: float = 3.0) -> Fetched:
    """GET ``url`` and keep its JSON object (the connector runner answers 503 with a body: kept too)."""
    import httpx

    try:
        # The hub's own parts on the configured (loopback by default) addresses, unauthenticated health
        # endpoints that carry counts only; the portal sync's certificate (api.tls_*) may be self-signed.
        r = httpx.get(url, timeout=timeout, verify=False)  # noqa: S501
    except httpx.HTTPError as exc:
        return Fetched.failed(type(exc).__name__)
    try:
        body = r.json()
    except ValueError:
        return Fetched(None, f"HTTP {r.status_code}, not JSON", r.status_code)
    if not isinstance(body, dict):
        return Fetched(None, f"HTTP {r.status_code}, not a JSON object", r.status_code)
    return Fetched(body, None if r.status_code < 400 else f"HTTP {r.status_code}", r.status_code)


class PipelineView:
    """The worker's ``pipeline`` section of ``/api/v1/status``: the other parts' health, cached.

    The connector runner's and the portal sync's health are fetched in a thread (never on the
    worker's event loop), at most once per ``ttl_s``, with a short timeout each; the worker's own
    status is passed in fresh on every call.
    """

    def __init__(self, settings: Settings, *, ttl_s: float = 2.0, timeout_s: float = 1.0,
                 fetcher: Callable[[str, float], Fetched] = fetch) -> None:
        urls = health_urls(settings)
        self._urls = {k: v for k, v in urls.items() if k != "worker"}
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._fetcher = fetcher
        self._bodies: dict[str, Fetched] = {}
        self._at = float("-inf")
        self._lock: asyncio.Lock | None = None

    def _fetch_all(self) -> dict[str, Fetched]:
        return {k: self._fetcher(url, self._timeout_s) for k, url in self._urls.items()}

    async def current(self, own_status: Mapping[str, Any]) -> dict[str, Any]:
        """:func:`pipeline_status` with this worker's ``own_status`` and the others' cached health."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one fetch at a time; the callers that waited read its result
            if time.monotonic() - self._at >= self._ttl_s:
                self._bodies = await asyncio.to_thread(self._fetch_all)
                self._at = time.monotonic()
        portal = self._bodies.get("portal") if "portal" in self._urls else None
        return pipeline_status(
            connectors=self._bodies.get("connectors", Fetched.failed("not fetched")),
            worker=Fetched(own_status),
            portal=portal,
        )


# --------------------------------------------------------------------------- Prometheus


class _BacklogCollector(Collector):
    def __init__(self, readers: Mapping[str, Callable[[], int | None]]) -> None:
        self._readers = dict(readers)

    def collect(self) -> Iterator[Metric]:
        from hub.metrics import PIPELINE_BACKLOG, gauge_family

        family = gauge_family(PIPELINE_BACKLOG)
        for stage, read in self._readers.items():
            value = read()
            if value is not None:  # not measured yet: no sample rather than a 0 that reads "caught up"
                family.add_metric([stage], float(value))
        yield family

    def describe(self) -> Iterator[Metric]:
        from hub.metrics import PIPELINE_BACKLOG, gauge_family

        yield gauge_family(PIPELINE_BACKLOG)


def backlog_collector(readers: Mapping[str, Callable[[], int | None]]) -> Collector:
    """A collector of ``dvc_hub_pipeline_backlog{stage}``: one sample per stage, read at scrape time.

    ``readers`` maps each stage this process exports to a function returning its backlog, or None
    while it is not known (then the scrape has no sample for the stage, instead of a 0 that would
    look caught up). One collector per registry: the portal sync passes both its stages.

        >>> from prometheus_client import CollectorRegistry, generate_latest
        >>> reg = CollectorRegistry()
        >>> reg.register(backlog_collector({"outbox": lambda: 3, "statistics": lambda: None}))
        >>> [line for line in generate_latest(reg).decode().splitlines() if not line.startswith("#")]
        ['dvc_hub_pipeline_backlog{stage="outbox"} 3.0']
    """
    unknown = sorted(set(readers) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown pipeline stage(s) {', '.join(unknown)}; one of {', '.join(STAGES)}")
    return _BacklogCollector(readers)
