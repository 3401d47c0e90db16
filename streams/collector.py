"""Prometheus metrics of the stream worker: pipeline counters and a scrape-time domain collector.

Two kinds of metric live here:

* **pipeline** metrics (:class:`PipelineMetrics`): counters and a histogram the agents update as
  they go (records in/out per agent, dead letters by stage and reason, state-apply outcomes,
  processing latency). They are process-local: a restarted worker starts them at zero, as
  Prometheus counters should.
* **domain** gauges (:class:`DomainCollector`): never set one by one. At scrape time the collector
  reads the live :class:`streams.domain.aggregates.Aggregates` (which are derived from the
  ``dossiers`` table), so a scrape shows one consistent state and a crash cannot leave a gauge
  out of step with the table. Consumer lag comes the same way.

Every metric has its own :class:`prometheus_client.CollectorRegistry` per app, so two apps in
one process (tests) never collide.

Example::

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> reg = CollectorRegistry()
    >>> m = PipelineMetrics(reg)
    >>> m.records_in.labels(agent="normalize_motcua").inc()
    >>> b"dvchub_agent_records_in_total" in generate_latest(reg)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.metrics import (
    AGENT_RECORDS_IN,
    AGENT_RECORDS_OUT,
    CONSUMER_LAG,
    CONSUMER_REREADS,
    DEAD_LETTERS,
    PROCESSING_LATENCY,
    STATE_APPLIES,
    MetricSpec,
    counter,
    gauge_family,
    histogram,
)


class Labelled:
    """A metric whose labelled children are looked up once per label set.

    ``prometheus_client``'s ``labels()`` validates the labels and takes a lock on every call; the
    agents call it several times per record, with a handful of label sets (all bounded).
    """

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[tuple[str, str], ...], Any] = {}

    def labels(self, **labels: str) -> Any:
        """The child of ``labels`` (created on first use, as ``metric.labels(**labels)``)."""
        key = tuple(labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.metric.labels(**labels)
        return child

    def current(self, **labels: str) -> float:
        """The value of a counter's child, 0 when it was never touched.

        Reads the child itself: ``CollectorRegistry.get_sample_value`` would collect the whole
        registry, domain figures included (~0.3 s of CPU in a worker holding the city's figures),
        for one number.
        """
        child = self._children.get(tuple(labels.items()))
        return float(child._value.get()) if child is not None else 0.0


class PipelineMetrics:
    """The counters the agents update while they process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records_in = Labelled(counter(AGENT_RECORDS_IN, registry))
        self.records_out = Labelled(counter(AGENT_RECORDS_OUT, registry))
        self.dead_letters = Labelled(counter(DEAD_LETTERS, registry))
        self.state_applies = Labelled(counter(STATE_APPLIES, registry))
        self.rereads = counter(CONSUMER_REREADS, registry)
        self.latency = Labelled(histogram(PROCESSING_LATENCY, registry))

    def value(self, name: str, **labels: str) -> float:
        """Current value of one sample (tests and ``/api/v1/status``); 0 when absent."""
        v = self.registry.get_sample_value(name, labels)
        return float(v) if v is not None else 0.0


class LiveSource(Protocol):
    """What the domain collector reads at scrape time (implemented by the app's runtime)."""

    def domain_samples(self, now: datetime) -> Iterable[Any]:
        """Domain samples of the aggregates (see :func:`to_families`)."""

    def state_dossiers(self) -> int:
        """Dossiers held in this worker's active partitions."""

    def lag(self) -> Mapping[str, int]:
        """Consumer lag per topic of this worker's group."""

    @property
    def group(self) -> str:
        """Consumer group id (the faust app id)."""


_SPEC_BY_NAME: dict[str, MetricSpec] = {}


def _spec(name: str) -> MetricSpec | None:
    if not _SPEC_BY_NAME:
        from hub.metrics import ALL_METRICS

        _SPEC_BY_NAME.update({m.name: m for m in ALL_METRICS})
    return _SPEC_BY_NAME.get(name)


def to_families(samples: Iterable[Any]) -> Iterator[Metric]:
    """Turn what ``Aggregates.prometheus_samples`` yields into metric families.

    Accepts ready :class:`Metric` families (yielded as they are) or ``(spec_or_name, labels,
    value)`` triples, grouped into one gauge family per metric name in first-seen order.
    """
    families: dict[str, GaugeMetricFamily] = {}
    for item in samples:
        if isinstance(item, Metric):
            yield item
            continue
        spec_or_name, labels, value = item
        name = spec_or_name.name if isinstance(spec_or_name, MetricSpec) else str(spec_or_name)
        fam = families.get(name)
        if fam is None:
            spec = _spec(name)
            if spec is not None and spec.type == "gauge":
                fam = gauge_family(spec)
            else:
                fam = GaugeMetricFamily(name, name, labels=list(labels))
            families[name] = fam
        label_names = fam._labelnames  # prometheus_client keeps the label order here
        fam.add_metric([str(labels.get(n, "")) for n in label_names], float(value))
    yield from families.values()


class DomainCollector(Collector):
    """Reads the live aggregates, consumer lag and state size at scrape time."""

    def __init__(self, source: LiveSource, clock: Callable[[], datetime]) -> None:
        self._source = source
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """One consistent snapshot per scrape."""
        # The domain samples include dvchub_state_dossiers (Aggregates.prometheus_samples).
        yield from to_families(self._source.domain_samples(self._clock()))
        lag = gauge_family(CONSUMER_LAG)
        for topic, value in sorted(self._source.lag().items()):
            lag.add_metric([self._source.group, topic], float(value))
        yield lag

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families depend on the live data (avoids a scrape at register)."""
        return []
