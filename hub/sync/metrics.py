"""The portal sync's Prometheus metrics, built from the catalogue in :mod:`hub.metrics`.

One :class:`SyncMetrics` per process (or per test), each on its own registry, so two services in
one test process never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from hub.metrics import (
    DEAD_LETTERS,
    PORTAL_BREAKER_STATE,
    PORTAL_OLDEST_UNPUSHED,
    PORTAL_PUSHES,
    PORTAL_RETRIES,
    counter,
    gauge,
)

__all__ = ["PORTAL_BREAKER_TRANSITIONS", "SyncMetrics"]

#: Not in the shared catalogue (yet): how often the breaker changed state, by the state entered.
#: A gauge alone cannot show that an outage opened and closed the breaker between two scrapes.
PORTAL_BREAKER_TRANSITIONS = "dvchub_portal_breaker_transitions"


class SyncMetrics:
    """The portal sync's metrics on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.pushes = counter(PORTAL_PUSHES, self.registry)
        self.retries = counter(PORTAL_RETRIES, self.registry)
        self.breaker_state = gauge(PORTAL_BREAKER_STATE, self.registry)
        self.oldest_unpushed = gauge(PORTAL_OLDEST_UNPUSHED, self.registry)
        self.dead_letters = counter(DEAD_LETTERS, self.registry)
        self.breaker_transitions = Counter(
            PORTAL_BREAKER_TRANSITIONS,
            "Circuit breaker state changes, by the state entered (closed, half_open, open).",
            ("to",),
            registry=self.registry,
        )
        for kind in ("dossier", "progress", "stats"):
            self.oldest_unpushed.labels(kind=kind).set(0)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent): for tests and ``push status``."""
        found = self.registry.get_sample_value(name, labels)
        return float(found) if found is not None else 0.0
