"""End-to-end tests of the embedded Kafka broker (hub/broker.py) with the hub's real clients.

They prove what the rest of the suite relies on: that Kafka 4.x, which dropped many old protocol
versions, still speaks with kafka-python 3.0 (connectors) and aiokafka 0.14 (under Faust), that
consumer groups commit offsets, and that acknowledged data survives a clean restart and a crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from hub.broker import EmbeddedBroker
from hub.config import EmbeddedBrokerSettings, KafkaSettings, Settings
from hub.credentials import PARTS
from hub.kafka import ensure_topics, hub_topics, producer
from tests.broker_fixture import TopicFactory, start_broker

pytestmark = pytest.mark.e2e


def produce(bootstrap: str, topic: str, values: list[bytes], **auth: Any) -> None:
    """Produce with the strongest guarantees the connectors use: every send acknowledged by all ISRs."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **auth)
    try:
        for i, value in enumerate(values):
            producer.send(topic, key=str(i).encode(), value=value).get(timeout=30)
    finally:
        producer.close()


def consume(
    bootstrap: str, topic: str, count: int, group_id: str | None = None, timeout: float = 30.0, **auth: Any
) -> list[bytes]:
    """Read ``count`` values from the start of ``topic`` (fails the test after ``timeout`` s)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **auth,
    )
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        if group_id is not None:
            consumer.commit()
    finally:
        consumer.close()
    assert len(values) == count, f"got {len(values)} of {count} messages from {topic} in {timeout} s"
    return values


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A second broker, secured as `dvc-hub up` runs it, that the authentication tests use and the
    restart and crash tests may stop and kill without disturbing others."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-restarts"), secure=True)
    try:
        yield broker
    finally:
        broker.stop()


def admin_auth(broker: EmbeddedBroker) -> dict[str, Any]:
    """The SASL arguments of the broker's admin user (everything but ``bootstrap_servers``)."""
    return {k: v for k, v in broker.client_config("admin").items() if k != "bootstrap_servers"}


def test_broker_answers(kafka_broker: EmbeddedBroker) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    assert [b["broker_id"] for b in cluster["brokers"]] == [1]
    assert cluster["controller_id"] == 1


def test_status_reports_the_running_broker(kafka_broker: EmbeddedBroker) -> None:
    status = kafka_broker.status()
    assert status.running
    assert status.pid is not None
    assert kafka_broker.pid_file.read_text().strip() == str(status.pid)
    assert status.bootstrap == f"127.0.0.1:{kafka_broker.port}" == kafka_broker.bootstrap
    assert status.data_dir == kafka_broker.data_dir
    assert status.version.startswith("4.")
    assert status.to_dict()["running"] is True
    # Another object on the same data dir (what `dvc-hub broker status` does) sees the same broker,
    # and starting it again is a no-op.
    twin = EmbeddedBroker(
        kafka_broker.data_dir, kafka_broker.port, kafka_broker.controller_port, kafka_version=kafka_broker.version,
        secure=False,
    )
    assert twin.status() == status
    assert twin.start() == status


def test_kafka_python_round_trip_and_group_commit(kafka_broker: EmbeddedBroker, kafka_topic: TopicFactory) -> None:
    topic = kafka_topic(partitions=2)
    values = [f"hồ sơ {i}".encode() for i in range(20)]
    produce(kafka_broker.bootstrap, topic, values)

    got = consume(kafka_broker.bootstrap, topic, len(values), group_id=f"{topic}-g")
    assert sorted(got) == sorted(values)

    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=f"{topic}-g")
    try:
        committed = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in (0, 1))
    finally:
        consumer.close()
    assert committed == len(values)


