"""Reporting periods: months (``2021-03``), quarters (``2021-Q1``), years (``2021``), month ranges.

All period arithmetic is in local time (Asia/Ho_Chi_Minh, UTC+7, no DST) on epoch seconds, cached
by day, because the counters compute the periods of every dossier on every change.

    >>> periods_of_ts(1615600000)          # 2021-03-13 08:46 local
    ('2021-03', '2021-Q1', '2021')
    >>> period_bounds("2021-Q1")
    (datetime.date(2021, 1, 1), datetime.date(2021, 4, 1))
    >>> period_months(("2020-11", "2021-02"))
    ['2020-11', '2020-12', '2021-01', '2021-02']
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Literal

from schemas.calendar import TZ

__all__ = [
    "Period",
    "PeriodKind",
    "local_date",
    "metric_window",
    "month_end_ts",
    "period_bounds",
    "period_kind",
    "period_label",
    "period_months",
    "periods_of_date",
    "periods_of_ts",
]

Period = str | tuple[str, str]
PeriodKind = Literal["month", "quarter", "year"]

_OFFSET = 7 * 3600
_UNIX_ORDINAL = date(1970, 1, 1).toordinal()


def local_date(ts: int) -> date:
    """Local calendar date of an epoch time."""
    return _day(((ts + _OFFSET) // 86400) + _UNIX_ORDINAL)


@lru_cache(maxsize=8192)
def _day(ordinal: int) -> date:
    return date.fromordinal(ordinal)


@lru_cache(maxsize=8192)
def _periods_of_ordinal(ordinal: int) -> tuple[str, str, str]:
    d = date.fromordinal(ordinal)
    y = str(d.year)
    return (f"{y}-{d.month:02d}", f"{y}-Q{(d.month - 1) // 3 + 1}", y)


def periods_of_ts(ts: int) -> tuple[str, str, str]:
    """(month, quarter, year) of an epoch time, local."""
    return _periods_of_ordinal(((ts + _OFFSET) // 86400) + _UNIX_ORDINAL)


def periods_of_date(d: date) -> tuple[str, str, str]:
    """(month, quarter, year) of a date."""
    return _periods_of_ordinal(d.toordinal())


@lru_cache(maxsize=4096)
def month_end_ts(year: int, month: int) -> int:
    """Epoch seconds of the local midnight that ends ``year-month`` (the next month's first instant)."""
    y, m = (year + 1, 1) if month == 12 else (year, month + 1)
    return int(datetime(y, m, 1, tzinfo=TZ).timestamp())


@lru_cache(maxsize=64)
def metric_window(year: int, years_back: int) -> frozenset[str]:
    """Every period (months, quarters, years) of ``year`` and the ``years_back`` years before it.

    What ``/metrics`` exports (``metrics.years_back``): 17 periods a year, whatever the input.

    >>> w = metric_window(2021, 1)
    >>> len(w), "2020-01" in w, "2021-Q4" in w, "2019" in w, "2022-01" in w
    (34, True, True, False, False)
    """
    out: set[str] = set()
    for y in range(year - years_back, year + 1):
        out.add(str(y))
        out.update(f"{y}-Q{q}" for q in range(1, 5))
        out.update(f"{y}-{m:02d}" for m in range(1, 13))
    return frozenset(out)


def period_kind(period: str) -> PeriodKind:
    """``month``, ``quarter`` or ``year`` of a period string."""
    if "-Q" in period:
        return "quarter"
    return "month" if "-" in period else "year"


def period_bounds(period: Period) -> tuple[date, date]:
    """(first day, first day after) of a period or a month range; ValueError says the accepted forms."""
    if isinstance(period, tuple):
        a, _ = period_bounds(period[0])
        _, b = period_bounds(period[1])
        if period_kind(period[0]) != "month" or period_kind(period[1]) != "month" or b <= a:
            raise ValueError(f"a period range is two months, from <= to, like ('2020-09', '2021-03'); got {period}")
        return a, b
    try:
        kind = period_kind(period)
        if kind == "year":
            y = int(period)
            return date(y, 1, 1), date(y + 1, 1, 1)
        ys, rest = period.split("-", 1)
        y = int(ys)
        if kind == "quarter":
            q = int(rest[1:]) if rest[1:] in ("1", "2", "3", "4") else 0
            start = date(y, 3 * q - 2, 1)
            return start, (date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1))
        m = int(rest)
        return date(y, m, 1), (date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1))
    except ValueError:
        raise ValueError(f"period {period!r} is not YYYY, YYYY-Qn or YYYY-MM") from None


def period_months(period: Period) -> list[str]:
    """The months a period covers, in order."""
    start, end = period_bounds(period)
    out = []
    y, m = start.year, start.month
    while date(y, m, 1) < end:
        out.append(f"{y}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def period_label(period: Period) -> str:
    """``2021-Q1`` or ``2020-09..2021-03``."""
    return f"{period[0]}..{period[1]}" if isinstance(period, tuple) else period
