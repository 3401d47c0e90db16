"""Pure mappers from raw source records to canonical events (the normalising agents' core).

Each mapper takes one :class:`schemas.raw.RawRecord` (already scrubbed at the connector edge) and
returns one canonical event, or raises :class:`Rejected` with a reason from
:data:`hub.deadletter.REASONS` and a detail that says what is wrong — never the offending personal
data. The agent catches :class:`Rejected`, dead-letters the record and moves on.

Privacy by construction: a mapper copies only the fields it knows, so a payload that still carries
``ChuHoSo``/``SoDienThoai``/``SoGiayToChuHoSo`` (a bug upstream) cannot leak them into an event.
Free text that may quote a number (progress notes) goes through :func:`hub.privacy.redact_text`.

This is the hot path: no regex is compiled per call, no payload is copied, dates are parsed by
slicing, and the event is validated by pydantic-core from already-typed fields (about as fast as
``model_construct``, and a constraint the mapper missed still ends as ``Rejected("schema")``).

Example::

    >>> from schemas.raw import RawRecord
    >>> from schemas.units import default_registry
    >>> rec = RawRecord.build(source="motcua", instance="motcua-14767", kind="dossier",
    ...     key="H56.14767-210115-00012", version="3", payload={
    ...         "MaHoSo": "H56.14767-210115-00012", "PhienBan": 3, "NgayCapNhat": "20210115093012",
    ...         "MaTTHC": "1.003560.000.00.00.H56", "MaDonVi": "14767", "MucDo": 4, "KenhThucHien": "2",
    ...         "TrangThaiHoSo": "4", "NgayTiepNhan": "20210115082010", "NgayHenTra": "20210118170000"})
    >>> ev = normalize_motcua(rec, default_registry())
    >>> ev.level, ev.channel, ev.received_at.isoformat()
    (<Level.TOAN_TRINH: 'TOAN_TRINH'>, <Channel.TRUC_TUYEN: 'TRUC_TUYEN'>, '2021-01-15T08:20:10+07:00')
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from hub.deadletter import REASONS
from hub.privacy import redact_text
from schemas.calendar import TZ
from schemas.events import (
    CatalogueEntry,
    Channel,
    DocumentEvent,
    DossierEvent,
    Level,
    PortalEvent,
    UnitTier,
)
from schemas.raw import RawRecord
from schemas.units import UnitRegistry
from streams.bounds import CATALOGUE_SINCE_EVER, CodeKind, InputBounds, default_bounds

__all__ = [
    "MAX_PROGRESS_STEPS",
    "Rejected",
    "fmt_compact",
    "normalize",
    "normalize_catalogue",
    "normalize_motcua",
    "normalize_portal",
    "normalize_qlvb",
    "parse_compact",
    "progress_rows",
    "to_national",
]

#: A dossier with more progress rows than this is refused as ``too_large`` (real ones have tens).
MAX_PROGRESS_STEPS = 1_000

DocKind = Literal["DANG_KY", "TRINH_KY", "KY_SO", "BAN_HANH", "CHUYEN_MOT_CUA"]
PortalStatus = Literal["DA_NOP", "DA_CHUYEN_MOT_CUA", "DA_HUY"]
CanonicalOut = DossierEvent | DocumentEvent | PortalEvent | CatalogueEntry


class Rejected(Exception):  # noqa: N818 - the agents read `except Rejected` as the outcome it is
    """A record the hub cannot accept: ``reason`` (a :data:`REASONS` key) and a human ``detail``.

    ``codes`` names the codes the refusal is about (``{"MaDonVi": "14768"}``): the dead letter
    shows them verbatim when they are safe (:meth:`hub.deadletter.DeadLetter.make`), whatever
    masking does to the rest of the detail.
    """

    def __init__(self, reason: str, detail: str, codes: dict[str, object] | None = None) -> None:
        if reason not in REASONS:
            reason = "unexpected"
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.codes: dict[str, object] = codes or {}


# --------------------------------------------------------------------------- scalar parsers

_STATUS: dict[Any, int] = {str(i): i for i in range(1, 11)}
_CHANNEL = {"": Channel.TRUC_TIEP, "1": Channel.TRUC_TIEP, "2": Channel.TRUC_TUYEN, "3": Channel.BUU_CHINH}
_CHANNEL_CODE = {Channel.TRUC_TIEP: "1", Channel.TRUC_TUYEN: "2", Channel.BUU_CHINH: "3"}
_LEVELS = {1: Level.KHONG_TRUC_TUYEN, 2: Level.KHONG_TRUC_TUYEN, 3: Level.MOT_PHAN, 4: Level.TOAN_TRINH}
_UTC7 = timedelta(hours=7)  # Asia/Ho_Chi_Minh for every date since 1975 (no DST)
_PORTAL_STATUS: dict[str, PortalStatus] = {
    "DA_NOP": "DA_NOP",
    "DA_CHUYEN_MOT_CUA": "DA_CHUYEN_MOT_CUA",
    "DA_HUY": "DA_HUY",
}
_DOC_KINDS: dict[str, DocKind] = {
    "DANG_KY": "DANG_KY",
    "TRINH_KY": "TRINH_KY",
    "KY_SO": "KY_SO",
    "BAN_HANH": "BAN_HANH",
    "CHUYEN_MOT_CUA": "CHUYEN_MOT_CUA",
}
_TIERS: dict[str, UnitTier] = {"TINH": "TINH", "HUYEN": "HUYEN", "XA": "XA"}
_TRUE = frozenset({"true", "1", "yes", "co", "có"})
_FALSE = frozenset({"false", "0", "no", "khong", "không", ""})
# A digit run long enough to be an ID number or a phone: only then pay for redact_text.
_LONG_DIGITS = re.compile(r"\d{9}")
# Keys of a result-document item that hold its file link (vendors differ).
_LINK_HINTS = ("duongdan", "url", "link", "tep", "file")


def parse_compact(value: Any, field: str) -> datetime | None:
    """``yyyyMMddHHmmss`` local time -> aware datetime; ``""``/``None`` -> ``None``; else :class:`Rejected`."""
    if value is None:
        return None
    if type(value) is int:
        value = str(value)
    if type(value) is not str:
        raise Rejected("schema", f"{field} must be a yyyyMMddHHmmss string, got {type(value).__name__}")
    s = value.strip()
    if not s:
        return None
    if len(s) != 14 or not s.isdigit() or not s.isascii():
        raise Rejected("schema", f"{field} {s[:20]!r} is not yyyyMMddHHmmss")
    try:
        return datetime(int(s[0:4]), int(s[4:6]), int(s[6:8]), int(s[8:10]), int(s[10:12]), int(s[12:14]), tzinfo=TZ)
    except ValueError:
        raise Rejected("schema", f"{field} {s!r} is not a real date/time") from None


def _date(value: Any, field: str, b: InputBounds) -> datetime | None:
    """:func:`parse_compact`, then the plausible range (before anything formats or shifts the date)."""
    dt = parse_compact(value, field)
    b.check_date(dt, field)
    return dt


def _iso(value: Any, field: str, b: InputBounds) -> datetime | None:
    """:func:`_parse_iso`, then the plausible range (before anything formats or shifts the date)."""
    dt = _parse_iso(value, field)
    b.check_date(dt, field)
    return dt


def _parse_iso(value: Any, field: str) -> datetime | None:
    """ISO-8601 with offset (a naive value is taken as local time); ``""``/``None`` -> ``None``."""
    if value is None:
        return None
    if type(value) is not str:
        raise Rejected("schema", f"{field} must be an ISO-8601 string, got {type(value).__name__}")
    s = value.strip()
    if not s:
        return None
    if len(s) == 14 and s.isdigit():
        return parse_compact(s, field)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise Rejected("schema", f"{field} {s[:40]!r} is not ISO-8601") from None
    return dt.replace(tzinfo=TZ) if dt.tzinfo is None else dt


def fmt_compact(dt: datetime | None) -> str:
    """Aware datetime -> ``yyyyMMddHHmmss`` local time; ``None`` -> ``""`` (the national format)."""
    if dt is None:
        return ""
    # Vietnam has kept UTC+7 since 1975: a value already at that offset (every value the hub parsed)
    # needs no conversion, and astimezone through the zoneinfo rules was most of this hot function.
    t = dt if dt.utcoffset() == _UTC7 else dt.astimezone(TZ)
    return f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}"


def _int(value: Any, field: str) -> int:
    """A non-negative integer (or its digits); bounded, so it fits every JSON reader and orjson."""
    if type(value) is str and value.strip().isdigit() and value.strip().isascii():
        digits = value.strip()
        # int() of thousands of digits raises (and costs); 2**53 has 16 digits.
        if len(digits) > 16:
            raise Rejected("out_of_range", f"{field} must be an integer 0..2**53, got one of {len(digits)} digits")
        value = int(digits)
    if type(value) is int:
        InputBounds.check_int(value, field)
        return value
    raise Rejected("schema", f"{field} must be an integer, got {type(value).__name__}")


def _status(value: Any, field: str = "TrangThaiHoSo") -> int:
    if type(value) is str:
        st = _STATUS.get(value.strip())
        if st is None:
            raise Rejected("unknown_status", f"{field} {value[:20]!r} is not a national status 1..10",
                           {field: value[:20]})
        return st
    if type(value) is int:
        if 1 <= value <= 10:
            return value
        raise Rejected("unknown_status", f"{field} {value} is not a national status 1..10", {field: value})
    raise Rejected("schema", f"{field} must be a string or an integer, got {type(value).__name__}")


def _level(value: Any, field: str = "MucDo") -> int:
    if type(value) is str and value.strip().isdigit() and value.strip().isascii():
        value = int(value.strip())
    if type(value) is int:
        if 1 <= value <= 4:
            return value
        raise Rejected("unknown_level", f"{field} {value} is not a level 1..4", {field: value})
    if type(value) is str:
        raise Rejected("unknown_level", f"{field} {value[:20]!r} is not a level 1..4", {field: value[:20]})
    raise Rejected("schema", f"{field} must be an integer 1..4, got {type(value).__name__}")


def _text(value: Any, field: str, max_len: int = 2_000) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise Rejected("schema", f"{field} must be text, got {type(value).__name__}")
    if len(value) > max_len:
        raise Rejected("too_large", f"{field} is {len(value)} characters; at most {max_len} are accepted")
    if not value.isprintable():
        # Control characters (a CR/LF that forges a log line, an ANSI escape) never pass into an event.
        value = "".join(c if c.isprintable() else " " for c in value)
    # NFD sources exist: compare and store only NFC. is_normalized is a fast check for the usual case.
    return value.strip() if unicodedata.is_normalized("NFC", value) else unicodedata.normalize("NFC", value).strip()


def _code(value: Any, field: str, kind: CodeKind, b: InputBounds) -> str:
    """A code (MaHoSo, MaDonVi, MaTTHC, MaLinhVuc): stripped, NFC, in the safe charset of ``bounds``."""
    if type(value) is int:
        value = str(value)
    if type(value) is not str or not value.strip():
        raise Rejected("missing_key" if value in (None, "") else "schema", f"{field} is required (a non-empty code)")
    s = value.strip()
    if len(s) > 200:
        raise Rejected("schema", f"{field} is {len(s)} characters long; codes are short")
    s = s if s.isascii() else unicodedata.normalize("NFC", s)
    b.check_code(s, field, kind)
    return s


def _flag(value: Any, field: str) -> bool:
    if value is None:
        return False
    if type(value) is bool:
        return value
    if type(value) is int:
        return value != 0
    if type(value) is str:
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    raise Rejected("schema", f"{field} must be a boolean or 0/1, got {type(value).__name__}")


def _redacted(text: str) -> str:
    return redact_text(text) if _LONG_DIGITS.search(text) else text


def _has_file_link(items: Any) -> bool:
    if items is None or items == "":
        return False
    if type(items) is not list:
        raise Rejected("schema", "DanhSachGiayToKetQua must be a list")
    for item in items:
        if type(item) is str and item.strip():
            return True
        if type(item) is dict:
            for k, v in item.items():
                if type(v) is str and v.strip() and any(h in k.lower() for h in _LINK_HINTS):
                    return True
    return False


_M = TypeVar("_M", bound=BaseModel)


def _build(model: type[_M], bounds: InputBounds, **fields: Any) -> _M:
    """Validate the mapped fields into the model (pydantic-core does it in Rust: as fast as model_construct).

    Then every date, number and code of the event against ``bounds`` (:meth:`InputBounds.check_event`).
    """
    try:
        ev = model.model_validate(fields)
    except ValidationError as exc:
        # Field names and error types only: the input values may be personal data.
        where = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['type']}" for e in exc.errors()[:5])
        raise Rejected("schema", f"{model.__name__} invalid ({where})") from None
    bounds.check_event(ev)
    return ev


# --------------------------------------------------------------------------- one-stop dossiers


def normalize_motcua(rec: RawRecord, registry: UnitRegistry, bounds: InputBounds | None = None) -> DossierEvent:
    """One-stop snapshot (DongBoHoSoMC fields) -> :class:`DossierEvent` (see the module docstring)."""
    b = bounds or default_bounds()
    p = rec.payload
    g = p.get
    ma = _code(g("MaHoSo"), "MaHoSo", "dossier", b)
    version = _int(g("PhienBan"), "PhienBan")
    b.check_version(version)
    updated = _date(g("NgayCapNhat"), "NgayCapNhat", b)
    if updated is None:
        raise Rejected("schema", "NgayCapNhat (the snapshot's change time) is required")
    unit_raw = _code(g("MaDonVi"), "MaDonVi", "unit", b)
    unit = registry.resolve(unit_raw)
    if unit is None:
        raise Rejected("unknown_unit", f"MaDonVi {unit_raw!r} of dossier {ma} is not in the unit registry; add it "
                       "or fix the source", {"MaDonVi": unit_raw, "MaHoSo": ma})
    proc = _code(g("MaTTHC"), "MaTTHC", "procedure", b)
    level_raw = _level(g("MucDo"))
    kenh = g("KenhThucHien")
    channel: Channel | None
    if kenh is None:
        channel = Channel.TRUC_TIEP
    elif type(kenh) is str:
        channel = _CHANNEL.get(kenh.strip())
    elif type(kenh) is int:
        channel = _CHANNEL.get(str(kenh))
    else:
        channel = None
    if channel is None:
        raise Rejected("schema", f"KenhThucHien {str(kenh)[:10]!r} is not 1, 2, 3 or empty",
                       {"KenhThucHien": str(kenh)[:10]})
    status = _status(g("TrangThaiHoSo"))

    raw_steps = g("QuaTrinhXuLy")
    steps: list[dict[str, Any]] = []
    supplements = 0
    if raw_steps is not None and raw_steps != "":
        if type(raw_steps) is not list:
            raise Rejected("schema", "QuaTrinhXuLy must be a list of progress rows")
        if len(raw_steps) > MAX_PROGRESS_STEPS:
            raise Rejected("too_large", f"QuaTrinhXuLy has {len(raw_steps)} rows; at most {MAX_PROGRESS_STEPS}")
        for i, step in enumerate(raw_steps):
            if type(step) is not dict:
                raise Rejected("schema", f"QuaTrinhXuLy[{i}] must be an object")
            st = _status(step.get("TrangThai"), f"QuaTrinhXuLy[{i}].TrangThai")
            at = _date(step.get("ThoiDiemXuLy"), f"QuaTrinhXuLy[{i}].ThoiDiemXuLy", b)
            if at is None:
                raise Rejected("schema", f"QuaTrinhXuLy[{i}].ThoiDiemXuLy is required")
            if st == 5:
                supplements += 1
            steps.append(
                {
                    "status": st,
                    "at": at,
                    "department": _redacted(_text(step.get("PhongBanXuLy"), "PhongBanXuLy", 500)),
                    "note": _redacted(_text(step.get("NoiDungXuLy"), "NoiDungXuLy", 2_000)),
                }
            )
    id_hash = g("IdHash")
    # Only a hash made at the edge is kept; anything else in IdHash may be a raw number: drop it.
    if not (type(id_hash) is str and id_hash.startswith("h1:") and len(id_hash) <= 100):
        id_hash = None
    kind = g("LoaiDoiTuong")
    applicant_kind = _int(kind, "LoaiDoiTuong") if kind not in (None, "") else None
    paid = g("DuocThanhToanTrucTuyen")
    paid_code = _int(paid, "DuocThanhToanTrucTuyen") if paid not in (None, "") else 0

    return _build(
        DossierEvent, b,
        event_id=f"{rec.source}:{ma}:{version}"[:200],
        source=rec.source,
        ma_ho_so=ma,
        version=version,
        unit_code=unit.code,
        unit_tier=_TIERS[unit.tier],
        procedure_code=proc,
        procedure_name=_text(g("TenTTHC"), "TenTTHC"),
        field_code=_text(g("MaLinhVuc"), "MaLinhVuc", 60),
        level_raw=level_raw,
        level=_LEVELS[level_raw],
        channel=channel,
        status=status,
        submitted_at=_date(g("NgayNopHoSo"), "NgayNopHoSo", b),
        received_at=_date(g("NgayTiepNhan"), "NgayTiepNhan", b),
        due_at=_date(g("NgayHenTra"), "NgayHenTra", b),
        finished_at=_date(g("NgayKetThucXuLy"), "NgayKetThucXuLy", b),
        returned_at=_date(g("NgayTra"), "NgayTra", b),
        refused_at=_date(g("NgayTuChoi"), "NgayTuChoi", b),
        updated_at=updated,
        paid_online=paid_code in (1, 2),
        digitised=_flag(g("HoSoCoThanhPhanSoHoa"), "HoSoCoThanhPhanSoHoa"),
        electronic_result=_has_file_link(g("DanhSachGiayToKetQua")),
        supplement_requests=supplements,
        applicant_kind=applicant_kind,
        id_hash=id_hash,
        progress=steps,
    )


# --------------------------------------------------------------------------- QLVB documents


def normalize_qlvb(rec: RawRecord, bounds: InputBounds | None = None) -> DocumentEvent:
    """A QLVB ``SuKien`` -> :class:`DocumentEvent`.

    The payload is the event's attributes (``id``, ``loai``, ``thoi_diem``) with the ``VanBan``
    attributes either nested under ``"VanBan"`` or flattened beside them, and the linked dossier as
    ``"HoSoLienQuan": {"ma_ho_so": ...}`` or a flat ``"ma_ho_so"``. The summary (``trich_yeu``) and
    the signer are not kept: they can name people.
    """
    b = bounds or default_bounds()
    p = rec.payload
    vb = p.get("VanBan")
    if vb is None:
        vb = p
    elif type(vb) is not dict:
        raise Rejected("schema", "VanBan must be an object")
    hs = p.get("HoSoLienQuan")
    if hs is not None and type(hs) is not dict:
        raise Rejected("schema", "HoSoLienQuan must be an object")
    ma_raw = hs.get("ma_ho_so") if hs is not None else p.get("ma_ho_so")
    ma = _code(ma_raw, "HoSoLienQuan.ma_ho_so", "dossier", b) if ma_raw not in (None, "") else None
    raw_id = p.get("id", p.get("Id"))
    if raw_id in (None, ""):
        raise Rejected("missing_key", "SuKien id is required")
    doc_id = _int(raw_id, "SuKien.id")
    kind = p.get("loai")
    if type(kind) is not str:
        raise Rejected("schema", "SuKien loai is required")
    doc_kind = _DOC_KINDS.get(kind.strip().upper())
    if doc_kind is None:
        raise Rejected("unknown_status", f"SuKien loai {kind[:20]!r} is not one of {sorted(_DOC_KINDS)}",
                       {"SuKien.loai": kind[:20]})
    at = _iso(p.get("thoi_diem"), "SuKien.thoi_diem", b)
    if at is None:
        raise Rejected("schema", "SuKien thoi_diem is required")
    unit = vb.get("ma_don_vi")
    return _build(
        DocumentEvent, b,
        event_id=f"{rec.source}:{doc_id}",
        source=rec.source,
        ma_ho_so=ma,
        doc_event_id=doc_id,
        kind=doc_kind,
        at=at,
        unit_code=_code(unit, "VanBan.ma_don_vi", "unit", b) if unit not in (None, "") else None,
        document_number=_text(vb.get("so_ky_hieu"), "VanBan.so_ky_hieu", 200),
        signed=_flag(vb.get("ky_so"), "VanBan.ky_so"),
    )


# --------------------------------------------------------------------------- portal items


def normalize_portal(rec: RawRecord, registry: UnitRegistry, bounds: InputBounds | None = None) -> PortalEvent:
    """An item of the portal's ``hoso-truc-tuyen`` feed -> :class:`PortalEvent`."""
    b = bounds or default_bounds()
    p = rec.payload
    ma = _code(p.get("ma_ho_so"), "ma_ho_so", "dossier", b)
    unit_raw = _code(p.get("ma_don_vi"), "ma_don_vi", "unit", b)
    unit = registry.resolve(unit_raw)
    if unit is None:
        raise Rejected("unknown_unit", f"ma_don_vi {unit_raw!r} of dossier {ma} is not in the unit registry; add it "
                       "or fix the source", {"ma_don_vi": unit_raw, "ma_ho_so": ma})
    status = p.get("trang_thai")
    if type(status) is not str:
        raise Rejected("schema", "trang_thai is required")
    portal_status = _PORTAL_STATUS.get(status.strip())
    if portal_status is None:
        raise Rejected("unknown_status", f"trang_thai {status[:30]!r} is not one of {sorted(_PORTAL_STATUS)}",
                       {"trang_thai": status[:30]})
    updated = _iso(p.get("cap_nhat_luc"), "cap_nhat_luc", b)
    if updated is None:
        raise Rejected("schema", "cap_nhat_luc is required")
    muc_do = p.get("muc_do")
    pay = p.get("thanh_toan")
    rating = p.get("danh_gia")
    if pay is not None and type(pay) is not dict:
        raise Rejected("schema", "thanh_toan must be an object or null")
    if rating is not None and type(rating) is not dict:
        raise Rejected("schema", "danh_gia must be an object or null")
    amount = None
    paid_online = False
    paid_at = None
    if pay:
        a = pay.get("so_tien")
        amount = _int(a, "thanh_toan.so_tien") if a not in (None, "") else None
        form = pay.get("hinh_thuc")
        if form is not None and type(form) is not str:
            raise Rejected("schema", "thanh_toan.hinh_thuc must be text")
        paid_online = (form or "").strip().upper() == "TRUC_TUYEN"
        paid_at = _iso(pay.get("thoi_diem"), "thanh_toan.thoi_diem", b)
    satisfied = None
    rated_at = None
    if rating:
        hl = rating.get("hai_long")
        satisfied = _flag(hl, "danh_gia.hai_long") if hl is not None else None
        rated_at = _iso(rating.get("thoi_diem"), "danh_gia.thoi_diem", b)
    return _build(
        PortalEvent, b,
        event_id=f"{rec.source}:{ma}:{fmt_compact(updated)}",
        source=rec.source,
        ma_ho_so=ma,
        procedure_code=_code(p.get("ma_tthc"), "ma_tthc", "procedure", b) if p.get("ma_tthc") not in (None, "") else "",
        unit_code=unit.code,
        level_raw=_level(muc_do, "muc_do") if muc_do not in (None, "") else None,
        submitted_at=_iso(p.get("thoi_diem_nop"), "thoi_diem_nop", b),
        portal_status=portal_status,
        paid_amount=amount,
        paid_online=paid_online,
        paid_at=paid_at,
        satisfied=satisfied,
        rated_at=rated_at,
        updated_at=updated,
    )


