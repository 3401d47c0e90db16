"""The fields the hub keeps of each kind of source record: the allow-lists of the privacy edge.

Every field not listed here is dropped at the edge (:class:`hub.privacy.Fields`), however the
vendor spells it and however deep it sits; so a new vendor field, personal or not, never reaches
Kafka until someone decides the hub needs it. The lists hold what the normaliser
(``streams/normalize.py``) and the portal push read, and the few descriptive fields an operator
uses to recognise a record (procedure and field names); nothing that names, reaches or identifies
a person. The applicant's ID number is kept only as its keyed hash ``IdHash``.

A stream's allow-list is its :attr:`connectors.sdk.Stream.fields`, by default the one of its
``kind`` here (:data:`BY_KIND`), so a third-party connector that maps its vendor's fields to the
national names (``transform()``, see the scaffold) gets the right list without declaring one. A
stream with more to keep extends it (``DOSSIER.extend(keep=("SoBienNhan",))``); an instance can too,
with ``options.keep_fields`` / ``options.free_text_fields`` (dotted paths reach nested objects;
names that look personal are refused).
"""

from __future__ import annotations

from hub.privacy import Fields, Rule

__all__ = ["BY_KIND", "CATALOGUE", "DOCUMENT_EVENT", "DOSSIER", "LINK_HINTS", "PORTAL_SUBMISSION"]

#: Parts of the names vendors give a result document's file link (the normaliser looks for these).
LINK_HINTS = ("duongdan", "url", "link", "tep", "file")

#: ID-number fields of the applicant, as vendors name them (any spelling matches: SO_CCCD, soCmnd...).
APPLICANT_ID = ("SoGiayToChuHoSo", "SoCCCD", "SoCMND", "CCCD", "CMND", "SoGiayTo", "SoDinhDanh",
                "SoGiayToTuyThan")

#: One-stop dossier snapshots (the national DongBoHoSoMC format).
DOSSIER = Fields(
    keep=("MaHoSo", "PhienBan", "NgayCapNhat", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "MaDonVi",
          "MaDonViTiepNhan", "MucDo", "KenhThucHien", "TrangThaiHoSo", "NgayNopHoSo", "NgayTiepNhan", "NgayHenTra",
          "NgayKetThucXuLy", "NgayTra", "NgayTuChoi", "LoaiDoiTuong", "DuocThanhToanTrucTuyen",
          "HoSoCoThanhPhanSoHoa"),
    id_number=APPLICANT_ID,
    nested={
        # Progress rows: the department is a label, masked like text; the note is free text.
        "QuaTrinhXuLy": Fields(keep=("TrangThai", "ThoiDiemXuLy"), text=("PhongBanXuLy", "NoiDungXuLy")),
        # Result documents: their codes, their title (masked) and their file link, whatever its name.
        "DanhSachGiayToKetQua": Fields(keep=("MaThanhPhanHoSo", "GiayToId", "MaGiayTo", "SoKyHieu"),
                                       text=("TenGiayTo",), text_matching=LINK_HINTS, items=Rule.TEXT),
    },
)

#: Procedure catalogue rows (one-stop ``/thutuc`` and the portal's).
CATALOGUE = Fields(
    keep=("MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "MaDonVi", "MucDo", "CoPhi", "KetQuaBanGiay",
          "DuDieuKienToanTrinh", "HieuLucTu", "HieuLucDen"),
)

_VAN_BAN = ("so_ky_hieu", "ngay_ban_hanh", "co_quan_ban_hanh", "ma_don_vi", "ky_so", "loai_van_ban")

#: QLVB document events. Never the signer, drafter or any other person attribute of ``VanBan``;
#: the abstract (``trich_yeu``) is free text. The ``VanBan`` attributes may also come flattened.
DOCUMENT_EVENT = Fields(
    keep=("id", "loai", "thoi_diem", "ma_ho_so", *_VAN_BAN),
    text=("trich_yeu",),
    nested={"VanBan": Fields(keep=_VAN_BAN, text=("trich_yeu",)), "HoSoLienQuan": Fields(keep=("ma_ho_so",))},
)

#: The portal's online submissions, payments and ratings (never the citizen's comment).
PORTAL_SUBMISSION = Fields(
    keep=("ma_ho_so", "ma_tthc", "ma_don_vi", "muc_do", "thoi_diem_nop", "trang_thai", "cap_nhat_luc"),
    nested={
        "thanh_toan": Fields(keep=("so_tien", "hinh_thuc", "thoi_diem")),
        "danh_gia": Fields(keep=("hai_long", "thoi_diem")),
    },
)

#: The default allow-list of a stream, by its ``kind``.
BY_KIND: dict[str, Fields] = {
    "dossier": DOSSIER,
    "catalogue": CATALOGUE,
    "document": DOCUMENT_EVENT,
    "portal": PORTAL_SUBMISSION,
}
