"""The seeded scenario ``thanhhoa-2021``: Thanh Hóa City's one-stop systems, January 2020 – March 2021.

It reproduces the figures of domain.md §6 *exactly* (at ``scale=1``), around them a realistic mass of
in-person and postal dossiers, processing in working days (Tết excluded), early/on-time/late
results, supplements, refusals, withdrawals, dossiers still open at the end, online payments,
electronic results signed in QLVB, and portal submissions and ratings::

    >>> from hub.scenario.thanhhoa2021 import build_scenario
    >>> s = build_scenario(seed=2021, scale=0.02)
    >>> s.targets["online_2021Q1"]          # round(4445 * 0.02), round(3282 * 0.02)
    {3: 89, 4: 66}

How the exact figures are met: the online dossiers of every (unit, month, level) cell are counted
out first (:func:`hub.scenario.generator.apportion`, largest remainder, so the cells add up to the
targets exactly), then each dossier gets its dates and fate. Online dossiers received in 2020 all
finish (status 9) within 2020 and none is withdrawn, so "received" and "received and resolved" in
2020 are the same number. Refused online dossiers and online submissions not yet received at the end
come *in addition* (they are never "received"). docs/scenario.md has every definition.
"""

from __future__ import annotations

import csv
import gc
import math
import random
import time as _time
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import schemas
from hub.scenario.generator import (
    CatalogueRow,
    DocumentSpec,
    Lifecycle,
    PortalUpdate,
    Scenario,
    UnitInfo,
    Version,
    WorkingDays,
    apportion,
    at_local,
    compact,
    iso,
    nfd,
    office_time,
    office_time_after,
    random_person,
)
from hub.scenario.procedures import CHANGE_AT, ProcedureSpec, city_procedures, ward_procedures
from hub.simulators.clock import TZ

__all__ = [
    "CITY",
    "DIEN_BIEN",
    "END",
    "HEADLINE",
    "NAME",
    "START",
    "build_scenario",
    "expected_targets",
    "load_units",
]

NAME = "thanhhoa-2021"
CITY = "380"
DIEN_BIEN = "14767"
#: This commune's one-stop system sends Vietnamese text decomposed (NFD): procedure names and catalogue.
NFD_UNIT = "15850"
#: Nothing happens before START; END (exclusive) is the observation time: 2021-04-01 00:00 local.
START = datetime(2020, 1, 1, tzinfo=TZ)
END = datetime(2021, 4, 1, tzinfo=TZ)

#: domain.md §6, at scale 1.
HEADLINE: dict[str, Any] = {
    "online_2020": {3: 3414, 4: 126},
    "online_2021Q1": {3: 4445, 4: 3282},
    "online_2021Q1_xa": {3: 3016, 4: 2933},
    "dien_bien_2020_09_2021_03": 724,
    "procedures": {CITY: {3: 41, 4: 70}, "xa": {3: 9, 4: 32}},
}
# Điện Biên's 724 split (a choice, not from the news report): Q1-2021 by level, the rest in Sept–Dec 2020.
_DB_Q1 = {3: 180, 4: 230}
_DB_2020_LEVEL4 = 14
# In-person + postal dossiers received (not from the report; gives an online share of about 50%).
_IN_PERSON = {2020: 4600, 2021: 6200}
_CITY_SHARE_ONLINE_2020 = {3: 0.28, 4: 0.6}
_CITY_SHARE_IN_PERSON = 0.35
_MONTH_W_ONLINE_2020 = {
    3: [0.5, 0.4, 0.6, 0.5, 0.7, 0.8, 0.9, 0.9, 1.0, 1.1, 1.2, 1.3],
    4: [0.2, 0.2, 0.3, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 1.8],
}
_MONTH_W_ONLINE_Q1 = [0.95, 0.7, 1.3]
_MONTH_W_IN_PERSON = {2020: [1.0, 0.7, 1.0, 0.6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1], 2021: [1.0, 0.7, 1.1]}
# Rates of the dossiers' fates.
_P_REFUSED_ONLINE = 0.03
_P_REFUSED_IN_PERSON = 0.006
_P_POSTAL = 0.03
_P_WITHDRAWN = 0.012
_P_STUCK = 0.02
_P_LATE = 0.07
_P_ON_TIME = 0.22
_P_SUPPLEMENT = 0.05
_P_SECOND_SUPPLEMENT = 0.003
_P_DIRECT_RETURN = 0.03
_PENDING_AT_END = 12
_UNLINKED_DOCS_PER_DAY = 6.0

_UNITS_CSV = Path(schemas.__file__).parent / "reference" / "units-thanhhoa-city-2021.csv"


