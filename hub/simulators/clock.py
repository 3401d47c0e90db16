"""The simulated source systems' clock, and the two time formats the contracts use.

Every simulated system stamps its data and answers ``/health`` from one :class:`SimClock`, never
from :func:`datetime.now` directly, so tests and scenario plays can decide what "now" is::

    >>> from datetime import datetime, timedelta
    >>> clock = SimClock.manual(datetime(2021, 1, 15, 9, 30, tzinfo=TZ))
    >>> clock.advance(timedelta(seconds=90))
    >>> fmt_compact(clock.now())
    '20210115093130'

A live clock follows the real one, optionally skewed, to imitate a source whose clock runs ahead of
or behind the hub's (the reason connectors must take "now" from ``/health``, not from themselves)::

    >>> ahead = SimClock.live(skew=timedelta(minutes=3))
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["TZ", "SimClock", "fmt_compact", "fmt_iso", "parse_compact", "parse_iso"]

#: Local time of every Vietnamese system (UTC+7, no daylight saving time).
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class SimClock:
    """A thread-safe clock in Asia/Ho_Chi_Minh: live (real time + skew) or manual (set by hand).

    Build one with :meth:`live` or :meth:`manual`; the scenario player and the simulator servers
    may read and move it from different threads.
    """

    def __init__(self, *, manual_now: datetime | None, skew: timedelta) -> None:
        self._lock = threading.Lock()
        self._manual_now = _aware(manual_now) if manual_now is not None else None
        self._skew = skew

    @classmethod
    def live(cls, skew: timedelta = timedelta(0)) -> SimClock:
        """Real time plus ``skew`` (positive = the source's clock runs ahead of the hub's)."""
        return cls(manual_now=None, skew=skew)

    @classmethod
    def manual(cls, start: datetime) -> SimClock:
        """A clock that stands still at ``start`` until :meth:`set` or :meth:`advance` moves it.

        A naive ``start`` is read as local Vietnamese time.
        """
        return cls(manual_now=start, skew=timedelta(0))

    @property
    def is_manual(self) -> bool:
        """True for a manual clock."""
        return self._manual_now is not None

    @property
    def skew(self) -> timedelta:
        """The offset a live clock adds to real time (zero for a manual clock)."""
        return self._skew

    def now(self) -> datetime:
        """The current source time, timezone-aware in Asia/Ho_Chi_Minh."""
        with self._lock:
            if self._manual_now is not None:
                return self._manual_now
        return datetime.now(TZ) + self._skew

    def set(self, dt: datetime) -> None:
        """Move a manual clock to ``dt`` (backwards too: a source clock can be corrected)."""
        with self._lock:
            self._require_manual()
            self._manual_now = _aware(dt)

    def advance(self, delta: timedelta) -> None:
        """Move a manual clock forward by ``delta``."""
        with self._lock:
            self._require_manual()
            assert self._manual_now is not None  # narrowed by _require_manual
            self._manual_now = self._manual_now + delta

    def _require_manual(self) -> None:
        if self._manual_now is None:
            raise RuntimeError("a live SimClock follows real time; build it with SimClock.manual() to move it")

    def __repr__(self) -> str:
        mode = f"manual at {self._manual_now.isoformat()}" if self._manual_now else f"live, skew {self._skew}"
        return f"SimClock({mode})"


def _aware(dt: datetime) -> datetime:
    """``dt`` in Asia/Ho_Chi_Minh; a naive value is taken as already local."""
    return dt.replace(tzinfo=TZ) if dt.tzinfo is None else dt.astimezone(TZ)


def fmt_compact(dt: datetime) -> str:
    """``yyyyMMddHHmmss`` in local Vietnamese time: the national dossier format."""
    return _aware(dt).strftime("%Y%m%d%H%M%S")


def parse_compact(text: str) -> datetime:
    """Parse ``yyyyMMddHHmmss`` (local time); :class:`ValueError` if it is not exactly that."""
    if len(text) != 14 or not text.isdigit():
        raise ValueError(f"expected yyyyMMddHHmmss (14 digits), got {text!r}")
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=TZ)


def fmt_iso(dt: datetime) -> str:
    """ISO-8601 to the second with the +07:00 offset, as QLVB and the portal write times."""
    return _aware(dt).isoformat(timespec="seconds")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 time that carries its offset; :class:`ValueError` if the offset is missing."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"ISO-8601 time without an offset: {text!r} (write e.g. 2021-01-15T08:00:00+07:00)")
    return dt.astimezone(TZ)
