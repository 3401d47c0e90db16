"""The privacy edge and dead letters carry no personal data."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from hub.deadletter import DeadLetter
from hub.privacy import hash_id_number, redact_text, safe_code, scrub_dossier
from schemas.raw import RawRecord
from schemas.units import default_registry
from streams.normalize import Rejected, normalize

RECORD = {
    "MaHoSo": "H56.14767-210115-00012",
    "ChuHoSo": "Nguyễn Văn A",
    "SoGiayToChuHoSo": "038090001234",
    "SoDienThoai": "0912345678",
    "DiaChi": "12 Lê Lợi",
    "QuaTrinhXuLy": [{"TrangThai": "2", "HoTen": "Trần Thị B"}],
}


def test_scrub_drops_names_phones_and_hashes_id() -> None:
    out = scrub_dossier(RECORD, b"k1")
    text = json.dumps(out, ensure_ascii=False)
    for secret in ("Nguyễn Văn A", "038090001234", "0912345678", "Lê Lợi", "Trần Thị B"):
        assert secret not in text
    assert out["IdHash"] == hash_id_number("038090001234", b"k1")
    assert out["MaHoSo"] == RECORD["MaHoSo"]


def test_hash_is_keyed() -> None:
    assert hash_id_number("038090001234", b"k1") != hash_id_number("038090001234", b"k2")
    assert hash_id_number(" 038090001234 ", b"k1") == hash_id_number("038090001234", b"k1")


def test_redact_text_masks_ids_and_phones() -> None:
    assert redact_text("CCCD 038090001234 tel 0912345678 ok") == "CCCD <id> tel <phone> ok"


def test_dead_letter_redacts_raw_excerpt_and_detail() -> None:
    dl = DeadLetter.make(
        stage="connector", reason="invalid_json", detail="bad record of 038090001234",
        source="motcua", raw=b'{"ChuHoSo": "x", "SoGiayToChuHoSo": "038090001234", "SoDienThoai": "0912345678"',
    )
    blob = dl.value().decode() + repr(dl.headers()) + dl.key().decode()
    assert "038090001234" not in blob
    assert "0912345678" not in blob
    assert DeadLetter.parse(dl.value()).reason == "invalid_json"
    assert ("dlq.reason", b"invalid_json") in dl.headers()


def test_unknown_reason_is_bounded() -> None:
    dl = DeadLetter.make(stage="normalize", reason="something new", detail="?", source="x")
    assert dl.reason == "unexpected"


def test_dead_letter_keeps_only_the_shape_of_unreadable_input() -> None:
    dl = DeadLetter.make(
        stage="connector", reason="invalid_json", detail="bad value 'Nguyễn Văn A' at line 1",
        source="motcua", raw='{"ChuHoSo": "Nguyễn Văn A", "MaHoSo": "H56.1',
    )
    blob = dl.value().decode("utf-8")
    assert "Nguy" not in blob
    assert "Văn" not in blob
    assert dl.excerpt == '{"xxxxxxx": "xxxxxx xxx x", "xxxxxx": "x99.9'


def test_dead_letter_payload_keeps_the_dossier_but_no_person() -> None:
    """A record produced straight into a raw topic (it never passed the edge) is dead-lettered with
    its payload for replay: names, phones, addresses and ID fields go, ID-like text is masked."""
    payload = {**RECORD, "SoGiayTo": "038090001234", "GhiChu": "goi 0912345678", "IdHash": "h1:abc",
               "MucDo": ["x"]}
    dl = DeadLetter.make(stage="normalize", reason="schema", detail="MucDo: not a level", source="motcua",
                         payload={"source": "motcua", "payload": payload})
    blob = dl.value().decode("utf-8")
    for secret in ("Nguyễn Văn A", "038090001234", "0912345678", "Lê Lợi", "Trần Thị B"):
        assert secret not in blob
    kept = DeadLetter.parse(dl.value()).payload
    assert kept is not None
    assert kept["payload"]["MaHoSo"] == RECORD["MaHoSo"]
    assert kept["payload"]["IdHash"] == "h1:abc"
    assert kept["payload"]["MucDo"] == ["x"]
    assert "SoGiayTo" not in kept["payload"]  # an ID field by another name: dropped by its name
    assert "GhiChu" not in kept["payload"]  # free text stays out of dead letters unless shared
    assert kept["payload"]["QuaTrinhXuLy"] == [{"TrangThai": "2"}]
    shared = DeadLetter.make(stage="normalize", reason="schema", detail="x", source="motcua",
                             payload={"payload": payload}, keep_text=True).payload
    assert shared is not None
    assert shared["payload"]["GhiChu"] == "goi <phone>"


def test_scrub_and_dead_letter_payloads_know_personal_fields_in_any_spelling() -> None:
    """Without an allow-list (records produced straight into a topic): camelCase, other vendors' words,
    separators, nested lists of lists — every person field goes, free text is masked or dropped."""
    record = {
        "MaHoSo": "H56.1", "chuHoSo": "Nguyễn Văn A", "applicantName": "Nguyễn Văn A", "SO-CCCD": "038090001234",
        "nguoiDaiDien": {"hoTen": "Trần Thị B", "soCMND": "123456789"}, "emailLienHe": "a@b.vn",
        "representative_phone": "+84 912 345 678",
        "QuaTrinhXuLy": [[{"TrangThai": "2", "canBoXuLy": "Lê Văn C", "NoiDungXuLy": "gọi 0912.345.678"}]],
    }
    out = scrub_dossier(record, b"k1")
    assert out == {"MaHoSo": "H56.1", "IdHash": hash_id_number("038090001234", b"k1"),
                   "QuaTrinhXuLy": [[{"TrangThai": "2", "NoiDungXuLy": "gọi <phone>"}]]}
    dl = DeadLetter.make(stage="normalize", reason="schema", detail="x", source="motcua", payload=record)
    assert dl.payload == {"MaHoSo": "H56.1", "QuaTrinhXuLy": [[{"TrangThai": "2"}]]}


# ----------------------------------------------------------------------------- codes stay readable

# Personal data an operator's detail may carry beside the code (a portal message, a vendor note).
PERSON = ", reported by ông Nguyễn Văn An, CCCD 038 090 001 234, ĐT 0912 345 678, an.nguyen@example.vn"
SECRETS = ("Nguyễn Văn An", "038 090 001 234", "038090001234", "0912 345 678", "an.nguyen@example.vn")


def _letter_of(exc: Rejected, extra: str = "") -> DeadLetter:
    """The dead letter the normalising agent makes of a refusal (streams.agents.normalizer.handle)."""
    return DeadLetter.make(stage="normalize", reason=exc.reason, detail=exc.detail + extra, source="motcua",
                           codes=exc.codes)


def _refusal(kind: str, payload: dict[str, Any]) -> Rejected:
    source = {"dossier": "motcua", "document": "qlvb", "portal": "portal", "catalogue": "motcua"}[kind]
    rec = RawRecord.build(source=source, instance=f"{source}-14767", kind=kind, key="k", version="1",  # type: ignore[arg-type]
                          payload=payload)
    with pytest.raises(Rejected) as caught:
        normalize(rec, default_registry())
    return caught.value


DOSSIER = {"MaHoSo": "H56.14767-210115-00012", "PhienBan": 3, "NgayCapNhat": "20210115093012",
           "MaTTHC": "1.003560.000.00.00.H56", "MaDonVi": "14767", "MucDo": 4, "KenhThucHien": "2",
           "TrangThaiHoSo": "4", "NgayTiepNhan": "20210115082010", "NgayHenTra": "20210118170000"}
PORTAL = {"ma_ho_so": "H56.14767-210115-00012", "ma_don_vi": "14767", "trang_thai": "DA_NOP",
          "cap_nhat_luc": "2021-01-15T09:30:12+07:00"}
DOCUMENT = {"id": 7, "loai": "KY_SO", "thoi_diem": "2021-01-15T09:30:12+07:00",
            "HoSoLienQuan": {"ma_ho_so": "H56.14767-210115-00012"}}
CATALOGUE = {"MaDonVi": "14767", "MaTTHC": "1.003560.000.00.00.H56", "MucDo": 4}


@pytest.mark.parametrize(("kind", "payload", "reason", "code"), [
    ("dossier", {**DOSSIER, "MaDonVi": "14768"}, "unknown_unit", "14768"),
    ("dossier", {**DOSSIER, "MaDonVi": "99001"}, "unknown_unit", "99001"),
    ("dossier", {**DOSSIER, "MaDonVi": "H56.99"}, "unknown_unit", "H56.99"),
    ("dossier", {**DOSSIER, "MaDonVi": "000.00.12.H56"}, "schema", "000.00.12.H56"),  # past the unit pattern
    ("dossier", {**DOSSIER, "MaDonVi": "14768"}, "unknown_unit", "H56.14767-210115-00012"),  # and its dossier
    ("dossier", {**DOSSIER, "MaHoSo": "H56.23-210115-0001", "MaDonVi": "14768"}, "unknown_unit", "H56.23-210115-0001"),
    ("dossier", {**DOSSIER, "TrangThaiHoSo": "11"}, "unknown_status", "11"),
    ("dossier", {**DOSSIER, "TrangThaiHoSo": "DA_XU_LY"}, "unknown_status", "DA_XU_LY"),
    ("dossier", {**DOSSIER, "TrangThaiHoSo": 42}, "unknown_status", "42"),
    ("dossier", {**DOSSIER, "QuaTrinhXuLy": [{"TrangThai": "12", "ThoiDiemXuLy": "20210115093012"}]},
     "unknown_status", "12"),
    ("dossier", {**DOSSIER, "MucDo": 7}, "unknown_level", "7"),
    ("dossier", {**DOSSIER, "MucDo": "M4"}, "unknown_level", "M4"),
    ("dossier", {**DOSSIER, "KenhThucHien": "9"}, "schema", "9"),
    ("portal", {**PORTAL, "ma_don_vi": "14768"}, "unknown_unit", "14768"),
    ("portal", {**PORTAL, "trang_thai": "DA_TRA_KQ"}, "unknown_status", "DA_TRA_KQ"),
    ("document", {**DOCUMENT, "loai": "TRINH_DUYET"}, "unknown_status", "TRINH_DUYET"),
    ("catalogue", {**CATALOGUE, "MaDonVi": "30512"}, "unknown_unit", "30512"),
    ("catalogue", {**CATALOGUE, "MucDo": 9}, "unknown_level", "9"),
])
def test_a_dead_letter_names_the_code_it_is_about_and_masks_the_person_beside_it(
    kind: str, payload: dict[str, Any], reason: str, code: str,
) -> None:
    """Masking once turned every unit code of an ``unknown_unit`` detail into ``99999`` (the shape of
    the quoted code): the detail names the real code, in its text and in ``codes``."""
    exc = _refusal(kind, payload)
    assert exc.reason == reason
    for extra in ("", PERSON):
        letter = _letter_of(exc, extra)
        assert re.search(r"(?<![\w.-])" + re.escape(code) + r"(?![\w-])", letter.detail), letter.detail
        assert code in (letter.codes or {}).values()
        for secret in SECRETS:
            assert secret not in letter.detail
    assert "<name>" in letter.detail
    assert "<id>" in letter.detail
    assert "<phone>" in letter.detail
    assert "<email>" in letter.detail


@pytest.mark.parametrize("reason", ["unknown_unit", "schema", "portal_rejected", "missing_key", "unexpected"])
@pytest.mark.parametrize("code", ["14768", "H56.23-210115-0001", "000.00.12.H56", "1.003560.000.00.00.H56",
                                  "dvc.raw.motcua", "G22.388-210115-0001", "7", "DA_XU_LY"])
def test_quoted_or_not_a_code_in_a_detail_is_never_masked(reason: str, code: str) -> None:
    for detail in (f"MaDonVi {code!r} is not in the unit registry", f"code {code} refused",
                   f'the portal said "{code} khong hop le"'):
        letter = DeadLetter.make(stage="portal_sync", reason=reason, detail=detail + PERSON, source="portal")
        assert code in letter.detail, letter.detail
        assert not any(secret in letter.detail for secret in SECRETS), letter.detail


def test_codes_given_to_the_letter_are_named_even_when_the_detail_does_not() -> None:
    letter = DeadLetter.make(stage="portal_sync", reason="portal_rejected", source="portal",
                             detail="the portal refused the dossier: Trường MaTTHC không hợp lệ" + PERSON,
                             codes={"MaHoSo": "H56.14768-210115-0001", "error_code": "-3", "offset": 123456789})
    assert letter.codes == {"MaHoSo": "H56.14768-210115-0001", "error_code": "-3", "offset": "123456789"}
    for code in ("H56.14768-210115-0001", "-3", "123456789"):
        assert code in letter.detail
    assert not any(secret in letter.detail for secret in SECRETS)


@pytest.mark.parametrize("value", ["038090001234", "123456789", "0912345678", "+84912345678", "an@example.vn",
                                   "Nguyễn Văn An", "Lê Thị B", "147\n68", "x" * 65, "H56.14767-038090001234"])
def test_a_code_that_could_be_personal_or_hostile_is_masked(value: str) -> None:
    """A value given as a code is shown only if it cannot be a person (or forge a log line)."""
    assert safe_code(value) is None
    letter = DeadLetter.make(stage="normalize", reason="unknown_status", source="motcua",
                             detail=f"TrangThaiHoSo {value!r} is not a national status", codes={"TrangThaiHoSo": value})
    blob = letter.value().decode("utf-8")
    assert value not in blob
    assert json.dumps(value)[1:-1] not in blob
    assert "038090001234" not in blob
    assert "0912345678" not in blob
    assert "\n" not in letter.detail
    assert letter.codes is not None
    assert letter.codes["TrangThaiHoSo"] != value


def test_redact_text_keeps_codes_and_positions_but_not_people() -> None:
    text = ("đơn vị 14768, thủ tục 1.003560.000.00.00.H56, hồ sơ H56.23-210115-0001 và 000.00.12.H56-210115-0003, "
            "offset 123456789, partition 3; ông Trần Văn Bình, CCCD 038090001234, ĐT 0912.345.678, b@x.vn")
    assert redact_text(text) == (
        "đơn vị 14768, thủ tục 1.003560.000.00.00.H56, hồ sơ H56.23-210115-0001 và 000.00.12.H56-210115-0003, "
        "offset 123456789, partition 3; ông <name>, CCCD <id>, ĐT <phone>, <email>")


def test_the_connector_edge_names_the_refused_records_key() -> None:
    from connectors.sdk.edge import Edge
    from tests.connectors.test_privacy_edge import DOSSIERS

    edge = Edge(source="motcua", instance="motcua-14767", privacy_key=b"k", max_depth=32)
    record = {"MaHoSo": "H56.14768-210115-0001", "MaDonVi": "14768", "ChuHoSo": "Nguyễn Văn An"}  # no PhienBan
    _, letters = edge.process(DOSSIERS, [record])
    assert "H56.14768-210115-0001" in letters[0].detail
    assert letters[0].codes == {"MaHoSo": "H56.14768-210115-0001"}
    assert "Nguyễn" not in letters[0].value().decode("utf-8")
