"""Building blocks of seeded scenarios: the data model, a working-day calendar, exact apportioning.

A scenario is a list of dossier *lifecycles*. A :class:`Lifecycle` is the static part of a
one-stop dossier (``base``) plus its :class:`Version` list: every change the source system records,
with its historical time. Snapshots are materialised on demand, so a scenario of 25 000 dossiers and
120 000 versions stays small and builds in a couple of seconds::

    >>> from datetime import datetime
    >>> from hub.simulators.clock import TZ
    >>> received = Version(datetime(2021, 1, 15, 8, 0, tzinfo=TZ), "2", {"NgayTiepNhan": "20210115080000"},
    ...                    {"TrangThai": "2", "ThoiDiemXuLy": "20210115080000"})
    >>> moved = Version(datetime(2021, 1, 15, 9, 0, tzinfo=TZ), "4", {}, None)
    >>> lc = Lifecycle(base={"MaHoSo": "H56.14767-210115-00001", "MaDonVi": "14767"}, versions=[received, moved])
    >>> lc.served(1)["PhienBan"], lc.served(1)["TrangThaiHoSo"], len(lc.served(1)["QuaTrinhXuLy"])
    (2, '4', 1)

Counting targets are met exactly with :func:`apportion` (largest remainder), never by sampling::

    >>> apportion(10, [1.0, 1.0, 1.0])
    [4, 3, 3]

Working days (Mon–Fri minus Vietnamese public holidays, Tết included) come from the ``holidays``
package through :class:`WorkingDays`.
"""

from __future__ import annotations

import bisect
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import holidays

from hub.simulators.clock import TZ

__all__ = [
    "CatalogueRow",
    "DocumentSpec",
    "Lifecycle",
    "PortalUpdate",
    "Scenario",
    "UnitInfo",
    "Version",
    "WorkingDays",
    "apportion",
    "at_local",
    "compact",
    "iso",
    "nfd",
    "office_time",
    "office_time_after",
    "random_person",
]

#: Office hours of a one-stop desk: 07:30–11:30 and 13:30–17:00 (450 minutes).
_MORNING = (7 * 60 + 30, 11 * 60 + 30)
_AFTERNOON = (13 * 60 + 30, 17 * 60)
#: The due time the one-stop systems write: end of the working day.
DUE_TIME = time(17, 0)


# --------------------------------------------------------------------------- time helpers


def at_local(day: date, t: time) -> datetime:
    """``day`` at ``t``, local Vietnamese time."""
    return datetime.combine(day, t, tzinfo=TZ)


def compact(dt: datetime) -> str:
    """``yyyyMMddHHmmss`` (the one-stop format), local time."""
    if dt.tzinfo is not TZ:
        dt = dt.astimezone(TZ)
    # strftime is several times slower, and this runs ~200 000 times per build.
    return f"{dt.year:04d}{dt.month:02d}{dt.day:02d}{dt.hour:02d}{dt.minute:02d}{dt.second:02d}"


def iso(dt: datetime) -> str:
    """ISO-8601 with the +07:00 offset, to the second (QLVB and portal format)."""
    return dt.astimezone(TZ).isoformat(timespec="seconds")