# --------------------------------------------------------------------------- catalogue rows


def _catalogue_unit(rec: RawRecord, b: InputBounds) -> str | None:
    p = rec.payload
    for k in ("MaDonVi", "ma_don_vi"):
        v = p.get(k)
        if v not in (None, ""):
            return _code(v, k, "unit", b)
    if "|" in rec.key:
        return rec.key.split("|", 1)[0].strip() or None
    tail = rec.instance.rsplit("-", 1)[-1]
    return tail if tail.isdigit() else None


def normalize_catalogue(rec: RawRecord, registry: UnitRegistry, bounds: InputBounds | None = None) -> CatalogueEntry:
    """A catalogue row (one-stop or portal ``thutuc``) -> :class:`CatalogueEntry`.

    The unit is the payload's ``MaDonVi``/``ma_don_vi``, else the key's ``"<unit>|<MaTTHC>"`` prefix,
    else the instance name's numeric suffix (``motcua-14767``). A missing ``HieuLucTu`` means
    "valid since ever" (2000-01-01).
    """
    p = rec.payload
    b = bounds or default_bounds()
    unit_raw = _catalogue_unit(rec, b)
    if unit_raw is None:
        raise Rejected("missing_key", "catalogue row has no unit: set MaDonVi or key it '<unit>|<MaTTHC>'")
    unit = registry.resolve(unit_raw)
    if unit is None:
        raise Rejected("unknown_unit", f"unit {unit_raw!r} is not in the unit registry; add it or fix the source",
                       {"MaDonVi": unit_raw})
    proc = _code(p.get("MaTTHC", p.get("ma_tthc")), "MaTTHC", "procedure", b)
    level_raw = _level(p.get("MucDo", p.get("muc_do")))
    valid_from = _iso(p.get("HieuLucTu"), "HieuLucTu", b) or CATALOGUE_SINCE_EVER
    valid_to = _iso(p.get("HieuLucDen"), "HieuLucDen", b)
    return _build(
        CatalogueEntry, b,
        event_id=f"{rec.source}:{unit.code}:{proc}:{fmt_compact(valid_from)}"[:200],
        source=rec.source,
        unit_code=unit.code,
        procedure_code=proc,
        procedure_name=_text(p.get("TenTTHC", p.get("ten_tthc")), "TenTTHC"),
        level_raw=level_raw,
        level=_LEVELS[level_raw],
        has_fee=_flag(p.get("CoPhi"), "CoPhi"),
        paper_result=_flag(p.get("KetQuaBanGiay"), "KetQuaBanGiay"),
        valid_from=valid_from,
        valid_to=valid_to,
    )


