"""Hand-made raw input for the stream tests, and its recount with the domain core's pure functions.

:func:`scenario` builds a deterministic list of raw records (one-stop snapshots of several versions
per dossier with replays and stale versions mixed in, QLVB documents — some before the dossier
exists, some repeated —, portal payments, catalogue rows, and poison). :func:`recount` computes
what the hub must show from that input alone: normalise, fold per dossier with ``apply``, build
:class:`Aggregates` in one partition. Nothing here touches Kafka or faust.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from schemas.calendar import TZ
from schemas.events import CatalogueEntry
from schemas.raw import RawRecord
from schemas.units import default_registry
from streams.domain.aggregates import Aggregates, Catalogue
from streams.domain.state import apply, view
from streams.normalize import Rejected, normalize

UNITS = ("380", "14767", "14755", "14758")
PROCS = {  # unit -> [(procedure, level)]
    u: [(f"1.00{u}{i}.000.00.00.H56", 3 if i % 2 else 4) for i in range(3)] for u in UNITS
}
T0 = datetime(2021, 1, 4, 8, 0, tzinfo=TZ)


def _c(dt: datetime | None) -> str:
    return "" if dt is None else dt.astimezone(TZ).strftime("%Y%m%d%H%M%S")


def raw(rec: RawRecord) -> bytes:
    return rec.model_dump_json().encode()


def motcua(ma: str, unit: str, version: int, status: int, *, proc: str, level: int, channel: str,
           received: datetime, due: datetime, end: datetime | None, updated: datetime, paid: int = 0) -> RawRecord:
    payload = {
        "MaHoSo": ma, "PhienBan": version, "NgayCapNhat": _c(updated), "MaTTHC": proc, "TenTTHC": "Thủ tục",
        "MaLinhVuc": "HT", "MaDonVi": unit, "MucDo": level, "KenhThucHien": channel, "TrangThaiHoSo": str(status),
        "NgayNopHoSo": _c(received - timedelta(minutes=5)), "NgayTiepNhan": _c(received), "NgayHenTra": _c(due),
        "NgayKetThucXuLy": _c(end) if status in (9, 10) else "", "NgayTra": _c(end) if status == 10 else "",
        "NgayTuChoi": "", "DuocThanhToanTrucTuyen": paid, "HoSoCoThanhPhanSoHoa": version % 2,
        "DanhSachGiayToKetQua": [],
        "QuaTrinhXuLy": [{"TrangThai": "2", "ThoiDiemXuLy": _c(received), "PhongBanXuLy": "Một cửa",
                          "NoiDungXuLy": "Tiếp nhận"}],
    }
    return RawRecord.build(source="motcua", instance=f"motcua-{unit}", kind="dossier", key=ma,
                           version=str(version), payload=payload, fetched_at=updated)


def document(doc_id: int, ma: str | None, unit: str, kind: str, at: datetime) -> RawRecord:
    payload: dict[str, object] = {
        "id": doc_id, "loai": kind, "thoi_diem": at.isoformat(),
        "VanBan": {"so_ky_hieu": f"{doc_id}/QĐ-UBND", "ma_don_vi": unit, "ky_so": "true"},
    }
    if ma:
        payload["HoSoLienQuan"] = {"ma_ho_so": ma}
    return RawRecord.build(source="qlvb", instance="qlvb", kind="document", key=ma or f"doc-{doc_id}",
                           version=str(doc_id), payload=payload, fetched_at=at)


def portal(ma: str, unit: str, proc: str, level: int, at: datetime, *, paid: bool) -> RawRecord:
    payload = {
        "ma_ho_so": ma, "ma_tthc": proc, "ma_don_vi": unit, "muc_do": level,
        "thoi_diem_nop": at.isoformat(), "trang_thai": "DA_CHUYEN_MOT_CUA",
        "thanh_toan": {"so_tien": 8000, "hinh_thuc": "TRUC_TUYEN", "thoi_diem": at.isoformat()} if paid else None,
        "danh_gia": None, "cap_nhat_luc": at.isoformat(),
    }
    return RawRecord.build(source="portal", instance="portal", kind="portal", key=ma,
                           version=_c(at), payload=payload, fetched_at=at)


def catalogue(unit: str, proc: str, level: int) -> RawRecord:
    payload = {"MaDonVi": unit, "MaTTHC": proc, "TenTTHC": "Thủ tục", "MucDo": level, "CoPhi": True,
               "KetQuaBanGiay": True, "HieuLucTu": "2020-01-01T00:00:00+07:00", "HieuLucDen": ""}
    return RawRecord.build(source="motcua", instance=f"motcua-{unit}", kind="catalogue", key=f"{unit}|{proc}",
                           version="1", payload=payload, fetched_at=T0)


@dataclass
class Scenario:
    """Records in production order: (source topic key in RAW_SOURCES, Kafka key, value)."""

    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    poison: dict[bytes, str] = field(default_factory=dict)  # value -> expected dead-letter reason

    def add(self, source: str, key: str, value: bytes) -> None:
        self.records.append((source, key.encode(), value))


def scenario(n_dossiers: int = 120, seed: int = 7, prefix: str = "H56") -> Scenario:
    """Deterministic input: ~4 records per dossier plus catalogue, documents, portal and poison."""
    rng = random.Random(seed)
    sc = Scenario()
    for unit in UNITS:
        for proc, level in PROCS[unit]:
            sc.add("catalogue", unit, raw(catalogue(unit, proc, level)))
    doc_id = 1000
    for i in range(n_dossiers):
        unit = UNITS[i % len(UNITS)]
        proc, level = PROCS[unit][i % 3]
        ma = f"{prefix}.{unit}-{i:05d}"
        received = T0 + timedelta(days=rng.randrange(0, 85), hours=rng.randrange(0, 8))
        due = received + timedelta(days=3)
        end = received + timedelta(days=rng.choice((1, 3, 5)), hours=1)
        channel = rng.choice(("1", "2", "2", ""))
        final = rng.choice((4, 9, 10, 10))
        statuses = [2, 4] + ([final] if final != 4 else [])
        versions = [
            motcua(ma, unit, v, st, proc=proc, level=level, channel=channel, received=received, due=due,
                   end=end, updated=received + timedelta(hours=v), paid=1 if i % 5 == 0 and v > 1 else 0)
            for v, st in enumerate(statuses, start=1)
        ]
        order = list(versions)
        if rng.random() < 0.3:  # a replay of the newest version
            order.append(versions[-1])
        if rng.random() < 0.3 and len(versions) > 1:  # a stale version after a newer one
            order.append(versions[0])
        for rec in order:
            sc.add("motcua", ma, raw(rec))
        if rng.random() < 0.3:  # a signed result document, sometimes twice
            doc_id += 1
            doc = raw(document(doc_id, ma, unit, "KY_SO", end))
            sc.add("qlvb", ma, doc)
            if rng.random() < 0.5:
                sc.add("qlvb", ma, doc)
        if rng.random() < 0.2:
            sc.add("portal", ma, raw(portal(ma, unit, proc, level, received, paid=True)))
    # a document for a dossier that never appears, and one for no dossier at all
    sc.add("qlvb", f"{prefix}.14767-99999", raw(document(doc_id + 1, f"{prefix}.14767-99999", "14767", "KY_SO", T0)))
    sc.add("qlvb", "doc-x", raw(document(doc_id + 2, None, "14767", "DANG_KY", T0)))
    # poison
    poison = {
        b"{not json at all": "invalid_json",
        raw(motcua(f"{prefix}.99999-00001", "99999", 1, 2, proc="P", level=3, channel="2", received=T0,
                   due=T0, end=None, updated=T0)): "unknown_unit",
        orjson.dumps({"event_id": "x:y:1", "source": "motcua"}): "schema",
        raw(RawRecord.build(source="motcua", instance="motcua-380", kind="dossier", key=f"{prefix}.380-bad",
                            version="1", payload={"MaHoSo": f"{prefix}.380-bad", "PhienBan": "một",
                                                  "NgayCapNhat": "20210104080000", "MaDonVi": "380"})): "schema",
    }
    for i, (value, reason) in enumerate(poison.items()):
        sc.add("motcua", f"poison-{i}", value)
        sc.poison[value] = reason
    return sc


@dataclass
class Recount:
    aggregates: Aggregates
    catalogue: Catalogue
    dossiers: int
    rejected: Counter[str]


def recount(sc: Scenario) -> Recount:
    """What the hub must show, from the input alone (order across sources does not matter: apply commutes)."""
    reg = default_registry()
    states: dict[str, dict[str, object]] = {}
    cat = Catalogue()
    rejected: Counter[str] = Counter()
    for _source, _key, value in sc.records:
        try:
            ev = normalize(RawRecord.model_validate_json(value), reg)
        except Rejected as exc:
            rejected[exc.reason] += 1
            continue
        except ValueError:  # pydantic ValidationError (bad JSON / envelope)
            rejected["invalid_json" if value.startswith(b"{not") else "schema"] += 1
            continue
        if isinstance(ev, CatalogueEntry):
            cat.add(ev)
            continue
        if ev.ma_ho_so is None:
            continue
        new = apply(states.get(ev.ma_ho_so), ev)
        if new is not None:
            states[ev.ma_ho_so] = new
    views = [v for v in (view(s) for s in states.values()) if v is not None]
    agg = Aggregates(reg, cat)
    agg.rebuild(0, views)
    return Recount(agg, cat, len(views), rejected)
