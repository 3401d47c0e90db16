"""The consumer's continuity guard: no record is ever skipped, whatever order fetches and seeks come in.

The real-broker proof is ``tests/streams/test_e2e.py::test_sigkill_several_times_mid_run_counts_stay_exact``
(it failed in CI before the guard existed: the worker restarted after a SIGKILL committed past
records it never processed). These tests pin the guard's decisions one by one, and a hypothesis
model checks them against every interleaving of stale batches, seeks and real holes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import Settings
from streams import offsets
from streams.app import create_app, runtime_of
from streams.offsets import ConsumerStuckError, ContinuityGuard, GuardedConsumer, Verdict

P = ("canonical", 1)


def verdicts(g: ContinuityGuard, offsets: list[int]) -> list[str]:
    batch = g.new_batch()
    return [g.check(P, o, batch).value for o in offsets]


def test_a_batch_fetched_before_the_recovery_seek_is_read_again_from_the_committed_offset():
    # The CI failure: committed 601, first batch after "Worker ready" starts at 660.
    g = ContinuityGuard()
    g.seeked({P: 601})
    assert verdicts(g, [660, 661, 662]) == ["reread", "drop", "drop"]
    assert (g.expected(P), g.rereads) == (601, 1)
    # The consumer sought back to 601: the next batch starts there and is handed on whole.
    assert verdicts(g, [601, 602, 603]) == ["hand_on"] * 3
    assert g.expected(P) == 604


def test_a_real_hole_is_accepted_after_one_reread_and_recorded_exactly():
    g = ContinuityGuard()
    g.seeked({P: 10})
    assert verdicts(g, [10, 11, 15]) == ["hand_on", "hand_on", "reread"]
    # Fetched after the seek back to 12, and still starting at 15: offsets 12-14 do not exist.
    assert verdicts(g, [15, 16]) == ["hole", "hand_on"]
    assert (g.holes, g.expected(P), g.last_hole) == (1, 17, (P, 12, 15))
    # A later jump is a new question, asked again.
    assert verdicts(g, [20]) == ["reread"]


def test_records_below_the_expected_offset_are_handed_on_for_faust_to_drop_or_reprocess():
    g = ContinuityGuard()
    g.seeked({P: 50})
    assert verdicts(g, [48, 49, 50]) == ["hand_on"] * 3
    assert g.expected(P) == 51


def test_unknown_positions_and_revoked_partitions_are_not_judged():
    g = ContinuityGuard()
    assert verdicts(g, [7, 9]) == ["hand_on", "reread"]  # 7: position unknown, learnt from the record
    g.forget([P])
    assert verdicts(g, [100]) == ["hand_on"]
    g.seeked({P: None})  # no committed offset: auto_offset_reset decides, the guard does not
    assert verdicts(g, [3]) == ["hand_on"]
    g.seeked({P: -1})
    assert g.expected(P) is None


# --------------------------------------------------------------------------- the model

@st.composite
def histories(draw: Any) -> tuple[list[int], list[tuple[str, int, int]]]:
    """A partition's log (offsets, with optional real holes) and a sequence of consumer events."""
    size = draw(st.integers(10, 60))
    holes = draw(st.sets(st.integers(1, size - 1), max_size=4))
    log = [o for o in range(size) if o not in holes]
    events = draw(st.lists(
        st.tuples(st.sampled_from(["fetch", "fetch", "fetch", "stale", "seek"]), st.integers(0, size),
                  st.integers(1, 15)),
        max_size=40,
    ))
    return log, events


