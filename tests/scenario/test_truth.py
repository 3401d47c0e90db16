"""The oracle itself, on hand-written dossiers whose figures are known by reading them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from hub.scenario.generator import CatalogueRow, Lifecycle, Scenario, UnitInfo, Version
from hub.scenario.truth import GroundTruth
from hub.simulators.clock import TZ


def t(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=TZ)


def dossier(code: str, level: int, channel: str, steps: list[tuple[str, str, dict[str, Any]]], **base) -> Lifecycle:
    fields = {
        "MaHoSo": code,
        "MaTTHC": "P1",
        "TenTTHC": "Đăng ký khai sinh",
        "MaDonVi": "14767",
        "MucDo": level,
        "KenhThucHien": channel,
        "NgayNopHoSo": steps[0][1],
        "NgayTiepNhan": "",
        "NgayHenTra": "",
        "NgayKetThucXuLy": "",
        "NgayTra": "",
        "NgayTuChoi": "",
        "ChuHoSo": "Nguyễn Văn A",
        "SoGiayToChuHoSo": "038090001234",
        "SoDienThoai": "0912345678",
        "DuocThanhToanTrucTuyen": 0,
        "HoSoCoThanhPhanSoHoa": 0,
        "DanhSachGiayToKetQua": [],
    }
    fields.update(base)
    versions = [
        Version(
            t(at), status, changes, {"TrangThai": status, "ThoiDiemXuLy": at, "PhongBanXuLy": "", "NoiDungXuLy": ""}
        )
        for status, at, changes in steps
    ]
    return Lifecycle(base=fields, versions=versions)


@pytest.fixture(scope="module")
def truth():
    row = CatalogueRow(
        unit="14767",
        code="P1",
        name="Đăng ký khai sinh",
        field_code="HT",
        field_name="Hộ tịch",
        level=3,
        has_fee=True,
        paper_result=True,
        valid_from=t("20190101000000"),
        valid_to=None,
        days=1,
        weight=1.0,
    )
    dossiers = (
        # A: online, finished at 18:30 on the due day -> on time (calendar day), in January.
        dossier(
            "A",
            3,
            "2",
            [
                ("1", "20210104200000", {}),
                ("2", "20210105080000", {"NgayTiepNhan": "20210105080000", "NgayHenTra": "20210106170000"}),
                ("4", "20210105090000", {}),
                ("9", "20210106183000", {"NgayKetThucXuLy": "20210106183000"}),
                ("10", "20210107090000", {"NgayTra": "20210107090000"}),
            ],
            DuocThanhToanTrucTuyen=1,
        ),
        # B: in person, two supplement requests, finished before the due day -> late (Decision 766).
        dossier(
            "B",
            3,
            "1",
            [
                ("2", "20210201080000", {"NgayTiepNhan": "20210201080000", "NgayHenTra": "20210226170000"}),
                ("4", "20210201090000", {}),
                ("5", "20210202090000", {}),
                ("4", "20210203090000", {}),
                ("5", "20210204090000", {}),
                ("4", "20210205090000", {}),
                ("9", "20210208100000", {"NgayKetThucXuLy": "20210208100000"}),
            ],
        ),
        # C: received 1 March, due 10 March, never finished -> open and overdue at the end of March/Q1.
        dossier(
            "C",
            4,
            "3",
            [
                ("2", "20210301080000", {"NgayTiepNhan": "20210301080000", "NgayHenTra": "20210310170000"}),
                ("4", "20210301090000", {}),
            ],
        ),
        # D: online, refused at reception -> refused in March, never received.
        dossier("D", 3, "2", [("1", "20210302070000", {}), ("3", "20210302090000", {"NgayTuChoi": "20210302090000"})]),
        # E: received 25 Feb, withdrawn 2 March -> open at the end of February (not overdue), withdrawn in March.
        dossier(
            "E",
            3,
            "1",
            [
                ("2", "20210225080000", {"NgayTiepNhan": "20210225080000", "NgayHenTra": "20210305170000"}),
                ("4", "20210225090000", {}),
                ("7", "20210302100000", {}),
            ],
        ),
        # F: empty channel (= in person), straight to 10 the day before the due day -> early, finished in March,
        # with an electronic result.
        dossier(
            "F",
            3,
            "",
            [
                ("2", "20210308080000", {"NgayTiepNhan": "20210308080000", "NgayHenTra": "20210310170000"}),
                ("4", "20210308090000", {}),
                (
                    "10",
                    "20210309100000",
                    {
                        "NgayTra": "20210309100000",
                        "DanhSachGiayToKetQua": [{"TenGiayTo": "KQ", "DuongDanTepTinKetQua": "https://x/f.pdf"}],
                    },
                ),
            ],
        ),
    )
    scenario = Scenario(
        name="hand",
        seed=0,
        scale=1.0,
        start=t("20200101000000"),
        end=t("20210401000000"),
        units=(UnitInfo("14767", "Điện Biên", "XA", "phuong", "phuong"),),
        catalogue=(row,),
        dossiers=dossiers,
        documents=(),
        targets={},
    )
    return GroundTruth(scenario)


def test_received_counts_reception_dates_not_refusals(truth):
    assert truth.figure("received", period="2021-01") == 1
    assert truth.figure("received", period="2021-02") == 2
    assert truth.figure("received", period="2021-03") == 2  # C, F; D was refused
    assert truth.figure("received", period="2021-Q1") == 5
    assert truth.figure("received", channel="2", level=3, period="2021-Q1") == 1
    assert truth.figure("received", channel="TRUC_TIEP", period="2021-Q1") == 3  # B, E, F ("" = in person)
    assert truth.figure("received", level="TOAN_TRINH", period="2021-Q1") == 1
    assert truth.figure("refused", period="2021-03") == 1


def test_timeliness(truth):
    assert truth.figure("finished_on_time", period="2021-01") == 1  # A: 18:30 on the due day
    assert truth.figure("finished_late", period="2021-02") == 1  # B: two supplements
    assert truth.figure("finished_early", period="2021-03") == 1  # F: ended by NgayTra
    assert truth.figure("withdrawn", period="2021-03") == 1


def test_open_and_overdue_at_period_ends(truth):
    assert truth.figure("open_end", period="2021-02") == 1  # E
    assert truth.figure("overdue_end", period="2021-02") == 0
    assert truth.figure("open_end", period="2021-03") == 1  # C
    assert truth.figure("overdue_end", period="2021-Q1") == 1
    assert truth.figure("open_end", period="2021-01") == 0


def test_766_inputs_and_stats_body(truth):
    assert truth.figure("paid_online", period="2021-Q1") == 1
    assert truth.figure("fee_bearing", period="2021-Q1") == 5
    assert truth.figure("electronic_result", period="2021-Q1") == 1
    body = truth.stats_body("2021-Q1", "14767")
    level3 = next(r for r in body["theo_muc_do"] if r["muc_do"] == 3)
    assert level3 == {
        "muc_do": 3,
        "tiep_nhan": 4,
        "tiep_nhan_truc_tuyen": 1,
        "da_giai_quyet": 3,
        "dung_han": 2,
        "truoc_han": 1,
        "qua_han": 1,
        "dang_xu_ly": 0,
        "qua_han_dang_xu_ly": 0,
    }
    assert body["thu_tuc"] == {"muc_do_3": 1, "muc_do_4": 0, "khong_phat_sinh_ho_so": 0}
    assert truth.procedures_without_dossier("14767", "2020") == 1


def test_unknown_metric_is_an_error(truth):
    with pytest.raises(ValueError, match="known"):
        truth.figure("recieved")
