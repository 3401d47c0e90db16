"""The ground truth of a scenario, recounted independently of the hub: the oracle of end-to-end tests.

:class:`GroundTruth` reads only what the sources serve — every dossier's final snapshot (one-stop
format), the catalogue rows, the QLVB events — and recounts the figures the city reports with the
simplest code that can do it: string comparisons on ``yyyyMMddHHmmss`` stamps, one pass over the
dossiers. It shares no code with ``streams/domain``; when the hub and this module agree, two
independent implementations of domain.md §2–§4 agree.

    >>> from hub.scenario.thanhhoa2021 import build_scenario
    >>> truth = GroundTruth(build_scenario(seed=2021, scale=0.02))
    >>> truth.headline()["online_2021Q1"]
    {3: 89, 4: 66}
    >>> truth.figure("received", channel="2", level=3, period="2021-Q1")
    89

Definitions (docs/scenario.md repeats them for humans):

- *level* = ``MucDo`` of the dossier (the procedure's level at this unit when it was filed);
  *channel* = ``KenhThucHien`` with ``""``/missing read as ``"1"``.
- *received* in period P: ``NgayTiepNhan`` (local time) falls in P. Refused dossiers (status 3)
  were never received; they count as *refused* in the period of ``NgayTuChoi``.
- *end* of a dossier (domain.md §4): ``NgayKetThucXuLy`` if the dossier reached 9/10, else
  ``NgayTra``; for a withdrawn dossier (7) the time of its status-7 progress row.
- *finished* in P: status 9 or 10 and the end falls in P; *early* if the end's calendar day is before
  ``NgayHenTra``'s, *on time* on the same day, *late* after it — and late whatever the dates when the
  progress shows two or more supplement requests (status 5; Decision 766).
- *withdrawn* in P: status 7, the status-7 row falls in P.
- *open at the end of P*: received before P's end and not ended before it; *overdue at the end of P*:
  open then and ``NgayHenTra`` earlier than P's end. P's end is the first instant of the next period,
  or the scenario's end (the observation time) if that comes first. ``NgayHenTra`` is the final
  snapshot's (the one-stop system moves it when a supplement arrives).
- *electronic result*: ``DanhSachGiayToKetQua`` has an entry with a non-empty file link, or a QLVB
  ``KY_SO``/``BAN_HANH`` event is linked to the dossier (the scenario always has both or neither).
- *procedures offered* at level L on a day: catalogue rows with ``MucDo`` L valid that day.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hub.scenario.generator import Scenario

__all__ = ["METRICS", "GroundTruth", "PersonalData"]

#: The figures recounted per (unit, level, channel, period); names as in schemas/figures.py.
METRICS = (
    "received",
    "finished_early",
    "finished_on_time",
    "finished_late",
    "refused",
    "withdrawn",
    "open_end",
    "overdue_end",
    "paid_online",
    "fee_bearing",
    "electronic_result",
    "paper_result_procedure",
    "digitised_reuse",
)

_LEVEL_NAMES = {"KHONG_TRUC_TUYEN": (1, 2), "MOT_PHAN": (3,), "TOAN_TRINH": (4,)}
_CHANNEL_NAMES = {"TRUC_TIEP": "1", "TRUC_TUYEN": "2", "BUU_CHINH": "3"}
_REPORT_INSTANT = "20210331235959"


@dataclass(frozen=True)
class PersonalData:
    """Every applicant name (NFC and NFD forms), ID number and phone in the source data."""

    names: frozenset[str]
    id_numbers: frozenset[str]
    phones: frozenset[str]

    def all_values(self) -> frozenset[str]:
        """Names, ID numbers and phones together (what a leak check greps for)."""
        return self.names | self.id_numbers | self.phones


def _periods(stamp: str) -> tuple[str, str, str]:
    """Month, quarter and year of a ``yyyyMMddHHmmss`` stamp: ("2021-03", "2021-Q1", "2021")."""
    year, month = stamp[:4], int(stamp[4:6])
    return f"{year}-{month:02d}", f"{year}-Q{(month - 1) // 3 + 1}", year


def _period_bounds(first: str, last: str) -> list[tuple[str, str]]:
    """(period, exclusive end stamp) of every month, quarter and year touching [first, last]."""
    months: list[tuple[int, int]] = []
    y, m = int(first[:4]), int(first[4:6])
    while (y, m) <= (int(last[:4]), int(last[4:6])):
        months.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    out: list[tuple[str, str]] = []
    for y, m in months:
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        out.append((f"{y}-{m:02d}", f"{ny:04d}{nm:02d}01000000"))
    for y, q in sorted({(y, (m - 1) // 3 + 1) for y, m in months}):
        ny, nm = (y + 1, 1) if q == 4 else (y, 3 * q + 1)
        out.append((f"{y}-Q{q}", f"{ny:04d}{nm:02d}01000000"))
    out.extend((f"{y}", f"{y + 1:04d}0101000000") for y in sorted({y for y, _ in months}))
    return out


class GroundTruth:
    """Final snapshots, every version, and the recounted figures of one scenario (see the module docstring)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        #: The last snapshot of every dossier, as the source serves it (with PhienBan/NgayCapNhat).
        self.final_snapshots: dict[str, dict[str, Any]] = {lc.ma_ho_so: lc.final() for lc in scenario.dossiers}
        #: Every (MaHoSo, PhienBan) the sources served.
        self.versions: frozenset[tuple[str, int]] = frozenset(
            (lc.ma_ho_so, i + 1) for lc in scenario.dossiers for i in range(len(lc.versions))
        )
        #: The last state of every portal item (online dossiers), by ma_ho_so.
        self.portal_items: dict[str, dict[str, Any]] = {
            lc.ma_ho_so: lc.portal[-1].item for lc in scenario.dossiers if lc.portal
        }
        self.tiers = {u.code: u.tier for u in scenario.units}
        self.end_stamp = scenario.end.strftime("%Y%m%d%H%M%S")
        self._catalogue: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for u in scenario.units:
            for row in scenario.catalogue_rows(u.code):
                self._catalogue.setdefault((u.code, row["MaTTHC"]), []).append(row)
        self._signed_docs = {
            e.ma_ho_so for e in scenario.documents if e.ma_ho_so is not None and e.loai in ("KY_SO", "BAN_HANH")
        }
        self._counts: Counter[tuple[str, str, int, str, str]] = Counter()
        self._procedure_counts: Counter[tuple[str, str, str, str]] = Counter()  # unit, code, period, channel
        self._online_2020_resolved: Counter[int] = Counter()
        self._recount()
        self._index: dict[tuple[str, str], list[tuple[str, int, str, int]]] = {}
        for (metric, unit, level, channel, period), n in self._counts.items():
            self._index.setdefault((metric, period), []).append((unit, level, channel, n))

    # ------------------------------------------------------------------ the recount

    def _row_at(self, unit: str, code: str, stamp: str) -> dict[str, Any] | None:
        for row in self._catalogue.get((unit, code), ()):
            if row["HieuLucTu"] <= stamp and (not row["HieuLucDen"] or stamp <= row["HieuLucDen"]):
                return row
        return None

    def _recount(self) -> None:
        bounds = _period_bounds("20200101000000", self.end_stamp)
        end = self.end_stamp
        add = self._counts.update
        for snap in self.final_snapshots.values():
            unit = snap["MaDonVi"]
            level = int(snap["MucDo"])
            channel = str(snap.get("KenhThucHien") or "1")
            status = str(snap["TrangThaiHoSo"])
            steps = snap.get("QuaTrinhXuLy") or []
            rec = snap.get("NgayTiepNhan") or ""
            due = snap.get("NgayHenTra") or ""
            row = self._row_at(unit, snap["MaTTHC"], snap["NgayNopHoSo"])

            def bump(metric: str, stamp: str, u: str = unit, lv: int = level, ch: str = channel) -> None:
                add((metric, u, lv, ch, p) for p in _periods(stamp))

            if status == "3" and snap.get("NgayTuChoi"):
                bump("refused", snap["NgayTuChoi"])
            if rec:
                bump("received", rec)
                for p in _periods(rec):
                    self._procedure_counts[(unit, snap["MaTTHC"], p, channel)] += 1
                if snap.get("DuocThanhToanTrucTuyen") in (1, 2, "1", "2"):
                    bump("paid_online", rec)
                if row is not None and row["CoPhi"]:
                    bump("fee_bearing", rec)
                if str(snap.get("HoSoCoThanhPhanSoHoa")) == "1":
                    bump("digitised_reuse", rec)
            ended = ""
            if status in ("9", "10"):
                ended = snap.get("NgayKetThucXuLy") or snap.get("NgayTra") or ""
                supplements = sum(1 for s in steps if str(s.get("TrangThai")) == "5")
                if supplements >= 2 or ended[:8] > due[:8]:
                    kind = "finished_late"
                elif ended[:8] == due[:8]:
                    kind = "finished_on_time"
                else:
                    kind = "finished_early"
                bump(kind, ended)
                links = any(d.get("DuongDanTepTinKetQua") for d in snap.get("DanhSachGiayToKetQua") or [])
                if links or snap["MaHoSo"] in self._signed_docs:
                    bump("electronic_result", ended)
                if row is not None and row["KetQuaBanGiay"]:
                    bump("paper_result_procedure", ended)
                if channel == "2" and rec[:4] == "2020" and ended[:4] == "2020":
                    self._online_2020_resolved[level] += 1
            elif status == "7":
                ended = max(str(s["ThoiDiemXuLy"]) for s in steps if str(s.get("TrangThai")) == "7")
                bump("withdrawn", ended)
            if rec:
                for period, period_end in bounds:
                    at = min(period_end, end)
                    if rec < at and (not ended or ended >= at):
                        add([("open_end", unit, level, channel, period)])
                        if due and due < at:
                            add([("overdue_end", unit, level, channel, period)])

    # ------------------------------------------------------------------ accessors

    def figure(  # noqa: PLR0917 - filters read naturally positionally: figure("received", "14767", 3)
        self,
        metric: str,
        unit: str | None = None,
        level: int | str | Iterable[int] | None = None,
        channel: str | None = None,
        period: str = "2021-Q1",
        tier: str | None = None,
    ) -> int:
        """One recounted figure; ``None`` filters mean "all".

        ``level``: raw ``MucDo`` 1–4, several of them, or a normalised name (``MOT_PHAN``...);
        ``channel``: ``"1"``/``"2"``/``"3"`` or ``TRUC_TIEP``/``TRUC_TUYEN``/``BUU_CHINH``;
        ``period``: ``"2021-03"``, ``"2021-Q1"`` or ``"2021"``; ``tier``: ``"XA"`` or ``"HUYEN"``.
        """
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        levels: set[int] | None
        if level is None:
            levels = None
        elif isinstance(level, str):
            levels = set(_LEVEL_NAMES[level]) if level in _LEVEL_NAMES else {int(level)}
        elif isinstance(level, int):
            levels = {level}
        else:
            levels = set(level)
        ch = _CHANNEL_NAMES.get(channel, channel) if channel is not None else None
        total = 0
        for u, lv, c, n in self._index.get((metric, period), ()):
            if unit is not None and u != unit:
                continue
            if tier is not None and self.tiers.get(u) != tier:
                continue
            if levels is not None and lv not in levels:
                continue
            if ch is not None and c != ch:
                continue
            total += n
        return total

    def figures(self) -> dict[tuple[str, str, int, str, str], int]:
        """Every non-zero count by (metric, unit, level, channel, period)."""
        return dict(self._counts)

    def offered(self, unit: str, level: int, at: str = _REPORT_INSTANT) -> int:
        """Procedures unit ``unit`` offers at ``level`` at ``at`` (``yyyyMMddHHmmss``)."""
        return sum(
            1
            for (u, _code), rows in self._catalogue.items()
            if u == unit
            and any(
                r["MucDo"] == level and r["HieuLucTu"] <= at and (not r["HieuLucDen"] or at <= r["HieuLucDen"])
                for r in rows
            )
        )

    def procedures_without_dossier(self, unit: str, period: str = "2021-Q1", *, online_only: bool = False) -> int:
        """Online procedures (level 3/4 at the period's last second) that received no dossier in the period.

        With ``online_only``, a procedure counts as without dossier when it received no *online* one
        (the complement of Decision 766 indicator 3.2).
        """
        last = self._period_last_second(period)
        count = 0
        for (u, code), rows in self._catalogue.items():
            if u != unit:
                continue
            online = any(
                r["MucDo"] in (3, 4) and r["HieuLucTu"] <= last and (not r["HieuLucDen"] or last <= r["HieuLucDen"])
                for r in rows
            )
            if not online:
                continue
            got = sum(
                n
                for ch in ("1", "2", "3")
                if (n := self._procedure_counts.get((unit, code, period, ch), 0)) and (not online_only or ch == "2")
            )
            if got == 0:
                count += 1
        return count

    def procedure_dossiers(self, unit: str, code: str, period: str = "2021-Q1", channel: str | None = None) -> int:
        """Dossiers received in ``period`` for one procedure of one unit."""
        return sum(
            n
            for ch in ("1", "2", "3")
            if (n := self._procedure_counts.get((unit, code, period, ch), 0)) and (channel is None or ch == channel)
        )

    def _period_last_second(self, period: str) -> str:
        for p, period_end in _period_bounds("20200101000000", self.end_stamp):
            if p == period:
                # Naive on purpose: stamps are local wall-clock time, compared as strings.
                last = datetime.strptime(period_end, "%Y%m%d%H%M%S") - timedelta(seconds=1)  # noqa: DTZ007
                return last.strftime("%Y%m%d%H%M%S")
        raise ValueError(f"period {period!r} is outside the scenario (2020-01 .. {self.end_stamp[:4]})")

    def headline(self) -> dict[str, Any]:
        """The domain.md §6 figures as recounted (compare with ``scenario.targets``)."""
        f = self.figure
        wards = [u for u, t in self.tiers.items() if t == "XA"]
        ward_offers = {(self.offered(u, 3), self.offered(u, 4)) for u in wards}
        xa: dict[Any, Any] = (
            {3: next(iter(ward_offers))[0], 4: next(iter(ward_offers))[1]}
            if len(ward_offers) == 1
            else {u: {3: self.offered(u, 3), 4: self.offered(u, 4)} for u in wards}
        )
        city = next(u for u, t in self.tiers.items() if t == "HUYEN")
        months = [f"2020-{m:02d}" for m in range(9, 13)] + ["2021-01", "2021-02", "2021-03"]
        return {
            "online_2020": {lv: f("received", level=lv, channel="2", period="2020") for lv in (3, 4)},
            "online_2020_resolved": {lv: self._online_2020_resolved[lv] for lv in (3, 4)},
            "online_2021Q1": {lv: f("received", level=lv, channel="2", period="2021-Q1") for lv in (3, 4)},
            "online_2021Q1_xa": {
                lv: f("received", level=lv, channel="2", period="2021-Q1", tier="XA") for lv in (3, 4)
            },
            "online_2021Q1_city_desk": {
                lv: f("received", level=lv, channel="2", period="2021-Q1", unit=city) for lv in (3, 4)
            },
            "dien_bien_2020_09_2021_03": sum(
                f("received", unit="14767", level=(3, 4), channel="2", period=m) for m in months
            ),
            "procedures": {city: {3: self.offered(city, 3), 4: self.offered(city, 4)}, "xa": xa},
            # Wards/communes whose one-stop system publishes online procedures (domain.md §6: 34/34).
            "wards_with_one_stop": sum(1 for u in wards if self.offered(u, 3) + self.offered(u, 4) > 0),
        }

    def stats_body(self, ky: str, unit: str, levels: Iterable[int] = (1, 2, 3, 4)) -> dict[str, Any]:
        """The statistics PUT of contracts.md §3 for one unit and period (without ``thoi_diem_tong_hop``).

        One ``theo_muc_do`` entry per level in ``levels`` that has any activity (3 and 4 always).
        """
        rows = []
        for lv in levels:

            def g(metric: str, channel: str | None = None, lv: int = lv) -> int:
                return self.figure(metric, unit=unit, level=lv, channel=channel, period=ky)

            early, on_time, late = g("finished_early"), g("finished_on_time"), g("finished_late")
            entry = {
                "muc_do": lv,
                "tiep_nhan": g("received"),
                "tiep_nhan_truc_tuyen": g("received", "2"),
                "da_giai_quyet": early + on_time + late,
                "dung_han": early + on_time,
                "truoc_han": early,
                "qua_han": late,
                "dang_xu_ly": g("open_end"),
                "qua_han_dang_xu_ly": g("overdue_end"),
            }
            if lv in (3, 4) or any(v for k, v in entry.items() if k != "muc_do"):
                rows.append(entry)
        last = self._period_last_second(ky)
        return {
            "ky": ky,
            "ma_don_vi": unit,
            "cap": self.tiers[unit],
            "theo_muc_do": rows,
            "thu_tuc": {
                "muc_do_3": self.offered(unit, 3, last),
                "muc_do_4": self.offered(unit, 4, last),
                "khong_phat_sinh_ho_so": self.procedures_without_dossier(unit, ky),
            },
        }

    def personal_data(self) -> PersonalData:
        """Every piece of personal data in the source data (leak checks grep the hub's outputs for these)."""
        names: set[str] = set()
        ids: set[str] = set()
        phones: set[str] = set()
        for snap in self.final_snapshots.values():
            name = str(snap["ChuHoSo"])
            names.update((unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)))
            ids.add(str(snap["SoGiayToChuHoSo"]))
            phones.add(str(snap["SoDienThoai"]))
        return PersonalData(frozenset(names), frozenset(ids), frozenset(phones))
