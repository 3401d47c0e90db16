"""Per-instance connector state in the compacted topic ``settings.topics.connector_state``.

One record per connector instance, keyed by the instance name; the value is
:class:`ConnectorState` as JSON (every stream's cursor, the last successful poll). Compaction
keeps the latest record per key, so loading is "read the topic to its end, last value wins".

The engine writes a new state only after the records it covers are acknowledged by Kafka
(reliability.md: "advance the cursor only after the produced events are acknowledged"), so a
crash between produce and save re-reads a little and produces duplicates with identical event ids,
which downstream absorbs; it never skips.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any, Literal

from kafka import TopicPartition
from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field

from connectors.sdk.errors import DeliveryError
from hub.config import KafkaSettings
from hub.kafka import consumer

__all__ = ["ConnectorState", "KafkaStateStore", "MemoryStateStore", "StateStore"]


class ConnectorState(BaseModel):
    """What survives a restart of one connector instance."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = 1
    instance: str
    type: str
    #: Stream name -> cursor (a small JSON object).
    cursors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    last_success: datetime | None = None
    #: Ids of the refusals already dead-lettered, newest last (bounded; see connectors.sdk.engine).
    refused: list[str] = Field(default_factory=list)
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    written_by: Literal["runner", "reset", "test"] = "runner"


class StateStore(ABC):
    """Loads and saves :class:`ConnectorState` records."""

    @abstractmethod
    async def load_all(self) -> dict[str, ConnectorState]:
        """Every instance's latest state."""

    @abstractmethod
    async def save(self, state: ConnectorState) -> None:
        """Persist ``state``; returns once acknowledged."""

    async def load(self, instance: str) -> ConnectorState | None:
        """One instance's latest state, or None."""
        return (await self.load_all()).get(instance)


class MemoryStateStore(StateStore):
    """In-memory (the contract kit and unit tests); keeps the history for assertions."""

    def __init__(self) -> None:
        self.history: list[ConnectorState] = []

    async def load_all(self) -> dict[str, ConnectorState]:
        """Latest per instance."""
        return {s.instance: s for s in self.history}

    async def save(self, state: ConnectorState) -> None:
        """Append a copy."""
        self.history.append(state.model_copy(deep=True))


class KafkaStateStore(StateStore):
    """The compacted state topic, through the hub's kafka-python clients."""

    def __init__(self, producer: Any, kafka: KafkaSettings, topic: str, *, timeout_s: float = 60.0) -> None:
        self.producer = producer
        self.kafka = kafka
        self.topic = topic
        self.timeout_s = timeout_s

    def _read_all(self) -> dict[str, ConnectorState]:
        reader = consumer(self.kafka, "connector-state-reader", group_id=None, enable_auto_commit=False)
        try:
            partitions = reader.partitions_for_topic(self.topic)
            deadline = time.monotonic() + self.timeout_s
            while partitions is None and time.monotonic() < deadline:
                time.sleep(0.2)
                partitions = reader.partitions_for_topic(self.topic)
            if partitions is None:
                raise DeliveryError(f"state topic {self.topic} does not exist; create the hub's topics "
                                    "(dvc-hub up does) or check topics.connector_state")
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            reader.assign(tps)
            reader.seek_to_beginning(*tps)
            ends = reader.end_offsets(tps)
            states: dict[str, ConnectorState] = {}
            while any(reader.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise DeliveryError(f"timed out reading state topic {self.topic} to its end")
                for records in reader.poll(timeout_ms=500).values():
                    for rec in records:
                        if rec.key is None:
                            continue
                        name = rec.key.decode()
                        if rec.value is None:  # tombstone: the instance's state was deleted
                            states.pop(name, None)
                            continue
                        try:
                            states[name] = ConnectorState.model_validate(json.loads(rec.value))
                        except ValueError:
                            continue  # an unreadable state record is skipped; a newer one may follow
            return states
        finally:
            reader.close()

    async def load_all(self) -> dict[str, ConnectorState]:
        """Read the topic from the beginning to its end."""
        try:
            return await asyncio.to_thread(self._read_all)
        except KafkaError as exc:
            raise DeliveryError(f"cannot read state topic {self.topic} ({type(exc).__name__}); "
                                "check the broker") from None

    def _write(self, state: ConnectorState) -> None:
        future = self.producer.send(self.topic, key=state.instance.encode(), value=state.model_dump_json().encode())
        self.producer.flush(timeout=self.timeout_s)
        future.get(timeout=self.timeout_s)

    async def save(self, state: ConnectorState) -> None:
        """Write and wait for the acknowledgement."""
        try:
            await asyncio.to_thread(self._write, state)
        except KafkaError as exc:
            raise DeliveryError(f"state topic {self.topic} did not acknowledge ({type(exc).__name__})") from None
