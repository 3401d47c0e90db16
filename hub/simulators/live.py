"""A small live activity generator for the demo: dossiers filed, processed and returned in real time.

With a live :class:`~hub.simulators.clock.SimClock`, :class:`LiveGenerator` files new dossiers at
``rate_per_s`` across the city's units and moves each one through a plausible lifecycle::

    in person:  2 -> 4 [-> 5 -> 4] -> 9 -> 10          (or 2 -> 4 -> 7 withdrawn)
    online:     1 -> 2 -> 4 [-> 5 -> 4] -> 9 -> 10     (or 1 -> 3 refused, or ... -> 7 withdrawn)

with everything the other systems see of it: QLVB events when the result is signed, issued and
handed to the one-stop desk; portal items for online submissions, online payments and ratings.
Applicants are fake but shaped like real data (Vietnamese names, 12-digit ID numbers starting with
038, mobile numbers), so the hub's personal-data handling has something to remove.

    >>> from hub.simulators.clock import SimClock
    >>> from hub.simulators.world import World
    >>> world = World(SimClock.live())
    >>> gen = LiveGenerator(world, rate_per_s=5.0, seed=1, units=["380", "14767"])
    >>> gen.step(2.0) >= 1
    True

Steps take ``step_s`` seconds of the source clock each (5 to 60 by default), so a demo shows
movement within minutes. Seeded: one seed, one history (given the same clock readings).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hub.simulators.clock import fmt_compact, fmt_iso
from hub.simulators.faults import Faults
from hub.simulators.units import load_units
from hub.simulators.world import World

__all__ = ["PROCEDURES", "LiveGenerator", "Procedure"]


@dataclass(frozen=True)
class Procedure:
    """A procedure of the demo catalogue (codes in the national format; plausible, not official)."""

    code: str
    name: str
    field_code: str
    field_name: str
    tier: str  # "XA": ward/commune procedure, "HUYEN": city-level procedure
    fee: int  # VND; 0 = free
    days: int  # processing time in days
    paper_result: bool = True


PROCEDURES: tuple[Procedure, ...] = (
    Procedure("1.003560.000.00.00.H56", "Đăng ký khai sinh", "HT", "Hộ tịch", "XA", 0, 1),
    Procedure("1.001193.000.00.00.H56", "Đăng ký kết hôn", "HT", "Hộ tịch", "XA", 0, 1),
    Procedure("1.000656.000.00.00.H56", "Đăng ký khai tử", "HT", "Hộ tịch", "XA", 0, 1),
    Procedure("1.004873.000.00.00.H56", "Cấp bản sao trích lục hộ tịch", "HT", "Hộ tịch", "XA", 8000, 1),
    Procedure("1.001022.000.00.00.H56", "Xác nhận tình trạng hôn nhân", "HT", "Hộ tịch", "XA", 0, 3),
    Procedure("2.000815.000.00.00.H56", "Chứng thực bản sao từ bản chính", "CT", "Chứng thực", "XA", 2000, 1),
    Procedure("2.000884.000.00.00.H56", "Chứng thực chữ ký trong giấy tờ, văn bản", "CT", "Chứng thực", "XA",
              10000, 1),
    Procedure("1.001776.000.00.00.H56", "Đăng ký thành lập hộ kinh doanh", "DKKD", "Thành lập và hoạt động "
              "của hộ kinh doanh", "HUYEN", 100000, 3),
    Procedure("1.009994.000.00.00.H56", "Cấp giấy phép xây dựng nhà ở riêng lẻ", "XD", "Hoạt động xây dựng",
              "HUYEN", 75000, 15),
    Procedure("1.004227.000.00.00.H56", "Đăng ký biến động quyền sử dụng đất", "DD", "Đất đai", "HUYEN", 0, 10),
    Procedure("1.001758.000.00.00.H56", "Trợ cấp xã hội hằng tháng cho người cao tuổi", "BTXH",
              "Bảo trợ xã hội", "HUYEN", 0, 12, paper_result=True),
    Procedure("2.001157.000.00.00.H56", "Cấp giấy phép kinh doanh bán lẻ rượu", "TM", "Thương mại", "HUYEN",
              1200000, 10),
)

_SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đỗ", "Bùi", "Đặng", "Ngô", "Trịnh", "Lương")
_MIDDLE = ("Văn", "Thị", "Đức", "Minh", "Ngọc", "Thu", "Quang", "Thanh", "Hữu", "Xuân")
_GIVEN = ("An", "Bình", "Cường", "Dũng", "Hà", "Hương", "Lan", "Linh", "Nam", "Phương", "Quân", "Sơn",
          "Trang", "Tuấn", "Yến", "Hải", "Thảo", "Long")
_PHONE_PREFIXES = ("091", "094", "097", "098", "086", "036", "037", "038", "081", "083")
_DESK = "Bộ phận một cửa"


@dataclass
class _Case:
    unit: str
    procedure: Procedure
    online: bool
    snapshot: dict[str, Any]
    plan: list[str]
    next_at: datetime
    signed: bool
    portal: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LiveGenerator:
    """Writes a living city into ``world``: ``step()`` once, or ``run_forever()`` in a thread.

    ``units`` (codes) default to the unit registry (``units_csv`` or ``schemas/reference``). With
    ``faults``, each change gets ``faults.visible_delay()`` (late commits of the one-stop systems).
    """

    def __init__(
        self,
        world: World,
        rate_per_s: float = 0.5,
        seed: int = 0,
        *,
        units: Sequence[str] | None = None,
        units_csv: Path | str | None = None,
        faults: Faults | None = None,
        step_s: tuple[float, float] = (5.0, 60.0),
        publish_catalogues: bool = True,
    ) -> None:
        if rate_per_s < 0:
            raise ValueError("rate_per_s must be >= 0")
        self.world = world
        self.rate_per_s = rate_per_s
        self.faults = faults
        self.step_s = step_s
        self._rng = random.Random(seed)  # noqa: S311 - a reproducible demo, not crypto
        try:
            registry = load_units(units_csv)
        except FileNotFoundError:
            if units is None:
                raise
            registry = []
        self.units = list(units) if units is not None else [u.code for u in registry]
        kinds = {"phuong": "phường", "xa": "xã", "thanh_pho": "thành phố"}
        self._issuers = {u.code: f"UBND {kinds.get(u.kind, '')} {u.name}".replace("  ", " ") for u in registry}
        if not self.units:
            raise ValueError("LiveGenerator needs at least one unit")
        self._catalogues = {unit: self._catalogue_for(unit) for unit in self.units}
        if publish_catalogues:
            for unit, rows in self._catalogues.items():
                world.set_catalogue(unit, rows)
        self._open: dict[str, _Case] = {}
        self._sequence: dict[tuple[str, str], int] = {}
        self._carry = 0.0
        self.created = 0
        self.changes = 0

    # ------------------------------------------------------------------ catalogue

    def _catalogue_for(self, unit: str) -> list[dict[str, Any]]:
        tier = "HUYEN" if unit == "380" else "XA"
        rows = []
        for proc in PROCEDURES:
            if proc.tier != tier:
                continue
            rows.append({
                "MaTTHC": proc.code, "TenTTHC": proc.name, "MucDo": self._rng.choice((3, 4, 4)),
                "CoPhi": proc.fee > 0, "KetQuaBanGiay": proc.paper_result,
                "HieuLucTu": "20200101000000", "HieuLucDen": "",
            })
        return rows

    # ------------------------------------------------------------------ running

    def run_forever(self, stop: threading.Event | None = None, tick_s: float = 1.0) -> None:
        """Call :meth:`step` every ``tick_s`` real seconds until ``stop`` is set."""
        stop = stop or threading.Event()
        last = time.monotonic()
        while not stop.wait(tick_s):
            now = time.monotonic()
            self.step(now - last)
            last = now

    def step(self, dt_s: float = 1.0) -> int:
        """File the dossiers due in ``dt_s`` seconds and advance every case whose time has come.

        Returns the number of dossier versions written.
        """
        now = self.world.clock.now().replace(microsecond=0)
        before = self.changes
        self._carry += self.rate_per_s * dt_s
        while self._carry >= 1.0:
            self._carry -= 1.0
            self._file(now)
        if self._carry > 0 and self._rng.random() < self._carry:  # the fraction, by chance
            self._carry = 0.0
            self._file(now)
        for ma in [ma for ma, case in self._open.items() if case.next_at <= now]:
            self._advance(self._open[ma], now)
        if self._rng.random() < 0.05 * dt_s:  # documents that belong to no dossier
            unit = self._rng.choice(self.units)
            self.world.add_document_event(unit, "BAN_HANH", now, self._document(unit, now, "Công văn"), None)
        return self.changes - before

    # ------------------------------------------------------------------ lifecycle

    def _file(self, now: datetime) -> None:
        unit = self._rng.choice(self.units)
        rows = self._catalogues[unit]
        if not rows:
            return
        row = self._rng.choice(rows)
        proc = next(p for p in PROCEDURES if p.code == row["MaTTHC"])
        level = int(row["MucDo"])
        channel = self._rng.choices(("1", "2", "3"), weights=(45, 50, 5))[0]
        online = channel == "2"
        day = now.strftime("%y%m%d")
        seq = self._sequence.get((unit, day), 0) + 1
        self._sequence[(unit, day)] = seq
        ma = f"H56.{unit}-{day}-{seq:05d}"
        paid_online = online and level == 4 and proc.fee > 0 and self._rng.random() < 0.7
        snapshot: dict[str, Any] = {
            "MaHoSo": ma, "MaTTHC": proc.code, "TenTTHC": proc.name, "MaLinhVuc": proc.field_code,
            "TenLinhVuc": proc.field_name, "MaDonVi": unit, "MucDo": level, "KenhThucHien": channel,
            "TrangThaiHoSo": "1" if online else "2", "NgayNopHoSo": fmt_compact(now),
            "NgayTiepNhan": "" if online else fmt_compact(now), "NgayHenTra": "", "NgayKetThucXuLy": "",
            "NgayTra": "", "NgayTuChoi": "", **self._applicant(),
            "DuocThanhToanTrucTuyen": 1 if paid_online else 0,
            "HoSoCoThanhPhanSoHoa": 1 if self._rng.random() < 0.6 else 0,
            "DanhSachGiayToKetQua": [], "QuaTrinhXuLy": [],
        }
        if online:
            roll = self._rng.random()
            plan = ["3"] if roll < 0.07 else ["2", "4", "7"] if roll < 0.12 else ["2", *self._processing()]
        else:
            snapshot["NgayHenTra"] = fmt_compact(self._due(now, proc))
            snapshot["QuaTrinhXuLy"].append(self._step("2", now, _DESK, "Tiếp nhận hồ sơ"))
            plan = ["4", "7"] if self._rng.random() < 0.05 else self._processing()
        case = _Case(unit, proc, online, snapshot, plan, self._next(now), signed=self._rng.random() < 0.75)
        self._write(case)
        self.created += 1
        self._open[ma] = case
        if online:
            case.portal = {
                "ma_ho_so": ma, "ma_tthc": proc.code, "ma_don_vi": unit, "muc_do": level,
                "thoi_diem_nop": fmt_iso(now), "trang_thai": "DA_NOP",
                "thanh_toan": ({"so_tien": proc.fee, "hinh_thuc": "TRUC_TUYEN",
                                "thoi_diem": fmt_iso(now + timedelta(seconds=self._rng.randint(20, 120)))}
                               if paid_online else None),
                "danh_gia": None,
            }
            self._portal(case, now)

    def _processing(self) -> list[str]:
        plan = ["4"]
        if self._rng.random() < 0.12:
            plan += ["5", "4"]
        return [*plan, "9", "10"]

    def _advance(self, case: _Case, now: datetime) -> None:
        status = case.plan.pop(0)
        snap = case.snapshot
        snap["TrangThaiHoSo"] = status
        stamp = fmt_compact(now)
        officer = f"Công chức {case.procedure.field_name.lower()}"
        if status == "2":
            snap["NgayTiepNhan"] = stamp
            snap["NgayHenTra"] = fmt_compact(self._due(now, case.procedure))
            snap["QuaTrinhXuLy"].append(self._step("2", now, _DESK, "Tiếp nhận hồ sơ trực tuyến"))
        elif status == "3":
            snap["NgayTuChoi"] = stamp
            snap["QuaTrinhXuLy"].append(self._step("3", now, _DESK, "Từ chối tiếp nhận: hồ sơ chưa đầy đủ"))
        elif status == "4":
            snap["QuaTrinhXuLy"].append(self._step("4", now, officer, "Chuyển xử lý"))
        elif status == "5":
            snap["QuaTrinhXuLy"].append(self._step("5", now, officer, "Yêu cầu bổ sung giấy tờ"))
        elif status == "7":
            snap["NgayKetThucXuLy"] = stamp
            snap["QuaTrinhXuLy"].append(self._step("7", now, _DESK, "Công dân rút hồ sơ"))
        elif status == "9":
            snap["NgayKetThucXuLy"] = stamp
            snap["QuaTrinhXuLy"].append(self._step("9", now, officer, "Hoàn thành xử lý"))
            if case.signed:
                self._sign(case, now)
        elif status == "10":
            snap["NgayTra"] = stamp
            snap["QuaTrinhXuLy"].append(self._step("10", now, _DESK, "Trả kết quả"))
            if case.signed:
                doc = case.extra["document"]
                self.world.add_document_event(case.unit, "CHUYEN_MOT_CUA", now, doc, snap["MaHoSo"])
        self._write(case)
        if case.portal is not None:
            self._portal_progress(case, status, now)
        if case.plan:
            case.next_at = self._next(now)
        else:
            del self._open[snap["MaHoSo"]]

    def _sign(self, case: _Case, now: datetime) -> None:
        """Register, sign and issue the result document in QLVB; attach it as an electronic result."""
        ma = case.snapshot["MaHoSo"]
        doc = self._document(case.unit, now, f"Kết quả {case.procedure.name.lower()}")
        case.extra["document"] = doc
        for offset, loai in enumerate(("DANG_KY", "TRINH_KY", "KY_SO", "BAN_HANH")):
            moment = now - timedelta(seconds=30 * (3 - offset))
            self.world.add_document_event(case.unit, loai, moment, doc, ma)
        case.snapshot["DanhSachGiayToKetQua"] = [{
            "TenGiayTo": case.procedure.name, "SoKyHieu": doc["so_ky_hieu"],
            "DuongDanTepTin": f"https://motcua.thanhhoa.gov.vn/files/{ma}/ketqua.pdf",
        }]

    def _portal_progress(self, case: _Case, status: str, now: datetime) -> None:
        assert case.portal is not None
        if status == "2":
            case.portal["trang_thai"] = "DA_CHUYEN_MOT_CUA"
        elif status == "7":
            case.portal["trang_thai"] = "DA_HUY"
        elif status == "10" and self._rng.random() < 0.6:
            case.portal["danh_gia"] = {"hai_long": self._rng.random() < 0.9, "thoi_diem": fmt_iso(now)}
        else:
            return
        self._portal(case, now)

    def _portal(self, case: _Case, now: datetime) -> None:
        assert case.portal is not None
        self.world.upsert_portal_item({**case.portal, "cap_nhat_luc": fmt_iso(now)})

    # ------------------------------------------------------------------ helpers

    def _write(self, case: _Case) -> None:
        delay = self.faults.visible_delay() if self.faults is not None else timedelta(0)
        self.world.upsert_dossier(case.snapshot, visible_delay=delay)
        self.changes += 1

    def _next(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._rng.uniform(*self.step_s))

    def _due(self, received: datetime, proc: Procedure) -> datetime:
        due = received + timedelta(days=proc.days)
        while due.weekday() >= 5:  # a weekend due date moves to Monday (holidays: not modelled here)
            due += timedelta(days=1)
        return due.replace(hour=17, minute=0, second=0)

    def _step(self, status: str, at: datetime, desk: str, text: str) -> dict[str, str]:
        return {"TrangThai": status, "ThoiDiemXuLy": fmt_compact(at), "PhongBanXuLy": desk, "NoiDungXuLy": text}

    def _applicant(self) -> dict[str, Any]:
        rng = self._rng
        female = rng.random() < 0.5
        middle = "Thị" if female and rng.random() < 0.6 else rng.choice(_MIDDLE)
        name = f"{rng.choice(_SURNAMES)} {middle} {rng.choice(_GIVEN)}"
        born = rng.randint(1950, 2005)
        # CCCD: province (038 = Thanh Hóa), century+sex digit, two-digit year, six random digits.
        century_sex = (0 if born < 2000 else 2) + (1 if female else 0)
        id_number = f"038{century_sex}{born % 100:02d}{rng.randint(0, 999_999):06d}"
        phone = f"{rng.choice(_PHONE_PREFIXES)}{rng.randint(0, 9_999_999):07d}"
        return {"ChuHoSo": name, "SoGiayToChuHoSo": id_number, "SoDienThoai": phone,
                "LoaiDoiTuong": 1 if rng.random() < 0.9 else 2}

    def _document(self, unit: str, now: datetime, subject: str) -> dict[str, str]:
        number = self._rng.randint(1, 999)
        issuer = self._issuers.get(unit, f"UBND đơn vị {unit}")
        return {
            "so_ky_hieu": f"{number}/QĐ-UBND", "trich_yeu": subject, "ngay_ban_hanh": now.date().isoformat(),
            "co_quan_ban_hanh": issuer, "ma_don_vi": unit,
            "nguoi_ky": f"{self._rng.choice(_SURNAMES)} {self._rng.choice(_MIDDLE)} {self._rng.choice(_GIVEN)}",
            "ky_so": "true",
        }