async def test_aiokafka_round_trip_and_group_commit(kafka_broker: EmbeddedBroker, kafka_topic: TopicFactory) -> None:
    topic = kafka_topic()
    group = f"{topic}-g"
    tp = AioTopicPartition(topic, 0)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode())
    finally:
        await producer.stop()

    async def read(n: int, committed: int) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            async with asyncio.timeout(30):
                while len(got) < n:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        got.extend(r.value for r in records if r.value is not None)
            await consumer.commit()
            assert await consumer.committed(tp) == committed
            return got
        finally:
            await consumer.stop()

    assert await read(10, committed=10) == [f"m{i}".encode() for i in range(10)]

    # A new member of the same group resumes after the committed offset: it sees only the new message.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"m10")
    finally:
        await producer.stop()
    assert await read(1, committed=11) == [b"m10"]


# ----------------------------------------------------------------- authentication and ACLs (secured broker)


def _hub_on(broker: EmbeddedBroker) -> Settings:
    """The hub's settings for ``broker`` as its embedded broker, its topics created (and its ACLs)."""
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=broker.bootstrap, partitions=1),
        embedded_broker=EmbeddedBrokerSettings(
            data_dir=broker.data_dir, port=broker.port, controller_port=broker.controller_port
        ),
    )
    ensure_topics(settings.kafka, hub_topics(settings))
    return settings


def _send_once(factory: Any, bootstrap: str, quick: dict[str, Any], auth: dict[str, Any]) -> None:
    producer = factory(bootstrap_servers=bootstrap, **quick, **auth)
    try:
        producer.send("dvchub.outbox.portal", b"forged").get(timeout=5)
    finally:
        producer.close(timeout=1)


def test_credentials_are_private_and_anonymous_or_wrong_clients_are_refused(own_broker: EmbeddedBroker) -> None:
    assert stat.S_IMODE(own_broker.data_dir.stat().st_mode) == 0o700
    for secret in (own_broker.credentials_file, own_broker.properties_file):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    users = json.loads(own_broker.credentials_file.read_text())["users"]
    assert sorted(users) == sorted(PARTS)
    assert len({u["password"] for u in users.values()}) == len(PARTS)  # one random password each

    # bootstrap_timeout_ms: kafka-python 3 waits 30 s (its default) in the constructor for a bootstrap
    # connection that a refusing broker never lets it make.
    quick = {"request_timeout_ms": 3000, "max_block_ms": 3000, "bootstrap_timeout_ms": 3000}
    name, _ = own_broker.credentials()["connectors"]
    for auth in (
        {},  # anonymous, PLAINTEXT: the listener speaks SASL only
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
         "sasl_plain_username": name, "sasl_plain_password": "guessed"},
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",  # the controller's, not offered here
         "sasl_plain_username": name, "sasl_plain_password": "guessed"},
    ):
        with pytest.raises(KafkaError):
            _send_once(KafkaProducer, own_broker.bootstrap, quick, auth)
    # The hub's processes find the credentials by themselves.
    settings = _hub_on(own_broker)
    assert settings.kafka.for_part("worker").kafka_python_config()["sasl_plain_username"] == "dvc-hub-worker"


#: (part, topic field, may write): each part writes its own topics and nothing else.
WRITES = [
    ("connectors", "raw_motcua", True), ("connectors", "connector_state", True), ("connectors", "outbox", False),
    ("connectors", "canonical", False), ("connectors", "audit", False), ("connectors", "sync_state", False),
    ("worker", "outbox", True), ("worker", "canonical", True), ("worker", "raw_qlvb", False),
    ("worker", "connector_state", False), ("worker", "audit", False), ("worker", "sync_state", False),
    ("portal-sync", "sync_state", True), ("portal-sync", "outbox", True), ("portal-sync", "connector_state", False),
    ("portal-sync", "audit", False), ("portal-sync", "canonical", False),
    ("operator", "audit", True), ("operator", "connector_state", False), ("operator", "sync_state", False),
    ("operator", "canonical", False),
]


