"""The metric catalogue: every metric the hub exposes, declared once, here.

Names and units follow Prometheus conventions (``_total`` for counters, ``_seconds`` for
durations, base units); ``docs/metrics.md`` documents each one and ``promtool check metrics``
runs over a real scrape in CI.

Label values are **bounded** by construction:

* ``unit`` only ever holds a GSO code from the unit registry (an unknown unit is a dead letter,
  never a label); ``tier`` is ``HUYEN``/``XA``; ``level`` and ``channel`` are enums;
* ``period`` is a reporting period (``2021-03``, ``2021-Q1``, ``2021``) of the current year or the
  ``metrics.years_back`` years before it (the worker exports no other period, whatever the dossiers'
  dates), and ``period_kind`` says which granularity, so a query must pin one kind: summing across
  kinds would count a dossier three times;
* ``connector`` comes from configuration; ``reason`` and ``outcome`` from fixed vocabularies (a
  dead letter of any other reason is counted as ``unexpected``).

``docs/metrics.md`` ("Series bounds") gives the resulting bound on the series of every metric.

The domain gauges are not set one by one: the worker registers a collector
(:class:`DomainCollector` protocol) that reads its live aggregates at scrape time, so a scrape
always shows one consistent state and nothing is kept twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from hub.deadletter import REASONS

MetricType = Literal["gauge", "counter", "histogram"]

NAMESPACE = "dvchub"

DOMAIN_DIMENSIONS = ("unit", "tier", "level", "channel")
PERIOD_LABELS = ("period", "period_kind")


@dataclass(frozen=True)
class MetricSpec:
    """Name, type, help text and label names of one metric."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()


# --------------------------------------------------------------------------- domain (worker)
DOSSIERS_RECEIVED = MetricSpec(
    "dvchub_dossiers_received", "gauge",
    "Dossiers received (by reception date, local time) in the period.",
    (*DOMAIN_DIMENSIONS, *PERIOD_LABELS),
)
DOSSIERS_FINISHED = MetricSpec(
    "dvchub_dossiers_finished", "gauge",
    "Dossiers finished in the period, by timeliness (early, on_time, late).",
    (*DOMAIN_DIMENSIONS, *PERIOD_LABELS, "timeliness"),
)
DOSSIERS_REFUSED = MetricSpec(
    "dvchub_dossiers_refused", "gauge", "Dossiers refused at reception in the period.",
    (*DOMAIN_DIMENSIONS, *PERIOD_LABELS),
)
DOSSIERS_WITHDRAWN = MetricSpec(
    "dvchub_dossiers_withdrawn", "gauge", "Dossiers withdrawn by the citizen in the period.",
    (*DOMAIN_DIMENSIONS, *PERIOD_LABELS),
)
DOSSIERS_OPEN = MetricSpec(
    "dvchub_dossiers_open", "gauge", "Dossiers received in the period and still open at its end (or now).",
    (*DOMAIN_DIMENSIONS, *PERIOD_LABELS),
)
DOSSIERS_OPEN_NOW = MetricSpec(
    "dvchub_dossiers_open_now", "gauge", "Dossiers open right now.", DOMAIN_DIMENSIONS,
)
DOSSIERS_OVERDUE_NOW = MetricSpec(
    "dvchub_dossiers_overdue_now", "gauge", "Dossiers open right now and past their due date.", DOMAIN_DIMENSIONS,
)
PROCEDURES_OFFERED = MetricSpec(
    "dvchub_procedures_offered", "gauge", "Procedures a unit offers online, by level, valid now.",
    ("unit", "tier", "level"),
)
PROCEDURES_WITHOUT_DOSSIER = MetricSpec(
    "dvchub_procedures_without_dossier", "gauge",
    "Online procedures of a unit that received no dossier in the period.",
    ("unit", "tier", "level", *PERIOD_LABELS),
)
KPI766_RATE = MetricSpec(
    "dvchub_kpi766_rate_ratio", "gauge", "Decision 766 indicator rate (0..1) of a unit in the period.",
    ("unit", "tier", "indicator", *PERIOD_LABELS),
)
KPI766_SCORE = MetricSpec(
    "dvchub_kpi766_score", "gauge", "Decision 766 indicator score (points) of a unit in the period.",
    ("unit", "tier", "indicator", *PERIOD_LABELS),
)
DOSSIERS_IN_STATE = MetricSpec(
    "dvchub_state_dossiers", "gauge", "Dossiers held in this worker's state (its partitions).", (),
)

DOMAIN_METRICS = (
    DOSSIERS_RECEIVED, DOSSIERS_FINISHED, DOSSIERS_REFUSED, DOSSIERS_WITHDRAWN, DOSSIERS_OPEN,
    DOSSIERS_OPEN_NOW, DOSSIERS_OVERDUE_NOW, PROCEDURES_OFFERED, PROCEDURES_WITHOUT_DOSSIER,
    KPI766_RATE, KPI766_SCORE, DOSSIERS_IN_STATE,
)

# --------------------------------------------------------------------------- pipeline (worker)
AGENT_RECORDS_IN = MetricSpec("dvchub_agent_records_in_total", "counter", "Records an agent consumed.", ("agent",))
AGENT_RECORDS_OUT = MetricSpec("dvchub_agent_records_out_total", "counter", "Records an agent produced.", ("agent",))
DEAD_LETTERS = MetricSpec(
    "dvchub_dead_letters_total", "counter", "Records sent to the dead-letter topic, by stage and reason.",
    ("stage", "reason"),
)
CONSUMER_LAG = MetricSpec(
    "dvchub_consumer_lag_records", "gauge", "End offset minus committed offset, per consumer group and topic.",
    ("group", "topic"),
)
PROCESSING_LATENCY = MetricSpec(
    "dvchub_processing_latency_seconds", "histogram",
    "Time from a record's Kafka timestamp to the end of its processing.", ("agent",),
)
CONSUMER_REREADS = MetricSpec(
    "dvchub_consumer_rereads_total", "counter",
    "Times the worker read a partition again: fetched past the offset it expected, or a record never processed.",
    ("topic",),
)
STATE_APPLIES = MetricSpec(
    "dvchub_state_applies_total", "counter",
    "Events applied to dossier state, by outcome (applied, stale, duplicate, replayed).", ("outcome",),
)

