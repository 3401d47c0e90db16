"""The city's published table, the portal's statistics body, and the non-additive Prometheus samples.

Everything here starts from MERGED counts (``schemas.figures.merge_counts`` over the latest
partial of every partition): unit code -> count key -> count. Nothing is recounted from events.

* :func:`build_report` / :func:`render` — the table the city publishes (domain.md §6): per level
  (một phần / toàn trình, shown as "Mức độ 3 / 4"), per unit, the city desk (unit 380) vs the
  ward/commune tier vs the whole city, the procedures offered and those with no dossier, the 766
  indicators, and the 2021–2025 targets beside the actual figures.
* :func:`stats_body` — exactly the body of ``PUT /api/v1/thongke/dvctt/{ky}/{ma_don_vi}``
  (contracts.md §3).
* :func:`merged_samples` — 766 rates/scores and catalogue gauges for Prometheus (ratios cannot be
  summed over workers, so they are computed from merged counts).

    >>> from collections import Counter
    >>> from datetime import datetime
    >>> from schemas.calendar import TZ
    >>> from schemas.units import default_registry
    >>> unit = default_registry().lookup("14767")
    >>> c = Counter({"received|TOAN_TRINH|TRUC_TUYEN|2021-Q1|": 3, "finished_early|TOAN_TRINH|TRUC_TUYEN|2021-Q1|": 2})
    >>> body = stats_body("2021-Q1", unit, c, None, datetime(2021, 4, 1, 0, 5, tzinfo=TZ))
    >>> body["theo_muc_do"][1]
    {'muc_do': 4, 'tiep_nhan': 3, 'tiep_nhan_truc_tuyen': 3, 'da_giai_quyet': 2, 'dung_han': 2, 'truoc_han': 2, \
'qua_han': 0, 'dang_xu_ly': 0, 'qua_han_dang_xu_ly': 0}
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from hub.config import Kpi766Settings, TargetSettings
from hub.metrics import KPI766_RATE, KPI766_SCORE, PROCEDURES_OFFERED, PROCEDURES_WITHOUT_DOSSIER, MetricSpec
from schemas.calendar import TZ
from schemas.events import Channel, Level
from schemas.units import Unit, UnitRegistry
from streams.domain.aggregates import ONLINE_LEVELS, Catalogue
from streams.domain.kpi import INDICATOR_NAMES, Indicator, indicators, metric_totals, score_band, total_score
from streams.domain.periods import Period, period_bounds, period_kind, period_label, periods_of_date

__all__ = [
    "LEVEL_LABELS",
    "LevelFigures",
    "Report",
    "ReportRow",
    "Target",
    "build_report",
    "merged_samples",
    "render",
    "stats_body",
]

#: Both vocabularies (domain.md §2): Decree 61/2018 "mức độ" and Decree 42/2022 names.
LEVEL_LABELS = {
    Level.MOT_PHAN: ("Mức độ 3", "Một phần", 3),
    Level.TOAN_TRINH: ("Mức độ 4", "Toàn trình", 4),
}
TIER_LABELS = {"HUYEN": "Cấp thành phố", "XA": "Cấp phường/xã", "TINH": "Cấp tỉnh"}
_ONLINE = Channel.TRUC_TUYEN.value


@dataclass
class LevelFigures:
    """Dossier figures of one level (or all levels) for the report's period."""

    received: int = 0
    received_online: int = 0
    finished_early: int = 0
    finished_on_time: int = 0
    finished_late: int = 0
    refused: int = 0
    withdrawn: int = 0
    open: int = 0
    overdue: int = 0

    @property
    def on_time_total(self) -> int:
        """Early + on the due day ("đúng hạn" in national statistics)."""
        return self.finished_early + self.finished_on_time

    @property
    def finished(self) -> int:
        """Finished in the period ("đã giải quyết")."""
        return self.on_time_total + self.finished_late

    @property
    def online_share(self) -> float | None:
        """Received online ÷ received (None without dossiers)."""
        return self.received_online / self.received if self.received else None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict with the derived figures (JSON output)."""
        d = asdict(self)
        d.update(finished=self.finished, on_time_total=self.on_time_total, online_share=self.online_share)
        return d


def _level_figures(counts: Counter[str], period: Period, level: str | None) -> LevelFigures:
    t = metric_totals(counts, period, level=level)
    online = metric_totals(counts, period, level=level, channel=_ONLINE)
    return LevelFigures(
        received=t["received"],
        received_online=online["received"],
        finished_early=t["finished_early"],
        finished_on_time=t["finished_on_time"],
        finished_late=t["finished_late"],
        refused=t["refused"],
        withdrawn=t["withdrawn"],
        open=t["open_end"],
        overdue=t["overdue_end"],
    )


@dataclass
class ReportRow:
    """One line of the report: a unit, a tier total or the whole city."""

    code: str
    name: str
    tier: str
    levels: dict[str, LevelFigures]  # "MOT_PHAN", "TOAN_TRINH", "ALL"
    offered: dict[str, int]  # level -> procedures offered online at the period's end
    without_dossier: dict[str, int]  # level -> online procedures with no dossier in the period
    indicators: dict[str, Indicator]
    score_percent: float | None = None
    band: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON form (English keys)."""
        return {
            "code": self.code,
            "name": self.name,
            "tier": self.tier,
            "levels": {k: v.as_dict() for k, v in self.levels.items()},
            "procedures_offered": self.offered,
            "procedures_without_dossier": self.without_dossier,
            "kpi766": {k: asdict(v) for k, v in self.indicators.items()},
            "kpi766_score_percent": self.score_percent,
            "kpi766_band": self.band,
        }


