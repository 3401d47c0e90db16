"""Builders of raw payloads and canonical events for the domain tests (no personal data: made-up codes only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from schemas.calendar import TZ
from schemas.events import DocumentEvent, DossierEvent, PortalEvent
from schemas.raw import RawRecord, RecordKind
from schemas.units import default_registry
from streams.domain.state import DossierView, State, view
from streams.normalize import fmt_compact, normalize_motcua

_T = TypeVar("_T")

REG = default_registry()


def t(y: int, mo: int, d: int, h: int = 9, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=TZ)


def payload(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "MaHoSo": "H56.14767-210115-00012",
        "PhienBan": 1,
        "NgayCapNhat": "20210115093012",
        "MaTTHC": "1.003560.000.00.00.H56",
        "TenTTHC": "Đăng ký khai sinh",
        "MaLinhVuc": "HT",
        "MaDonVi": "14767",
        "MucDo": 4,
        "KenhThucHien": "2",
        "TrangThaiHoSo": "4",
        "NgayNopHoSo": "20210115081500",
        "NgayTiepNhan": "20210115082010",
        "NgayHenTra": "20210118170000",
        "NgayKetThucXuLy": "",
        "NgayTra": "",
        "NgayTuChoi": "",
        "LoaiDoiTuong": 1,
        "DuocThanhToanTrucTuyen": 0,
        "HoSoCoThanhPhanSoHoa": 1,
        "DanhSachGiayToKetQua": [],
        "QuaTrinhXuLy": [
            {
                "TrangThai": "2",
                "ThoiDiemXuLy": "20210115082010",
                "PhongBanXuLy": "Bộ phận một cửa",
                "NoiDungXuLy": "Tiếp nhận",
            },
        ],
    }
    p.update(over)
    return p


def raw(p: dict[str, Any], kind: RecordKind = "dossier", source: str = "motcua") -> RawRecord:
    key = str(p.get("MaHoSo") or p.get("ma_ho_so") or p.get("id") or "k")
    return RawRecord.build(
        source=source,
        instance=f"{source}-14767",
        kind=kind,
        key=key[:200] or "k",
        version=str(p.get("PhienBan", "1"))[:60] or "1",
        payload=p,
    )


def dossier(
    ma: str = "H56.14767-210115-00012",
    version: int = 1,
    *,
    unit: str = "14767",
    level: int = 4,
    channel: str = "2",
    status: int = 4,
    received: datetime | None = None,
    due: datetime | None = None,
    finished: datetime | None = None,
    returned: datetime | None = None,
    refused: datetime | None = None,
    updated: datetime | None = None,
    supplements: int = 0,
    paid: int = 0,
    digitised: int = 0,
    result_link: bool = False,
    proc: str = "1.003560.000.00.00.H56",
) -> DossierEvent:
    received = received if received is not None else t(2021, 1, 15, 8, 20)
    steps = [{"TrangThai": "2", "ThoiDiemXuLy": fmt_compact(received)}]
    steps += [{"TrangThai": "5", "ThoiDiemXuLy": fmt_compact(received)} for _ in range(supplements)]
    p = payload(
        MaHoSo=ma,
        PhienBan=version,
        MaDonVi=unit,
        MucDo=level,
        KenhThucHien=channel,
        TrangThaiHoSo=str(status),
        MaTTHC=proc,
        NgayTiepNhan=fmt_compact(received),
        NgayHenTra=fmt_compact(due),
        NgayKetThucXuLy=fmt_compact(finished),
        NgayTra=fmt_compact(returned),
        NgayTuChoi=fmt_compact(refused),
        NgayCapNhat=fmt_compact(updated or finished or returned or refused or received),
        DuocThanhToanTrucTuyen=paid,
        HoSoCoThanhPhanSoHoa=digitised,
        DanhSachGiayToKetQua=[{"TenGiayTo": "KQ", "DuongDanTepTin": "/files/kq.pdf"}] if result_link else [],
        QuaTrinhXuLy=steps,
    )
    return normalize_motcua(raw(p), REG)


def doc(ma: str | None, doc_id: int, kind: str = "KY_SO") -> DocumentEvent:
    return DocumentEvent(
        event_id=f"qlvb:{doc_id}", source="qlvb", ma_ho_so=ma, doc_event_id=doc_id, kind=kind, at=t(2021, 1, 16, 10)
    )


def portal(
    ma: str,
    updated: datetime,
    *,
    status: str = "DA_CHUYEN_MOT_CUA",
    paid: bool = False,
    satisfied: bool | None = None,
    rated: datetime | None = None,
) -> PortalEvent:
    return PortalEvent(
        event_id=f"portal:{ma}:{updated.isoformat()}",
        source="portal",
        ma_ho_so=ma,
        procedure_code="P",
        unit_code="14767",
        portal_status=status,
        paid_online=paid,
        satisfied=satisfied,
        rated_at=rated,
        updated_at=updated,
    )


def must(x: _T | None) -> _T:
    """The value, asserting it is there (keeps the tests typed without ``# type: ignore``)."""
    assert x is not None
    return x


def must_view(state: State | None) -> DossierView:
    """The view of a state that must have one."""
    return must(view(state))