# --------------------------------------------------------------------------- connectors
CONNECTOR_POLLS = MetricSpec(
    "dvchub_connector_polls_total", "counter", "Polls of a source, by outcome (ok, error).",
    ("connector", "type", "outcome"),
)
CONNECTOR_RECORDS = MetricSpec(
    "dvchub_connector_records_total", "counter", "Records a connector produced to Kafka (acknowledged).",
    ("connector", "type"),
)
CONNECTOR_ERRORS = MetricSpec(
    "dvchub_connector_errors_total", "counter", "Errors of a connector, by reason.",
    ("connector", "type", "reason"),
)
CONNECTOR_CURSOR_AGE = MetricSpec(
    "dvchub_connector_cursor_age_seconds", "gauge", "Source time minus the connector's saved cursor time.",
    ("connector", "type"),
)
CONNECTOR_LAST_SUCCESS = MetricSpec(
    "dvchub_connector_last_success_timestamp_seconds", "gauge", "Unix time of the last successful poll.",
    ("connector", "type"),
)
CONNECTOR_UP = MetricSpec(
    "dvchub_connector_up", "gauge", "1 when the last poll of the connector succeeded, else 0.",
    ("connector", "type"),
)

# --------------------------------------------------------------------------- portal sync
PORTAL_PUSHES = MetricSpec(
    "dvchub_portal_pushes_total", "counter", "Pushes to the provincial portal, by kind and outcome.",
    ("kind", "outcome"),
)
PORTAL_RETRIES = MetricSpec(
    "dvchub_portal_retries_total", "counter", "Retried portal requests, by kind and reason.", ("kind", "reason"),
)
PORTAL_BREAKER_STATE = MetricSpec(
    "dvchub_portal_breaker_state", "gauge", "Circuit breaker: 0 closed, 1 half-open, 2 open.", (),
)
PORTAL_BREAKER_TRANSITIONS = MetricSpec(
    "dvchub_portal_breaker_transitions_total", "counter",
    "Circuit breaker state changes, by the state entered (closed, half_open, open); shows an outage that "
    "opened and closed the breaker between two scrapes.", ("to",),
)
PIPELINE_BACKLOG = MetricSpec(
    "dvc_hub_pipeline_backlog", "gauge",
    "Work not done yet per pipeline stage: connector instances not caught up (connectors), consumer lag "
    "(worker), outbox records not committed by the portal sync (outbox), statistics bodies not pushed "
    "(statistics).", ("stage",),
)
PORTAL_OLDEST_UNPUSHED = MetricSpec(
    "dvchub_portal_oldest_unpushed_age_seconds", "gauge", "Age of the oldest outbox item not yet pushed.",
    ("kind",),
)

ALL_METRICS: tuple[MetricSpec, ...] = (
    *DOMAIN_METRICS, AGENT_RECORDS_IN, AGENT_RECORDS_OUT, DEAD_LETTERS, CONSUMER_LAG, CONSUMER_REREADS,
    PROCESSING_LATENCY, STATE_APPLIES, CONNECTOR_POLLS, CONNECTOR_RECORDS, CONNECTOR_ERRORS, CONNECTOR_CURSOR_AGE,
    CONNECTOR_LAST_SUCCESS, CONNECTOR_UP, PORTAL_PUSHES, PORTAL_RETRIES, PORTAL_BREAKER_STATE,
    PORTAL_BREAKER_TRANSITIONS, PORTAL_OLDEST_UNPUSHED, PIPELINE_BACKLOG,
)

# Prometheus client stores a counter named ``x_total`` as family ``x``.
_PROM_NAME = {m.name: m.name.removesuffix("_total") if m.type == "counter" else m.name for m in ALL_METRICS}


def counter(spec: MetricSpec, registry: CollectorRegistry) -> Counter:
    """A prometheus_client Counter for a catalogue entry."""
    assert spec.type == "counter", spec
    return Counter(_PROM_NAME[spec.name], spec.help, spec.labels, registry=registry)


def dead_letter_counter(stage: str, registry: CollectorRegistry) -> Counter:
    """``dvchub_dead_letters_total`` with this stage's series started at 0 for every known reason.

    A counter that appears only with the first dead letter has no series before it, so rates and
    alerts over it read "no data" instead of 0; the reasons are a fixed vocabulary, so this is
    bounded (``hub.deadletter.REASONS``).
    """
    c = counter(DEAD_LETTERS, registry)
    for reason in REASONS:
        c.labels(stage=stage, reason=reason)
    return c


def gauge(spec: MetricSpec, registry: CollectorRegistry) -> Gauge:
    """A prometheus_client Gauge for a catalogue entry."""
    assert spec.type == "gauge", spec
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


def histogram(spec: MetricSpec, registry: CollectorRegistry, buckets: Iterable[float] | None = None) -> Histogram:
    """A prometheus_client Histogram for a catalogue entry (latency buckets by default)."""
    assert spec.type == "histogram", spec
    b = tuple(buckets) if buckets else (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
    return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=b)


def gauge_family(spec: MetricSpec) -> GaugeMetricFamily:
    """An empty gauge family for a collector to fill at scrape time."""
    assert spec.type == "gauge", spec
    return GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))
