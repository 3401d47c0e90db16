"""The dossier-state agent: canonical events -> the ``dossiers`` table, derived figures, the outbox.

For each event on the canonical topic (keyed by ``MaHoSo``; catalogue entries by unit code):

1. read the dossier's state from the ``dossiers`` table (the single source of truth);
2. ``new = apply(old, event)`` — idempotent: ``None`` when the event is stale or a duplicate;
3. if something changed: write ``table[MaHoSo] = new`` (faust appends it to the compacted changelog,
   on the same partition as the event), update the in-memory aggregates with
   ``apply_change(partition, old_view, new_view)`` and, when the event is a new one-stop snapshot
   (a :class:`DossierEvent` of a newer version), produce an :class:`schemas.figures.OutboxDossier`
   for the portal sync keyed by ``MaHoSo``. Document and portal events change the counted facts
   (electronic result, online payment) but not what the one-stop system says, so they produce no
   outbox item (and the compact state could not rebuild the national record from them anyway).

Each table value is ``{"p": partition, "o": offset, "s": state}``:

* ``p`` lets :meth:`streams.app.HubRuntime.rebuild` group the table by partition (the memory
  store mixes standby and former partitions into one dict);
* ``o`` is the canonical-topic offset of the event that last changed the dossier. An event that
  changes nothing *and* sits at or before ``o`` is a replay of work done before a crash (its
  changelog write reached Kafka, its offset commit did not). Its outbox item may have been lost
  with the producer's buffer, so the dossier's current item is produced again: the item id is
  deterministic (``dossier:<MaHoSo>:<version>``), the portal sync absorbs the copy. A genuine
  duplicate (a connector's re-read) comes later in the topic, with an offset past ``o``, and
  produces nothing.

A canonical event that fails to parse or to apply is a dead letter with stage ``state``, carrying
the event for ``dvc-hub dlq replay``, and the loop continues. An error that is not the event's
fault (faust refusing a table write, Kafka; :func:`streams.guard.not_the_records_fault`) is never
a dead letter: it exits the worker, for its supervisor to restart it, and the event is applied
again from the committed offset.

The agent takes events in batches (``take_events``) but applies them one at a time, in topic
order, each made faust's *current event* while it is applied (:func:`as_current`): faust sends a
table write to the changelog partition of the current event, which a plain batch loop would get
wrong. Before the batch is acked, :meth:`streams.app.HubRuntime.settle_writes` waits until every
changelog record of the batch has reached the Kafka client, so faust's flush before the offset
commit covers them.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from faust.streams import _current_event
from pydantic import ValidationError

from hub.deadletter import DeadLetter
from hub.sync.signing import sign
from schemas.events import CatalogueEntry, DocumentEvent, DossierEvent
from streams.domain.state import apply, view
from streams.guard import exit_on_error, not_the_records_fault
from streams.normalize import Rejected, progress_rows, to_national
from streams.topics import decode_canonical

if TYPE_CHECKING:
    import faust

    from streams.app import HubRuntime

log = logging.getLogger(__name__)

AGENT = "dossier_state"
#: Outcomes of ``dvchub_state_applies_total`` (bounded): "replayed" = a change already applied
#: before a crash, met again because its offset was not committed.
OUTCOMES = ("applied", "stale", "duplicate", "replayed")

#: Events per batch, and how long to wait for a batch to fill (latency bound at low rates).
BATCH_SIZE = 1_000
BATCH_WITHIN_S = 0.05


@contextlib.contextmanager
def as_current(event: Any) -> Iterator[None]:
    """Make ``event`` faust's current event while it is applied.

    A table write goes to the changelog partition (and, with rocksdb://, the store partition) of
    faust's *current event*. Inside ``take_events`` that is whichever event the stream read last,
    possibly of another partition, so each event of a batch is made current while it is applied.
    faust keeps the current event in a context variable of its ``streams`` module (what
    ``Stream._set_current_event`` sets; that method also rebinds the stream's own attribute,
    which ``take_events`` reads concurrently, so it is not used here).
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def catalogue_key(partition: int, entry: CatalogueEntry) -> bytes:
    """Key of a catalogue row in the ``catalogue`` table: one per partition and validity range.

    Entries are broadcast to every partition, so the partition is part of the key: each partition's
    copy is its own row (and its own changelog record), and rebuilding one partition never depends
    on another.
    """
    return f"{partition}|{entry.unit_code}|{entry.procedure_code}|{entry.valid_from.isoformat()}".encode()


def outbox_record(ev: DossierEvent, now: datetime, *, id_number_hash: bool = False) -> bytes:
    """The portal-sync item of one one-stop snapshot (deterministic ``item_id``), serialised.

    It is an :class:`schemas.figures.OutboxDossier` in JSON, written with orjson from plain dicts:
    building the pydantic model only to dump it again was half of the outbox's cost, the largest
    single item of the worker's profile (docs/benchmarks.md). The portal sync reads it back through
    the model, and ``tests/streams/test_agents.py`` checks that it validates.
    """
    return orjson.dumps({
        "type": "dossier", "item_id": f"dossier:{ev.ma_ho_so}:{ev.version}", "ma_ho_so": ev.ma_ho_so,
        "version": ev.version, "created_at": now, "dossier": to_national(ev, id_number_hash=id_number_hash),
        "progress": progress_rows(ev),
    })


def _outcome_of_noop(event: Any, old_view: Any) -> str:
    if isinstance(event, DossierEvent) and old_view is not None:
        current = getattr(old_view, "version", None)
        if isinstance(current, int) and event.version < current:
            return "stale"
    return "duplicate"


def _plan_catalogue(rt: HubRuntime, entry: CatalogueEntry, partition: int, offset: int) -> tuple[bytes, bytes] | None:
    """The catalogue row to write for ``entry`` (None: the table has it already); may raise on its data.

    The catalogue adds the row whole or raises before changing anything: add first, then write,
    so that an entry it cannot take is a dead letter and not a table row the figures never saw.
    A changed catalogue makes this worker's partitions stale; the partials timer rebuilds them.
    """
    key = catalogue_key(partition, entry)
    body = entry.model_dump(mode="json")
    old = rt.catalogue_table.get(key)
    if old is not None and orjson.loads(old)["e"] == body:
        return None
    value = orjson.dumps({"p": partition, "o": offset, "e": body})
    rt.catalogue.add(entry)
    return key, value


def _check(rt: HubRuntime, ev: Any) -> None:
    """The normaliser's bounds again, and known units: the canonical topic is not only the normaliser's.

    Anyone who can produce to the canonical topic (a bug, a replay tool, a forged record) reaches
    the state here; so every date, version and code is held to :class:`streams.bounds.InputBounds`
    and every counted unit must be in the registry, as at the edge.
    """
    rt.bounds.check_event(ev)
    unit = getattr(ev, "unit_code", None)
    if unit and not isinstance(ev, DocumentEvent) and rt.units.resolve(unit) is None:
        raise Rejected("unknown_unit", f"the unit code {unit} of this canonical event is not in the unit registry; "
                       "canonical events come from the normaliser, which refuses unknown units", {"unit_code": unit})


async def handle(rt: HubRuntime, event: Any) -> None:
    """Apply one canonical event.

    Everything that can fail on the event's data (decoding, the bounds, the new state, its view,
    the planned change of the figures, the serialised row and outbox item) is computed first; a
    failure there is the event's fault and a dead letter that carries the event (for ``dvc-hub
    dlq replay``), leaving table and figures as they were. Only then are the table row written,
    the figures committed and the outbox item produced, steps that cannot fail on the event's
    data: what fails there (faust refusing a table write with ``PartitionsMismatch``, Kafka) is
    not the event's fault and raises, as does any such error met while computing
    (:func:`streams.guard.not_the_records_fault`). The agent's guard then exits the worker; the
    event's offset is not committed and the restarted worker applies it again.
    """
    msg = event.message
    partition, offset = int(msg.partition), int(msg.offset)
    rt.metrics.records_in.labels(agent=AGENT).inc()
    try:
        plan = _plan(rt, event.value, partition, offset)
    except Rejected as exc:
        await _dead(rt, event, exc.reason, exc.detail + " (a canonical event the normaliser would have refused)",
                    exc.codes)
        return
    except ValidationError as exc:
        await _dead(rt, event, "schema", "canonical event does not match schemas.events: "
                    + "; ".join(e["msg"] for e in exc.errors(include_url=False, include_input=False)[:3])
                    + " (normaliser and state agent disagree on the schema version: redeploy both)")
        return
    except Exception as exc:
        if not_the_records_fault(exc):
            raise
        log.exception("unexpected error applying a canonical event at partition %s offset %s", partition, offset)
        await _dead(rt, event, "unexpected", f"{type(exc).__name__} while applying (a bug: report it with the offset)")
        return
    finally:
        ts = getattr(msg, "timestamp", None)
        if ts:
            rt.metrics.latency.labels(agent=AGENT).observe(max(0.0, time.time() - ts))
    await _carry_out(rt, plan, partition)


@dataclass(frozen=True)
class _Plan:
    """What applying one event will do, computed before anything is written."""

    outcome: str
    table: Any = None  # the table to write ``row`` to under ``key``
    key: bytes = b""
    row: bytes = b""
    change: Any = None  # Aggregates.plan_change
    ma_ho_so: str = ""
    outbox: bytes | None = None  # the outbox item to produce


def _plan(rt: HubRuntime, value: Any, partition: int, offset: int) -> _Plan:
    """Decode, check and apply one canonical event in memory (may raise on its data; writes nothing)."""
    ev = decode_canonical(value)
    _check(rt, ev)
    if isinstance(ev, CatalogueEntry):
        row = _plan_catalogue(rt, ev, partition, offset)
        if row is None:
            return _Plan("duplicate")
        return _Plan("applied", rt.catalogue_table, row[0], row[1])
    if ev.ma_ho_so is None:
        return _Plan("")
    key = ev.ma_ho_so.encode()
    raw_old = rt.dossiers.get(key)
    old = orjson.loads(raw_old) if raw_old is not None else None
    old_state = old["s"] if old is not None else None
    old_view = view(old_state) if old_state is not None else None
    new_state = apply(old_state, ev)
    if new_state is None:
        if old is not None and offset <= int(old.get("o", -1)):
            again = isinstance(ev, DossierEvent) and old_view is not None and old_view.version == ev.version
            return _Plan("replayed", ma_ho_so=ev.ma_ho_so, outbox=_outbox_of(rt, ev) if again else None)
        return _Plan(_outcome_of_noop(ev, old_view))
    change = rt.aggregates.plan_change(partition, old_view, view(new_state))
    row_bytes = orjson.dumps({"p": partition, "o": offset, "s": new_state})
    outbox = _outbox_of(rt, ev) if isinstance(ev, DossierEvent) else None
    return _Plan("applied", rt.dossiers, key, row_bytes, change, ev.ma_ho_so, outbox)


async def _carry_out(rt: HubRuntime, plan: _Plan, partition: int) -> None:
    """Write what :func:`_plan` decided; an error here is faust's or Kafka's, and escapes."""
    if plan.table is not None:
        plan.table[plan.key] = plan.row
    if plan.change is not None:
        rt.mark(partition, rt.aggregates.commit(plan.change))
    if plan.outcome:
        rt.metrics.state_applies.labels(outcome=plan.outcome).inc()
    if plan.outbox is not None:  # a new one-stop snapshot version, or one replayed after a crash
        await _send(rt, plan.ma_ho_so, plan.outbox)


def _outbox_of(rt: HubRuntime, ev: DossierEvent) -> bytes:
    return outbox_record(ev, rt.clock(), id_number_hash=rt.settings.portal.send_id_number)


async def _send(rt: HubRuntime, ma_ho_so: str, record: bytes) -> None:
    key = ma_ho_so.encode()
    # Signed over the exact bytes sent: the portal sync pushes nothing it cannot verify.
    await rt.send(rt.topics.outbox.get_topic_name(), key, record, sign(rt.outbox_key, key, record))
    rt.metrics.records_out.labels(agent=AGENT).inc()


async def _dead(rt: HubRuntime, event: Any, reason: str, detail: str, codes: dict[str, object] | None = None) -> None:
    """Dead-letter a canonical event that is its own fault, carrying it for ``dvc-hub dlq replay``.

    The payload is the event as it was on the canonical topic (redacted like every payload), the
    partition and offset say where: a replay sends it back there, to the same partition, once the
    cause is fixed (a unit added to the registry, bounds widened). A body that is not a JSON
    object cannot be replayed by anyone; only its shape is kept.
    """
    msg, value = event.message, event.value
    payload: dict[str, Any] | None = None
    try:
        decoded = orjson.loads(value) if value is not None else None
        payload = decoded if isinstance(decoded, dict) else None
    except orjson.JSONDecodeError:
        payload = None
    event_id = payload.get("event_id") if payload is not None else None
    await rt.dead_letter(DeadLetter.make(
        stage="state", reason=reason, detail=detail, codes=codes, source="canonical",
        topic=msg.topic, partition=msg.partition, offset=msg.offset,
        event_id=event_id if isinstance(event_id, str) else None,
        payload=payload, raw=value if payload is None and value is not None else None,
        keep_text=rt.settings.privacy.share_free_text,
    ))


def register(app: faust.App, rt: HubRuntime) -> Any:
    """Register the state agent and the table-recovery hooks that rebuild the derived figures."""

    async def dossier_state(stream: Any) -> None:
        # Batches for throughput (one wake-up per batch, not per record); each event is still
        # applied on its own, in topic order, as the current event of the table (see as_current).
        # take_events acks the batch only after this body has run, and settle_writes first makes
        # sure every changelog record of the batch is in the Kafka client, which faust flushes
        # before it commits the batch's offsets.
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            for event in batch:
                with as_current(event):
                    await handle(rt, event)
            await rt.settle_writes()

    canonical = rt.topics.canonical.get_topic_name()

    def active_partitions() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == canonical}

    async def on_revoked(*_: Any, **__: Any) -> None:
        rt.revoke()

    async def on_dossiers_recovered() -> None:
        # Called by faust after every table is restored from its changelog and before the stream
        # partitions resume: the only point where tables and figures are known to agree. Rebuilds
        # the catalogue (from the catalogue table) too. A row it cannot count is skipped and its
        # dead letter queued (HubRuntime._skip_row; the partials timer sends it once the worker runs:
        # nothing is produced from inside faust's recovery); anything else exits the worker (the
        # guard below), because faust would swallow it and leave the worker never ready.
        rt.rebuild(active_partitions())

    app.on_partitions_revoked.connect(exit_on_error(app, "on_partitions_revoked receiver")(on_revoked))
    rt.dossiers.on_recover(exit_on_error(app, "table recovery hook (rebuild of the figures)")(on_dossiers_recovered))
    return app.agent(rt.topics.canonical, name=AGENT, concurrency=1)(exit_on_error(app, f"agent {AGENT}")(
        dossier_state))
