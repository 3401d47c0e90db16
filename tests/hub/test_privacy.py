"""The privacy edge and dead letters carry no personal data."""

from __future__ import annotations

import json

from hub.deadletter import DeadLetter
from hub.privacy import hash_id_number, redact_text, scrub_dossier

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
