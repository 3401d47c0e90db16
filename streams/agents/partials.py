"""Timers: publish the per-partition unit figures, measure the consumer lag, ask for a missing catalogue.

Every ``worker.partials_interval_s`` the worker publishes one
:class:`schemas.figures.UnitFigures` per (partition, unit) whose counts changed since the last
publish, to the compacted partials topic keyed ``"<partition>|<unit>"``; after a rebuild, and
every ``worker.partials_full_refresh_s``, it publishes all of them. Readers
(``dvc-hub report``, the read API, the statistics push) add up the latest record of each key
with :func:`schemas.figures.merge_counts`, so a partition that moves to another worker is simply
republished under the same key by its new owner.

The figures are derived from the ``dossiers`` table, so publishing is idempotent: publishing twice
publishes the same numbers, and nothing here needs at-least-once delivery.

Every ``worker.partials_interval_s`` too, a ready worker whose catalogue is empty asks the
connectors to send it again (:meth:`streams.app.HubRuntime.request_catalogue_if_empty`, at most
one request per ``worker.catalogue_request_interval_s``; :mod:`hub.requests`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiokafka.errors import KafkaError, KafkaTimeoutError

from streams.guard import exit_on_error

if TYPE_CHECKING:
    import faust

    from streams.app import HubRuntime

log = logging.getLogger(__name__)


def register(app: faust.App, rt: HubRuntime) -> dict[str, Callable[[], Awaitable[None]]]:
    """Register the partials publisher and the lag probe, each under :func:`streams.guard.exit_on_error`.

    Returns the guarded callbacks by name (what faust runs; the tests call them directly).
    """

    w = rt.settings.worker

    async def publish_partials() -> None:
        try:
            await rt.publish_partials()
        except KafkaTimeoutError as exc:
            # The broker is away or slow: the figures are derived, the next tick publishes them.
            # Anything else is not the broker's doing and exits the worker (the guard below).
            log.warning("could not publish partial figures (%s); retrying in %.0fs", type(exc).__name__,
                        w.partials_interval_s)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            log.warning("could not publish partial figures (%s); retrying in %.0fs", type(exc).__name__,
                        w.partials_interval_s)

    async def measure_lag() -> None:
        await rt.refresh_lag()

    async def request_catalogue() -> None:
        # A ready worker with an empty catalogue asks the connectors for it again (hub.requests).
        try:
            await rt.request_catalogue_if_empty()
        except KafkaTimeoutError as exc:
            log.warning("could not ask for the catalogue (%s); asking again later", type(exc).__name__)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            log.warning("could not ask for the catalogue (%s); asking again later", type(exc).__name__)

    async def start_partials_reader() -> None:
        # Merged gauges (766, catalogue) on /metrics: read the partials every worker publishes.
        rt.start_partials_reader()

    guarded: dict[str, Callable[[], Awaitable[None]]] = {
        "start_partials_reader": exit_on_error(app, "task start_partials_reader")(start_partials_reader),
        "publish_partials": exit_on_error(app, "timer publish_partials")(publish_partials),
        "measure_lag": exit_on_error(app, "timer measure_lag")(measure_lag),
        "request_catalogue": exit_on_error(app, "timer request_catalogue")(request_catalogue),
    }
    app.task(guarded["start_partials_reader"])
    app.timer(w.partials_interval_s, name="publish_partials")(guarded["publish_partials"])
    app.timer(w.lag_interval_s, name="measure_lag")(guarded["measure_lag"])
    app.timer(w.partials_interval_s, name="request_catalogue")(guarded["request_catalogue"])
    return guarded
