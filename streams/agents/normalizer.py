"""Normalising agents: raw records -> canonical events on the canonical topic, or dead letters.

One module registers four agents, ``normalize_motcua``, ``normalize_qlvb``, ``normalize_portal``
and ``normalize_catalogue``, one per raw topic. They are one module rather than four because they
are the same code: :func:`streams.normalize.normalize` already dispatches on the record's kind and
source, so four modules would be four copies of this loop. They stay four *agents* so that each
source has its own consumer position, its own ``agent`` metric label, and a flood of poison on one
source cannot slow another.

Per record:

* parse the :class:`schemas.raw.RawRecord` envelope (pydantic, from bytes), call ``normalize``;
* on success produce the canonical event keyed by ``MaHoSo``, so the three sources' views of a
  dossier meet on one partition of the canonical topic; a catalogue entry (keyed by unit code) is
  sent to *every* partition, because the counters of each partition need the whole catalogue;
* on :class:`streams.normalize.Rejected`, a validation error or any other error that is the
  record's fault, send a :class:`hub.deadletter.DeadLetter` (stage ``normalize``, the record as
  its payload, for ``dvc-hub dlq replay``) and continue;
* an error that is not the record's fault (:func:`streams.guard.not_the_records_fault`: Kafka,
  faust, the canonical event that cannot be produced) is never a dead letter: it escapes, and
  the agent's guard exits the worker, whose supervisor restarts it; the record's offset was not
  committed, so it is handled again. (An exception inside a bare faust agent would skip the
  message, faust issues #604, #527: hence the guard.)

Records are taken in batches (``take_events``) for throughput; each record is still handled, and
can fail, on its own. Acks happen after the batch is handled, and faust flushes the producer
before committing, so a crash mid-batch replays the batch (at-least-once; the state agent absorbs
the duplicates).

Example (what a test does)::

    async with agent.test_context() as agent_ctx:
        await agent_ctx.put(key=b"k", value=raw_record_json)
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hub.deadletter import DeadLetter
from schemas.events import CatalogueEntry
from schemas.raw import RawRecord
from streams.guard import exit_on_error, not_the_records_fault
from streams.normalize import Rejected, normalize
from streams.topics import encode_canonical

if TYPE_CHECKING:
    import faust

    from streams.app import HubRuntime

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BATCH_WITHIN_S = 0.05
#: A raw record larger than this is refused before parsing (connectors cap pages well below it).
MAX_RECORD_BYTES = 1_000_000


def _validation_reason(exc: ValidationError) -> str:
    types = {e["type"] for e in exc.errors(include_url=False, include_input=False)}
    if types & {"json_invalid", "json_type"}:
        return "invalid_json"
    return "schema"


def _validation_detail(exc: ValidationError) -> str:
    # Never str(exc): pydantic quotes the offending input, which may be personal data.
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)[:5]
    ]
    return "record does not match the RawRecord/canonical schema: " + "; ".join(parts) + \
        " (fix the connector's mapping, then replay the raw topic)"


async def handle(rt: HubRuntime, agent: str, source_topic: str, event: Any) -> bool:
    """Normalise one raw record; returns True when a canonical event was produced.

    What is the record's fault (it is empty, too large, not a RawRecord, refused by the
    normaliser, or trips a bug in it) is a dead letter carrying the record for ``dvc-hub dlq
    replay``. What is not (:func:`streams.guard.not_the_records_fault`: the canonical event cannot
    be produced, faust or Kafka fails) raises, and the agent's guard exits the worker: the
    record's offset is not committed and the restarted worker handles it again.
    """
    msg = event.message
    value = event.value
    rt.metrics.records_in.labels(agent=agent).inc()
    rec: RawRecord | None = None
    reason, detail = "unexpected", ""
    codes: dict[str, object] = {}
    out: Any = None
    try:
        if value is None:
            reason, detail = "missing_key", "empty record (tombstone) on a raw topic; connectors never send one"
        elif len(value) > MAX_RECORD_BYTES:
            reason, detail = "too_large", f"record of {len(value)} bytes exceeds {MAX_RECORD_BYTES}"
        else:
            rec = RawRecord.model_validate_json(value)
            out = normalize(rec, rt.units, rt.bounds)
    except Rejected as exc:
        reason, detail, codes = exc.reason, exc.detail, exc.codes
    except ValidationError as exc:
        reason, detail = _validation_reason(exc), _validation_detail(exc)
    except Exception as exc:
        if not_the_records_fault(exc):
            raise
        log.exception("unexpected error normalising a record from %s[%s]@%s", source_topic, msg.partition, msg.offset)
        reason, detail = "unexpected", f"{type(exc).__name__} while normalising (a bug: report it with the offset)"
    finally:
        ts = getattr(msg, "timestamp", None)
        if ts:
            rt.metrics.latency.labels(agent=agent).observe(max(0.0, time.time() - ts))
    if out is not None:
        # Outside the try: a send that fails is Kafka's doing, not the record's (the guard exits).
        return await _emit(rt, agent, out)
    await rt.dead_letter(
        DeadLetter.make(
            stage="normalize", reason=reason, detail=detail, codes=codes,
            source=rec.source if rec else source_topic.rsplit(".", 1)[-1],
            topic=source_topic, partition=msg.partition, offset=msg.offset,
            event_id=rec.event_id if rec else None,
            payload=rec.model_dump(mode="json") if rec else None,
            raw=None if rec or value is None else value,
            keep_text=rt.settings.privacy.share_free_text,
        )
    )
    return False


async def _emit(rt: HubRuntime, agent: str, out: Any) -> bool:
    """Produce a normalised event to the canonical topic; True when one was produced."""
    canonical = rt.topics.canonical.get_topic_name()
    if isinstance(out, CatalogueEntry):
        # Broadcast: every partition's counters need every unit's catalogue (fees, paper
        # results), and a unit's dossiers are spread over all partitions.
        for p in range(rt.settings.kafka.partitions):
            await rt.send(canonical, out.unit_code.encode(), encode_canonical(out), partition=p)
            rt.metrics.records_out.labels(agent=agent).inc()
        return True
    if out.ma_ho_so is None:
        # A document that belongs to no dossier: nothing the hub counts.
        return False
    await rt.send(canonical, out.ma_ho_so.encode(), encode_canonical(out))
    rt.metrics.records_out.labels(agent=agent).inc()
    return True


def register(app: faust.App, rt: HubRuntime, source: str) -> Any:
    """Register the agent ``normalize_<source>`` on the raw topic of ``source``."""
    topic = rt.topics.raw[source]
    topic_name = topic.get_topic_name()
    name = f"normalize_{source}"

    async def normalize_agent(stream: Any) -> None:
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            for event in batch:
                await handle(rt, name, topic_name, event)

    # concurrency=1: faust #606 commits past in-flight messages with more. handle() raises only what
    # is not a record's fault, so whatever escapes the loop is the worker's failure: exit (streams.guard).
    return app.agent(topic, name=name, concurrency=1)(exit_on_error(app, f"agent {name}")(normalize_agent))
