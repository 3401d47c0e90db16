import json
import unicodedata

import pytest

from schemas.events import Channel, DossierEvent, Level
from schemas.raw import RawRecord
from streams.normalize import (
    Rejected,
    normalize,
    normalize_catalogue,
    normalize_motcua,
    normalize_portal,
    normalize_qlvb,
    progress_rows,
    to_national,
)
from tests.domain.factories import REG, must, payload, raw, t

PII = ("ChuHoSo", "SoDienThoai", "SoGiayToChuHoSo")


def test_contract_example_maps_every_field():
    ev = normalize_motcua(raw(payload()), REG)
    assert ev.event_id == "motcua:H56.14767-210115-00012:1"
    assert (ev.unit_code, ev.unit_tier, ev.level, ev.level_raw) == ("14767", "XA", Level.TOAN_TRINH, 4)
    assert ev.channel is Channel.TRUC_TUYEN
    assert ev.status == 4
    assert ev.received_at == t(2021, 1, 15, 8, 20).replace(second=10)
    assert must(must(ev.received_at).utcoffset()).total_seconds() == 7 * 3600
    assert ev.finished_at is None
    assert ev.returned_at is None
    assert ev.digitised
    assert not ev.paid_online
    assert not ev.electronic_result
    assert ev.progress[0].department == "Bộ phận một cửa"
    # model_construct is used for speed: the event must still be a valid model
    # (computed fields are excluded: schemas/events.py forbids extra keys, so its own dump does not re-validate)
    assert DossierEvent.model_validate_json(ev.model_dump_json(exclude={"status_group"})) == ev


@pytest.mark.parametrize("kenh", ["", None, "1", 1])
def test_empty_channel_is_in_person(kenh):
    p = payload(KenhThucHien=kenh)
    assert normalize_motcua(raw(p), REG).channel is Channel.TRUC_TIEP


def test_missing_channel_and_dates():
    p = payload()
    del p["KenhThucHien"], p["NgayHenTra"]
    ev = normalize_motcua(raw(p), REG)
    assert ev.channel is Channel.TRUC_TIEP
    assert ev.due_at is None


@pytest.mark.parametrize(("status", "expected"), [("10", 10), (9, 9), (" 5 ", 5)])
def test_status_strings_and_ints(status, expected):
    assert normalize_motcua(raw(payload(TrangThaiHoSo=status)), REG).status == expected


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"MaDonVi": "99999"}, "unknown_unit"),
        ({"TrangThaiHoSo": "11"}, "unknown_status"),
        ({"TrangThaiHoSo": 0}, "unknown_status"),
        ({"TrangThaiHoSo": [4]}, "schema"),
        ({"MucDo": 5}, "unknown_level"),
        ({"MucDo": 3.5}, "schema"),
        ({"NgayTiepNhan": "2021-01-15"}, "schema"),
        ({"NgayTiepNhan": "20211315082010"}, "schema"),
        ({"NgayCapNhat": ""}, "schema"),
        ({"PhienBan": "x"}, "schema"),
        ({"PhienBan": True}, "schema"),
        ({"MaHoSo": ""}, "missing_key"),
        ({"KenhThucHien": "4"}, "schema"),
        ({"QuaTrinhXuLy": "abc"}, "schema"),
        ({"QuaTrinhXuLy": [{"TrangThai": "2"}]}, "schema"),
        ({"QuaTrinhXuLy": [{"TrangThai": "2", "ThoiDiemXuLy": "20210115082010"}] * 1001}, "too_large"),
        ({"DanhSachGiayToKetQua": {"a": 1}}, "schema"),
        ({"TenTTHC": 12}, "schema"),
    ],
)
def test_rejections(over, reason):
    with pytest.raises(Rejected) as exc:
        normalize_motcua(raw(payload(**over)), REG)
    assert exc.value.reason == reason
    assert exc.value.detail


def test_nfd_text_is_nfc():
    nfd = unicodedata.normalize("NFD", "Đăng ký khai sinh")
    assert nfd != "Đăng ký khai sinh"
    ev = normalize_motcua(raw(payload(TenTTHC=nfd)), REG)
    assert ev.procedure_name == "Đăng ký khai sinh"


