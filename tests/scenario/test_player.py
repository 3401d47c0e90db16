"""Playing a scenario into the simulators' World: the World ends up holding exactly the ground truth."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.scenario.player import ScenarioPlayer
from hub.scenario.truth import GroundTruth
from hub.simulators.clock import SimClock, fmt_compact
from hub.simulators.faults import Faults
from hub.simulators.world import World


def test_fast_play_with_late_visibility_reproduces_the_truth(small_scenario):
    world = World(SimClock.manual(small_scenario.start))
    player = ScenarioPlayer(world, small_scenario, fast=True, faults=Faults(seed=3, late_visibility=0.3), tick_s=0.0)
    player.play()
    truth = GroundTruth(small_scenario)
    assert player.done
    assert player.progress()[0] == player.progress()[1]
    assert world.final_dossiers() == truth.final_snapshots
    assert {(v["MaHoSo"], v["PhienBan"]) for v in world.all_versions()} == truth.versions
    assert len(world.document_events()) == len(small_scenario.documents)
    assert {i["ma_ho_so"]: i for i in world.portal_items()} == truth.portal_items
    # NgayCapNhat is historical, and every late commit is visible once the player is done.
    assert max(v["NgayCapNhat"] for v in world.all_versions()) < "20210401000000"
    for unit in ("380", "14767"):
        visible = {d["MaHoSo"]: d for d in world.visible_dossiers(unit)}
        assert visible == {m: s for m, s in truth.final_snapshots.items() if s["MaDonVi"] == unit}
    assert world.catalogue("380") == small_scenario.catalogue_rows("380")


def test_late_commits_are_hidden_until_their_delay_passes(small_scenario):
    world = World(SimClock.manual(small_scenario.start))
    player = ScenarioPlayer(
        world, small_scenario, fast=True, faults=Faults(seed=1, late_visibility=1.0, late_max_s=120)
    )
    # Stop exactly at a change's time: with every change delayed by 1-120 s, that change is not visible yet.
    times = sorted(v.at for lc in small_scenario.dossiers for v in lc.versions)
    cut = times[len(times) // 2]
    player.play_until(cut)
    assert world.clock.now() == cut
    released = {(v["MaHoSo"], v["PhienBan"]) for v in world.all_versions()}
    assert all(v["NgayCapNhat"] <= fmt_compact(cut) for v in world.all_versions())
    hidden = {k for k in released if (world.visible_version_at(k[0], cut) or {}).get("PhienBan", 0) < k[1]}
    assert any(
        v["NgayCapNhat"] == fmt_compact(cut) for v in world.all_versions() if (v["MaHoSo"], v["PhienBan"]) in hidden
    )
    later = cut + timedelta(seconds=121)
    player.play_until(later)
    for ma, version in released:
        seen = world.visible_version_at(ma, later)
        assert seen is not None
        assert seen["PhienBan"] >= version


def test_threaded_play_and_refusals(small_scenario):
    world = World(SimClock.manual(small_scenario.start))
    player = ScenarioPlayer(world, small_scenario, fast=True, chunk_size=500, tick_s=0.001)
    player.start()
    assert player.join(timeout=60)
    assert player.done
    # The clock moved past the last change and then stopped.
    assert world.clock.now() > player.last_change_at
    with pytest.raises(RuntimeError, match="fresh World"):
        ScenarioPlayer(world, small_scenario, fast=True, tick_s=0).play()
    with pytest.raises(ValueError, match="manual"):
        ScenarioPlayer(World(SimClock.live()), small_scenario, fast=True)


def test_paced_play_moves_source_time_at_the_speedup(small_scenario):
    world = World(SimClock.manual(small_scenario.start))
    # 40 days of source time per real second: about 11 real seconds for the whole scenario;
    # stop after a moment and check the clock moved and only past changes were released.
    player = ScenarioPlayer(world, small_scenario, fast=False, speedup=40 * 86_400.0, tick_s=0.02)
    player.start()
    player.join(timeout=0.5)
    player.stop()
    now = world.clock.now()
    assert small_scenario.start < now < small_scenario.end
    assert all(v["NgayCapNhat"] <= fmt_compact(now) for v in world.all_versions())
    assert 0 < player.progress()[0] < player.progress()[1]