def _ri(rng: random.Random, low: int, high: int) -> int:
    """``rng.randint(low, high)`` at a third of the cost (the builder draws ~300 000 of them)."""
    return low + int(rng.random() * (high - low + 1))


def _r(x: float, scale: float) -> int:
    """``round(x * scale)``, halves up (documented; Python's round() would round halves to even)."""
    return math.floor(x * scale + 0.5)


def expected_targets(scale: float = 1.0) -> dict[str, Any]:
    """The headline figures a scenario of this ``scale`` reproduces (each = round(x * scale))."""
    online_2020 = {lv: _r(HEADLINE["online_2020"][lv], scale) for lv in (3, 4)}
    q1 = {lv: _r(HEADLINE["online_2021Q1"][lv], scale) for lv in (3, 4)}
    q1x = {lv: _r(HEADLINE["online_2021Q1_xa"][lv], scale) for lv in (3, 4)}
    return {
        "online_2020": online_2020,
        "online_2020_resolved": dict(online_2020),
        "online_2021Q1": q1,
        "online_2021Q1_xa": q1x,
        "online_2021Q1_city_desk": {lv: q1[lv] - q1x[lv] for lv in (3, 4)},
        "dien_bien_2020_09_2021_03": _r(HEADLINE["dien_bien_2020_09_2021_03"], scale),
        "procedures": {CITY: dict(HEADLINE["procedures"][CITY]), "xa": dict(HEADLINE["procedures"]["xa"])},
        "wards_with_one_stop": 34,
    }


def load_units() -> tuple[UnitInfo, ...]:
    """The 35 units of the reference CSV (the city desk first)."""
    with _UNITS_CSV.open(encoding="utf-8") as fh:
        return tuple(
            UnitInfo(
                code=row["ma_dvhc"],
                name=row["ten"],
                tier=row["cap"],
                kind_2020=row["loai_2020_11_01"],
                kind_2021=row["loai_2021_02_01"],
            )
            for row in csv.DictReader(fh)
        )


# --------------------------------------------------------------------------- drafts


@dataclass(slots=True)
class _Draft:
    """A dossier before its lifecycle is written out."""

    unit: str
    channel: str
    row: CatalogueRow
    sub: datetime
    rec: datetime | None
    kind: str  # "received" | "refused" | "pending"
    fate: str = "early"  # early | ontime | late | stuck | withdrawn
    supplements: int = 0
    code: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def online_2020(self) -> bool:
        return self.channel == "2" and self.rec is not None and self.rec.year == 2020


class _Catalogues:
    """Each unit's dated rows and weighted pickers by (era, level)."""

    def __init__(self, units: tuple[UnitInfo, ...]) -> None:
        self.rows: list[CatalogueRow] = []
        self._pick: dict[tuple[str, bool, int], tuple[list[CatalogueRow], list[float]]] = {}
        ward = ward_procedures()
        city = city_procedures()
        for u in units:
            specs: list[ProcedureSpec] = city if u.code == CITY else ward
            unit_rows = [r for spec in specs for r in spec.rows(u.code, name_nfd=u.code == NFD_UNIT)]
            self.rows.extend(unit_rows)
            for after in (False, True):
                at = CHANGE_AT if after else CHANGE_AT - timedelta(days=1)
                valid = [r for r in unit_rows if r.valid_at(at) and r.weight > 0]
                for level in (0, 3, 4):  # 0 = any level (in-person draws)
                    cands = [r for r in valid if level in (0, r.level)]
                    cum: list[float] = []
                    total = 0.0
                    for r in cands:
                        total += r.weight
                        cum.append(total)
                    self._pick[(u.code, after, level)] = (cands, cum)

    def pick(self, rng: random.Random, unit: str, at: datetime, level: int) -> CatalogueRow:
        cands, cum = self._pick[(unit, at >= CHANGE_AT, level)]
        return rng.choices(cands, cum_weights=cum)[0]


def _ward_weights(rng: random.Random, wards: list[str]) -> dict[str, float]:
    weights = {u: rng.lognormvariate(0.0, 0.35) for u in wards}
    weights[DIEN_BIEN] *= 1.8  # a central, busy ward and the city's online pilot
    return weights


