"""Pytest plugin: a real Kafka 4.x broker for the end-to-end tests.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.broker_fixture"]`` (or on the
command line with ``-p tests.broker_fixture``). It provides:

``kafka_broker`` (session)
    An :class:`hub.broker.EmbeddedBroker` started once per test session on free ports, in a
    temporary data directory, and stopped when the session ends. Use ``kafka_broker.bootstrap``
    as ``bootstrap_servers``.

``kafka_topic`` (function)
    A factory: ``kafka_topic(partitions=1, compacted=False)`` creates a topic with a unique name
    and returns the name, so tests never see each other's messages.

``secured_kafka_broker`` (session, started only by the tests that ask for it)
    A broker as ``dvc-hub up`` runs it: SCRAM-SHA-512 and ACLs, credentials generated in its data
    directory. Use ``secured_kafka_broker.client_config(part)`` for a client of one part.

The shared ``kafka_broker`` runs *without* authentication, as the one exception to the hub's
secured embedded broker: most tests build their own clients and settings, and a second
broker start per module would not fit the CI budget. Everything about authentication is tested
against ``secured_kafka_broker`` (tests/test_broker.py) and by the ``dvc-hub up`` end-to-end test,
whose hub starts its own secured broker.

The broker is not optional: when Java 17+ or Maven is missing, every test that asks for it
*fails* with the message saying what to install. Skipping would let a CI job without Java go green
while testing nothing.

``DVC_HUB_KAFKA_VERSION=4.x.y pytest ...`` runs the suite against another Kafka release than the
one pinned in ``deploy/kafka/pom.xml`` (its jars are fetched once into their own cache directory).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

from hub.broker import BrokerError, EmbeddedBroker, free_port

TopicFactory = Callable[..., str]


def two_free_ports() -> tuple[int, int]:
    """Two distinct free ports: the broker's and the controller's."""
    port = free_port()
    controller = free_port()
    while controller == port:
        controller = free_port()
    return port, controller


def start_broker(data_dir: Path, *, secure: bool = False) -> EmbeddedBroker:
    """Start a broker for tests in ``data_dir``, or fail the test with the reason (never skip)."""
    port, controller = two_free_ports()
    broker = EmbeddedBroker(
        data_dir,
        port,
        controller,
        kafka_version=os.environ.get("DVC_HUB_KAFKA_VERSION") or None,
        # If pytest itself is killed, the JVM must not survive it.
        die_with_parent=True,
        secure=secure,
    )
    try:
        # Generous: the very first run also fetches the jars from Maven Central.
        broker.start(timeout=120)
    except BrokerError as exc:
        pytest.fail(f"the embedded Kafka broker is required for these tests:\n{exc}", pytrace=False)
    return broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A running single-node Kafka broker shared by the whole test session."""
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def secured_kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A running broker with authentication and ACLs on (as `dvc-hub up` starts it)."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-secured"), secure=True)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_topic(kafka_broker: EmbeddedBroker) -> Iterator[TopicFactory]:
    """Create uniquely named topics: ``name = kafka_topic(partitions=3, compacted=True)``."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap, client_id="dvc-hub-tests")

    def create(partitions: int = 1, compacted: bool = False, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        configs = {"cleanup.policy": "compact"} if compacted else {}
        admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs}},
            # Return only once every partition has a leader, so the first produce cannot race it.
            wait_for_metadata=True,
        )
        return name

    try:
        yield create
    finally:
        admin.close()
