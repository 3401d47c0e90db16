"""The thanhhoa-2021 scenario: exact headline figures, scaling, determinism, valid lifecycles, PII present."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from datetime import datetime
from typing import Any

import holidays
import pytest

from hub.scenario.thanhhoa2021 import CITY, HEADLINE, build_scenario, expected_targets
from hub.scenario.truth import GroundTruth

VN_HOLIDAYS = holidays.country_holidays("VN", years=range(2019, 2023))

# Allowed status transitions (domain.md §3): 1 -> 2|3, 2 -> 4|7, 4 -> 4|5|6|7|9|10, 5 -> 4|7, 6 -> 9|10, 9 -> 10.
ALLOWED = {
    ("1", "2"),
    ("1", "3"),
    ("2", "4"),
    ("2", "7"),
    ("4", "4"),
    ("4", "5"),
    ("4", "6"),
    ("4", "7"),
    ("4", "9"),
    ("4", "10"),
    ("5", "4"),
    ("5", "7"),
    ("6", "9"),
    ("6", "10"),
    ("9", "10"),
}


def _dt(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%d%H%M%S")


# ---------------------------------------------------------------------------- headline figures


def test_full_scale_reproduces_domain_section_6_exactly(full_scenario, full_truth):
    h = full_truth.headline()
    assert h["online_2020"] == {3: 3414, 4: 126}
    assert h["online_2020_resolved"] == {3: 3414, 4: 126}  # received and resolved: the same number
    assert h["online_2021Q1"] == {3: 4445, 4: 3282}
    assert h["online_2021Q1_xa"] == {3: 3016, 4: 2933}
    assert h["online_2021Q1_city_desk"] == {3: 1429, 4: 349}
    assert h["dien_bien_2020_09_2021_03"] == 724
    assert h["procedures"] == {CITY: {3: 41, 4: 70}, "xa": {3: 9, 4: 32}}
    assert h["wards_with_one_stop"] == 34
    assert h == full_scenario.targets


def test_full_scale_size(full_scenario):
    c = full_scenario.counts()
    assert 20_000 <= c["dossiers"] <= 40_000
    assert 90_000 <= c["versions"] <= 150_000
    assert {lc.unit for lc in full_scenario.dossiers} == {u.code for u in full_scenario.units}  # all 35 busy
    print(full_scenario.summary())


@pytest.mark.parametrize("scale", [0.01, 0.1])
def test_scaled_scenarios_hit_rounded_targets(scale):
    truth = GroundTruth(build_scenario(seed=11, scale=scale))
    expected = expected_targets(scale)
    assert expected["online_2020"] == {lv: int(HEADLINE["online_2020"][lv] * scale + 0.5) for lv in (3, 4)}
    assert expected["online_2021Q1"][3] == int(4445 * scale + 0.5)
    assert expected["dien_bien_2020_09_2021_03"] == int(724 * scale + 0.5)
    assert truth.headline() == expected


def test_scale_out_of_range_is_refused():
    with pytest.raises(ValueError, match="scale"):
        build_scenario(scale=0)


# ---------------------------------------------------------------------------- determinism


def test_same_seed_same_scenario():
    a, b = build_scenario(seed=7, scale=0.02), build_scenario(seed=7, scale=0.02)
    assert [lc.final() for lc in a.dossiers] == [lc.final() for lc in b.dossiers]
    assert [[v.at for v in lc.versions] for lc in a.dossiers] == [[v.at for v in lc.versions] for lc in b.dossiers]
    assert a.documents == b.documents
    assert [lc.portal for lc in a.dossiers] == [lc.portal for lc in b.dossiers]


def test_other_seed_other_details_same_headline():
    a, b = build_scenario(seed=7, scale=0.02), build_scenario(seed=8, scale=0.02)
    assert {lc.ma_ho_so for lc in a.dossiers} != {lc.ma_ho_so for lc in b.dossiers}
    assert {lc.base["SoGiayToChuHoSo"] for lc in a.dossiers}.isdisjoint(
        {lc.base["SoGiayToChuHoSo"] for lc in b.dossiers}
    )
    assert GroundTruth(a).headline() == GroundTruth(b).headline()


# ---------------------------------------------------------------------------- catalogue


def test_catalogue_level_change_keeps_counts_and_dated_rows(full_truth, full_scenario):
    for at in ("20200101000000", "20210307235959", "20210308000000", "20210331235959"):
        assert (full_truth.offered(CITY, 3, at), full_truth.offered(CITY, 4, at)) == (41, 70)
        assert (full_truth.offered("14767", 3, at), full_truth.offered("14767", 4, at)) == (9, 32)
    rows = full_scenario.catalogue_rows(CITY)
    by_code = Counter(r["MaTTHC"] for r in rows)
    changed = [c for c, n in by_code.items() if n == 2]
    assert len(changed) == 1
    levels = sorted((r["HieuLucTu"], r["MucDo"], r["HieuLucDen"]) for r in rows if r["MaTTHC"] == changed[0])
    assert [lv for _, lv, _ in levels] == [3, 4]
    assert levels[0][2] == "20210307235959"
    assert levels[1][0] == "20210308000000"
    assert levels[1][2] == ""
    # The changed procedure got dossiers at both levels, each at the level it had when filed.
    mucdo = {s["MucDo"] for s in full_truth.final_snapshots.values() if s["MaTTHC"] == changed[0]}
    assert mucdo == {3, 4}


def test_some_procedures_get_no_dossier(full_truth, full_scenario):
    for unit in (CITY, "14767", "15850"):
        n = full_truth.procedures_without_dossier(unit, "2021-Q1")
        assert 1 <= n < 15
    assert full_truth.procedures_without_dossier(
        CITY, "2020", online_only=True
    ) >= full_truth.procedures_without_dossier(CITY, "2020")


# ---------------------------------------------------------------------------- lifecycles


def test_lifecycles_are_valid(full_scenario, full_truth):
    codes = set()
    catalogue: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for u in full_scenario.units:
        for r in full_scenario.catalogue_rows(u.code):
            catalogue.setdefault((u.code, r["MaTTHC"]), []).append(r)
    for lc in full_scenario.dossiers:
        assert lc.ma_ho_so not in codes
        codes.add(lc.ma_ho_so)
        assert re.fullmatch(r"H56\.\d{3,5}-\d{6}-\d{5}", lc.ma_ho_so)
        times = [v.at for v in lc.versions]
        assert times == sorted(times), lc.ma_ho_so
        statuses = [v.status for v in lc.versions]
        assert statuses[0] in ("1", "2")
        for a, b in itertools.pairwise(statuses):
            assert (a, b) in ALLOWED, (lc.ma_ho_so, statuses)
        snap = lc.final()
        steps = snap["QuaTrinhXuLy"]
        assert [s["TrangThai"] for s in steps] == statuses
        assert [s["ThoiDiemXuLy"] for s in steps] == sorted(s["ThoiDiemXuLy"] for s in steps)
        dates = [snap[k] for k in ("NgayNopHoSo", "NgayTiepNhan", "NgayKetThucXuLy", "NgayTra") if snap[k]]
        assert dates == sorted(dates), lc.ma_ho_so
        assert snap["NgayCapNhat"] < "20210401000000"
        # MucDo is the procedure's level at this unit when the dossier was filed.
        rows = [
            r
            for r in catalogue[(snap["MaDonVi"], snap["MaTTHC"])]
            if r["HieuLucTu"] <= snap["NgayNopHoSo"] and (not r["HieuLucDen"] or snap["NgayNopHoSo"] <= r["HieuLucDen"])
        ]
        assert [r["MucDo"] for r in rows] == [snap["MucDo"]]
        if snap["KenhThucHien"] == "2":
            assert snap["MucDo"] in (3, 4)
        # Due dates: a working day (Mon–Fri, no public holiday, Tết included) at 17:00, after reception.
        for v in lc.versions:
            due = v.changes.get("NgayHenTra")
            if due:
                d = _dt(due)
                assert d.weekday() < 5, lc.ma_ho_so
                assert d.date() not in VN_HOLIDAYS, lc.ma_ho_so
                assert due.endswith("170000"), lc.ma_ho_so
                assert due[:8] >= snap["NgayTiepNhan"][:8]
        if snap["TrangThaiHoSo"] == "3":
            assert snap["NgayTuChoi"]
            assert not snap["NgayTiepNhan"]


def test_realistic_mix(full_scenario, full_truth):
    f = full_truth.figure
    for period in ("2020", "2021-Q1"):
        finished = sum(f(m, period=period) for m in ("finished_early", "finished_on_time", "finished_late"))
        assert 0.05 <= f("finished_late", period=period) / finished <= 0.10
        share = f("received", channel="2", period=period) / f("received", period=period)
        assert 0.40 <= share <= 0.60, (period, share)
        assert f("refused", period=period) > 0
        assert f("withdrawn", period=period) > 0
        assert f("received", channel="3", period=period) > 0
    assert f("open_end", period="2021-Q1") > 100
    assert f("overdue_end", period="2021-Q1") > 10
    assert f("paid_online", period="2021-Q1") > 0
    assert f("electronic_result", period="2021-Q1") > 0
    finals = full_truth.final_snapshots.values()
    supplements = Counter(sum(1 for s in snap["QuaTrinhXuLy"] if s["TrangThai"] == "5") for snap in finals)
    assert supplements[1] > 100
    assert supplements[2] >= 1
    # A twice-supplemented dossier finished by its due day is still late (Decision 766).
    twice = [
        s
        for s in finals
        if sum(1 for x in s["QuaTrinhXuLy"] if x["TrangThai"] == "5") == 2
        and s["TrangThaiHoSo"] in ("9", "10")
        and (s["NgayKetThucXuLy"] or s["NgayTra"])[:8] <= s["NgayHenTra"][:8]
    ]
    assert twice
    # Some dossiers go straight to 10 without 9; some results have an entry without a file link.
    assert any(s["TrangThaiHoSo"] == "10" and not s["NgayKetThucXuLy"] for s in finals)
    assert any(s["DanhSachGiayToKetQua"] and not s["DanhSachGiayToKetQua"][0]["DuongDanTepTinKetQua"] for s in finals)
    assert any(s["TrangThaiHoSo"] == "1" for s in finals)  # submitted online, not yet received at the end
    # NFD text: some applicant names and a whole unit's procedure names.
    assert any(
        unicodedata.is_normalized("NFD", s["ChuHoSo"]) and not unicodedata.is_normalized("NFC", s["ChuHoSo"])
        for s in finals
    )
    assert all(not unicodedata.is_normalized("NFC", r["TenTTHC"]) for r in full_scenario.catalogue_rows("15850"))


def test_electronic_results_are_linked_in_qlvb(full_scenario, full_truth):
    signed = {e.ma_ho_so for e in full_scenario.documents if e.loai == "KY_SO" and e.ma_ho_so}
    with_link = {
        m
        for m, s in full_truth.final_snapshots.items()
        if any(d["DuongDanTepTinKetQua"] for d in s["DanhSachGiayToKetQua"])
    }
    assert signed == with_link
    assert any(e.ma_ho_so is None for e in full_scenario.documents)


def test_portal_items_belong_to_online_dossiers(full_scenario, full_truth):
    online = {m for m, s in full_truth.final_snapshots.items() if s["KenhThucHien"] == "2"}
    assert set(full_truth.portal_items) == online
    items = full_truth.portal_items.values()
    assert any(i["thanh_toan"] for i in items)
    assert any(i["danh_gia"] for i in items)
    assert any(i["trang_thai"] == "DA_HUY" for i in items)
    for m, item in full_truth.portal_items.items():
        snap = full_truth.final_snapshots[m]
        assert item["muc_do"] == snap["MucDo"]
        assert item["ma_don_vi"] == snap["MaDonVi"]
        assert bool(item["thanh_toan"]) == (snap["DuocThanhToanTrucTuyen"] in (1, 2))


def test_personal_data_present_in_source(full_truth):
    pii = full_truth.personal_data()
    assert len(pii.id_numbers) > 20_000
    assert all(re.fullmatch(r"038\d{9}", i) for i in pii.id_numbers)
    assert all(re.fullmatch(r"0\d{9}", p) for p in pii.phones)
    for snap in list(full_truth.final_snapshots.values())[:500]:
        assert snap["ChuHoSo"]
        assert snap["SoGiayToChuHoSo"] in pii.id_numbers
        assert snap["SoDienThoai"] in pii.phones
