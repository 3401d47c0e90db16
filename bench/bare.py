"""The bare consumer: the practical limit of one Python process reading the raw topic.

An aiokafka consumer (the client faust uses) reads every partition of a topic from the beginning and
decodes each record into a :class:`schemas.raw.RawRecord` with pydantic (what the normalising agent
does first), then throws it away: no normalising, no state, no producing, no commits. The pipeline's
throughput is reported as a share of this figure, measured on the same broker and the same records.

Example::

    rate = asyncio.run(bare_consume("127.0.0.1:9092", "dvchub.raw.motcua", 10_000)).rate
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from schemas.raw import RawRecord


@dataclass
class BareRun:
    """One pass over the topic."""

    records: int
    seconds: float  # first record received -> last record decoded
    wall_s: float  # including connecting and fetching metadata

    @property
    def rate(self) -> float:
        return self.records / max(1e-9, self.seconds)


async def bare_consume(bootstrap: str, topic: str, n: int, *, decode: bool = True, timeout_s: float = 300) -> BareRun:
    """Read (and decode) ``n`` records of ``topic`` from the beginning; raises if fewer arrive in time."""
    t_wall = time.perf_counter()
    # No group: subscribing assigns every partition and auto_offset_reset reads them from the start.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
        # faust's defaults for its consumer (max_poll_records is unbounded there too)
        fetch_max_bytes=52_428_800, max_partition_fetch_bytes=1_048_576,
    )
    await consumer.start()
    try:
        count = 0
        first: float | None = None
        deadline = time.perf_counter() + timeout_s
        while count < n:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"bare consumer read {count} of {n} records from {topic} in {timeout_s}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if first is None and batches:
                first = time.perf_counter()
            for records in batches.values():
                for rec in records:
                    if decode:
                        RawRecord.model_validate_json(rec.value)
                    count += 1
        end = time.perf_counter()
        assert first is not None
        return BareRun(count, end - first, end - t_wall)
    finally:
        await consumer.stop()