@dataclass
class Target:
    """A city target (domain.md §6) beside the actual figure."""

    key: str
    label: str
    actual: float | None
    minimum: float
    maximum: float | None = None

    @property
    def met(self) -> bool | None:
        """True when the actual figure is within the target (None without data)."""
        if self.actual is None:
            return None
        return self.actual >= self.minimum - 1e-9

    @property
    def target_text(self) -> str:
        """ "≥ 50%" or "75–90%"."""
        if self.maximum is not None:
            return f"{self.minimum:.0%}–{self.maximum:.0%}"
        return f"≥ {self.minimum:.0%}"


@dataclass
class Report:
    """The published report of one period."""

    period: str
    period_kind: str
    unit: str | None
    generated_at: datetime
    rows: list[ReportRow]
    city_desk: ReportRow
    wards: ReportRow
    city: ReportRow
    targets: list[Target] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (English keys)."""
        return {
            "period": self.period,
            "period_kind": self.period_kind,
            "unit": self.unit,
            "generated_at": self.generated_at.isoformat(),
            "units": [r.as_dict() for r in self.rows],
            "city_desk": self.city_desk.as_dict(),
            "wards_communes": self.wards.as_dict(),
            "whole_city": self.city.as_dict(),
            "targets": [
                {
                    "key": t.key,
                    "label": t.label,
                    "actual": t.actual,
                    "target": t.target_text,
                    "minimum": t.minimum,
                    "maximum": t.maximum,
                    "met": t.met,
                }
                for t in self.targets
            ],
        }


def _row(
    *,
    code: str,
    name: str,
    tier: str,
    counts: Counter[str],
    period: Period,
    offered: Mapping[str, Level],
    without: Mapping[Level, int],
    kpi: Kpi766Settings,
) -> ReportRow:
    levels = {lvl.value: _level_figures(counts, period, lvl.value) for lvl in ONLINE_LEVELS}
    levels["ALL"] = _level_figures(counts, period, None)
    inds = indicators(counts, period, kpi)
    _, _, pct = total_score(inds.values())
    off = {lvl.value: 0 for lvl in Level}
    for lvl in offered.values():
        off[lvl.value] += 1
    return ReportRow(
        code=code,
        name=name,
        tier=tier,
        levels=levels,
        offered=off,
        without_dossier={lvl.value: without.get(lvl, 0) for lvl in ONLINE_LEVELS},
        indicators=inds,
        score_percent=pct,
        band=score_band(pct),
    )


def build_report(  # noqa: PLR0917 - the positional signature is the contract the plumbing and portal sync call
    merged: Mapping[str, Counter[str]],
    catalogue: Catalogue | None,
    registry: UnitRegistry,
    period: Period,
    unit: str | None,
    targets: TargetSettings,
    kpi: Kpi766Settings,
    *,
    now: datetime | None = None,
) -> Report:
    """The report of ``period`` ("2021-03", "2021-Q1", "2021" or a month range) for the city or one ``unit``.

    Unit codes are folded with ``registry.canonical_code(code, on=<period's last day>)`` so a
    period after a reorganisation reports old codes under the new unit. ``unit`` filters the rows
    (the totals then cover that unit only).
    """
    _, end = period_bounds(period)
    last_day = end - timedelta(days=1)
    folded: dict[str, Counter[str]] = {}
    for code, counts in merged.items():
        folded.setdefault(registry.canonical_code(code, last_day), Counter()).update(counts)
    units = {u.code: u for u in registry.units(on=last_day)}
    for code in folded:
        if code not in units:
            known = registry.resolve(code, last_day) or registry.resolve(code)
            if known is not None:
                units[code] = known
    if unit is not None:
        picked = registry.resolve(unit, last_day) or registry.resolve(unit)
        if picked is None:
            raise ValueError(f"unit {unit!r} is not in the unit registry; see `dvc-hub units` for the codes")
        units = {picked.code: picked}
    rows: list[ReportRow] = []
    tier_counts: dict[str, Counter[str]] = {"HUYEN": Counter(), "XA": Counter()}
    tier_offered: dict[str, dict[str, Level]] = {"HUYEN": {}, "XA": {}}
    tier_without: dict[str, Counter[Level]] = {"HUYEN": Counter(), "XA": Counter()}
    for code, u in sorted(units.items(), key=lambda kv: (kv[1].tier != "HUYEN", kv[0].zfill(8))):
        counts = folded.get(code, Counter())
        offered = _online_offered(catalogue, code, last_day)
        without = catalogue.without_dossier(code, period, counts) if catalogue is not None else {}
        rows.append(
            _row(
                code=code,
                name=u.name,
                tier=u.tier,
                counts=counts,
                period=period,
                offered=offered,
                without=without,
                kpi=kpi,
            )
        )
        tier = "HUYEN" if u.tier == "HUYEN" else "XA"
        tier_counts[tier].update(counts)
        tier_offered[tier].update(offered)
        tier_without[tier].update(without)
    all_counts = tier_counts["HUYEN"] + tier_counts["XA"]
    all_offered = {**tier_offered["XA"], **tier_offered["HUYEN"]}
    city_desk, wards = (
        _row(
            code=t,
            name=TIER_LABELS[t],
            tier=t,
            counts=tier_counts[t],
            period=period,
            offered=tier_offered[t],
            without=tier_without[t],
            kpi=kpi,
        )
        for t in ("HUYEN", "XA")
    )
    city = _row(
        code="ALL",
        name="Toàn thành phố",
        tier="ALL",
        counts=all_counts,
        period=period,
        offered=all_offered,
        without=tier_without["HUYEN"] + tier_without["XA"],
        kpi=kpi,
    )
    all_procs = _all_offered(catalogue, list(units), last_day)
    n_all = len(all_procs)
    n3 = sum(1 for lvl in all_procs.values() if lvl in ONLINE_LEVELS)
    n4 = sum(1 for lvl in all_procs.values() if lvl == Level.TOAN_TRINH)
    tlist = [
        Target(
            "level3_coverage",
            "Thủ tục trực tuyến mức độ 3 trở lên",
            n3 / n_all if n_all else None,
            targets.level3_coverage,
        ),
        Target(
            "level4_coverage",
            "Thủ tục trực tuyến mức độ 4",
            n4 / n_all if n_all else None,
            targets.level4_coverage_min,
            targets.level4_coverage_max,
        ),
        Target("online_share", "Tỷ lệ hồ sơ trực tuyến", city.levels["ALL"].online_share, targets.online_share),
    ]
    return Report(
        period=period_label(period),
        period_kind="range" if isinstance(period, tuple) else period_kind(period),
        unit=unit,
        generated_at=now or datetime.now(TZ),
        rows=rows,
        city_desk=city_desk,
        wards=wards,
        city=city,
        targets=tlist,
    )


def _online_offered(catalogue: Catalogue | None, unit: str, on: date) -> dict[str, Level]:
    if catalogue is None:
        return {}
    return {p: lvl for p, lvl in catalogue.offered_procedures(unit, on).items() if lvl in ONLINE_LEVELS}


def _all_offered(catalogue: Catalogue | None, units: Iterable[str], on: date) -> dict[tuple[str, str], Level]:
    out: dict[tuple[str, str], Level] = {}
    if catalogue is None:
        return out
    for u in units:
        for p, lvl in catalogue.offered_procedures(u, on).items():
            out[(u, p)] = lvl
    return out


# =========================================================================== rendering

_COLUMNS = (
    ("received", "Tiếp nhận"),
    ("received_online", "Trực tuyến"),
    ("finished", "Đã giải quyết"),
    ("finished_early", "Trước hạn"),
    ("on_time_total", "Đúng hạn"),
    ("finished_late", "Quá hạn"),
    ("refused", "Từ chối"),
    ("withdrawn", "Rút hồ sơ"),
    ("open", "Đang xử lý"),
    ("overdue", "Quá hạn đang xử lý"),
)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def _cells(lf: LevelFigures) -> list[str]:
    return [str(getattr(lf, k)) for k, _ in _COLUMNS]


def _all_rows(report: Report) -> list[ReportRow]:
    return [*report.rows, report.city_desk, report.wards, report.city]


def render(report: Report, fmt: Literal["table", "json", "csv"] = "table") -> str:
    """The report as a text table (Vietnamese), JSON (English keys) or CSV (Vietnamese headers)."""
    if fmt == "json":
        return json.dumps(report.as_dict(), ensure_ascii=False, indent=2)
    online_target = next((t for t in report.targets if t.key == "online_share"), None)
    target_text = online_target.target_text if online_target else ""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            [
                "Mã đơn vị",
                "Đơn vị",
                "Cấp",
                "Kỳ",
                "Mức độ",
                *[h for _, h in _COLUMNS],
                "Tỷ lệ trực tuyến",
                "Mục tiêu",
                "Thủ tục cung cấp",
                "Không phát sinh hồ sơ",
            ]
        )
        for r in _all_rows(report):
            for lvl in ONLINE_LEVELS:
                lf = r.levels[lvl.value]
                w.writerow(
                    [
                        r.code,
                        r.name,
                        TIER_LABELS.get(r.tier, r.tier),
                        report.period,
                        LEVEL_LABELS[lvl][0],
                        *_cells(lf),
                        _pct(lf.online_share),
                        target_text,
                        r.offered[lvl.value],
                        r.without_dossier[lvl.value],
                    ]
                )
            lf = r.levels["ALL"]
            w.writerow(
                [
                    r.code,
                    r.name,
                    TIER_LABELS.get(r.tier, r.tier),
                    report.period,
                    "Tất cả",
                    *_cells(lf),
                    _pct(lf.online_share),
                    target_text,
                    "",
                    "",
                ]
            )
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"format {fmt!r} is not one of table, json, csv")
    return _table(report, target_text)


def _fmt_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "-+-".join("-" * w for w in widths)

    def fmt(cells: list[str]) -> str:
        return " | ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [fmt(header), line, *(fmt(r) for r in rows)]


def _table(report: Report, target_text: str) -> str:
    out = [
        f"BÁO CÁO DỊCH VỤ CÔNG TRỰC TUYẾN — Kỳ {report.period}",
        f"Thời điểm tổng hợp: {report.generated_at.astimezone(TZ).isoformat(timespec='seconds')}",
        "",
    ]
    header = ["Đơn vị", "Mức độ", *[h for _, h in _COLUMNS], "Tỷ lệ trực tuyến", "Mục tiêu"]
    body: list[list[str]] = []
    for r in _all_rows(report):
        name = (
            r.name if r.tier in ("ALL", "HUYEN", "XA") and r.code in ("ALL", "HUYEN", "XA") else f"{r.name} ({r.code})"
        )
        for lvl in ONLINE_LEVELS:
            lf = r.levels[lvl.value]
            body.append([name, LEVEL_LABELS[lvl][0], *_cells(lf), _pct(lf.online_share), target_text])
        lf = r.levels["ALL"]
        body.append([name, "Tất cả", *_cells(lf), _pct(lf.online_share), target_text])
    out += _fmt_table(header, body)
    out += ["", "THỦ TỤC HÀNH CHÍNH"]
    proc_rows = [
        [
            r.name,
            str(r.offered[Level.MOT_PHAN.value]),
            str(r.offered[Level.TOAN_TRINH.value]),
            str(r.without_dossier[Level.MOT_PHAN.value]),
            str(r.without_dossier[Level.TOAN_TRINH.value]),
        ]
        for r in (report.city_desk, report.wards, report.city)
    ]
    out += _fmt_table(
        ["Cấp", "Mức độ 3", "Mức độ 4", "Không phát sinh hồ sơ (mức độ 3)", "Không phát sinh hồ sơ (mức độ 4)"],
        proc_rows,
    )
    out += ["", "CHỈ TIÊU 2021–2025"]
    out += _fmt_table(
        ["Chỉ tiêu", "Thực hiện", "Mục tiêu", "Đạt"],
        [
            [t.label, _pct(t.actual), t.target_text, {True: "Đạt", False: "Chưa đạt", None: "—"}[t.met]]
            for t in report.targets
        ],
    )
    out += ["", "CHỈ SỐ QUYẾT ĐỊNH 766/QĐ-TTg (toàn thành phố)"]
    ind_rows = [
        [
            f"{code} {INDICATOR_NAMES[code]}",
            _pct(i.rate),
            "—" if i.score is None else f"{i.score:.2f}",
            "—" if i.max_score is None else f"{i.max_score:g}",
            f"{i.numerator}/{i.denominator}",
        ]
        for code, i in report.city.indicators.items()
    ]
    out += _fmt_table(["Chỉ số", "Tỷ lệ", "Điểm", "Tối đa", "Tử số/Mẫu số"], ind_rows)
    pct = report.city.score_percent
    out.append(f"Tổng điểm (quy đổi 100): {'—' if pct is None else f'{pct:.1f}'} — Xếp loại: {report.city.band}")
    return "\n".join(out) + "\n"


# =========================================================================== portal statistics


def stats_body(ky: str, unit: Unit, counts: Counter[str], catalogue: Catalogue | None, now: datetime) -> dict[str, Any]:
    """The body of ``PUT /api/v1/thongke/dvctt/{ky}/{ma_don_vi}`` for one unit (contracts.md §3).

    ``counts`` are the unit's merged counts (including the live open part of the current period).
    Procedures are those valid on the period's last day, or today for a period still running.
    """
    _, end = period_bounds(ky)
    on = min(end - timedelta(days=1), now.astimezone(TZ).date())
    by_level = []
    for lvl in ONLINE_LEVELS:
        lf = _level_figures(counts, ky, lvl.value)
        by_level.append(
            {
                "muc_do": LEVEL_LABELS[lvl][2],
                "tiep_nhan": lf.received,
                "tiep_nhan_truc_tuyen": lf.received_online,
                "da_giai_quyet": lf.finished,
                "dung_han": lf.on_time_total,
                "truoc_han": lf.finished_early,
                "qua_han": lf.finished_late,
                "dang_xu_ly": lf.open,
                "qua_han_dang_xu_ly": lf.overdue,
            }
        )
    offered = catalogue.offered(unit.code, on) if catalogue is not None else {}
    without = catalogue.without_dossier(unit.code, ky, counts) if catalogue is not None else {}
    return {
        "ky": ky,
        "ma_don_vi": unit.code,
        "cap": unit.tier,
        "thoi_diem_tong_hop": now.astimezone(TZ).isoformat(timespec="seconds"),
        "theo_muc_do": by_level,
        "thu_tuc": {
            "muc_do_3": offered.get(Level.MOT_PHAN, 0),
            "muc_do_4": offered.get(Level.TOAN_TRINH, 0),
            "khong_phat_sinh_ho_so": sum(without.values()),
        },
    }


# =========================================================================== merged prometheus samples


def merged_samples(  # noqa: PLR0917 - mirrors build_report's argument order
    merged: Mapping[str, Counter[str]],
    catalogue: Catalogue | None,
    registry: UnitRegistry,
    now: datetime,
    kpi: Kpi766Settings,
    periods: Iterable[str] | None = None,
) -> Iterator[tuple[MetricSpec, dict[str, str], float]]:
    """766 rates/scores and catalogue gauges from merged counts (periods: now's month, quarter, year)."""
    today = now.astimezone(TZ).date()
    pers = list(periods) if periods is not None else list(periods_of_date(today))
    for u in registry.units():
        counts = merged.get(u.code, Counter())
        if catalogue is not None:
            for lvl, n in catalogue.offered(u.code, today).items():
                if lvl in ONLINE_LEVELS:
                    yield PROCEDURES_OFFERED, {"unit": u.code, "tier": u.tier, "level": lvl.value}, float(n)
        for per in pers:
            labels = {"unit": u.code, "tier": u.tier, "period": per, "period_kind": period_kind(per)}
            if catalogue is not None:
                for lvl, n in catalogue.without_dossier(u.code, per, counts).items():
                    yield PROCEDURES_WITHOUT_DOSSIER, {**labels, "level": lvl.value}, float(n)
            for code, ind in indicators(counts, per, kpi).items():
                if ind.rate is not None:
                    yield KPI766_RATE, {**labels, "indicator": code}, ind.rate
                if ind.score is not None:
                    yield KPI766_SCORE, {**labels, "indicator": code}, ind.score