def _online_cells(
    targets: dict[str, Any], scale: float, wards: list[str], ward_w: dict[str, float]
) -> list[tuple[str, int, int, int, int]]:
    """(unit, year, month, level, count) of online dossiers received, adding up to the targets exactly."""
    db_q1 = {lv: _r(_DB_Q1[lv], scale) for lv in (3, 4)}
    db_2020 = {4: _r(_DB_2020_LEVEL4, scale)}
    db_2020[3] = targets["dien_bien_2020_09_2021_03"] - db_q1[3] - db_q1[4] - db_2020[4]
    for lv in (3, 4):
        if not (0 <= db_2020[lv] <= targets["online_2020"][lv] and db_q1[lv] <= targets["online_2021Q1_xa"][lv]):
            raise ValueError(f"scale {scale} is too small to place Điện Biên's figures; use a scale of at least 0.001")
    cells: list[tuple[str, int, int, int, int]] = []

    def spread(total: int, keys: list[tuple[str, int, int]], weights: list[float], level: int) -> None:
        for (unit, year, month), n in zip(keys, apportion(total, weights), strict=True):
            if n:
                cells.append((unit, year, month, level, n))

    for lv in (3, 4):
        mw = _MONTH_W_ONLINE_2020[lv]
        rest = targets["online_2020"][lv] - db_2020[lv]
        city_n = math.floor(_CITY_SHARE_ONLINE_2020[lv] * rest + 0.5)
        spread(city_n, [(CITY, 2020, m) for m in range(1, 13)], mw, lv)
        keys = [(u, 2020, m) for u in wards for m in range(1, 13) if not (u == DIEN_BIEN and m >= 9)]
        spread(rest - city_n, keys, [ward_w[u] * mw[m - 1] for u, _, m in keys], lv)
        spread(db_2020[lv], [(DIEN_BIEN, 2020, m) for m in range(9, 13)], mw[8:], lv)
        # Q1 2021
        q1_city = targets["online_2021Q1"][lv] - targets["online_2021Q1_xa"][lv]
        spread(q1_city, [(CITY, 2021, m) for m in (1, 2, 3)], _MONTH_W_ONLINE_Q1, lv)
        keys = [(u, 2021, m) for u in wards if u != DIEN_BIEN for m in (1, 2, 3)]
        spread(
            targets["online_2021Q1_xa"][lv] - db_q1[lv],
            keys,
            [ward_w[u] * _MONTH_W_ONLINE_Q1[m - 1] for u, _, m in keys],
            lv,
        )
        spread(db_q1[lv], [(DIEN_BIEN, 2021, m) for m in (1, 2, 3)], _MONTH_W_ONLINE_Q1, lv)
    return cells


def _in_person_cells(scale: float, wards: list[str], ward_w: dict[str, float]) -> list[tuple[str, int, int, int]]:
    """(unit, year, month, count) of in-person/postal dossiers received."""
    cells: list[tuple[str, int, int, int]] = []
    for year, months in ((2020, range(1, 13)), (2021, range(1, 4))):
        total = _r(_IN_PERSON[year], scale)
        mw = _MONTH_W_IN_PERSON[year]
        city_n = math.floor(_CITY_SHARE_IN_PERSON * total + 0.5)
        for m, n in zip(months, apportion(city_n, [mw[m - 1] for m in months]), strict=True):
            cells.append((CITY, year, m, n))
        keys = [(u, m) for u in wards for m in months]
        for (u, m), n in zip(keys, apportion(total - city_n, [ward_w[u] * mw[m - 1] for u, m in keys]), strict=True):
            cells.append((u, year, m, n))
    return [c for c in cells if c[3]]


# --------------------------------------------------------------------------- the builder


_DEPT_WARD = {
    "HT": "Công chức Tư pháp - Hộ tịch",
    "CT": "Công chức Tư pháp - Hộ tịch",
    "PBGDPL": "Công chức Tư pháp - Hộ tịch",
    "LDTBXH": "Công chức Văn hóa - Xã hội",
    "VH": "Công chức Văn hóa - Xã hội",
    "GD": "Công chức Văn hóa - Xã hội",
    "DD": "Công chức Địa chính - Xây dựng",
    "NN": "Công chức Địa chính - Xây dựng",
}
_DEPT_CITY = {
    "HKD": "Phòng Tài chính - Kế hoạch",
    "TC": "Phòng Tài chính - Kế hoạch",
    "XD": "Phòng Quản lý đô thị",
    "GT": "Phòng Quản lý đô thị",
    "DD": "Phòng Tài nguyên và Môi trường",
    "MT": "Phòng Tài nguyên và Môi trường",
    "HT": "Phòng Tư pháp",
    "CT": "Phòng Tư pháp",
    "GD": "Phòng Giáo dục và Đào tạo",
    "VH": "Phòng Văn hóa và Thông tin",
    "NV": "Phòng Nội vụ",
    "CTH": "Phòng Kinh tế",
    "NN": "Phòng Kinh tế",
    "ATTP": "Phòng Y tế",
    "LDTBXH": "Phòng Lao động - Thương binh và Xã hội",
}
_DESK = "Bộ phận một cửa"
_UNLINKED_SUBJECTS = (
    "Về việc triển khai kế hoạch cải cách hành chính",
    "Về việc báo cáo kết quả giải quyết thủ tục hành chính",
    "Về việc tổ chức tiếp công dân định kỳ",
    "Thông báo lịch làm việc của lãnh đạo UBND",
    "Kế hoạch tuyên truyền phòng, chống dịch COVID-19",
    "Về việc rà soát hộ nghèo, hộ cận nghèo",
    "Báo cáo công tác chuyển đổi số",
    "Về việc kiểm tra công tác văn thư, lưu trữ",
)


