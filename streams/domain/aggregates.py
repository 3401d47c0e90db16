"""Counters derived from dossier state, so that replays and crashes never count twice.

A counter is never "incremented by an event". Instead, every dossier *contributes* a set of count
keys computed from its merged view (:func:`contributions`); when the view changes, the
:class:`Aggregates` subtract the old view's keys and add the new view's keys. Replaying an event
changes no view (``state.apply`` returns ``None``), and after a crash the totals of a partition
are rebuilt from the partition's states (:meth:`Aggregates.rebuild`). So, at any time,
``totals == sum(contributions(view) for every view)``: the invariant ``tests/domain`` checks with
random event sequences, replays, reordering and crashes.

Count keys (``schemas/figures.py``) are ``metric|level|channel|period|extra`` with the dossier's
level (``MucDo`` at filing) and channel; each dated figure is counted in its month, quarter and
year. The rules (domain.md §3–4, docs/domain-model.md):

* ``received`` (+ ``procedure_dossiers`` with the procedure code as extra, ``paid_online``,
  ``fee_bearing``, ``digitised_reuse``) — in the periods of the reception date (local);
* ``finished_early``/``finished_on_time``/``finished_late`` (+ ``electronic_result``,
  ``paper_result_procedure``) — status 9/10, in the periods of the end date; before the due day =
  early, on the due day = on time, after = late; a second supplement request makes it late;
* ``refused`` (status 3), ``withdrawn`` (status 7) — in the periods of the end date;
* ``open_end``/``overdue_end`` — for every period that ENDED while the dossier was open, up to the
  dossier's last known time (``as_of``: its snapshot's ``NgayCapNhat``). Periods after ``as_of``
  depend on the clock, not on the dossier, so they are not stored: :meth:`Aggregates.unit_figures`
  adds them at read time from the index of open dossiers ("open at the period's end, or now").

Example::

    >>> from streams.domain.state import DossierView
    >>> from schemas.events import Channel
    >>> v = DossierView(ma_ho_so="H56.X-1", version=1, unit_code="14767", unit_tier="XA",
    ...     procedure_code="P1", level_raw=3, channel=Channel.TRUC_TUYEN, status=10,
    ...     received_ts=1610673610, due_ts=1610964000, end_ts=1610780000, as_of_ts=1610780000,
    ...     supplement_requests=0, paid_online=False, digitised=False, electronic_result=False)
    >>> sorted(k for (_, k) in contributions(v) if k.endswith("|2021-01|"))
    ['finished_early|MOT_PHAN|TRUC_TUYEN|2021-01|', 'received|MOT_PHAN|TRUC_TUYEN|2021-01|']
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

from hub.metrics import (
    DOSSIERS_FINISHED,
    DOSSIERS_IN_STATE,
    DOSSIERS_OPEN,
    DOSSIERS_OPEN_NOW,
    DOSSIERS_OVERDUE_NOW,
    DOSSIERS_RECEIVED,
    DOSSIERS_REFUSED,
    DOSSIERS_WITHDRAWN,
    MetricSpec,
)
from schemas.calendar import TZ
from schemas.events import CatalogueEntry, Level
from schemas.figures import UnitFigures, split_key
from schemas.units import UnitRegistry
from streams.domain.periods import (
    Period,
    local_date,
    month_end_ts,
    period_bounds,
    period_kind,
    period_months,
    periods_of_ts,
)
from streams.domain.state import DossierView

__all__ = [
    "ONLINE_LEVELS",
    "Aggregates",
    "Catalogue",
    "Change",
    "Group",
    "contributions",
    "timeliness",
]

#: (unit, tier, level, channel): the dimensions of the live figures and of the Prometheus labels.
Group = tuple[str, str, str, str]
Key = tuple[str, str]  # (unit_code, count key)

ONLINE_LEVELS = (Level.MOT_PHAN, Level.TOAN_TRINH)
_FINISHED = {"early": "finished_early", "on_time": "finished_on_time", "late": "finished_late"}


# =========================================================================== catalogue


@dataclass(frozen=True, slots=True)
class _CatRow:
    valid_from_ts: int
    from_day: date
    to_day: date | None  # exclusive
    level: Level
    level_raw: int
    has_fee: bool
    paper_result: bool

    def covers(self, on: date) -> bool:
        return self.from_day <= on and (self.to_day is None or on < self.to_day)

    def overlaps(self, start: date, end: date) -> bool:
        return self.from_day < end and (self.to_day is None or self.to_day > start)


def _to_day(valid_to: datetime | None) -> date | None:
    """Exclusive end day: a ``HieuLucDen`` at midnight ends before that day, any later time after it."""
    if valid_to is None:
        return None
    t = valid_to.astimezone(TZ)
    d = t.date()
    if (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0):
        return d
    return date.fromordinal(d.toordinal() + 1)


class Catalogue:
    """The procedures each unit offers, with dated rows (a procedure's level changes over time).

    Build it from :class:`CatalogueEntry` events (:meth:`add` is idempotent; ``version`` grows on
    every effective change). A row is keyed by (unit, procedure, ``valid_from``); on a given day the
    row with the latest ``valid_from`` that covers the day wins.

        >>> from schemas.events import CatalogueEntry, Level
        >>> cat = Catalogue([CatalogueEntry(event_id="c1", source="motcua", unit_code="14767",
        ...     procedure_code="P1", level_raw=3, level=Level.MOT_PHAN, has_fee=True,
        ...     valid_from="2020-01-01T00:00:00+07:00")])
        >>> cat.offered("14767", date(2021, 3, 1))[Level.MOT_PHAN]
        1
        >>> cat.has_fee("14767", "P1", date(2021, 3, 1))
        True
    """

    def __init__(self, entries: Iterable[CatalogueEntry] = ()) -> None:
        self._rows: dict[tuple[str, str], dict[int, _CatRow]] = {}
        self._by_unit: dict[str, set[str]] = {}
        self._by_proc: dict[str, set[str]] = {}
        self.version = 0
        for e in entries:
            self.add(e)

    def add(self, entry: CatalogueEntry) -> bool:
        """Insert or replace one dated row; True when it changed the catalogue."""
        ts = int(entry.valid_from.timestamp())
        row = _CatRow(
            valid_from_ts=ts,
            from_day=entry.valid_from.astimezone(TZ).date(),
            to_day=_to_day(entry.valid_to),
            level=level_of(entry.level_raw),
            level_raw=entry.level_raw,
            has_fee=entry.has_fee,
            paper_result=entry.paper_result,
        )
        rows = self._rows.setdefault((entry.unit_code, entry.procedure_code), {})
        if rows.get(ts) == row:
            return False
        rows[ts] = row
        self._by_unit.setdefault(entry.unit_code, set()).add(entry.procedure_code)
        self._by_proc.setdefault(entry.procedure_code, set()).add(entry.unit_code)
        self.version += 1
        return True

    def _row_on(self, unit: str, proc: str, on: date) -> _CatRow | None:
        rows = self._rows.get((unit, proc))
        if not rows:
            return None
        best: _CatRow | None = None
        for r in rows.values():
            if r.covers(on) and (best is None or r.valid_from_ts > best.valid_from_ts):
                best = r
        return best

    def _row_any_unit(self, unit: str, proc: str, on: date) -> _CatRow | None:
        # Dossiers may be filed for another unit's procedure: fees and result form belong to the procedure.
        row = self._row_on(unit, proc, on)
        if row is None:
            for other in sorted(self._by_proc.get(proc, ())):
                row = self._row_on(other, proc, on)
                if row is not None:
                    break
        return row

    def level(self, unit: str, proc: str, on: date) -> Level | None:
        """The level ``proc`` had at ``unit`` on ``on``, or None when not offered then."""
        row = self._row_on(unit, proc, on)
        return row.level if row is not None else None

    def offered(self, unit: str, on: date) -> dict[Level, int]:
        """Procedures ``unit`` offers on ``on``, by level (every level present, zeros included)."""
        out = dict.fromkeys(Level, 0)
        for lvl in self.offered_procedures(unit, on).values():
            out[lvl] += 1
        return out

    def offered_procedures(self, unit: str, on: date) -> dict[str, Level]:
        """Procedure code -> level of what ``unit`` offers on ``on``."""
        out: dict[str, Level] = {}
        for proc in self._by_unit.get(unit, ()):
            row = self._row_on(unit, proc, on)
            if row is not None:
                out[proc] = row.level
        return out

    def has_fee(self, unit: str, proc: str, on: date) -> bool:
        """True when the procedure charges a fee on ``on`` (any unit's row as a fallback)."""
        row = self._row_any_unit(unit, proc, on)
        return row is not None and row.has_fee

    def paper_result(self, unit: str, proc: str, on: date) -> bool:
        """True when the procedure's result is a paper document on ``on`` (766 §4.1 denominator)."""
        row = self._row_any_unit(unit, proc, on)
        return row is not None and row.paper_result

    def units(self) -> list[str]:
        """Units that have catalogue rows."""
        return sorted(self._by_unit)

    def online_procedures(self, unit: str, period: Period) -> dict[str, Level]:
        """Online procedures (levels 3, 4) valid at some time in ``period``, with their latest level in it."""
        start, end = period_bounds(period)
        out: dict[str, Level] = {}
        for proc in self._by_unit.get(unit, ()):
            best: _CatRow | None = None
            for r in self._rows[(unit, proc)].values():
                if r.overlaps(start, end) and (best is None or r.valid_from_ts > best.valid_from_ts):
                    best = r
            if best is not None and best.level in ONLINE_LEVELS:
                out[proc] = best.level
        return out

    def without_dossier(self, unit: str, period: Period, counts: Counter[str]) -> dict[Level, int]:
        """Online procedures valid in ``period`` that received no dossier in it (TTHC không phát sinh hồ sơ).

        ``counts`` are the unit's merged counts; a procedure "received a dossier" when any
        ``procedure_dossiers`` key of the period (for a range: of any of its months) names it.
        """
        wanted = set(period_months(period)) if isinstance(period, tuple) else {period}
        seen: set[str] = set()
        for key, n in counts.items():
            if n > 0 and key.startswith("procedure_dossiers|"):
                _, _, _, per, extra = split_key(key)
                if per in wanted:
                    seen.add(extra)
        out = dict.fromkeys(ONLINE_LEVELS, 0)
        for proc, lvl in self.online_procedures(unit, period).items():
            if proc not in seen:
                out[lvl] += 1
        return out


def level_of(level_raw: int) -> Level:
    """Normalised level of a raw ``MucDo``."""
    return Level.TOAN_TRINH if level_raw == 4 else Level.MOT_PHAN if level_raw == 3 else Level.KHONG_TRUC_TUYEN


# =========================================================================== contributions


def timeliness(v: DossierView) -> str | None:
    """``early``/``on_time``/``late`` of a finished (9/10) dossier by calendar day; None if not finished."""
    if v.status not in (9, 10) or v.end_ts is None:
        return None
    if v.supplement_requests >= 2:
        return "late"  # Decision 766: a second supplement request makes the dossier late
    if v.due_ts is None:
        return "on_time"  # no due date ("giải quyết ngay"): nothing to miss
    end_day, due_day = local_date(v.end_ts), local_date(v.due_ts)
    if end_day < due_day:
        return "early"
    return "on_time" if end_day == due_day else "late"


def _add(out: set[Key], unit: str, metric: str, lc: str, ts: int, *, extra: str = "") -> None:
    for per in periods_of_ts(ts):
        out.add((unit, f"{metric}|{lc}|{per}|{extra}"))


def contribution_keys(v: DossierView, catalogue: Catalogue | None = None) -> set[Key]:
    """The set form of :func:`contributions` (what :class:`Aggregates` uses)."""
    out: set[Key] = set()
    u = v.unit_code
    lc = f"{v.level.value}|{v.channel.value}"
    recv = v.received_ts if v.is_received else None
    if recv is not None:
        _add(out, u, "received", lc, recv)
        _add(out, u, "procedure_dossiers", lc, recv, extra=v.procedure_code)
        if v.paid_online:
            _add(out, u, "paid_online", lc, recv)
        if v.paid_online or (catalogue is not None and catalogue.has_fee(u, v.procedure_code, local_date(recv))):
            _add(out, u, "fee_bearing", lc, recv)
        if v.digitised:
            _add(out, u, "digitised_reuse", lc, recv)
    end = v.end_ts
    kind = timeliness(v)
    if kind is not None and end is not None:
        _add(out, u, _FINISHED[kind], lc, end)
        if v.electronic_result:
            _add(out, u, "electronic_result", lc, end)
        # The catalogue row the dossier was filed under (as for fees), not the one valid when it
        # finished: a procedure retired meanwhile still had a paper result for this dossier.
        row_day = local_date(recv if recv is not None else end)
        if catalogue is not None and catalogue.paper_result(u, v.procedure_code, row_day):
            _add(out, u, "paper_result_procedure", lc, end)
    elif v.status == 3 and end is not None:
        _add(out, u, "refused", lc, end)
    elif v.status == 7 and end is not None:
        _add(out, u, "withdrawn", lc, end)
    if recv is not None and (end is not None or v.status in (2, 4, 5, 6)):
        bound = end if end is not None else v.as_of_ts
        for per, per_end in _closed_periods(recv, bound):
            out.add((u, f"open_end|{lc}|{per}|"))
            if v.due_ts is not None and v.due_ts < per_end:
                out.add((u, f"overdue_end|{lc}|{per}|"))
    return out


def contributions(view: DossierView, catalogue: Catalogue | None = None) -> Counter[Key]:
    """(unit_code, count_key) -> 1 for every figure the dossier contributes to (module docstring)."""
    return Counter(dict.fromkeys(contribution_keys(view, catalogue), 1))


def _closed_periods(start_ts: int, bound_ts: int) -> Iterator[tuple[str, int]]:
    """Periods P (month, quarter, year) with start_ts < P.end <= bound_ts, with P.end."""
    d = local_date(start_ts)
    y, m = d.year, d.month
    while True:
        end = month_end_ts(y, m)
        if end > bound_ts:
            return
        if end > start_ts:
            yield f"{y}-{m:02d}", end
            if m % 3 == 0:
                yield f"{y}-Q{m // 3}", end
            if m == 12:
                yield str(y), end
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def _live_periods(as_of_ts: int, now_ts: int) -> Iterator[tuple[str, int]]:
    """Periods P with P.end > as_of and P.start <= now, each with its reference instant min(P.end, now).

    The definition of the live figures of one open dossier. :class:`Aggregates` computes the same
    figures for all open dossiers at once with bisections (:class:`_LiveGroup`);
    ``tests/domain/test_live_figures.py`` checks the two agree.
    """
    d = local_date(as_of_ts)
    n = local_date(now_ts)
    y, m = d.year, d.month
    last = (n.year, n.month)
    while (y, m) <= last:
        end = month_end_ts(y, m)
        ref = min(end, now_ts)
        yield f"{y}-{m:02d}", ref
        is_last = (y, m) == last
        if m % 3 == 0 or is_last:
            yield f"{y}-Q{(m - 1) // 3 + 1}", ref
        if m == 12 or is_last:
            yield str(y), ref
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


# =========================================================================== aggregates


@dataclass(frozen=True, slots=True)
class _Open:
    group: Group
    lc: str
    received_ts: int
    due_ts: int | None
    as_of_ts: int


_NO_DUE = 2**62  # sorts after every real due time: an open dossier without a due date is never overdue


class _LiveGroup:
    """Sorted times of the open dossiers of one (unit, level|channel) in one partition.

    The live figures of a period P (one that ends after a dossier's ``as_of`` and starts by now)
    are dominance counts over these lists, so they cost a few bisections per period instead of a
    walk over every open dossier and every period since its ``as_of``:

    * a period that has ended (end E <= now): open = #{as_of < E}, overdue = #{max(as_of, due) < E};
    * the month, quarter and year of now (C = end of now's month): open = #{as_of < C},
      overdue = #{as_of < C and due < now}.
    """

    __slots__ = ("asof", "dues", "reach")

    def __init__(self) -> None:
        self.asof: list[int] = []  # as_of of every open dossier
        self.dues: list[int] = []  # due of those with a due date
        self.reach: list[int] = []  # max(as_of, due) of those with a due date

    def add(self, e: _Open) -> None:
        bisect.insort(self.asof, e.as_of_ts)
        if e.due_ts is not None:
            bisect.insort(self.dues, e.due_ts)
            bisect.insort(self.reach, max(e.as_of_ts, e.due_ts))

    def remove(self, e: _Open) -> None:
        _remove_sorted(self.asof, e.as_of_ts)
        if e.due_ts is not None:
            _remove_sorted(self.dues, e.due_ts)
            _remove_sorted(self.reach, max(e.as_of_ts, e.due_ts))


def _remove_sorted(values: list[int], value: int) -> None:
    i = bisect.bisect_left(values, value)
    if i < len(values) and values[i] == value:
        values.pop(i)


@lru_cache(maxsize=65536)
def _live_keys(lc: str, year: int, month: int) -> tuple[str, str, str, str, str, str]:
    """(open, overdue) count keys of the month, its quarter and its year, for one ``level|channel``."""
    per = (f"{year}-{month:02d}", f"{year}-Q{(month - 1) // 3 + 1}", str(year))
    return (f"open_end|{lc}|{per[0]}|", f"overdue_end|{lc}|{per[0]}|", f"open_end|{lc}|{per[1]}|",
            f"overdue_end|{lc}|{per[1]}|", f"open_end|{lc}|{per[2]}|", f"overdue_end|{lc}|{per[2]}|")


def _closed_live(lc: str, g: _LiveGroup, now_month: tuple[int, int], into: Counter[str]) -> None:
    """Live figures of the periods that ended before now's month (see :class:`_LiveGroup`)."""
    if not g.asof:
        return
    d = local_date(g.asof[0])
    y, m = d.year, d.month
    while (y, m) < now_month:
        end = month_end_ts(y, m)
        n_open = bisect.bisect_left(g.asof, end)
        if n_open:
            n_over = bisect.bisect_left(g.reach, end)
            keys = _live_keys(lc, y, m)
            last = 6 if m == 12 else 4 if m % 3 == 0 else 2
            for i in range(0, last, 2):
                into[keys[i]] += n_open
                if n_over:
                    into[keys[i + 1]] += n_over
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def _current_live(lc: str, g: _LiveGroup, entries: Iterable[_Open], now_ts: int, into: Counter[str]) -> None:
    """Live figures of now's month, quarter and year (see :class:`_LiveGroup`)."""
    n = local_date(now_ts)
    cut = month_end_ts(n.year, n.month)
    n_open = bisect.bisect_left(g.asof, cut)
    if not n_open:
        return
    n_over = bisect.bisect_left(g.dues, now_ts)
    if n_open < len(g.asof) and n_over:
        # dossiers whose as_of lies after now's month (a source clock ahead): not live yet anywhere
        n_over -= sum(1 for e in entries if e.lc == lc and e.as_of_ts >= cut and e.due_ts is not None
                      and e.due_ts < now_ts)
    keys = _live_keys(lc, n.year, n.month)
    for i in (0, 2, 4):
        into[keys[i]] += n_open
        if n_over:
            into[keys[i + 1]] += n_over


@dataclass(frozen=True, slots=True)
class Change:
    """A planned :meth:`Aggregates.commit`: the count keys a view change removes and adds."""

    partition: int
    old: DossierView | None
    new: DossierView | None
    removed: frozenset[Key] | set[Key]
    added: frozenset[Key] | set[Key]


class _Partition:
    __slots__ = ("closed_cache", "dossiers", "dues", "live", "open", "totals")

    def __init__(self) -> None:
        self.totals: dict[str, Counter[str]] = {}
        self.open: dict[str, dict[str, _Open]] = {}  # unit -> ma_ho_so -> entry
        self.dues: dict[Group, list[int]] = {}  # group -> sorted due times of its open dossiers
        self.live: dict[str, dict[str, _LiveGroup]] = {}  # unit -> "level|channel" -> sorted times
        #: unit -> (now's month, live figures of the periods ended before it); dropped when the unit's
        #: open dossiers change, so a publish of an unchanged unit costs no recount.
        self.closed_cache: dict[str, tuple[tuple[int, int], Counter[str]]] = {}
        self.dossiers = 0


class Aggregates:
    """Per-partition totals derived from dossier views, plus live figures computed at read time.

    The worker owns some partitions; it calls :meth:`apply_change` with the old and new view of a
    dossier whenever ``state.apply`` changed a state, :meth:`rebuild` when it gets a partition
    (after a crash or a rebalance: from the table's states), :meth:`drop_partition` when it loses
    one. Example::

        >>> agg = Aggregates()
        >>> agg.apply_change(0, None, None)
        set()
        >>> agg.totals()
        {}
    """

    def __init__(self, registry: UnitRegistry | None = None, catalogue: Catalogue | None = None) -> None:
        self.registry = registry
        self._catalogue = catalogue
        self._catalogue_version = catalogue.version if catalogue is not None else -1
        self._parts: dict[int, _Partition] = {}
        self._built_with: dict[int, int] = {}

    # ------------------------------------------------------------------ catalogue
    @property
    def catalogue(self) -> Catalogue | None:
        """The catalogue the ``fee_bearing``/``paper_result_procedure`` figures are computed with."""
        return self._catalogue

    def stale_partitions(self) -> list[int]:
        """Partitions whose totals were built with an older catalogue: :meth:`rebuild` them.

        The catalogue (a mutable object shared with its consumer) changes rarely; after it changes,
        figures that depend on it are exact again once every stale partition is rebuilt.
        """
        cur = self._catalogue.version if self._catalogue is not None else -1
        return sorted(p for p, v in self._built_with.items() if v != cur)

    def set_catalogue(self, catalogue: Catalogue | None) -> list[int]:
        """Use another catalogue; returns the partitions to :meth:`rebuild`."""
        self._catalogue = catalogue
        return self.stale_partitions()

    # ------------------------------------------------------------------ changes
    def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
            self._built_with[partition] = self._catalogue.version if self._catalogue is not None else -1
        return part

    def apply_change(self, partition: int, old: DossierView | None, new: DossierView | None) -> set[str]:
        """Subtract ``old``'s contributions, add ``new``'s; the unit codes whose figures changed."""
        return self.commit(self.plan_change(partition, old, new))

    def plan_change(self, partition: int, old: DossierView | None, new: DossierView | None) -> Change:
        """Everything :meth:`commit` needs, computed without changing anything (this is what can raise).

        The state agent plans before it writes the dossier's table row and commits after: a view
        the counters cannot take (a bug, a forged state) then leaves the table *and* the figures as
        they were, and the event becomes a dead letter, instead of a table row the figures never saw.
        """
        cat = self._catalogue
        old_k = contribution_keys(old, cat) if old is not None else set()
        new_k = contribution_keys(new, cat) if new is not None else set()
        return Change(partition, old, new, old_k - new_k, new_k - old_k)

    def commit(self, change: Change) -> set[str]:
        """Apply a planned change: dictionary and list updates only, nothing that depends on the data's values."""
        old, new = change.old, change.new
        if old is None and new is None:
            return set()
        part = self._part(change.partition)
        changed: set[str] = set()
        totals = part.totals
        for unit, key in change.removed:
            c = totals.get(unit)
            if c is None:
                continue
            n = c.get(key, 0) - 1
            if n > 0:
                c[key] = n
            else:
                c.pop(key, None)
            changed.add(unit)
        for unit, key in change.added:
            c = totals.get(unit)
            if c is None:
                c = totals[unit] = Counter()
            c[key] = c.get(key, 0) + 1
            changed.add(unit)
        if old is not None and old.is_open:
            self._unindex(part, old)
            changed.add(old.unit_code)
        if new is not None and new.is_open:
            self._index(part, new)
            changed.add(new.unit_code)
        part.dossiers += (new is not None) - (old is not None)
        return changed

    def _index(self, part: _Partition, v: DossierView) -> None:
        assert v.received_ts is not None
        group = (v.unit_code, v.unit_tier, v.level.value, v.channel.value)
        entry = _Open(group, f"{group[2]}|{group[3]}", v.received_ts, v.due_ts, v.as_of_ts)
        prev = part.open.setdefault(v.unit_code, {}).get(v.ma_ho_so)
        if prev is not None:
            self._remove_due(part, prev)
        part.open[v.unit_code][v.ma_ho_so] = entry
        bisect.insort(part.dues.setdefault(group, []), _NO_DUE if v.due_ts is None else v.due_ts)
        lg = part.live.setdefault(v.unit_code, {}).get(entry.lc)
        if lg is None:
            lg = part.live[v.unit_code][entry.lc] = _LiveGroup()
        lg.add(entry)
        part.closed_cache.pop(v.unit_code, None)

    def _unindex(self, part: _Partition, v: DossierView) -> None:
        units = part.open.get(v.unit_code)
        entry = units.pop(v.ma_ho_so, None) if units is not None else None
        if entry is not None:
            self._remove_due(part, entry)

    @staticmethod
    def _remove_due(part: _Partition, entry: _Open) -> None:
        unit = entry.group[0]
        lg = part.live.get(unit, {}).get(entry.lc)
        if lg is not None:
            lg.remove(entry)
        part.closed_cache.pop(unit, None)
        dues = part.dues.get(entry.group)
        if dues is None:
            return
        due = _NO_DUE if entry.due_ts is None else entry.due_ts
        i = bisect.bisect_left(dues, due)
        if i < len(dues) and dues[i] == due:
            dues.pop(i)
        if not dues:
            del part.dues[entry.group]

    def drop_partition(self, partition: int) -> None:
        """Forget a partition this worker no longer owns."""
        self._parts.pop(partition, None)
        self._built_with.pop(partition, None)

    def rebuild(
        self, partition: int, views: Iterable[DossierView],
        on_error: Callable[[DossierView, Exception], None] | None = None,
    ) -> None:
        """Recompute a partition's totals from scratch (recovery, rebalance, catalogue change).

        A view the counters cannot take raises, unless ``on_error`` is given: then that view is
        left out (and handed to ``on_error``) and the rest of the partition is counted, so one
        bad row can never keep a worker from getting ready.
        """
        self.drop_partition(partition)
        self._part(partition)
        for v in views:
            try:
                change = self.plan_change(partition, None, v)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(v, exc)
                continue
            self.commit(change)

    def partitions(self) -> list[int]:
        """Partitions this object holds."""
        return sorted(self._parts)

    def dossier_count(self) -> int:
        """Dossiers with a view across this worker's partitions."""
        return sum(p.dossiers for p in self._parts.values())

    # ------------------------------------------------------------------ reads
    def totals(self) -> dict[str, Counter[str]]:
        """Stored totals over this worker's partitions: unit -> count key -> count (no live part)."""
        out: dict[str, Counter[str]] = {}
        for part in self._parts.values():
            for unit, c in part.totals.items():
                out.setdefault(unit, Counter()).update(c)
        return {u: c for u, c in out.items() if c}

    def _live(self, part: _Partition, unit: str, now_ts: int, into: Counter[str]) -> None:
        # Same figures as walking _live_periods(as_of, now) for every open dossier (the reference the
        # tests compare with), from the sorted lists of _LiveGroup and a per-unit cache of ended periods.
        groups = part.live.get(unit)
        if not groups:
            return
        n = local_date(now_ts)
        now_month = (n.year, n.month)
        cached = part.closed_cache.get(unit)
        if cached is None or cached[0] != now_month:
            closed: Counter[str] = Counter()
            for lc, g in groups.items():
                _closed_live(lc, g, now_month, closed)
            cached = part.closed_cache[unit] = (now_month, closed)
        into.update(cached[1])
        entries = part.open.get(unit, {}).values()
        for lc, g in groups.items():
            _current_live(lc, g, entries, now_ts, into)

    def unit_counts(self, partition: int, unit: str, now: datetime) -> Counter[str]:
        """Stored totals of (partition, unit) plus the live open/overdue-at-period-end part as of ``now``."""
        part = self._parts.get(partition)
        out: Counter[str] = Counter()
        if part is None:
            return out
        out.update(part.totals.get(unit, {}))
        self._live(part, unit, int(now.timestamp()), out)
        return out

    def units(self, partition: int) -> list[str]:
        """Units with figures (stored or open dossiers) in a partition."""
        part = self._parts.get(partition)
        if part is None:
            return []
        return sorted({u for u, c in part.totals.items() if c} | {u for u, o in part.open.items() if o})

    def unit_figures(self, partition: int, unit: str, now: datetime) -> UnitFigures:
        """The complete current counts of one unit in one partition (a compacted-topic record)."""
        tier = ""
        if self.registry is not None:
            u = self.registry.resolve(unit)
            tier = u.tier if u is not None else ""
        if not tier:
            part = self._parts.get(partition)
            entries = part.open.get(unit, {}) if part is not None else {}
            tier = next(iter(entries.values())).group[1] if entries else ("HUYEN" if unit == "380" else "XA")
        return UnitFigures(
            partition=partition,
            unit_code=unit,
            unit_tier=tier,
            generated_at=now,
            counts=dict(self.unit_counts(partition, unit, now)),
        )

    def open_now(self, now: datetime) -> dict[Group, int]:
        """Dossiers open right now, by (unit, tier, level, channel)."""
        del now  # open is a fact of the state; the argument keeps the signature symmetric with overdue_now
        out: Counter[Group] = Counter()
        for part in self._parts.values():
            for group, dues in part.dues.items():
                out[group] += len(dues)
        return dict(out)

    def overdue_now(self, now: datetime) -> dict[Group, int]:
        """Dossiers open right now and past their due time, by group (a bisection per group)."""
        ts = now.timestamp()
        out: Counter[Group] = Counter()
        for part in self._parts.values():
            for group, dues in part.dues.items():
                n = bisect.bisect_left(dues, ts)
                if n:
                    out[group] += n
        return dict(out)

    # ------------------------------------------------------------------ prometheus
    def prometheus_samples(
        self, now: datetime, periods: Container[str] | None = None,
    ) -> Iterator[tuple[MetricSpec, dict[str, str], float]]:
        """Samples of the additive domain metrics over this worker's partitions.

        Every sample is a partial sum over this worker's partitions, so Prometheus adds workers up
        (``sum without (instance)``). Ratios (766) and catalogue figures are NOT additive: take them
        from merged counts with :func:`streams.domain.report.merged_samples`. The ``unit`` label
        only holds registry units (a unit the registry does not know is left out, never labelled).
        ``periods`` (:func:`streams.domain.periods.metric_window`) bounds the ``period`` label: a
        count of a period outside it stays in the totals and the reports but is not exported.
        """
        merged: dict[str, Counter[str]] = {}
        for p, part in self._parts.items():
            for unit in set(part.totals) | set(part.open):
                merged.setdefault(unit, Counter()).update(self.unit_counts(p, unit, now))
        for unit, counts in sorted(merged.items()):
            tier = self._tier(unit)
            if tier is None:
                continue
            for key, value in sorted(counts.items()):
                metric, level, channel, per, _ = split_key(key)
                if periods is not None and per not in periods:
                    continue
                base = {
                    "unit": unit,
                    "tier": tier,
                    "level": level,
                    "channel": channel,
                    "period": per,
                    "period_kind": period_kind(per),
                }
                if metric == "received":
                    yield DOSSIERS_RECEIVED, base, float(value)
                elif metric in ("finished_early", "finished_on_time", "finished_late"):
                    yield DOSSIERS_FINISHED, {**base, "timeliness": metric.removeprefix("finished_")}, float(value)
                elif metric == "refused":
                    yield DOSSIERS_REFUSED, base, float(value)
                elif metric == "withdrawn":
                    yield DOSSIERS_WITHDRAWN, base, float(value)
                elif metric == "open_end":
                    yield DOSSIERS_OPEN, base, float(value)
        for spec, figures in ((DOSSIERS_OPEN_NOW, self.open_now(now)), (DOSSIERS_OVERDUE_NOW, self.overdue_now(now))):
            for (unit, tier, level, channel), n in sorted(figures.items()):
                if self._tier(unit) is None:
                    continue
                yield spec, {"unit": unit, "tier": tier, "level": level, "channel": channel}, float(n)
        yield DOSSIERS_IN_STATE, {}, float(self.dossier_count())

    def _tier(self, unit: str) -> str | None:
        if self.registry is None:
            return "HUYEN" if unit == "380" else "XA"
        u = self.registry.resolve(unit)
        return u.tier if u is not None else None