def test_progress_supplements_results_payment():
    steps = [
        {"TrangThai": "2", "ThoiDiemXuLy": "20210115082010"},
        {"TrangThai": "5", "ThoiDiemXuLy": "20210116082010", "NoiDungXuLy": "Gọi 0912345678 bổ sung"},
        {"TrangThai": 4, "ThoiDiemXuLy": "20210117082010"},
        {"TrangThai": "5", "ThoiDiemXuLy": "20210118082010"},
    ]
    ev = normalize_motcua(
        raw(
            payload(
                QuaTrinhXuLy=steps,
                DuocThanhToanTrucTuyen="2",
                DanhSachGiayToKetQua=[{"TenGiayTo": "Giấy khai sinh", "DuongDanTepTinKetQua": "https://x/kq.pdf"}],
            )
        ),
        REG,
    )
    assert ev.supplement_requests == 2
    assert ev.paid_online
    assert ev.electronic_result
    assert "0912345678" not in ev.progress[1].note  # a phone in free text is redacted
    # a result list without a link is not an electronic result
    ev2 = normalize_motcua(raw(payload(DanhSachGiayToKetQua=[{"TenGiayTo": "Giấy khai sinh"}])), REG)
    assert not ev2.electronic_result


def test_pii_left_upstream_is_never_copied():
    p = payload(ChuHoSo="Nguyễn Văn A", SoDienThoai="0912345678", SoGiayToChuHoSo="038090001234", IdHash="h1:abc")
    ev = normalize_motcua(raw(p), REG)
    dumped = ev.model_dump_json()
    for secret in ("Nguyễn Văn A", "0912345678", "038090001234"):
        assert secret not in dumped
    assert ev.id_hash == "h1:abc"
    # a raw number put in IdHash is not a hash: dropped
    assert normalize_motcua(raw(payload(IdHash="038090001234")), REG).id_hash is None
    nat = to_national(ev)
    assert not set(nat) & set(PII)
    assert "IdHash" not in nat
    assert to_national(ev, id_number_hash=True)["IdHash"] == "h1:abc"


def test_to_national_round_trip():
    p = payload(TrangThaiHoSo="10", NgayKetThucXuLy="20210118100000", NgayTra="20210118110000")
    ev = normalize_motcua(raw(p), REG)
    nat = to_national(ev)
    for k in (
        "MaHoSo",
        "MaTTHC",
        "MaDonVi",
        "NgayTiepNhan",
        "NgayHenTra",
        "NgayKetThucXuLy",
        "NgayTra",
        "NgayCapNhat",
        "KenhThucHien",
        "TrangThaiHoSo",
    ):
        assert nat[k] == p[k], k
    assert nat["NgayTuChoi"] == ""
    assert nat["MucDo"] == 4
    # the national dict normalises back to the same facts
    again = normalize_motcua(raw({**nat, "PhienBan": 1}), REG)
    assert again.model_dump(exclude={"progress", "procedure_name", "field_code", "electronic_result"}) == ev.model_dump(
        exclude={"progress", "procedure_name", "field_code", "electronic_result"}
    ) | {"supplement_requests": 0}
    rows = progress_rows(ev)
    assert rows == [
        {
            "MaHoSo": ev.ma_ho_so,
            "TrangThai": "2",
            "ThoiDiemXuLy": "20210115082010",
            "PhongBanXuLy": "Bộ phận một cửa",
            "NoiDungXuLy": "Tiếp nhận",
        }
    ]
    json.dumps(nat)