@settings(max_examples=400, deadline=None)
@given(histories())
def test_model_every_existing_offset_is_handed_on_and_reading_always_reaches_the_end(
    history: tuple[list[int], list[tuple[str, int, int]]],
) -> None:
    """The consumer as the guard meets it: fresh fetches continue from the position; a *stale* batch
    (fetched at any earlier position, delivered after a seek of faust's) may arrive until the guard
    seeks itself; faust's seeks go to a committed offset, never past what was handed on."""
    log, events = history
    g = ContinuityGuard()
    handed: list[int] = []
    position = 0
    g.seeked({P: 0})
    stale_possible = False

    def deliver(records: list[int]) -> None:
        nonlocal position, stale_possible
        batch = g.new_batch()
        for o in records:
            v = g.check(P, o, batch)
            if v in (Verdict.HAND_ON, Verdict.HOLE):
                handed.append(o)
            elif v is Verdict.REREAD:
                expected = g.expected(P)
                assert expected is not None
                position = expected  # the guard's own seek: the next fetch is fresh
                stale_possible = False

    def fetch(k: int) -> list[int]:
        nonlocal position
        records = [o for o in log if o >= position][:k]
        if records:
            position = records[-1] + 1
        return records

    for kind, at, k in events:
        if kind == "fetch":
            deliver(fetch(k))
        elif kind == "stale" and stale_possible:
            deliver([o for o in log if o >= at][:k])
        elif kind == "seek":
            committed = min(at, max(handed, default=-1) + 1)  # faust commits only what was handed on
            position = committed
            g.seeked({P: committed})
            stale_possible = True
    for _ in range(len(log) * 3):  # then the consumer keeps fetching: it must reach the end
        deliver(fetch(15))

    assert set(handed) == set(log), f"never handed on: {sorted(set(log) - set(handed))}"
    # No loss *in order* either: every record handed on follows one already handed, or a real hole.
    seen: set[int] = set()
    for o in handed:
        earlier = [x for x in log if x < o]
        assert not earlier or earlier[-1] in seen or o <= max(seen, default=-1), (o, sorted(seen))
        seen.add(o)


# --------------------------------------------------------------------------- the wiring


def test_the_worker_app_uses_the_guarded_consumer_and_counts_rereads_from_zero():
    app = create_app(Settings())
    assert isinstance(app.consumer, GuardedConsumer)
    rt = runtime_of(app)
    names = rt.topics.source_topic_names()
    assert len(names) == 5  # four raw topics (one-stop, documents, portal, catalogues) and the canonical one
    # Series exist (at 0) before the first reread, so rate() and alerts read 0, not "no data".
    assert all(rt.registry.get_sample_value("dvchub_consumer_rereads_total", {"topic": n}) == 0.0 for n in names)


class FakeThread:
    """faust's consumer thread, as far as the guard uses it: an event loop in a thread, and the consumer."""

    def __init__(self, *, running: bool = True, refuse: Exception | None = None) -> None:
        self.thread_loop = asyncio.new_event_loop()
        self.seeks: list[tuple[TP, int, bool]] = []  # (tp, offset, ran on the thread's loop)
        self.refuse = refuse
        self._runner = threading.Thread(target=self.thread_loop.run_forever, daemon=True)
        if running:
            self._runner.start()

    def _ensure_consumer(self) -> Any:
        thread = self

        class AioConsumer:
            def seek(self, tp: TP, offset: int) -> None:
                if thread.refuse is not None:
                    raise thread.refuse
                on_loop = asyncio.get_running_loop() is thread.thread_loop
                thread.seeks.append((tp, offset, on_loop))

        return AioConsumer()

    def close(self) -> None:
        if self._runner.is_alive():
            self.thread_loop.call_soon_threadsafe(self.thread_loop.stop)
            self._runner.join(5)


class Msg:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def guarded_consumer(monkeypatch: Any, batches: list[list[int]], tp: TP, thread: FakeThread) -> GuardedConsumer:
    app = create_app(Settings())
    consumer = app.consumer
    assert isinstance(consumer, GuardedConsumer)

    async def fake_getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        for o in batches.pop(0):
            yield tp, Msg(o)

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", fake_getmany)
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
    monkeypatch.setattr(consumer, "_thread", thread)
    return consumer


