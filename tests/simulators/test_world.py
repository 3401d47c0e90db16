"""The World: versions, late visibility, keyset pages, QLVB ids, portal items and target state."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from hub.simulators.world import World
from tests.simulators.conftest import START, dossier


def test_versions_and_stamps(world, clock):
    assert world.upsert_dossier(dossier("A")) == 1
    clock.advance(timedelta(seconds=5, microseconds=700))
    assert world.upsert_dossier(dossier("A", status="4")) == 2
    assert world.upsert_dossier(dossier("A", status="9"), updated_at=START + timedelta(minutes=1)) == 3
    history = world.dossier_history("A")
    assert [v["PhienBan"] for v in history] == [1, 2, 3]
    assert [v["NgayCapNhat"] for v in history] == ["20210115093000", "20210115093005", "20210115093100"]
    assert world.final_dossiers()["A"]["TrangThaiHoSo"] == "9"
    assert [v["MaHoSo"] for v in world.all_versions()] == ["A", "A", "A"]


def test_world_owns_version_fields(world):
    with pytest.raises(ValueError, match="PhienBan"):
        world.upsert_dossier({**dossier("A"), "PhienBan": 4})
    with pytest.raises(ValueError):
        world.upsert_dossier({"MaHoSo": "A"})  # no MaDonVi


def test_copies_do_not_leak(world):
    snap = dossier("A")
    world.upsert_dossier(snap)
    snap["TrangThaiHoSo"] = "10"
    world.final_dossiers()["A"]["TrangThaiHoSo"] = "7"
    assert world.final_dossiers()["A"]["TrangThaiHoSo"] == "2"


def test_late_version_is_served_as_the_older_one(world, clock):
    world.upsert_dossier(dossier("A"))
    world.upsert_dossier(dossier("A", status="4"), visible_delay=timedelta(seconds=90))
    world.upsert_dossier(dossier("B"), visible_delay=timedelta(seconds=30))
    assert [(d["MaHoSo"], d["PhienBan"]) for d in world.visible_dossiers("14767")] == [("A", 1)]
    clock.advance(timedelta(seconds=30))
    assert {(d["MaHoSo"], d["PhienBan"]) for d in world.visible_dossiers("14767")} == {("A", 1), ("B", 1)}
    clock.advance(timedelta(seconds=60))
    assert {(d["MaHoSo"], d["PhienBan"]) for d in world.visible_dossiers("14767")} == {("A", 2), ("B", 1)}


def test_handling_unit_filter(world):
    world.upsert_dossier(dossier("A", unit="14767"))
    world.upsert_dossier(dossier("B", unit="380"))
    assert [d["MaHoSo"] for d in world.visible_dossiers("380")] == ["B"]


def test_qlvb_ids_increase_with_gaps(clock):
    gappy = World(clock, seed=2, qlvb_gap_rate=0.5, qlvb_max_gap=3)
    ids = [gappy.add_document_event("14767", "KY_SO", START, {"so_ky_hieu": "1/QĐ"}, None) for _ in range(50)]
    steps = [b - a for a, b in itertools.pairwise(ids)]
    assert all(1 <= s <= 4 for s in steps)
    assert any(s > 1 for s in steps)
    tidy = World(clock, qlvb_gap_rate=0.0)
    ids = [tidy.add_document_event("14767", "DANG_KY", START, {}, None) for _ in range(10)]
    assert ids == list(range(ids[0], ids[0] + 10))
    with pytest.raises(ValueError):
        tidy.add_document_event("14767", "KY", START, {}, None)


def test_document_event_format(world):
    world.add_document_event("14767", "KY_SO", START, {"so_ky_hieu": "15/QĐ-UBND"}, "H56.X")
    event = world.document_events()[0]
    assert event["thoi_diem"] == "2021-01-15T09:30:00+07:00"
    assert event["van_ban"] == {"so_ky_hieu": "15/QĐ-UBND", "ma_don_vi": "14767"}
    assert event["ma_ho_so"] == "H56.X"


def test_portal_item_change_moves_to_end(world, clock):
    for i in range(3):
        world.upsert_portal_item({"ma_ho_so": f"P{i}", "trang_thai": "DA_NOP"})
        clock.advance(timedelta(seconds=1))
    assert world.portal_items()[0]["cap_nhat_luc"] == "2021-01-15T09:30:00+07:00"
    world.upsert_portal_item({"ma_ho_so": "P0", "trang_thai": "DA_CHUYEN_MOT_CUA"})
    assert [i["ma_ho_so"] for i in world.portal_items()] == ["P1", "P2", "P0"]
    world.touch_portal_item("P1")
    assert [i["ma_ho_so"] for i in world.portal_items()] == ["P2", "P0", "P1"]
    assert [i["ma_ho_so"] for i in world.portal_items(since=START + timedelta(seconds=2))] == ["P2", "P0", "P1"]


def test_portal_target_bookkeeping(world):
    world.store_portal_dossier({"MaHoSo": "A", "TrangThaiHoSo": "2"})
    world.store_portal_dossier({"MaHoSo": "A", "TrangThaiHoSo": "2"})
    world.store_portal_dossier({"MaHoSo": "A", "TrangThaiHoSo": "4"})
    entry = world.portal_dossier("A")
    assert entry is not None
    assert (entry["writes"], entry["changes"], entry["snapshot"]["TrangThaiHoSo"]) == (3, 2, "4")
    row = {"MaHoSo": "A", "TrangThai": "4", "ThoiDiemXuLy": "20210115093000"}
    world.add_portal_progress([row, row])
    assert len(world.portal_progress_rows()) == 2
    assert len(world.portal_progress_rows(dedup=True)) == 1
