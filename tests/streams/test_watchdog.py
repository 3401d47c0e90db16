"""The stall watchdog: what counts as a stall, and what the worker does about one."""

from __future__ import annotations

from typing import Any

import pytest

from hub.config import Settings
from streams.app import create_app, runtime_of
from streams.watchdog import StallWatch, WorkerStalledError

TP = ("raw.catalogue", 1)


def test_a_partition_without_progress_and_with_records_waiting_is_a_stall_after_the_timeout():
    w = StallWatch(timeout_s=60)
    assert w.observe({TP: (318, 1882)}, now=0.0) == []
    assert w.observe({TP: (318, 1882)}, now=59.0) == []
    [stall] = w.observe({TP: (318, 1882)}, now=60.0)
    assert (stall.topic, stall.partition, stall.committed, stall.waiting, stall.for_s) == ("raw.catalogue", 1, 318,
                                                                                           1564, 60.0)


def test_progress_restarts_the_clock_and_an_idle_partition_never_stalls():
    w = StallWatch(timeout_s=60)
    w.observe({TP: (318, 1882), ("raw.qlvb", 0): (50, 50)}, now=0.0)
    # One commit within the window: a slow partition is not a stalled one.
    assert w.observe({TP: (319, 1900), ("raw.qlvb", 0): (50, 50)}, now=50.0) == []
    assert w.observe({TP: (319, 1900), ("raw.qlvb", 0): (50, 50)}, now=100.0) == []
    assert [s.partition for s in w.observe({TP: (319, 1900), ("raw.qlvb", 0): (50, 50)}, now=110.0)] == [1]
    # Caught up (end == committed) for hours: idle, not stalled.
    assert w.observe({("raw.qlvb", 0): (50, 50)}, now=10_000.0) == []


def test_forget_restarts_every_clock_and_zero_turns_the_watch_off():
    w = StallWatch(timeout_s=60)
    w.observe({TP: (318, 1882)}, now=0.0)
    w.forget()  # e.g. the broker was away: the next reading starts a new clock
    assert w.observe({TP: (318, 1882)}, now=100.0) == []
    assert w.observe({TP: (318, 1882)}, now=160.0) != []
    off = StallWatch(timeout_s=0)
    assert off.observe({TP: (318, 1882)}, now=0.0) == []
    assert off.observe({TP: (318, 1882)}, now=1e9) == []


@pytest.fixture
def rt() -> Any:
    settings = Settings.model_validate({"worker": {"stall_timeout_s": 30}})
    app = create_app(settings)
    app.finalize()
    return runtime_of(app)


@pytest.fixture
def crashes_and_clock(rt, monkeypatch) -> tuple[list[BaseException], list[float]]:
    """``rt.app.crash`` records its reason instead of stopping; refresh_lag's clock is set by the test."""
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    clock = [1000.0]
    monkeypatch.setattr(rt.app, "crash", crash)
    monkeypatch.setattr("streams.app.time.monotonic", lambda: clock[0])
    return crashes, clock


async def test_the_worker_crashes_on_a_stall_of_its_own_partition_only(rt, monkeypatch, crashes_and_clock):
    """refresh_lag feeds the watch with this worker's partitions and crashes the app on a stall."""
    crashes, clock = crashes_and_clock
    mine, theirs = ("dvchub.raw.catalogue", 1), ("dvchub.raw.catalogue", 0)
    positions = {mine: (318, 1882), theirs: (5, 900)}
    monkeypatch.setattr(rt, "_measure_lag", lambda: ({"dvchub.raw.catalogue": 2459}, positions))

    class Assignor:
        @staticmethod
        def assigned_actives() -> set[Any]:
            from faust.types import TP

            return {TP(*mine)}

    monkeypatch.setattr(rt.app, "assignor", Assignor())
    rt.ready = True
    await rt.refresh_lag()
    clock[0] += 29
    await rt.refresh_lag()
    assert crashes == []
    rt.ready = False  # a rebalance: the clock restarts
    clock[0] += 100
    await rt.refresh_lag()
    rt.ready = True
    await rt.refresh_lag()
    clock[0] += 29
    await rt.refresh_lag()
    assert crashes == []
    clock[0] += 2
    await rt.refresh_lag()
    assert len(crashes) == 1
    assert isinstance(crashes[0], WorkerStalledError)
    assert "dvchub.raw.catalogue[1] at offset 318 with 1564 records waiting" in str(crashes[0])
    assert "[0]" not in str(crashes[0])  # partition 0 is another worker's
    assert rt.lag() == {"dvchub.raw.catalogue": 2459}


async def test_a_table_recovery_that_reads_nothing_crashes_the_worker(rt, monkeypatch, crashes_and_clock):
    """While recovering, the watch follows faust's recovery offsets; progress restarts its clock."""
    import faust.types

    crashes, clock = crashes_and_clock
    monkeypatch.setattr(rt, "_measure_lag", lambda: ({}, {}))
    recovery = rt.app.tables.recovery
    stuck, moving = faust.types.TP("test-dossiers-changelog", 2), faust.types.TP("test-dossiers-changelog", 3)
    monkeypatch.setattr(recovery, "in_recovery", True)
    monkeypatch.setattr(recovery, "active_tps", {stuck, moving})
    offsets = {stuck: -1, moving: 10}
    monkeypatch.setattr(recovery, "active_offsets", offsets)
    monkeypatch.setattr(recovery, "active_highwaters", {stuck: 56, moving: 500})
    rt.ready = False
    await rt.refresh_lag()
    for step in (10, 10, 9):  # partition 3 reads on; partition 2 reads nothing
        clock[0] += step
        offsets[moving] += 100
        await rt.refresh_lag()
    assert crashes == []
    clock[0] += 2
    await rt.refresh_lag()
    assert len(crashes) == 1
    assert isinstance(crashes[0], WorkerStalledError)
    assert str(crashes[0]) == ("table recovery stalled: test-dossiers-changelog[2] at offset -1 with 57 records "
                               "waiting, no progress for 31 s")

    # A recovery that ends restarts the clock: a later recovery gets its own full timeout.
    crashes.clear()
    monkeypatch.setattr(recovery, "in_recovery", False)
    await rt.refresh_lag()
    monkeypatch.setattr(recovery, "in_recovery", True)
    clock[0] += 100
    await rt.refresh_lag()
    clock[0] += 29
    await rt.refresh_lag()
    assert crashes == []