def normalize(rec: RawRecord, registry: UnitRegistry, bounds: InputBounds | None = None) -> CanonicalOut:
    """Dispatch on ``rec.kind``; anything unexpected becomes ``Rejected("unexpected")`` with the error type."""
    try:
        if rec.kind == "dossier":
            return normalize_motcua(rec, registry, bounds)
        if rec.kind == "document":
            return normalize_qlvb(rec, bounds)
        if rec.kind == "portal":
            return normalize_portal(rec, registry, bounds)
        if rec.kind == "catalogue":
            return normalize_catalogue(rec, registry, bounds)
    except Rejected:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, ArithmeticError) as exc:
        # A mapper bug must not stop the agent; the type (not the message, which may quote data) is enough.
        raise Rejected("unexpected", f"mapper error {type(exc).__name__}; report it with the event id") from None
    raise Rejected("schema", f"unknown record kind {rec.kind!r}", {"kind": rec.kind})


# --------------------------------------------------------------------------- outbound (portal push)


def to_national(ev: DossierEvent, *, id_number_hash: bool = False) -> dict[str, Any]:
    """The DongBoHoSoMC dict for ``POST /api/v1/dongbo/hoso``: no names, no phones, ``IdHash`` only if asked.

    ``DanhSachGiayToKetQua`` is not rebuilt (the hub keeps only the fact of an electronic result,
    not the documents); ``DuocThanhToanTrucTuyen`` is 1 when paid online, else 0.
    """
    out: dict[str, Any] = {
        "MaHoSo": ev.ma_ho_so,
        "MaTTHC": ev.procedure_code,
        "TenTTHC": ev.procedure_name,
        "MaLinhVuc": ev.field_code,
        "MaDonVi": ev.unit_code,
        "MucDo": ev.level_raw,
        "KenhThucHien": _CHANNEL_CODE[ev.channel],
        "TrangThaiHoSo": str(ev.status),
        "NgayNopHoSo": fmt_compact(ev.submitted_at),
        "NgayTiepNhan": fmt_compact(ev.received_at),
        "NgayHenTra": fmt_compact(ev.due_at),
        "NgayKetThucXuLy": fmt_compact(ev.finished_at),
        "NgayTra": fmt_compact(ev.returned_at),
        "NgayTuChoi": fmt_compact(ev.refused_at),
        "NgayCapNhat": fmt_compact(ev.updated_at),
        "DuocThanhToanTrucTuyen": 1 if ev.paid_online else 0,
        "HoSoCoThanhPhanSoHoa": 1 if ev.digitised else 0,
    }
    if ev.applicant_kind is not None:
        out["LoaiDoiTuong"] = ev.applicant_kind
    if id_number_hash and ev.id_hash:
        out["IdHash"] = ev.id_hash
    return out


def progress_rows(ev: DossierEvent) -> list[dict[str, Any]]:
    """The dossier's progress rows for ``POST /api/v1/dongbo/tiendo`` (national field names)."""
    return [
        {
            "MaHoSo": ev.ma_ho_so,
            "TrangThai": str(s.status),
            "ThoiDiemXuLy": fmt_compact(s.at),
            "PhongBanXuLy": s.department,
            "NoiDungXuLy": s.note,
        }
        for s in ev.progress
    ]