class _Builder:
    def __init__(self, seed: int, scale: float) -> None:
        self.seed = seed
        self.scale = scale
        self.wd = WorkingDays(date(2019, 1, 1), date(2022, 12, 31))
        self.units = load_units()
        self.unit_by_code = {u.code: u for u in self.units}
        self.cat = _Catalogues(self.units)
        self.doc_numbers: dict[tuple[str, int], int] = {}
        self.documents: list[DocumentSpec] = []

    # ---------------------------------------------------------------- time helpers

    def next_office(self, rng: random.Random, after: datetime) -> datetime:
        """A random office time later than ``after``: the same working day if time is left, else the next."""
        day = self.wd.add(after.date(), 0)
        if day == after.date():
            if after.time() < time(16, 45):
                return office_time_after(rng, day, after)
            day = self.wd.add(day, 1)
        return office_time(rng, day)

    def office_on_or_after(self, rng: random.Random, day: date, after: datetime) -> datetime:
        return office_time_after(rng, self.wd.add(day, 0), after)

    # ---------------------------------------------------------------- drafts

    def drafts(self, rng: random.Random, targets: dict[str, Any]) -> list[_Draft]:
        wards = [u.code for u in self.units if u.code != CITY]
        ward_w = _ward_weights(rng, wards)
        out: list[_Draft] = []
        for unit, year, month, level, n in _online_cells(targets, self.scale, wards, ward_w):
            days = self.wd.in_month(year, month)
            out.extend(self._online_draft(rng, unit, days, level) for _ in range(n))
            for _ in range(sum(1 for _ in range(n) if rng.random() < _P_REFUSED_ONLINE)):
                d = self._online_draft(rng, unit, days, level)
                d.kind, d.rec = "refused", None
                out.append(d)
        for unit, year, month, n in _in_person_cells(self.scale, wards, ward_w):
            days = self.wd.in_month(year, month)
            out.extend(self._in_person_draft(rng, unit, days) for _ in range(n))
            for _ in range(sum(1 for _ in range(n) if rng.random() < _P_REFUSED_IN_PERSON)):
                d = self._in_person_draft(rng, unit, days)
                d.kind, d.rec, d.channel = "refused", None, "1"
                out.append(d)
        if not any(d.kind == "refused" for d in out):
            d = self._online_draft(rng, CITY, self.wd.in_month(2021, 3), 4)
            d.kind, d.rec = "refused", None
            out.append(d)
        # Online submissions of the last evening: not yet received at the end (status 1).
        last_day = (END - timedelta(days=1)).date()
        for _ in range(max(1, _r(_PENDING_AT_END, self.scale))):
            unit = rng.choice([CITY, *wards])
            sub = at_local(last_day, time(17, 30)) + timedelta(seconds=rng.randrange(6 * 3600))
            out.append(_Draft(unit, "2", self.cat.pick(rng, unit, sub, rng.choice((3, 4))), sub, None, "pending"))
        self._assign_fates(rng, out)
        return out

    def _online_draft(self, rng: random.Random, unit: str, days: list[date], level: int) -> _Draft:
        rec = office_time(rng, rng.choice(days))
        u = rng.random()
        lag = (
            rng.uniform(300, 3 * 3600)
            if u < 0.6
            else rng.uniform(3 * 3600, 20 * 3600)
            if u < 0.9
            else (rng.uniform(20 * 3600, 72 * 3600))
        )
        sub = (rec - timedelta(seconds=int(lag))).replace(microsecond=0)
        if sub < START + timedelta(minutes=1):
            sub = START + timedelta(minutes=_ri(rng, 1, 600))
            sub = min(sub, rec - timedelta(minutes=5))
        return _Draft(unit, "2", self.cat.pick(rng, unit, sub, level), sub, rec, "received")

    def _in_person_draft(self, rng: random.Random, unit: str, days: list[date]) -> _Draft:
        rec = office_time(rng, rng.choice(days))
        postal = rng.random() < _P_POSTAL
        gap = rng.uniform(20 * 3600, 72 * 3600) if postal else rng.uniform(120, 1500)
        sub = max(START + timedelta(minutes=1), rec - timedelta(seconds=int(gap)))
        return _Draft(unit, "3" if postal else "1", self.cat.pick(rng, unit, sub, 0), sub, rec, "received")

    def _assign_fates(self, rng: random.Random, drafts: list[_Draft]) -> None:
        received = [d for d in drafts if d.kind == "received"]
        for d in received:
            assert d.rec is not None
            early_2021 = d.rec.year == 2021 and d.rec.month <= 2 and d.row.days <= 10
            if not d.online_2020 and rng.random() < _P_WITHDRAWN:
                d.fate = "withdrawn"
            elif early_2021 and rng.random() < _P_STUCK:
                d.fate = "stuck"
            else:
                u = rng.random()
                d.fate = "late" if u < _P_LATE else "ontime" if u < _P_LATE + _P_ON_TIME else "early"
                december_online = d.online_2020 and d.rec.month == 12
                if not december_online:
                    u = rng.random()
                    if u < _P_SECOND_SUPPLEMENT and d.fate != "late":
                        d.supplements = 2
                    elif u < _P_SUPPLEMENT:
                        d.supplements = 1

        # Every special case at least once, even in a tiny scaled scenario.
        def ensure(pred: Any, eligible: Any, apply: Any) -> None:
            if not any(pred(d) for d in received):
                pool = [d for d in received if eligible(d)]
                if pool:
                    apply(rng.choice(pool))

        def make_withdrawn(d: _Draft) -> None:
            d.fate, d.supplements = "withdrawn", 0

        def make_stuck(d: _Draft) -> None:
            d.fate, d.supplements = "stuck", 0

        def make_late(d: _Draft) -> None:
            d.fate = "late"

        def make_double(d: _Draft) -> None:
            d.supplements = 2

        plain = ("early", "ontime")
        ensure(lambda d: d.fate == "withdrawn", lambda d: not d.online_2020 and d.fate in plain, make_withdrawn)
        ensure(
            lambda d: d.fate == "stuck",
            lambda d: d.rec.year == 2021 and d.rec.month <= 2 and d.row.days <= 10 and d.fate in plain,
            make_stuck,
        )
        ensure(lambda d: d.fate == "late", lambda d: d.fate in plain and d.supplements == 0, make_late)
        ensure(
            lambda d: d.supplements == 2,
            lambda d: d.fate in plain and d.supplements == 0 and not (d.online_2020 and d.rec.month == 12),
            make_double,
        )
        ensure(
            lambda d: d.supplements == 1,
            lambda d: d.fate in plain and d.supplements == 0 and not (d.online_2020 and d.rec.month == 12),
            lambda d: setattr(d, "supplements", 1),
        )

    # ---------------------------------------------------------------- codes

    @staticmethod
    def assign_codes(drafts: list[_Draft]) -> list[_Draft]:
        ordered = sorted(enumerate(drafts), key=lambda p: (p[1].unit, p[1].sub, p[0]))
        seq: dict[tuple[str, date], int] = {}
        for _, d in ordered:
            key = (d.unit, d.sub.date())
            seq[key] = seq.get(key, 0) + 1
            d.code = f"H56.{d.unit}-{d.sub:%y%m%d}-{seq[key]:05d}"
        return [d for _, d in ordered]

    # ---------------------------------------------------------------- lifecycles

    def lifecycle(self, rng: random.Random, d: _Draft) -> Lifecycle:
        row = d.row
        name, id_number, phone = random_person(rng)
        online = d.channel == "2"
        paid = 0
        if online and row.has_fee:
            u = rng.random()
            if row.level == 4:
                paid = 1 if u < 0.85 else 2 if u < 0.9 else 0
            elif u < 0.2:
                paid = 1
        year = d.sub.year
        base: dict[str, Any] = {
            "MaHoSo": d.code,
            "MaTTHC": row.code,
            "TenTTHC": nfd(row.name) if row.name_nfd else row.name,
            "MaLinhVuc": row.field_code,
            "TenLinhVuc": row.field_name,
            "MaDonVi": d.unit,
            "MucDo": row.level,
            "KenhThucHien": d.channel,
            "NgayNopHoSo": compact(d.sub),
            "NgayTiepNhan": "",
            "NgayHenTra": "",
            "NgayKetThucXuLy": "",
            "NgayTra": "",
            "NgayTuChoi": "",
            "ChuHoSo": nfd(name) if rng.random() < 0.04 else name,
            "SoGiayToChuHoSo": id_number,
            "SoDienThoai": phone,
            "LoaiDoiTuong": 2 if rng.random() < 0.08 else 1,
            "DuocThanhToanTrucTuyen": paid,
            "HoSoCoThanhPhanSoHoa": 1 if rng.random() < (0.4 if year >= 2021 else 0.15) else 0,
            "DanhSachGiayToKetQua": [],
        }
        versions: list[Version] = []
        dept = (_DEPT_CITY if d.unit == CITY else _DEPT_WARD).get(row.field_code, "Văn phòng - Thống kê")

        def add(  # noqa: PLR0917 - a local shorthand, called positionally ~10 times below
            at: datetime,
            status: str,
            changes: dict[str, Any],
            note: str,
            where: str = dept,
            step_at: datetime | None = None,
        ) -> None:
            step = {
                "TrangThai": status,
                "ThoiDiemXuLy": compact(step_at or at),
                "PhongBanXuLy": where,
                "NoiDungXuLy": note,
            }
            versions.append(Version(at, status, changes, step))

        portal: list[tuple[datetime, dict[str, Any]]] = []  # (time, changes to the item)
        if online:
            t1 = d.sub + timedelta(seconds=_ri(rng, 30, 180))
            add(t1, "1", {}, "Nộp hồ sơ trực tuyến", "Cổng dịch vụ công tỉnh", step_at=d.sub)
            portal.append((d.sub, {"trang_thai": "DA_NOP"}))
            if paid:
                tp = d.sub + timedelta(seconds=_ri(rng, 40, 150))
                portal.append(
                    (tp, {"thanh_toan": {"so_tien": row.fee, "hinh_thuc": "TRUC_TUYEN", "thoi_diem": iso(tp)}})
                )
            portal.append((t1, {"trang_thai": "DA_CHUYEN_MOT_CUA"}))
        else:
            t1 = d.sub
        if d.kind == "pending":
            return self._finish(base, versions, portal, d)
        if d.kind == "refused":
            if not online:
                add(t1, "1", {}, "Tiếp nhận trực tiếp, kiểm tra thành phần hồ sơ", _DESK)
            t3 = (
                self.next_office(rng, t1 + timedelta(minutes=_ri(rng, 5, 360)))
                if online
                else (t1 + timedelta(minutes=_ri(rng, 5, 40)))
            )
            add(t3, "3", {"NgayTuChoi": compact(t3)}, "Không đủ điều kiện tiếp nhận", _DESK)
            return self._finish(base, versions, portal, d)

        assert d.rec is not None
        rec = d.rec
        due_day = self.wd.add(rec.date(), row.days)
        add(
            rec,
            "2",
            {"NgayTiepNhan": compact(rec), "NgayHenTra": compact(at_local(due_day, time(17)))},
            "Tiếp nhận hồ sơ",
            _DESK,
        )
        t4 = rec if rng.random() < 0.1 else rec + timedelta(seconds=_ri(rng, 60, 5400))
        add(t4, "4", {}, "Chuyển xử lý")
        last = t4
        if d.fate == "withdrawn":
            tw = self.office_on_or_after(rng, self.wd.add(last.date(), _ri(rng, 0, 3)), last)
            add(tw, "7", {}, "Công dân yêu cầu rút hồ sơ", _DESK)
            if online:
                portal.append((tw, {"trang_thai": "DA_HUY"}))
            return self._finish(base, versions, portal, d)
        for _ in range(d.supplements):
            span = self.wd.between(last.date(), due_day)
            day = self.wd.add(last.date(), _ri(rng, 0, max(0, span - 1)))
            t5 = office_time_after(rng, day, last)
            add(t5, "5", {}, "Yêu cầu bổ sung, hoàn thiện hồ sơ")
            back_day = self.wd.add(t5.date() + timedelta(days=_ri(rng, 1, 8)), 0)
            t_back = office_time(rng, back_day)
            # The wait for the citizen does not count: the due date moves by the working days waited.
            due_day = self.wd.add(due_day, self.wd.between(t5.date(), back_day))
            add(
                t_back,
                "4",
                {"NgayHenTra": compact(at_local(due_day, time(17)))},
                "Công dân đã bổ sung hồ sơ, tiếp tục xử lý",
            )
            last = t_back
        if d.fate == "stuck":
            # Never finishes within the scenario: open, and overdue once its due date has passed.
            return self._finish(base, versions, portal, d)
        base_day = max(due_day, last.date())
        if d.fate == "early":
            span = self.wd.between(last.date(), due_day)
            end_day = self.wd.add(last.date(), min(_ri(rng, 0, max(0, span - 1)), _ri(rng, 0, max(0, span - 1))))
        elif d.fate == "ontime":
            end_day = base_day
        else:
            end_day = self.wd.add(base_day, _ri(rng, 1, 8))
        if d.online_2020 and end_day > date(2020, 12, 31):
            end_day = date(2020, 12, 31)  # online dossiers of 2020 are all resolved within 2020
        end_day = max(end_day, last.date())
        t_end = office_time_after(rng, end_day, last)
        if rng.random() < 0.25 and t_end - last > timedelta(hours=2):
            t_r = last + (t_end - last) * rng.uniform(0.2, 0.6)
            add(
                t_r.replace(microsecond=0),
                "4",
                {},
                "Chuyển lãnh đạo xem xét, ký duyệt",
                "Lãnh đạo UBND" if d.unit != CITY else "Văn phòng HĐND và UBND thành phố",
            )
            last = t_r.replace(microsecond=0)
        if row.has_fee and not paid and rng.random() < 0.4 and t_end - last > timedelta(minutes=30):
            gap = min(3 * 3600.0, (t_end - last).total_seconds() / 2)
            t6 = (t_end - timedelta(seconds=rng.uniform(600, max(600.0, gap)))).replace(microsecond=0)
            if t6 > last:
                add(t6, "6", {}, "Yêu cầu thực hiện nghĩa vụ tài chính", _DESK)
                last = t6
        # Electronic result: a file link in the dossier plus the signed document in QLVB.
        p_eresult = 0.9 if online and row.level == 4 else 0.65 if rec.year >= 2021 else 0.35
        result: dict[str, Any] = {}
        if row.paper_result and rng.random() < p_eresult:
            result["DanhSachGiayToKetQua"] = [
                {
                    "TenGiayTo": f"Kết quả giải quyết: {row.name}",
                    "MaThanhPhanHoSo": "KQ01",
                    "GiayToId": f"{d.code}-KQ01",
                    "DuongDanTepTinKetQua": f"https://dichvucong.thanhhoa.gov.vn/tep/ketqua/{d.code}.pdf",
                }
            ]
            self._result_documents(rng, d, row, rec, t_end)
        elif rng.random() < 0.06:
            # A paper result registered without its file: not an electronic result.
            result["DanhSachGiayToKetQua"] = [
                {
                    "TenGiayTo": f"Kết quả giải quyết: {row.name}",
                    "MaThanhPhanHoSo": "KQ01",
                    "GiayToId": f"{d.code}-KQ01",
                    "DuongDanTepTinKetQua": "",
                }
            ]
        if rng.random() < _P_DIRECT_RETURN:
            # Some systems go straight to "result returned" without recording "processed".
            add(t_end, "10", {"NgayTra": compact(t_end), **result}, "Trả kết quả", _DESK)
            t_ret = t_end
        else:
            add(t_end, "9", {"NgayKetThucXuLy": compact(t_end), **result}, "Hoàn thành xử lý")
            if online and row.level == 4:
                t_ret = t_end + timedelta(seconds=_ri(rng, 300, 7200))
            else:
                t_ret = self.office_on_or_after(rng, self.wd.add(end_day, _ri(rng, 0, 3)), t_end)
            add(t_ret, "10", {"NgayTra": compact(t_ret)}, "Trả kết quả", _DESK)
        if online and rng.random() < 0.35:
            t_rate = t_ret + timedelta(seconds=_ri(rng, 3600, 5 * 86400))
            late = d.fate == "late" or d.supplements >= 2
            satisfied = rng.random() < (0.5 if late else 0.95)
            portal.append((t_rate, {"danh_gia": {"hai_long": satisfied, "thoi_diem": iso(t_rate)}}))
        return self._finish(base, versions, portal, d)

    def _finish(
        self, base: dict[str, Any], versions: list[Version], portal: list[tuple[datetime, dict[str, Any]]], d: _Draft
    ) -> Lifecycle:
        kept = [v for v in versions if v.at < END]
        updates: list[PortalUpdate] = []
        if portal:
            item: dict[str, Any] = {
                "ma_ho_so": d.code,
                "ma_tthc": d.row.code,
                "ma_don_vi": d.unit,
                "muc_do": d.row.level,
                "thoi_diem_nop": iso(d.sub),
                "trang_thai": "DA_NOP",
                "thanh_toan": None,
                "danh_gia": None,
            }
            for at, changes in sorted(portal, key=lambda p: p[0]):
                if at >= END:
                    break
                item = {**item, **changes, "cap_nhat_luc": iso(at)}
                updates.append(PortalUpdate(at, item))
        return Lifecycle(base=base, versions=kept, portal=updates)

    def _doc_number(self, unit: str, year: int) -> int:
        n = self.doc_numbers.get((unit, year), 0) + 1
        self.doc_numbers[(unit, year)] = n
        return n

    def _result_documents(
        self, rng: random.Random, d: _Draft, row: CatalogueRow, rec: datetime, t_end: datetime
    ) -> None:
        unit = self.unit_by_code[d.unit]
        span = max(120.0, min(5 * 3600.0, (t_end - rec).total_seconds() * 0.8))
        t_submit = t_end - timedelta(seconds=int(rng.uniform(span / 2, span)))
        t_sign = t_submit + (t_end - t_submit) * rng.uniform(0.5, 0.9)
        t_issue = max(t_sign, t_end - timedelta(seconds=_ri(rng, 0, 120)))
        kind = "GCN" if row.field_code in ("HKD", "ATTP", "CTH", "XD") else "QĐ" if row.field_code != "HT" else "TLHT"
        number = self._doc_number(d.unit, t_end.year)
        van_ban = {
            "so_ky_hieu": f"{number}/{kind}-UBND",
            "trich_yeu": f"Kết quả giải quyết thủ tục: {row.name}",
            "ngay_ban_hanh": t_end.date().isoformat(),
            "co_quan_ban_hanh": unit.authority(t_end.date()),
            "ma_don_vi": d.unit,
            "nguoi_ky": "Phó Chủ tịch UBND" if rng.random() < 0.6 else "Chủ tịch UBND",
        }
        steps = [("KY_SO", t_sign, "true"), ("BAN_HANH", t_issue, "true")]
        if rng.random() < 0.4:
            steps.insert(0, ("TRINH_KY", t_submit, "false"))
        if rng.random() < 0.3:
            steps.append(("CHUYEN_MOT_CUA", t_end + timedelta(seconds=_ri(rng, 60, 600)), "true"))
        for loai, at, signed in steps:
            if at < END:
                self.documents.append(
                    DocumentSpec(at.replace(microsecond=0), d.unit, loai, {**van_ban, "ky_so": signed}, d.code)
                )

    def unlinked_documents(self, rng: random.Random) -> None:
        """Ordinary office documents of the units, linked to no dossier."""
        first, last = date(2020, 1, 2), (END - timedelta(days=1)).date()
        unit_codes = [u.code for u in self.units]
        for day in self.wd.days:
            if day < first or day > last:
                continue
            for _ in range(int(_UNLINKED_DOCS_PER_DAY * self.scale + rng.random())):
                code = CITY if rng.random() < 0.4 else rng.choice(unit_codes)
                unit = self.unit_by_code[code]
                t_reg = office_time(rng, day)
                number = self._doc_number(code, day.year)
                van_ban = {
                    "so_ky_hieu": f"{number}/{rng.choice(('CV', 'TB', 'KH', 'BC'))}-UBND",
                    "trich_yeu": rng.choice(_UNLINKED_SUBJECTS),
                    "ngay_ban_hanh": day.isoformat(),
                    "co_quan_ban_hanh": unit.authority(day),
                    "ma_don_vi": code,
                    "nguoi_ky": "Chủ tịch UBND",
                }
                self.documents.append(DocumentSpec(t_reg, code, "DANG_KY", {**van_ban, "ky_so": "false"}, None))
                if rng.random() < 0.7:
                    t_iss = self.next_office(rng, t_reg + timedelta(minutes=_ri(rng, 10, 2880)))
                    if t_iss < END:
                        self.documents.append(DocumentSpec(t_iss, code, "BAN_HANH", {**van_ban, "ky_so": "true"}, None))


