"""Timers: publish the per-partition unit figures, and measure the consumer lag.

Every ``worker.partials_interval_s`` the worker publishes one
:class:`schemas.figures.UnitFigures` per (partition, unit) whose counts changed since the last
publish, to the compacted partials topic keyed ``"<partition>|<unit>"``; after a rebuild, and
every ``worker.partials_full_refresh_s``, it publishes all of them. Readers
(``dvc-hub report``, the read API, the statistics push) add up the latest record of each key
with :func:`schemas.figures.merge_counts`, so a partition that moves to another worker is simply
republished under the same key by its new owner.

The figures are derived from the ``dossiers`` table, so publishing is idempotent: publishing twice
publishes the same numbers, and nothing here needs at-least-once delivery.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from streams.app import HubRuntime

log = logging.getLogger(__name__)


def register(app: faust.App, rt: HubRuntime) -> None:
    """Register the partials publisher and the lag probe."""

    w = rt.settings.worker

    async def publish_partials() -> None:
        try:
            await rt.publish_partials()
        except Exception:  # a timer that raises is stopped by faust: log and try again next tick
            log.exception("could not publish partial figures; retrying in %.0fs", w.partials_interval_s)

    async def measure_lag() -> None:
        await rt.refresh_lag()

    async def start_partials_reader() -> None:
        # Merged gauges (766, catalogue) on /metrics: read the partials every worker publishes.
        rt.start_partials_reader()

    app.task(start_partials_reader)
    app.timer(w.partials_interval_s, name="publish_partials")(publish_partials)
    app.timer(w.lag_interval_s, name="measure_lag")(measure_lag)