async def test_the_guarded_consumer_seeks_back_on_the_consumer_thread_and_hands_on_nothing_past_it(monkeypatch):
    tp = TP("t.canonical", 1)
    thread = FakeThread()
    try:
        consumer = guarded_consumer(monkeypatch, [[660, 661], [601, 602]], tp, thread)
        consumer.guard.seeked({tp: 601})
        first = [m.offset async for _, m in consumer.getmany(1.0)]
        assert thread.seeks == [(tp, 601, True)]  # done on the thread's loop, before the next fetch
        assert consumer._read_offset[tp] == 601
        second = [m.offset async for _, m in consumer.getmany(1.0)]
        assert (first, second) == ([], [601, 602])
        assert runtime_of(consumer.app).metrics.value("dvchub_consumer_rereads_total", topic="t.canonical") == 1.0
    finally:
        thread.close()


async def test_a_partition_revoked_before_the_seek_back_is_left_to_its_next_owner(monkeypatch):
    from aiokafka.errors import IllegalStateError

    tp = TP("t.canonical", 2)
    thread = FakeThread(refuse=IllegalStateError(f"No current assignment for partition {tp}"))
    try:
        consumer = guarded_consumer(monkeypatch, [[700]], tp, thread)
        consumer.guard.seeked({tp: 650})
        assert [m async for _, m in consumer.getmany(1.0)] == []  # no crash, nothing handed on
        assert consumer.guard.expected(tp) is None
    finally:
        thread.close()


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")  # the loop never runs it
async def test_a_seek_the_consumer_thread_never_carries_out_restarts_the_worker(monkeypatch):
    tp = TP("t.raw_motcua", 0)
    thread = FakeThread(running=False)  # its loop never runs: the seek cannot happen
    consumer = guarded_consumer(monkeypatch, [[90]], tp, thread)
    consumer.guard.seeked({tp: 40})
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    monkeypatch.setattr(offsets, "SEEK_BACK_TIMEOUT_S", 0.2)
    monkeypatch.setattr(consumer.app, "crash", crash)
    with pytest.raises(ConsumerStuckError, match=r"did not seek t.raw_motcua\[0\] back to 40"):
        _ = [m async for _, m in consumer.getmany(1.0)]
    assert [type(e) for e in crashed] == [ConsumerStuckError]
    thread.thread_loop.close()


async def test_a_partition_without_a_committed_offset_is_expected_from_the_start_of_its_log(monkeypatch):
    # aiokafka does not seek such a partition, so a batch dropped before the recovery seek would leave
    # its position past records nobody processed; with auto_offset_reset=earliest the guard expects 0.
    app = create_app(Settings())
    consumer = app.consumer
    assert isinstance(consumer, GuardedConsumer)
    new, committed = TP("t.raw_motcua", 0), TP("t.raw_motcua", 1)

    async def fake_seek_to_committed(self: Any) -> Mapping[TP, int | None]:
        return {new: None, committed: 812}

    async def fake_earliest(self: Any, *partitions: TP) -> Mapping[TP, int]:
        return dict.fromkeys(partitions, 0)

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", fake_seek_to_committed)
    monkeypatch.setattr(faust_aiokafka.Consumer, "earliest_offsets", fake_earliest)
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
    await consumer.seek_to_committed()
    assert (consumer.guard.expected(new), consumer.guard.expected(committed)) == (0, 812)



# --------------------------------------------------------------------------- the commit

def committing_consumer(monkeypatch: Any) -> GuardedConsumer:
    app = create_app(Settings())
    consumer = app.consumer
    assert isinstance(consumer, GuardedConsumer)
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
    return consumer


def acked(consumer: GuardedConsumer, tp: TP, offsets: list[int]) -> None:
    consumer._acked[tp] = list(offsets)
    consumer._acked_index[tp] = set(offsets)


