"""Kafka clients configured the one way the hub uses them.

Delivery settings are explicit, never left to a library default: kafka-python 3 defaults to
``acks=all`` with idempotence, aiokafka to ``acks=1``, and a silent difference between the two
is how acknowledged events get lost on a broker crash (reliability.md).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from hub.config import KafkaSettings, Settings

log = logging.getLogger(__name__)


def producer(kafka: KafkaSettings, client_id: str, **overrides: Any) -> KafkaProducer:
    """An idempotent kafka-python producer: ``acks=all``, ordered retries, bytes in and out."""
    cfg: dict[str, Any] = {
        **kafka.kafka_python_config(),
        "client_id": f"{kafka.client_id_prefix}-{client_id}",
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "retries": 2**31 - 1,
        "linger_ms": 5,
        "compression_type": None,
        "request_timeout_ms": 30_000,
        "delivery_timeout_ms": 120_000,
    }
    cfg.update(overrides)
    return KafkaProducer(**cfg)


def consumer(kafka: KafkaSettings, client_id: str, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A kafka-python consumer; manual commits unless ``overrides`` says otherwise."""
    cfg: dict[str, Any] = {
        **kafka.kafka_python_config(),
        "client_id": f"{kafka.client_id_prefix}-{client_id}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    cfg.update(overrides)
    return KafkaConsumer(*topics, **cfg)


def admin(kafka: KafkaSettings, client_id: str = "admin") -> KafkaAdminClient:
    """A kafka-python admin client."""
    return KafkaAdminClient(**kafka.kafka_python_config(), client_id=f"{kafka.client_id_prefix}-{client_id}")


def hub_topics(settings: Settings) -> list[NewTopic]:
    """Every topic the hub owns, with its partitions and retention policy."""
    t, k = settings.topics, settings.kafka
    parts, rf = k.partitions, k.replication_factor
    # Compacted topics are read from the start by every reader (cursors, partials, sync state):
    # small segments and an eager cleaner keep that read short. The active segment is never
    # compacted, so with Kafka's 1 GiB / 7-day default a busy partials topic would keep every
    # publish since the start and `dvc-hub report` would read gigabytes.
    compacted = {
        "cleanup.policy": "compact",
        "segment.ms": "60000",
        "segment.bytes": str(16 * 1024 * 1024),
        "min.cleanable.dirty.ratio": "0.1",
        "min.compaction.lag.ms": "0",
        "max.compaction.lag.ms": "300000",
        "delete.retention.ms": "3600000",
    }
    return [
        NewTopic(t.raw_motcua, parts, rf),
        NewTopic(t.raw_qlvb, parts, rf),
        NewTopic(t.raw_portal, parts, rf),
        NewTopic(t.raw_catalogue, parts, rf),
        NewTopic(t.canonical, parts, rf),
        NewTopic(t.dead_letter, 1, rf, topic_configs={"retention.ms": str(90 * 86_400_000)}),
        NewTopic(t.connector_state, 1, rf, topic_configs=compacted),
        NewTopic(t.partials, 1, rf, topic_configs=compacted),
        NewTopic(t.outbox, parts, rf),
        NewTopic(t.sync_state, 1, rf, topic_configs=compacted),
        NewTopic(t.audit, 1, rf, topic_configs={"retention.ms": "-1"}),
    ]


def ensure_topics(kafka: KafkaSettings, topics: Iterable[NewTopic]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    client = admin(kafka)
    try:
        existing = set(client.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            # Another process may win the race to create a topic: that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                client.create_topics(missing, validate_only=False)
        return [t.name for t in missing]
    finally:
        client.close()
