"""Read every record: the worker's consumer refuses to jump over offsets it never processed.

**What goes wrong in faust without this.** faust's fetch loop (``Consumer._drain_messages`` in
``faust/transport/consumer.py``) remembers the last offset it read per partition. When a fetched
record's offset jumps past it, faust records the skipped range as a *gap* and its commit logic
counts the gap as acknowledged. That is meant for compacted and transactional topics, whose offsets
really have holes. But a jump also happens around a rebalance: faust's fetch of a batch runs in the
consumer thread, while the recovery coroutine on the main loop seeks the stream partitions back to
their committed offsets ("Seek stream partitions to committed offsets"). A batch fetched at the old
read position, *before* that seek, can reach the fetch loop *after* it, with the consumer generation
and flow control already saying "go". Its first record lies past the freshly seeked position, faust
calls the range between a gap, the commit moves past it, and the records in between — fetched
before the rebalance and dropped from the stream buffers by it — are never processed. The
SIGKILL crash tests saw exactly that: ``canonical`` partition 0, offsets 472–523, committed and
never applied; a soak run lost ``raw.motcua`` partition 1, offsets 831–887, with no dead letter.
The same jump happens at a group's first start: aiokafka does not seek a partition without a
committed offset, so a batch dropped while the flow was stopped leaves the position past records
nobody processed (:meth:`GuardedConsumer.seek_to_committed`).

**What the guard does.** :class:`ContinuityGuard` keeps, per partition, the next offset the worker
must read (set by every seek and advanced by every record handed to faust). A record past it is
not handed on: the consumer seeks the partition back to the expected offset and drops the rest of
that partition's stale batch, so the records in between are fetched and processed again (the
dossier state is idempotent, so a record seen twice changes nothing). If a batch fetched *after*
that seek still starts past the expected offset, the hole is real (compaction, transaction
markers); the guard accepts it once and records it as an exact gap for the commit.

**The commit is guarded too.** A record can also be lost *after* the guard handed it on: faust's
fetch loop abandons a record whose delivery is still waiting when the flow stops
(``wait_first(callback, suspend_flow)``), and a rebalance clears the agents' buffers. If a later
record of that partition is then processed, faust's commit passes over the lost one: its check
that the acknowledged run starts at the committed offset lets one missing offset through, and any
number when the group never committed.
A SIGKILL test on a loaded machine lost ``raw.catalogue`` partition 2, offset 2, that way
(offset 3 normalised, both committed, the procedure missing from the catalogue and the fee figures
short; which of those paths dropped it is not known).
:meth:`GuardedConsumer._new_offset` commits only a run that starts exactly at the committed offset
(or the log start), real holes included as exact gaps; a head left unprocessed with nothing in
flight there is read again after :data:`HOLE_REREAD_AFTER_S`.

:class:`GuardedConsumer` wires the guard into faust's aiokafka consumer, and :class:`HubApp` makes
the worker use it. Both are thin; the decisions live in :class:`ContinuityGuard`, which is plain
Python and unit-tested on its own (``tests/streams/test_offsets.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from time import monotonic
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

log = logging.getLogger(__name__)


class Verdict(enum.Enum):
    """What to do with one fetched record."""

    HAND_ON = "hand_on"  # hand it to faust
    DROP = "drop"  # part of a stale batch: the partition was (or is being) read again
    REREAD = "reread"  # the first record past the expected offset: seek back, then drop it
    HOLE = "hole"  # hand it to faust: the offsets before it do not exist (ContinuityGuard.last_hole)


class ContinuityGuard:
    """Per-partition bookkeeping of the next offset to read, and the verdict for each fetched record.

    The consumer calls :meth:`new_batch` before each fetch, :meth:`check` for each record the fetch
    returned, :meth:`seeked` after every seek (its own and faust's), and :meth:`forget` when
    partitions are revoked.

    >>> g = ContinuityGuard()
    >>> g.seeked({"p": 10}); b = g.new_batch()
    >>> [g.check("p", o, b).value for o in (10, 11, 14, 15)]
    ['hand_on', 'hand_on', 'reread', 'drop']
    >>> g.seeked({"p": 12}); b = g.new_batch()  # the consumer sought back to 12
    >>> [g.check("p", o, b).value for o in (12, 13, 14)]
    ['hand_on', 'hand_on', 'hand_on']
    >>> b = g.new_batch(); [g.check("p", o, b).value for o in (18, 19)]  # 15 to 17: does the log have them?
    ['reread', 'drop']
    >>> b = g.new_batch(); [g.check("p", o, b).value for o in (18, 19)]  # fetched after the seek: it does not
    ['hole', 'hand_on']
    >>> g.last_hole
    ('p', 15, 18)
    """

    def __init__(self) -> None:
        self._expected: dict[Any, int] = {}
        # partition -> number of the batch during which the guard sought it back
        self._rereading: dict[Any, int] = {}
        self._batch = 0
        self.rereads = 0
        self.holes = 0
        #: The last real hole accepted: (partition, first missing offset, first offset after it).
        self.last_hole: tuple[Any, int, int] | None = None

    def new_batch(self) -> int:
        """Number the next fetch; records of later batches were fetched after every earlier seek."""
        self._batch += 1
        return self._batch

    def expected(self, tp: Any) -> int | None:
        """The next offset the worker must read from ``tp``, if known."""
        return self._expected.get(tp)

    def seeked(self, offsets: Mapping[Any, int | None]) -> None:
        """Partitions were sought to these offsets (``None`` or negative: position unknown)."""
        for tp, offset in offsets.items():
            self._rereading.pop(tp, None)
            if offset is None or offset < 0:
                self._expected.pop(tp, None)
            else:
                self._expected[tp] = offset

    def forget(self, tps: Iterable[Any]) -> None:
        """Partitions left this worker."""
        for tp in tps:
            self._expected.pop(tp, None)
            self._rereading.pop(tp, None)

    def check(self, tp: Any, offset: int, batch: int) -> Verdict:
        """The verdict for the record at ``offset`` of ``tp``, fetched in batch number ``batch``."""
        expected = self._expected.get(tp)
        if expected is None or offset == expected:
            self._expected[tp] = offset + 1
            self._rereading.pop(tp, None)
            return Verdict.HAND_ON
        if offset < expected:
            # Read again below the expected offset (e.g. after faust's own seek): faust drops what
            # lies below its read offset, and the idempotent state absorbs the rest.
            return Verdict.HAND_ON
        sought_in = self._rereading.get(tp)
        if sought_in is None:
            self._rereading[tp] = batch
            self.rereads += 1
            return Verdict.REREAD
        if batch > sought_in:
            # Fetched after the seek back and still past it: the log really has a hole here.
            self._rereading.pop(tp, None)
            self._expected[tp] = offset + 1
            self.holes += 1
            self.last_hole = (tp, expected, offset)
            return Verdict.HOLE
        return Verdict.DROP


#: How long the fetch loop waits for the consumer thread to seek a partition back.
SEEK_BACK_TIMEOUT_S = 30.0

#: How long the head of a partition may stay unprocessed, with later records acknowledged and
#: nothing in flight there, before the consumer reads the partition again from its committed offset.
#: Above the few seconds a record may wait in an agent's buffer before the agent takes it.
HOLE_REREAD_AFTER_S = 10.0


class ConsumerStuckError(RuntimeError):
    """The consumer thread did not carry out a seek; the worker must restart (its supervisor does)."""


class GuardedConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with a :class:`ContinuityGuard` on the records it hands on.

    Only topics faust acknowledges offsets for (the agents' source topics) are guarded; the
    tables' changelogs are read by faust's recovery, which tracks them itself.
    """

    guard: ContinuityGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = ContinuityGuard()
        #: First offset to process of partitions the group never committed (their log start).
        self._baseline: dict[TP, int] = {}
        #: Partition -> (first unprocessed offset, since when) while commits wait for it.
        self._head_holes: dict[TP, tuple[int, float]] = {}
        self._hole_rereads: set[asyncio.Task[None]] = set()

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109 (faust's signature)
        """faust's fetch, with records past the expected offset replaced by a seek back."""
        guard = self.guard
        batch = guard.new_batch()
        guarded = self._guarded
        async for tp, message in super().getmany(timeout):
            if not guarded(tp):
                yield tp, message
                continue
            verdict = guard.check(tp, message.offset, batch)
            if verdict is Verdict.HAND_ON:
                yield tp, message
            elif verdict is Verdict.HOLE:
                # Offsets that do not exist: a gap faust may commit over (see _new_offset).
                assert guard.last_hole is not None  # set with every HOLE verdict
                _, begin, end = guard.last_hole
                self._gap[tp].addi(begin, end)
                yield tp, message
            elif verdict is Verdict.REREAD:
                expected = guard.expected(tp)
                assert expected is not None  # a REREAD verdict needs a known expected offset
                log.warning(
                    "fetched offset %d of %s[%d] while the worker expected %d (a batch fetched before a "
                    "seek); reading the partition again from %d", message.offset, tp.topic, tp.partition,
                    expected, expected,
                )
                await self._read_again(tp, expected)

    async def _read_again(self, tp: TP, offset: int) -> None:
        """Seek ``tp`` back to ``offset`` and count the reread; a partition revoked meanwhile is forgotten."""
        try:
            await self._seek_back(tp, offset)
        except IllegalStateError:
            # Revoked meanwhile (a rebalance): its next owner starts at the committed offset.
            log.info("%s[%d] was revoked before it could be read again; its next owner reads it", tp.topic,
                     tp.partition)
            self.guard.forget([tp])
            return
        on_reread = getattr(self.app, "on_reread", None)
        if on_reread is not None:
            on_reread(tp.topic)

    async def _seek_back(self, tp: TP, offset: int) -> None:
        """Seek ``tp`` to ``offset`` on the consumer thread's own loop, and wait until it is done.

        Done there, the seek comes after the fetch that returned the stale batch and before the
        next one (the fetch loop waits here), so the next batch starts at ``offset``. Not through
        faust's ``seek_wait``: that queues the call behind the consumer thread's method queue,
        which a rebalance can hold while it waits for this very fetch loop — a worker in the
        SIGKILL test stopped fetching for good that way. A seek that still does not happen within
        :data:`SEEK_BACK_TIMEOUT_S` crashes the worker: its supervisor restarts it, and the restart
        reads from the committed offset, which never passed the records in question.
        """
        thread = self._thread
        consumer = thread._ensure_consumer()

        async def seek() -> None:
            consumer.seek(tp, offset)

        done = asyncio.run_coroutine_threadsafe(seek(), thread.thread_loop)
        stuck: ConsumerStuckError | None = None
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), timeout=SEEK_BACK_TIMEOUT_S)
        except TimeoutError:
            done.cancel()
            stuck = ConsumerStuckError(
                f"the consumer thread did not seek {tp.topic}[{tp.partition}] back to {offset} within "
                f"{SEEK_BACK_TIMEOUT_S:.0f} s; restarting the worker reads it again from the committed offset"
            )
        if stuck is not None:
            log.error("%s", stuck)
            # As the stall watchdog does: exit for the supervisor to restart (an exception in the
            # fetch loop alone would only stop fetching).
            await self.app.crash(stuck)
            raise stuck
        # What faust's own seek records: the next record at ``offset`` is not "below the read offset".
        self._read_offset[tp] = offset or None

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """faust's recovery seek; the guard learns the new read positions.

        A partition without a committed offset (a new group, a new partition) is not sought at all
        by aiokafka, so a batch fetched and dropped before this seek leaves the position past the
        records nobody processed. With ``auto_offset_reset="earliest"`` the worker must start at
        the log's first offset: the guard expects that one.
        """
        offsets = await super().seek_to_committed()
        expected: dict[TP, int | None] = dict(offsets)
        unknown = [tp for tp, o in offsets.items() if (o is None or o < 0) and self._guarded(tp)]
        if unknown and self.app.conf.consumer_auto_offset_reset == "earliest":
            earliest = await self.earliest_offsets(*unknown)
            expected.update(earliest)
            self._baseline.update({tp: o for tp, o in earliest.items() if o is not None and o >= 0})
        self.guard.seeked(expected)
        self._head_holes.clear()
        return offsets

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp``: faust's, but never past a record that was not processed.

        faust commits the first run of consecutive acknowledged offsets (plus its recorded gaps),
        and its check that the run starts at the committed offset lets exactly one offset through
        (``min(acked) - committed > 1``; the "offset-1 discrepancy" its own comments mention), and
        every offset when nothing was committed yet. A record that was handed on but never reached
        an agent (see the module docstring) and whose successor was processed is then committed
        without ever being processed: a loaded test run lost ``raw.catalogue`` partition 2, offset 2
        that way, with offset 3 normalised and committed.

        Here the run must start exactly at the committed offset (or, for a partition never
        committed, at its log start). Otherwise nothing is committed for ``tp`` and, once the head
        has stayed unprocessed for :data:`HOLE_REREAD_AFTER_S` with nothing in flight there, the
        partition is read again from the committed offset (:meth:`_reread_head`). Real holes in the
        log are in faust's gaps (the guard records them exactly), so they never block a commit.
        """
        acked = self._acked[tp]
        if acked and self._guarded(tp):
            start = self._committed_offset[tp]
            if start is None:
                start = self._baseline.get(tp)
            if start is not None:
                head = min(acked)
                gaps = self._gap[tp]
                if gaps:
                    head = min(head, *(iv.begin for iv in gaps))
                if head > start:
                    self._note_head_hole(tp, start, head)
                    return None
            self._head_holes.pop(tp, None)
        return super()._new_offset(tp)

    def _note_head_hole(self, tp: TP, start: int, head: int) -> None:
        now = monotonic()
        seen = self._head_holes.get(tp)
        if seen is None or seen[0] != start:
            self._head_holes[tp] = (start, now)
            return
        if now - seen[1] < HOLE_REREAD_AFTER_S:
            return
        in_flight = any(m.tp == tp and start <= m.offset < head for m in list(self._unacked_messages))
        if in_flight:
            return
        self._head_holes[tp] = (start, now)  # the clock restarts: one reread per period at most
        log.warning(
            "%s[%d]: offsets %d..%d were fetched but never processed while later ones were; not committing "
            "past them, reading the partition again from %d", tp.topic, tp.partition, start, head - 1, start,
        )
        task = asyncio.ensure_future(self._reread_head(tp, start))
        self._hole_rereads.add(task)
        task.add_done_callback(self._hole_rereads.discard)

    async def _reread_head(self, tp: TP, offset: int) -> None:
        """Seek ``tp`` back to its committed offset, so the records never processed are fetched again.

        The guard learns the position first: a batch fetched before the seek and handed on while it
        runs starts past ``offset``, and is read again like any stale batch.
        """
        self.guard.seeked({tp: offset})
        with contextlib.suppress(ConsumerStuckError):  # the worker is restarting (see _seek_back)
            await self._read_again(tp, offset)

    def _guarded(self, tp: TP) -> bool:
        return bool(self.app.topics.acks_enabled_for(tp.topic))

    async def seek(self, partition: TP, offset: int) -> None:
        """faust's seek; the guard learns the new read position."""
        await super().seek(partition, offset)
        self.guard.seeked({partition: offset})

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        """Seek and wait for the positions; the guard learns them."""
        await super().seek_wait(partitions)
        self.guard.seeked(partitions)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Forget the revoked partitions' positions before faust's own bookkeeping."""
        self.guard.forget(revoked)
        for tp in revoked:
            self._head_holes.pop(tp, None)
            self._baseline.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class GuardedTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport, building :class:`GuardedConsumer` consumers."""

    Consumer = GuardedConsumer


class HubApp(faust.App):
    """The worker's faust app: faust's own, with the :class:`GuardedConsumer` on ``kafka://`` brokers.

    ``on_reread(topic)``, when set, is called each time the guard reads a partition again (the
    worker counts it in ``dvchub_consumer_rereads_total``).
    """

    on_reread: Callable[[str], None] | None = None

    def _new_transport(self) -> Any:
        transport = super()._new_transport()
        if type(transport) is faust_aiokafka.Transport:
            return GuardedTransport(self.conf.broker_consumer, self)
        return transport
