"""End-to-end tests of the embedded Kafka broker (hub/broker.py) with the hub's real clients.

They prove what the rest of the suite relies on: that Kafka 4.x, which dropped many old protocol
versions, still speaks with kafka-python 3.0 (connectors) and aiokafka 0.14 (under Faust), that
consumer groups commit offsets, and that acknowledged data survives a clean restart and a crash.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from hub.broker import EmbeddedBroker
from tests.broker_fixture import TopicFactory, start_broker

pytestmark = pytest.mark.e2e


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Produce with the strongest guarantees the connectors use: every send acknowledged by all ISRs."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        for i, value in enumerate(values):
            producer.send(topic, key=str(i).encode(), value=value).get(timeout=30)
    finally:
        producer.close()


def consume(bootstrap: str, topic: str, count: int, group_id: str | None = None, timeout: float = 30.0) -> list[bytes]:
    """Read ``count`` values from the start of ``topic`` (fails the test after ``timeout`` s)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
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
    """A second broker that the restart and crash tests may stop and kill without disturbing others."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-restarts"))
    try:
        yield broker
    finally:
        broker.stop()


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
        kafka_broker.data_dir, kafka_broker.port, kafka_broker.controller_port, kafka_version=kafka_broker.version
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


def test_data_survives_stop_and_start(own_broker: EmbeddedBroker) -> None:
    topic = "restart-survivors"
    values = [f"v{i}".encode() for i in range(5)]
    produce(own_broker.bootstrap, topic, values)  # auto-created topic

    own_broker.stop()
    assert not own_broker.status().running
    assert not own_broker.pid_file.exists()
    own_broker.start()

    assert consume(own_broker.bootstrap, topic, len(values)) == values


def test_acknowledged_messages_survive_kill(own_broker: EmbeddedBroker) -> None:
    topic = "crash-survivors"
    values = [f"acked-{i}".encode() for i in range(50)]
    produce(own_broker.bootstrap, topic, values)
    old_pid = own_broker.status().pid

    own_broker.kill()
    assert not own_broker.status().running
    assert own_broker.pid_file.exists(), "a crash leaves its pid file behind; start() must cope"
    status = own_broker.start()
    assert status.running
    assert status.pid != old_pid

    assert consume(own_broker.bootstrap, topic, len(values)) == values


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