def test_qlvb_nested_and_flat():
    nested = {
        "id": "1000231",
        "loai": "KY_SO",
        "thoi_diem": "2021-01-16T10:02:11+07:00",
        "VanBan": {"so_ky_hieu": "15/QĐ-UBND", "ma_don_vi": "14767", "ky_so": "true", "nguoi_ky": "X"},
        "HoSoLienQuan": {"ma_ho_so": "H56.14767-210115-00012"},
    }
    ev = normalize_qlvb(raw(nested, "document", "qlvb"))
    assert (ev.doc_event_id, ev.kind, ev.ma_ho_so, ev.signed) == (1000231, "KY_SO", "H56.14767-210115-00012", True)
    assert ev.is_electronic_result
    assert ev.event_id == "qlvb:1000231"
    flat = {"id": 5, "loai": "dang_ky", "thoi_diem": "2021-01-16T10:02:11+07:00", "so_ky_hieu": "1/TB"}
    ev2 = normalize_qlvb(raw(flat, "document", "qlvb"))
    assert ev2.ma_ho_so is None
    assert not ev2.is_electronic_result
    with pytest.raises(Rejected) as exc:
        normalize_qlvb(raw({**flat, "loai": "XOA"}, "document", "qlvb"))
    assert exc.value.reason == "unknown_status"
    with pytest.raises(Rejected) as exc:
        normalize_qlvb(raw({**flat, "thoi_diem": "yesterday"}, "document", "qlvb"))
    assert exc.value.reason == "schema"


PORTAL_ITEM = {
    "ma_ho_so": "H56.14767-210115-00012",
    "ma_tthc": "1.003560.000.00.00.H56",
    "ma_don_vi": "14767",
    "muc_do": 4,
    "thoi_diem_nop": "2021-01-15T08:15:00+07:00",
    "trang_thai": "DA_CHUYEN_MOT_CUA",
    "thanh_toan": {"so_tien": 8000, "hinh_thuc": "TRUC_TUYEN", "thoi_diem": "2021-01-15T08:16:40+07:00"},
    "danh_gia": {"hai_long": False, "thoi_diem": "2021-01-19T10:00:00+07:00"},
    "cap_nhat_luc": "2021-01-19T10:00:00+07:00",
}


def test_portal_item():
    ev = normalize_portal(raw(PORTAL_ITEM, "portal", "portal"), REG)
    assert ev.paid_online
    assert ev.paid_amount == 8000
    assert ev.satisfied is False
    assert ev.updated_at == t(2021, 1, 19, 10)
    nulls = normalize_portal(raw({**PORTAL_ITEM, "thanh_toan": None, "danh_gia": None}, "portal", "portal"), REG)
    assert not nulls.paid_online
    assert nulls.satisfied is None
    for over, reason in (
        ({"ma_don_vi": "1"}, "unknown_unit"),
        ({"trang_thai": "X"}, "unknown_status"),
        ({"thanh_toan": [1]}, "schema"),
        ({"cap_nhat_luc": None}, "schema"),
    ):
        with pytest.raises(Rejected) as exc:
            normalize_portal(raw({**PORTAL_ITEM, **over}, "portal", "portal"), REG)
        assert exc.value.reason == reason


def test_catalogue_row():
    row = {
        "MaTTHC": "P1",
        "TenTTHC": "T",
        "MucDo": 3,
        "CoPhi": True,
        "KetQuaBanGiay": True,
        "HieuLucTu": "20200101000000",
        "HieuLucDen": "",
    }
    rec = RawRecord.build(
        source="motcua", instance="motcua-14767", kind="catalogue", key="P1", version="1", payload=row
    )
    e = normalize_catalogue(rec, REG)
    assert (e.unit_code, e.level, e.has_fee, e.paper_result, e.valid_to) == ("14767", Level.MOT_PHAN, True, True, None)
    keyed = RawRecord.build(
        source="portal", instance="portal", kind="catalogue", key="380|P1", version="1", payload=row
    )
    assert normalize_catalogue(keyed, REG).unit_code == "380"
    with pytest.raises(Rejected) as exc:
        normalize_catalogue(
            RawRecord.build(source="portal", instance="portal", kind="catalogue", key="P1", version="1", payload=row),
            REG,
        )
    assert exc.value.reason == "missing_key"


def test_dispatch():
    assert normalize(raw(payload()), REG).type == "dossier"
    assert normalize(raw(PORTAL_ITEM, "portal", "portal"), REG).type == "portal"
