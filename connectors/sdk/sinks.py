"""Where records go: Kafka in production, memory in tests. Delivery returns only once acknowledged.

:class:`KafkaSink` sends with the hub's idempotent ``acks=all`` producer (:func:`hub.kafka.producer`),
keyed by :attr:`RawRecord.key`, and waits for every future before returning, so the engine can
advance a cursor knowing the records are durable. kafka-python is synchronous; the waiting runs in
a worker thread so one instance's flush never blocks the others' polling.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from kafka.errors import KafkaError

from connectors.sdk.errors import DeliveryError
from hub.deadletter import DeadLetter
from schemas.raw import RawRecord

__all__ = ["KafkaSink", "MemorySink", "RecordSink"]


class RecordSink(ABC):
    """Delivers raw records and dead letters; returns only when they are acknowledged."""

    @abstractmethod
    async def deliver(self, topic: str, records: Sequence[RawRecord]) -> None:
        """Write ``records`` to ``topic``; :class:`DeliveryError` if not acknowledged."""

    @abstractmethod
    async def dead_letters(self, topic: str, letters: Sequence[DeadLetter]) -> None:
        """Write ``letters`` to the dead-letter ``topic``."""


class MemorySink(RecordSink):
    """Keeps everything in lists (the contract kit and unit tests)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, RawRecord]] = []
        self.letters: list[tuple[str, DeadLetter]] = []

    async def deliver(self, topic: str, records: Sequence[RawRecord]) -> None:
        """Append."""
        self.records.extend((topic, r) for r in records)

    async def dead_letters(self, topic: str, letters: Sequence[DeadLetter]) -> None:
        """Append."""
        self.letters.extend((topic, d) for d in letters)

    def event_ids(self) -> list[str]:
        """Event ids delivered, in order (duplicates kept)."""
        return [r.event_id for _, r in self.records]


class KafkaSink(RecordSink):
    """Writes with a kafka-python producer (``hub.kafka.producer``); thread-safe, shareable."""

    def __init__(self, producer: Any, *, timeout_s: float = 120.0) -> None:
        self.producer = producer
        self.timeout_s = timeout_s

    def _send_all(self, items: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
        futures = [self.producer.send(topic, key=key, value=value, headers=headers)
                   for topic, key, value, headers in items]
        self.producer.flush(timeout=self.timeout_s)
        for future in futures:
            future.get(timeout=self.timeout_s)

    async def _send(self, items: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
        if not items:
            return
        try:
            await asyncio.to_thread(self._send_all, items)
        except KafkaError as exc:
            raise DeliveryError(f"Kafka did not acknowledge {len(items)} record(s) ({type(exc).__name__}); "
                                "the cursor stays put and the records will be re-read; check the broker "
                                "(dvc-hub broker status)") from None

    async def deliver(self, topic: str, records: Sequence[RawRecord]) -> None:
        """Produce and wait for every acknowledgement."""
        await self._send([
            (topic, r.key.encode(), r.model_dump_json().encode(),
             [("event_id", r.event_id.encode()), ("schema_version", str(r.schema_version).encode())])
            for r in records
        ])

    async def dead_letters(self, topic: str, letters: Sequence[DeadLetter]) -> None:
        """Produce dead letters with their filterable headers."""
        await self._send([(topic, d.key(), d.value(), d.headers()) for d in letters])