def office_time(rng: random.Random, day: date) -> datetime:
    """A random second within the office hours of ``day``."""
    # rng.random() rather than randrange(): a third of the cost, and this is the generator's hot path.
    minute = int(rng.random() * ((_MORNING[1] - _MORNING[0]) + (_AFTERNOON[1] - _AFTERNOON[0])))
    minute += _MORNING[0] if minute < _MORNING[1] - _MORNING[0] else _AFTERNOON[0] - (_MORNING[1] - _MORNING[0])
    return at_local(day, time(minute // 60, minute % 60, int(rng.random() * 60)))


def office_time_after(rng: random.Random, day: date, after: datetime) -> datetime:
    """A random office time of ``day`` later than ``after``; staff stay late (up to ~25 min) if none is left."""
    for _ in range(4):
        candidate = office_time(rng, day)
        if candidate > after:
            return candidate
    end_of_day = at_local(day, time(17, 0))
    if end_of_day > after + timedelta(minutes=2):
        span = int((end_of_day - after).total_seconds())
        return after + timedelta(seconds=rng.randint(60, max(60, span)))
    return after + timedelta(seconds=rng.randint(60, 1500))


class WorkingDays:
    """Working days (Mon–Fri, Vietnamese public holidays excluded) between two dates.

    >>> wd = WorkingDays(date(2021, 1, 1), date(2021, 12, 31))
    >>> wd.add(date(2021, 2, 9), 1)      # Tết 2021: 10–16 February are holidays
    datetime.date(2021, 2, 17)
    >>> wd.between(date(2021, 2, 9), date(2021, 2, 17))
    1
    """

    def __init__(self, first: date, last: date) -> None:
        hol = holidays.country_holidays("VN", years=range(first.year, last.year + 1))
        days: list[date] = []
        d = first
        while d <= last:
            if d.weekday() < 5 and d not in hol:
                days.append(d)
            d += timedelta(days=1)
        self.days = days

    def is_working(self, d: date) -> bool:
        """Whether ``d`` is a working day."""
        i = bisect.bisect_left(self.days, d)
        return i < len(self.days) and self.days[i] == d

    def add(self, d: date, n: int) -> date:
        """The ``n``-th working day after ``d`` (``n`` = 0: ``d`` itself if working, else the next one)."""
        i = bisect.bisect_left(self.days, d) if n == 0 else bisect.bisect_right(self.days, d) + n - 1
        if i >= len(self.days):
            raise ValueError(f"{d} + {n} working days is past the calendar's end; widen WorkingDays")
        return self.days[i]

    def between(self, a: date, b: date) -> int:
        """Working days in ``(a, b]``."""
        return max(0, bisect.bisect_right(self.days, b) - bisect.bisect_right(self.days, a))

    def in_month(self, year: int, month: int) -> list[date]:
        """The working days of one month."""
        lo = bisect.bisect_left(self.days, date(year, month, 1))
        nxt = date(year + month // 12, month % 12 + 1, 1)
        hi = bisect.bisect_left(self.days, nxt)
        return self.days[lo:hi]


# --------------------------------------------------------------------------- apportioning


def apportion(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder; ties to the lower index).

    The parts always add up to ``total`` exactly; zero weights get zero (unless every weight is zero).
    """
    if total < 0:
        raise ValueError(f"cannot apportion a negative total ({total})")
    if not weights:
        if total:
            raise ValueError("cannot apportion a non-zero total over no cells")
        return []
    s = sum(weights)
    if s <= 0:
        weights = [1.0] * len(weights)
        s = float(len(weights))
    quotas = [total * w / s for w in weights]
    parts = [int(q) for q in quotas]
    rest = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - parts[i]), i))
    for i in order[:rest]:
        parts[i] += 1
    return parts


# --------------------------------------------------------------------------- personal data

_HO = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đỗ", "Bùi", "Hà", "Mai", "Trịnh", "Lường", "Đặng", "Ngô")
_DEM_NAM = ("Văn", "Hữu", "Đức", "Minh", "Quang", "Xuân", "Đình", "Ngọc")
_DEM_NU = ("Thị", "Thu", "Ngọc", "Minh", "Thanh", "Hồng", "Phương")
_TEN_NAM = ("An", "Bình", "Cường", "Dũng", "Hùng", "Hải", "Nam", "Quân", "Sơn", "Tuấn", "Thắng", "Trung", "Việt")
_TEN_NU = ("Hà", "Hạnh", "Hương", "Lan", "Linh", "Mai", "Nga", "Phương", "Thảo", "Trang", "Yến", "Huyền", "Ánh")


def random_person(rng: random.Random) -> tuple[str, str, str]:
    """A made-up applicant: (full name, 12-digit CCCD number of Thanh Hóa "038...", mobile number).

    The CCCD layout is real (province 038, a century/sex digit, two birth-year digits, six digits), the
    people are not.
    """
    female = rng.random() < 0.5
    name = " ".join(
        (
            rng.choice(_HO),
            rng.choice(_DEM_NU if female else _DEM_NAM),
            rng.choice(_TEN_NU if female else _TEN_NAM),
        )
    )
    year = rng.randint(1945, 2003)
    century = (0 if year < 2000 else 2) + (1 if female else 0)
    id_number = f"038{century}{year % 100:02d}{int(rng.random() * 1_000_000):06d}"
    phone = rng.choice(("09", "03", "08", "07")) + f"{int(rng.random() * 100_000_000):08d}"
    return name, id_number, phone


def nfd(text: str) -> str:
    """The decomposed (NFD) form some deployments send."""
    return unicodedata.normalize("NFD", text)


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True, slots=True)
class UnitInfo:
    """One handling unit: GSO code, name, tier (``HUYEN`` = the city desk, ``XA`` = ward/commune)."""

    code: str
    name: str
    tier: str
    kind_2020: str
    kind_2021: str

    def authority(self, on: date) -> str:
        """The issuing authority's name on a date (communes became wards on 2021-02-01)."""
        if self.tier == "HUYEN":
            return f"UBND thành phố {self.name.removeprefix('Thành phố ')}"
        kind = self.kind_2021 if on >= date(2021, 2, 1) else self.kind_2020
        return f"UBND {'phường' if kind == 'phuong' else 'xã'} {self.name}"


@dataclass(frozen=True, slots=True)
class CatalogueRow:
    """One dated row of a unit's procedure catalogue (contracts.md §1 ``/thutuc``), with generator hints.

    ``valid_to`` is inclusive (the last second the row applies). ``days`` is the legal processing time
    in working days, ``weight`` the procedure's popularity (0 = never gets a dossier), ``fee`` in VND.
    """

    unit: str
    code: str
    name: str
    field_code: str
    field_name: str
    level: int
    has_fee: bool
    paper_result: bool
    valid_from: datetime
    valid_to: datetime | None
    days: int
    weight: float
    fee: int = 0
    name_nfd: bool = False

    def valid_at(self, t: datetime) -> bool:
        """Whether the row applies at ``t``."""
        return self.valid_from <= t and (self.valid_to is None or t <= self.valid_to)

    def as_row(self) -> dict[str, Any]:
        """The row as the one-stop ``/thutuc`` endpoint serves it."""
        return {
            "MaTTHC": self.code,
            "TenTTHC": nfd(self.name) if self.name_nfd else self.name,
            "MucDo": self.level,
            "CoPhi": self.has_fee,
            "KetQuaBanGiay": self.paper_result,
            "HieuLucTu": compact(self.valid_from),
            "HieuLucDen": compact(self.valid_to) if self.valid_to else "",
        }


@dataclass(frozen=True, slots=True)
class Version:
    """One change of a dossier: its time, the status after it, the fields it set, the progress row it added."""

    at: datetime
    status: str
    changes: dict[str, Any]
    step: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class DocumentSpec:
    """One QLVB event (contracts.md §2); ``ma_ho_so`` None = a document of no dossier."""

    at: datetime
    unit: str
    loai: str
    van_ban: dict[str, str]
    ma_ho_so: str | None


@dataclass(frozen=True, slots=True)
class PortalUpdate:
    """The portal item of an online dossier as it is after a change at ``at`` (full item)."""

    at: datetime
    item: dict[str, Any]


@dataclass(slots=True)
class Lifecycle:
    """A dossier's whole history: static fields plus every version (see the module docstring)."""

    base: dict[str, Any]
    versions: list[Version]
    portal: list[PortalUpdate] = field(default_factory=list)

    @property
    def ma_ho_so(self) -> str:
        """The dossier code."""
        return str(self.base["MaHoSo"])

    @property
    def unit(self) -> str:
        """The handling unit."""
        return str(self.base["MaDonVi"])

    def snapshot(self, index: int) -> dict[str, Any]:
        """The full snapshot after version ``index`` (0-based), without ``PhienBan``/``NgayCapNhat``."""
        snap = dict(self.base)
        steps: list[dict[str, str]] = []
        for v in self.versions[: index + 1]:
            snap.update(v.changes)
            if v.step is not None:
                steps.append(dict(v.step))
        snap["TrangThaiHoSo"] = self.versions[index].status
        snap["QuaTrinhXuLy"] = steps
        snap["DanhSachGiayToKetQua"] = [dict(d) for d in snap.get("DanhSachGiayToKetQua", [])]
        return snap

    def served(self, index: int) -> dict[str, Any]:
        """The snapshot as a source serves it: with ``PhienBan`` (index + 1) and ``NgayCapNhat``."""
        snap = self.snapshot(index)
        snap["PhienBan"] = index + 1
        snap["NgayCapNhat"] = compact(self.versions[index].at)
        return snap

    def final(self) -> dict[str, Any]:
        """The last served snapshot."""
        return self.served(len(self.versions) - 1)


@dataclass(frozen=True)
class Scenario:
    """A complete seeded scenario: units, dated catalogues, dossier lifecycles, QLVB events.

    ``start`` is before every event (a player sets its clock there); ``end`` is after every event (the
    observation time of "open"/"overdue now"). ``targets`` are the headline figures the scenario was
    built to reproduce (see :mod:`hub.scenario.truth` for the recount that checks them).
    """

    name: str
    seed: int
    scale: float
    start: datetime
    end: datetime
    units: tuple[UnitInfo, ...]
    catalogue: tuple[CatalogueRow, ...]
    dossiers: tuple[Lifecycle, ...]
    documents: tuple[DocumentSpec, ...]
    targets: dict[str, Any]
    build_seconds: float = 0.0

    def catalogue_rows(self, unit: str) -> list[dict[str, Any]]:
        """Unit ``unit``'s ``/thutuc`` rows, as the one-stop system serves them."""
        return [r.as_row() for r in self.catalogue if r.unit == unit]

    def counts(self) -> dict[str, int]:
        """Sizes: dossiers (by channel), versions, QLVB events, portal updates."""
        by_channel: dict[str, int] = {"1": 0, "2": 0, "3": 0}
        for lc in self.dossiers:
            by_channel[str(lc.base["KenhThucHien"])] += 1
        return {
            "units": len(self.units),
            "catalogue_rows": len(self.catalogue),
            "dossiers": len(self.dossiers),
            "dossiers_in_person": by_channel["1"],
            "dossiers_online": by_channel["2"],
            "dossiers_postal": by_channel["3"],
            "versions": sum(len(lc.versions) for lc in self.dossiers),
            "document_events": len(self.documents),
            "portal_updates": sum(len(lc.portal) for lc in self.dossiers),
        }

    def summary(self) -> str:
        """One line for logs and the CLI."""
        c = self.counts()
        return (
            f"scenario {self.name} seed={self.seed} scale={self.scale}: {c['dossiers']} dossiers "
            f"({c['dossiers_online']} online, {c['dossiers_in_person']} in person, {c['dossiers_postal']} postal), "
            f"{c['versions']} versions, {c['document_events']} QLVB events, {c['portal_updates']} portal updates; "
            f"built in {self.build_seconds:.2f} s"
        )
