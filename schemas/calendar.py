"""Working time in Vietnamese public administration: due dates are counted in working days.

A one-stop system sets a dossier's due date (``NgayHenTra``) by adding the procedure's processing
time in *working days* to the reception time (domain.md §4). A working day is Monday to Friday,
not a public holiday, with **8 working hours: 08:00–12:00 and 13:30–17:30** local time
(Asia/Ho_Chi_Minh). Holidays come from the maintained ``holidays`` package (pinned in
pyproject.toml), which includes the lunar-calendar ones (Tết, Hùng Kings' day) and the
observed/bridge days the government announces.

"Add N working days" means "add N × 8 working hours": a dossier received on Friday at 15:00 with
a one-day processing time is due on Monday at 15:00; one received outside working hours starts
its clock at the next working period. A result that lands exactly at the end of a period stays
there (08:00 + 1 day = 17:30 the same day), which is how the one-stop systems print it.

Example::

    >>> from datetime import datetime
    >>> cal = WorkingCalendar()
    >>> cal.is_working_day(date(2021, 2, 12))          # Tết
    False
    >>> cal.add_working_days(datetime(2021, 1, 15, 15, 0, tzinfo=TZ), 1).isoformat()
    '2021-01-18T15:00:00+07:00'
    >>> cal.working_days_between(date(2021, 2, 9), date(2021, 2, 18))   # Tết week: 17th and 18th
    2
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone

import holidays

__all__ = ["MORNING", "TZ", "WORKING_MINUTES_PER_DAY", "WorkingCalendar"]

#: Vietnam's local time: UTC+7 without daylight saving since 1975 (a fixed offset is exact and fast).
TZ = timezone(timedelta(hours=7))

#: The two working periods of a day (start, end), local time.
MORNING = (time(8, 0), time(12, 0))
AFTERNOON = (time(13, 30), time(17, 30))
WORKING_MINUTES_PER_DAY = 8 * 60

_PERIODS = (MORNING, AFTERNOON)


class WorkingCalendar:
    """Working days and working-time arithmetic for Vietnamese public administration.

    ``extra_holidays`` adds days off the library does not know yet (a decision announced late);
    ``extra_working_days`` are weekend days declared working days (compensation for a bridge holiday).
    """

    def __init__(self, extra_holidays: Iterable[date] = (), extra_working_days: Iterable[date] = ()) -> None:
        self._extra_off = frozenset(extra_holidays)
        self._extra_on = frozenset(extra_working_days)
        self._years: dict[int, frozenset[date]] = {}

    def holidays_of(self, year: int) -> frozenset[date]:
        """The public holidays of ``year`` (library + extra), cached."""
        days = self._years.get(year)
        if days is None:
            lib = holidays.country_holidays("VN", years=year)
            days = frozenset(d for d in lib if d.year == year) | {d for d in self._extra_off if d.year == year}
            self._years[year] = days
        return days

    def is_working_day(self, d: date | datetime) -> bool:
        """Mon–Fri and not a holiday, or a declared extra working day."""
        if isinstance(d, datetime):
            d = _local(d).date()
        if d in self._extra_on:
            return True
        return d.weekday() < 5 and d not in self.holidays_of(d.year)

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after ``d``."""
        d += timedelta(days=1)
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """``start`` plus ``days`` × 8 working hours (see the module docstring), in local time."""
        if days < 0:
            raise ValueError("days must be >= 0; a due date is never before the reception")
        pos = _local(start)
        if days == 0:
            return pos
        remaining = timedelta(minutes=days * WORKING_MINUTES_PER_DAY)
        d = pos.date()
        t = pos.timetz().replace(tzinfo=None)
        while True:
            if self.is_working_day(d):
                for p_start, p_end in _PERIODS:
                    if t >= p_end:
                        continue
                    begin = max(t, p_start)
                    at = datetime.combine(d, begin, TZ)
                    avail = datetime.combine(d, p_end, TZ) - at
                    if remaining <= avail:
                        return at + remaining
                    remaining -= avail
                    t = p_end
                # skip whole working days quickly
                d = self.next_working_day(d)
                while remaining > timedelta(minutes=WORKING_MINUTES_PER_DAY):
                    remaining -= timedelta(minutes=WORKING_MINUTES_PER_DAY)
                    d = self.next_working_day(d)
            else:
                d = self.next_working_day(d)
            t = time(0, 0)

    def working_days_between(self, a: date | datetime, b: date | datetime) -> int:
        """Working days ``d`` with ``a < d <= b`` (by local date); negative when ``b`` is before ``a``."""
        da = _local(a).date() if isinstance(a, datetime) else a
        db = _local(b).date() if isinstance(b, datetime) else b
        sign = 1
        if db < da:
            da, db, sign = db, da, -1
        n = 0
        d = da + timedelta(days=1)
        while d <= db:
            if self.is_working_day(d):
                n += 1
            d += timedelta(days=1)
        return sign * n


def _local(dt: datetime) -> datetime:
    """Aware local time; a naive datetime is taken as already local (the sources' convention)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=TZ)
    return dt.astimezone(TZ)
