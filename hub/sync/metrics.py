"""The portal sync's Prometheus metrics, built from the catalogue in :mod:`hub.metrics`.

One :class:`SyncMetrics` per process (or per test), each on its own registry, so two services in
one test process never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from hub.metrics import (
    PIPELINE_BACKLOG,
    PORTAL_BREAKER_STATE,
    PORTAL_BREAKER_TRANSITIONS,
    PORTAL_OLDEST_UNPUSHED,
    PORTAL_PUSHES,
    PORTAL_RETRIES,
    counter,
    dead_letter_counter,
    gauge,
)

__all__ = ["SyncMetrics"]


class SyncMetrics:
    """The portal sync's metrics on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.pushes = counter(PORTAL_PUSHES, self.registry)
        self.retries = counter(PORTAL_RETRIES, self.registry)
        self.breaker_state = gauge(PORTAL_BREAKER_STATE, self.registry)
        self.oldest_unpushed = gauge(PORTAL_OLDEST_UNPUSHED, self.registry)
        self.dead_letters = dead_letter_counter("portal_sync", self.registry)
        self.breaker_transitions = counter(PORTAL_BREAKER_TRANSITIONS, self.registry)
        #: ``dvc_hub_pipeline_backlog{stage="outbox"|"statistics"}``: the portal sync's share of the
        #: whole pipeline's backlog (``dvc-hub status`` sums the stages).
        self.pipeline_backlog = gauge(PIPELINE_BACKLOG, self.registry)
        for kind in ("dossier", "progress", "stats"):
            self.oldest_unpushed.labels(kind=kind).set(0)
        for stage in ("outbox", "statistics"):
            self.pipeline_backlog.labels(stage=stage).set(0)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent): for tests and ``push status``."""
        found = self.registry.get_sample_value(name, labels)
        return float(found) if found is not None else 0.0
