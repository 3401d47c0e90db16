"""The statistics lane and the shared rate limit (no network, no broker): coalescing, min interval,
convergence, priority of dossiers, recomputation after a restart, outbox items folded in."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

from hub.sync.delivery import FakeClock, PriorityRateLimiter
from hub.sync.outbox import StatsState, stats_digest, stats_item
from hub.sync.stats import DomainStatsBuilder, PendingStats, StatsLane, history_items
from schemas.figures import UnitFigures, count_key
from schemas.units import default_registry

NOW = datetime(2021, 3, 15, 10, 0, tzinfo=UTC)
UNITS = [f"{14700 + n}" for n in range(35)]


def months(first_year: int = 2020, last_year: int = 2021) -> list[str]:
    return [f"{y}-{m:02d}" for y in range(first_year, last_year + 1) for m in range(1, 13)]


def partial(unit: str, n: int, periods: list[str], partition: int = 0) -> UnitFigures:
    counts = {count_key("received", "TOAN_TRINH", "TRUC_TUYEN", ky): n for ky in periods}
    counts |= {count_key("open_end", "TOAN_TRINH", "TRUC_TUYEN", ky): n // 2 for ky in periods}
    return UnitFigures(partition=partition, unit_code=unit, unit_tier="XA", generated_at=NOW, counts=counts)


def lane_with(clock: list[float], **kw: Any) -> StatsLane:
    params: dict[str, Any] = {"debounce_s": 5.0, "min_interval_s": 120.0, "interval_s": 3600.0}
    params.update(kw)
    lane = StatsLane(now=lambda: NOW, builder=DomainStatsBuilder(default_registry(), None),
                     monotonic=lambda: clock[0], **params)
    lane.ready = True
    return lane


def ack(p: PendingStats) -> StatsState:
    return StatsState(ky=p.ky, ma_don_vi=p.unit, digest=p.digest, item_id=p.item_id, outcome="pushed", at=NOW)


async def drive(lane: StatsLane, clock: list[float], until: float, step: float,
                change: Any = None) -> Counter[str]:
    """Advance the fake clock to ``until``; push (and acknowledge) whatever is due; count PUTs per key."""
    puts: Counter[str] = Counter()
    while clock[0] < until:
        if change is not None:
            change(clock[0])
        await lane.refresh()
        for p in lane.due():
            puts[p.key] += 1
            lane.done(p, ack(p))
        clock[0] += step
    return puts


async def test_a_key_that_keeps_changing_is_pushed_a_handful_of_times_and_converges() -> None:
    clock = [0.0]
    lane = lane_with(clock, history_from=date(2020, 1, 1))
    step = {"n": 0}

    def change(t: float) -> None:
        if t < 600 and int(t) % 2 == 0:  # a backlog drain: every unit's figures change every 2 s, 10 min
            step["n"] += 1
            for unit in UNITS[:5]:
                lane.apply(partial(unit, step["n"], months()))

    puts = await drive(lane, clock, until=700, step=1.0, change=change)
    keys = set(puts)
    assert len(keys) >= 5 * 24  # every month of 2020-2021 of five units (and their quarters, years)
    # At most one push per 120 s while it changes, and the final one.
    assert max(puts.values()) <= 600 // 120 + 1, puts.most_common(3)
    # Converged: nothing pending, and what the portal acknowledged is the body of the final figures.
    assert lane.pending == {}
    final = lane_with([0.0], history_from=date(2020, 1, 1))
    for unit in UNITS[:5]:
        final.apply(partial(unit, step["n"], months()))
    await final.refresh()
    assert {k: p.digest for k, p in final.pending.items()} == {k: s.digest for k, s in lane.acked.items()}


async def test_the_final_body_goes_out_a_debounce_after_the_last_change() -> None:
    clock = [0.0]
    lane = lane_with(clock)
    lane.apply(partial("14767", 1, ["2021-03"]))
    puts = await drive(lane, clock, until=40, step=0.5)
    assert puts["stats|2021-03|14767"] == 1  # quiet 5 s: pushed
    lane.apply(partial("14767", 2, ["2021-03"]))  # one more change, right after that push
    clock[0] += 1
    puts = await drive(lane, clock, until=clock[0] + 5.5, step=0.5)
    assert puts["stats|2021-03|14767"] == 1
    assert lane.acked["stats|2021-03|14767"].digest == stats_digest(lane.body("2021-03", "14767") or {})


async def test_coalescing_keeps_one_pending_body_per_key_the_newest() -> None:
    clock = [0.0]
    lane = lane_with(clock)
    for n in range(1, 200):
        lane.apply(partial("14767", n, ["2021-03"], partition=n % 3))
        await lane.refresh()
    assert list(lane.pending) == ["stats|2021-03|14767"]  # 199 changes, one pending body
    body = lane.pending["stats|2021-03|14767"].body
    level4 = next(r for r in body["theo_muc_do"] if r["muc_do"] == 4)
    assert level4["tiep_nhan"] == 197 + 198 + 199  # the latest partial of each of the three partitions


async def test_an_unchanged_body_is_never_pending_and_a_restart_recomputes_the_same_pending_map() -> None:
    clock = [0.0]
    lane = lane_with(clock, history_from=date(2020, 1, 1))
    for unit in UNITS:
        lane.apply(partial(unit, 3, months()))
    await lane.refresh()
    assert len(lane.pending) == 35 * 24  # every month of two years, every unit
    pushed = list(lane.pending.values())[::2]  # half of it reached the portal before the "crash"
    for p in pushed:
        lane.done(p, ack(p))
    for unit in UNITS[:3]:  # and some figures changed after
        lane.apply(partial(unit, 4, months()))
    await lane.refresh()
    # Restart: the same partials (compacted topic) and the acknowledged digests (sync-state topic).
    again = lane_with([0.0], history_from=date(2020, 1, 1))
    again.load_acked(lane.acked, datetime.now(UTC))
    for unit in UNITS[:3]:
        again.apply(partial(unit, 4, months()))
    for unit in UNITS[3:]:
        again.apply(partial(unit, 3, months()))
    await again.refresh()
    assert {k: p.digest for k, p in again.pending.items()} == {k: p.digest for k, p in lane.pending.items()}
    assert not set(again.pending) & {p.key for p in pushed if p.unit not in UNITS[:3]}


async def test_a_restart_keeps_the_min_interval_of_keys_pushed_just_before() -> None:
    clock = [1000.0]
    lane = lane_with(clock)
    lane.load_acked({"stats|2021-03|14767": StatsState(ky="2021-03", ma_don_vi="14767", digest="old",
                                                       outcome="pushed", at=datetime.now(UTC))}, datetime.now(UTC))
    puts = await drive(lane, clock, until=1100, step=1.0,
                       change=lambda t: lane.apply(partial("14767", int(t), ["2021-03"])))
    assert puts["stats|2021-03|14767"] == 0  # pushed a moment before the restart: not again within 120 s


async def test_outbox_items_fold_in_the_lane_body_wins_and_tickets_settle_only_when_pushed() -> None:
    clock = [0.0]
    lane = lane_with(clock)
    lane.apply(partial("14767", 3, ["2021-03"]))
    await lane.refresh()
    computed = lane.pending["stats|2021-03|14767"]
    # An older hub's record of a key the lane computes: the lane's own (current) body stays.
    stale = stats_item("2021-03", "14767", {"ky": "2021-03", "ma_don_vi": "14767", "stale": True}, NOW)
    ticket = lane.offer(stale)
    assert lane.pending["stats|2021-03|14767"].digest == computed.digest
    assert not lane.settled("stats|2021-03|14767", ticket)
    lane.done(computed, ack(computed))
    assert lane.settled("stats|2021-03|14767", ticket)
    # `push stats --from`: a period the lane does not compute is pending until pushed.
    old = stats_item("2019-05", "14767", {"ky": "2019-05", "ma_don_vi": "14767", "n": 1}, NOW)
    ticket = lane.offer(old)
    assert not lane.settled("stats|2019-05|14767", ticket)
    newer = stats_item("2019-05", "14767", {"ky": "2019-05", "ma_don_vi": "14767", "n": 2}, NOW)
    newer_ticket = lane.offer(newer)  # latest wins
    pending = lane.pending["stats|2019-05|14767"]
    assert pending.body["n"] == 2
    lane.done(pending, ack(pending))
    assert lane.settled("stats|2019-05|14767", ticket)
    assert lane.settled("stats|2019-05|14767", newer_ticket)
    # The same body again: settled at once, nothing to push.
    assert lane.settled("stats|2019-05|14767", lane.offer(newer))
    assert "stats|2019-05|14767" not in lane.pending
    # A refused body replayed by an operator is pushed again.
    refused = StatsState(ky="2019-05", ma_don_vi="14767", digest=stats_digest(newer.body), outcome="rejected")
    lane.done(pending, refused)
    assert lane.settled("stats|2019-05|14767", lane.offer(newer))
    assert not lane.settled("stats|2019-05|14767", lane.offer(newer, replayed=True))


async def test_a_period_whose_figures_drop_to_zero_is_corrected_at_the_portal() -> None:
    builder = DomainStatsBuilder(default_registry(), None)
    clock = [0.0]
    lane = StatsLane(now=lambda: NOW, builder=builder, retract=builder.always, debounce_s=0, min_interval_s=60,
                     interval_s=3600, monotonic=lambda: clock[0], history_from=date(2020, 1, 1))
    lane.ready = True
    open_dossier = {count_key("open_end", "TOAN_TRINH", "TRUC_TUYEN", "2020-07"): 1}
    lane.apply(UnitFigures(partition=0, unit_code="14767", unit_tier="XA", generated_at=NOW, counts=open_dossier))
    await lane.refresh()
    p = lane.pending["stats|2020-07|14767"]
    lane.done(p, ack(p))
    # The dossier's later events arrive: it was finished in June, so July holds nothing any more.
    lane.apply(UnitFigures(partition=0, unit_code="14767", unit_tier="XA", generated_at=NOW, counts={}))
    await lane.refresh()
    body = lane.pending["stats|2020-07|14767"].body
    assert all(row["dang_xu_ly"] == 0 for row in body["theo_muc_do"])


async def test_history_items_are_the_bodies_of_the_periods_in_the_range() -> None:
    builder = DomainStatsBuilder(default_registry(), None)
    items = history_items([partial("14767", 2, months(2019, 2021))], builder, NOW, date(2020, 1, 1), date(2021, 1, 1))
    assert sorted({i.ky for i in items}) == sorted(months(2020, 2020))
    assert all(i.body == builder(i.ky, "14767", "XA", Counter(), NOW) or i.body["ky"] == i.ky for i in items)


def test_dossiers_take_the_slots_and_statistics_keep_their_reserved_share() -> None:
    clock = FakeClock()
    limiter = PriorityRateLimiter(10, reserved_share=0.2, clock=clock.now, sleep=clock.sleep)
    order: list[str] = []  # the lanes in the order their slots were granted

    async def go(lane: str) -> None:
        await limiter.lane(lane).acquire()
        order.append(lane)

    async def main() -> None:
        await asyncio.gather(*(go("stats") for _ in range(3000)), *(go("dossier") for _ in range(80)))

    asyncio.run(main())
    # 80 dossiers behind 3,000 waiting statistics: they get 4 of every 5 slots, so the last of them
    # goes out in slot 100, not after the statistics.
    last_dossier = max(i for i, lane in enumerate(order) if lane == "dossier")
    assert last_dossier < 80 / 0.8 + 1
    assert order[:last_dossier + 1].count("stats") >= 0.2 * last_dossier - 1  # and statistics are not starved
    # Never more than the portal allows, both lanes together: 3,080 slots at 10 per second.
    assert limiter.granted == {"dossier": 80, "stats": 3000}
    assert clock.t >= (3080 - 1) / 10 - 1e-6


async def test_dossiers_are_not_starved_by_thousands_of_pending_statistics() -> None:
    clock = [0.0]
    lane = lane_with(clock, debounce_s=0.0, history_from=date(2020, 1, 1))
    for unit in UNITS:
        lane.apply(partial(unit, 3, months()))
    await lane.refresh()
    assert len(lane.pending) == 35 * 24
    limiter = PriorityRateLimiter(400, reserved_share=0.2)
    stats_done: list[float] = []

    async def push(p: PendingStats) -> StatsState:
        await limiter.lane("stats").acquire()
        await asyncio.sleep(0.005)  # the portal's answer
        stats_done.append(time.monotonic())
        return ack(p)

    stop = asyncio.Event()
    clock[0] = 100.0  # everything due
    runner = asyncio.create_task(lane.run(stop, push, concurrency=8, tick_s=0.01))
    await asyncio.sleep(0.2)  # the statistics lane is saturating the limiter
    t0 = time.monotonic()
    for _ in range(40):  # the dossier lane: sequential batch pushes, as the consume loop does them
        await limiter.lane("dossier").acquire()
        await asyncio.sleep(0.002)
    dossier_s = time.monotonic() - t0
    stop.set()
    await runner
    assert len(lane.pending) > 500, "the statistics were not contending"
    # 40 slots at 400/s take 0.1 s with the limiter to itself; generous bounds for a loaded CI host.
    assert dossier_s < 2.0, f"40 dossier pushes took {dossier_s:.2f} s behind {len(lane.pending)} statistics"
    assert len(stats_done) >= 10  # and the statistics still moved


async def test_a_429_retry_after_on_one_lane_holds_both() -> None:
    """``Retry-After`` is meant for the client: the dossier lane's next request waits for it too."""
    import httpx
    import pytest

    from hub.sync.client import PortalClient
    from hub.sync.errors import Transient

    clock = FakeClock()
    limiter = PriorityRateLimiter(10, clock=clock.now, sleep=clock.sleep)

    def portal(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error_code": "429", "message": "chậm lại"}, headers={"Retry-After": "2"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(portal), base_url="http://portal") as http:
        stats = PortalClient(http, None, limiter.lane("stats"))
        with pytest.raises(Transient):
            await stats.send("PUT", "/api/v1/thongke/dvctt/2021-03/14767", {}, "k")
    at_429 = clock.t
    await limiter.lane("dossier").acquire()
    assert clock.t >= at_429 + 2.0