def faust_would_commit(consumer: GuardedConsumer, tp: TP) -> int | None:
    """faust's own answer, on a copy of the bookkeeping (its _new_offset consumes the acked list)."""
    saved = list(consumer._acked[tp]), set(consumer._acked_index[tp])
    try:
        return faust_aiokafka.Consumer._new_offset(consumer, tp)
    finally:
        consumer._acked[tp], consumer._acked_index[tp] = saved


def test_the_commit_never_passes_a_record_that_was_not_processed(monkeypatch):
    # The CI loss: committed 2, offset 2 fetched but never processed, offset 3 processed.
    consumer = committing_consumer(monkeypatch)
    tp = TP("t.raw_catalogue", 2)
    consumer._committed_offset[tp] = 2
    acked(consumer, tp, [3, 4])
    assert faust_would_commit(consumer, tp) == 5  # faust's check lets one missing offset through
    assert consumer._new_offset(tp) is None
    acked(consumer, tp, [3, 4, 2])  # offset 2 processed after all (read again)
    assert consumer._new_offset(tp) == 5


def test_a_partition_never_committed_commits_only_from_its_log_start(monkeypatch):
    consumer = committing_consumer(monkeypatch)
    tp = TP("t.raw_motcua", 0)
    consumer._baseline[tp] = 0
    acked(consumer, tp, [5, 6])
    assert faust_would_commit(consumer, tp) == 7  # faust skips its check when nothing was committed
    assert consumer._new_offset(tp) is None
    acked(consumer, tp, [0, 1, 2, 3, 4, 5, 6])
    assert consumer._new_offset(tp) == 7


async def test_a_real_hole_is_a_gap_the_commit_passes(monkeypatch):
    tp = TP("t.canonical", 1)
    thread = FakeThread()
    try:
        consumer = guarded_consumer(monkeypatch, [[10, 11, 15], [15, 16]], tp, thread)
        consumer.guard.seeked({tp: 10})
        consumer._committed_offset[tp] = 10
        first = [m.offset async for _, m in consumer.getmany(1.0)]
        second = [m.offset async for _, m in consumer.getmany(1.0)]
        assert (first, second) == ([10, 11], [15, 16])  # 12-14 do not exist: the fresh batch says so
        consumer._committed_offset[tp] = 12
        acked(consumer, tp, [15, 16])
        assert consumer._new_offset(tp) == 17
    finally:
        thread.close()


async def test_an_unprocessed_head_is_read_again_once_nothing_is_in_flight_there(monkeypatch):
    tp = TP("t.raw_catalogue", 2)
    thread = FakeThread()
    try:
        consumer = guarded_consumer(monkeypatch, [], tp, thread)
        clock = [100.0]
        monkeypatch.setattr(offsets, "monotonic", lambda: clock[0])
        consumer._committed_offset[tp] = 2
        consumer.guard.seeked({tp: 5})

        class InFlight:
            def __init__(self, offset: int) -> None:
                self.tp, self.offset = tp, offset

        busy = InFlight(2)
        consumer._unacked_messages.add(busy)  # offset 2 is still in an agent
        acked(consumer, tp, [3, 4])
        assert consumer._new_offset(tp) is None
        clock[0] += offsets.HOLE_REREAD_AFTER_S
        assert consumer._new_offset(tp) is None
        await asyncio.sleep(0.05)
        assert thread.seeks == []  # in flight: it will be acknowledged, nothing to read again
        consumer._unacked_messages.discard(busy)
        acked(consumer, tp, [3, 4])
        assert consumer._new_offset(tp) is None
        while consumer._hole_rereads:
            await asyncio.sleep(0.01)
        assert thread.seeks == [(tp, 2, True)]
        assert consumer.guard.expected(tp) == 2
        assert runtime_of(consumer.app).metrics.value("dvchub_consumer_rereads_total", topic="t.raw_catalogue") == 1.0
    finally:
        thread.close()