def build_scenario(seed: int = 2021, scale: float = 1.0) -> Scenario:
    """Build the ``thanhhoa-2021`` scenario: deterministic for a (seed, scale) pair.

    ``scale`` (0 < scale <= 1.5) shrinks every volume; the headline figures become round(x * scale)
    (:func:`expected_targets`), the catalogues stay as they are. Different seeds change the details
    (who, when, which procedure, which fate), never the headline figures.
    """
    if not 0.0 < scale <= 1.5:
        raise ValueError(f"scale must be in (0, 1.5], got {scale}")
    started = _time.perf_counter()
    targets = expected_targets(scale)
    # The build allocates ~10^6 small objects that all stay alive: the cyclic GC would rescan them
    # again and again for nothing (it nearly doubles the build time). Paused for the build only.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        builder = _Builder(seed, scale)
        rng = random.Random(seed)  # noqa: S311 - simulation data, not security
        drafts = builder.assign_codes(builder.drafts(rng, targets))
        lifecycles = tuple(builder.lifecycle(rng, d) for d in drafts)
        builder.unlinked_documents(random.Random(seed + 1))  # noqa: S311 - simulation data
        documents = tuple(sorted(builder.documents, key=lambda e: (e.at, e.ma_ho_so or "", e.loai)))
    finally:
        if gc_was_enabled:
            gc.enable()
    return Scenario(
        name=NAME,
        seed=seed,
        scale=scale,
        start=START,
        end=END,
        units=builder.units,
        catalogue=tuple(builder.cat.rows),
        dossiers=lifecycles,
        documents=documents,
        targets=targets,
        build_seconds=_time.perf_counter() - started,
    )

