"""HTTP views on the worker's own web server (faust ``app.page``), bound to loopback by default.

======================  ==================================================================
``GET /metrics``        Prometheus text: domain gauges read live from the aggregates, the
                        pipeline counters, consumer lag, ``dvchub_state_dossiers`` and
                        ``dvc_hub_pipeline_backlog{stage="worker"}``.
``GET /healthz``        ``200 ok`` while the worker runs (``503`` during a rebalance).
``GET /api/v1/status``  partitions, records processed, lag, ``caught_up`` (this worker's), and
                        ``pipeline``: every stage's backlog and whether the whole pipeline
                        has caught up (:mod:`hub.pipeline`).
``GET /api/v1/figures`` this worker's counts (its partitions only) as JSON; ``?unit=14767``
                        and ``?period=2021-Q1`` filter. For city-wide figures read the
                        partials topic (``dvc-hub report``) or sum every worker.
======================  ==================================================================

faust's own ``/table/`` and ``/router/`` views are switched off in :func:`streams.app.create_app`
(they would serve raw table contents).

Example::

    $ curl -s 127.0.0.1:6066/api/v1/figures?unit=14767\\&period=2021-Q1 | jq .units
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.figures import split_key
from streams.guard import exit_on_error

if TYPE_CHECKING:
    import faust

    from streams.app import HubRuntime


def filter_counts(counts: Mapping[str, int], period: str | None) -> dict[str, int]:
    """The counts of one period (all when ``period`` is empty), keys as in :mod:`schemas.figures`."""
    if not period:
        return {k: int(v) for k, v in counts.items()}
    return {k: int(v) for k, v in counts.items() if split_key(k)[3] == period}


def figures_body(rt: HubRuntime, unit: str | None, period: str | None) -> dict[str, Any]:
    """JSON body of ``/api/v1/figures``."""
    totals: Mapping[str, Mapping[str, int]] = rt.aggregates.totals()
    units = {u: filter_counts(c, period) for u, c in totals.items() if not unit or u == unit}
    return {
        "app_id": rt.group,
        "partitions": sorted(rt.active),
        "scope": "this worker's partitions only; sum every worker (or read the partials topic) for totals",
        "unit": unit or None,
        "period": period or None,
        "generated_at": rt.clock().isoformat(),
        "units": units,
    }


View = Callable[[Any, Any], Awaitable[Any]]


def _failed(web: Any, _request: Any) -> Any:
    return web.text("internal error: the worker is exiting to be restarted\n", status=500)


def register_views(app: faust.App, rt: HubRuntime) -> None:
    """Mount the views on ``app``'s web server, each under :func:`streams.guard.exit_on_error`.

    A view fails only when the worker's own state does (a collector that raises on every scrape
    would leave a running process that Prometheus cannot read): the worker exits to be restarted.
    Query parameters are checked and answered with a 4xx, never an exception.
    """

    def page(path: str) -> Callable[[View], View]:
        def mount(view: View) -> View:
            app.page(path)(exit_on_error(app, f"web view {path}", fallback=_failed)(view))
            return view
        return mount

    @page("/metrics")
    async def metrics(web: Any, _request: Any) -> Any:
        return web.bytes(generate_latest(rt.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @page("/healthz")
    async def healthz(web: Any, _request: Any) -> Any:
        if rt.ready:
            return web.text("ok\n")
        return web.text("rebalancing\n", status=503)

    @page("/api/v1/status")
    async def status(web: Any, _request: Any) -> Any:
        body = rt.status()
        # The whole pipeline (hub.pipeline): the other parts' health is fetched off the event loop and
        # cached, so this view never waits on the connector runner or the portal sync for long.
        body["pipeline"] = await rt.pipeline.current(body)
        return web.json(body)

    @page("/api/v1/figures")
    async def figures(web: Any, request: Any) -> Any:
        q = request.query
        unit = (q.get("unit") or "").strip()
        if unit and not rt.units.is_known(unit):
            return web.json({"error": f"unknown unit {unit!r}; use a GSO code from the unit registry"}, status=404)
        return web.json(figures_body(rt, unit or None, (q.get("period") or "").strip() or None))