def test_each_part_may_write_only_its_own_topics(own_broker: EmbeddedBroker) -> None:
    settings = _hub_on(own_broker)
    wrong = []
    for part, field, allowed in WRITES:
        topic = getattr(settings.topics, field)
        prod = producer(settings.kafka.for_part(part), "acl-test", max_block_ms=10_000)
        try:
            prod.send(topic, b"probe", key=b"k").get(timeout=15)
            wrote = True
        except TopicAuthorizationFailedError:
            wrote = False
        finally:
            prod.close(timeout=2)
        if wrote != allowed:
            wrong.append(f"{part} {'wrote' if wrote else 'could not write'} {field}")
    assert not wrong, wrong
    # Nobody but the admin creates topics: a typo is not a new topic.
    prod = producer(settings.kafka.for_part("worker"), "acl-test", max_block_ms=5_000)
    try:
        with pytest.raises(KafkaError):
            prod.send("dvchub.typo", b"x").get(timeout=10)
    finally:
        prod.close(timeout=2)


def test_data_survives_stop_and_start(own_broker: EmbeddedBroker) -> None:
    topic = "restart-survivors"
    values = [f"v{i}".encode() for i in range(5)]
    produce(own_broker.bootstrap, topic, values, **admin_auth(own_broker))  # auto-created topic
    credentials = own_broker.credentials_file.read_bytes()

    own_broker.stop()
    assert not own_broker.status().running
    assert not own_broker.pid_file.exists()
    own_broker.start()

    assert own_broker.credentials_file.read_bytes() == credentials  # generated once, kept
    assert consume(own_broker.bootstrap, topic, len(values), **admin_auth(own_broker)) == values


def test_acknowledged_messages_survive_kill(own_broker: EmbeddedBroker) -> None:
    topic = "crash-survivors"
    values = [f"acked-{i}".encode() for i in range(50)]
    produce(own_broker.bootstrap, topic, values, **admin_auth(own_broker))
    old_pid = own_broker.status().pid

    own_broker.kill()
    assert not own_broker.status().running
    assert own_broker.pid_file.exists(), "a crash leaves its pid file behind; start() must cope"
    status = own_broker.start()
    assert status.running
    assert status.pid != old_pid

    assert consume(own_broker.bootstrap, topic, len(values), **admin_auth(own_broker)) == values


FAUST_APP = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import faust

    bootstrap, topic, out = sys.argv[1:4]
    app = faust.App(
        f"dvc-hub-e2e-{topic}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=1,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(topic, value_serializer="raw")
    # A table, like the hub's counters: Faust must create its changelog topic on Kafka 4 too.
    seen = app.Table("seen", default=int, partitions=1)


    @app.agent(source)
    async def record(stream):
        async for value in stream:
            seen["total"] += 1
            with Path(out).open("a") as fh:
                fh.write(f"{value.decode()} {seen['total']}\\n")


    if __name__ == "__main__":
        sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
        app.main()
    """
)


def test_faust_agent_consumes_a_topic(kafka_broker: EmbeddedBroker, kafka_topic: TopicFactory, tmp_path: Path) -> None:
    topic = kafka_topic()
    values = [f"case-{i}".encode() for i in range(5)]
    produce(kafka_broker.bootstrap, topic, values)

    script = tmp_path / "faust_app.py"
    script.write_text(FAUST_APP)
    out = tmp_path / "seen.txt"
    log = (tmp_path / "worker.log").open("wb")
    # A subprocess, not a thread: Faust owns its event loop and signal handlers, and a stuck worker
    # can always be killed.
    worker = subprocess.Popen(
        [sys.executable, str(script), kafka_broker.bootstrap, topic, str(out)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        seen: list[str] = []
        while time.monotonic() < deadline and worker.poll() is None:
            seen = out.read_text().splitlines() if out.exists() else []
            if len(seen) >= len(values):
                break
            time.sleep(0.5)
        worker_log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
        expected = [f"{v.decode()} {i}" for i, v in enumerate(values, 1)]
        assert seen == expected, f"Faust worker saw {seen}; its log:\n{worker_log}"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()

    # Faust commits the group's offsets as it goes and on shutdown.
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=f"dvc-hub-e2e-{topic}")
    try:
        assert consumer.committed(TopicPartition(topic, 0)) == len(values)
    finally:
        consumer.close()
