"""Statistics for the portal: from the figure partials to ``OutboxStats`` items on the outbox topic.

The worker publishes, per (partition, unit), the complete counts of that partition on the compacted
partials topic (:mod:`schemas.figures`); a unit's figures are the sum of the latest partial of every
partition. :class:`StatsProducer` follows that topic, and for every unit whose figures changed it
builds the statistics body of the current and the just-closed month, quarter and year (and, with
``history_from``, of every older period with figures that starts on or after that day: see
:meth:`StatsProducer.periods_due`), and writes each body that differs from the last one it wrote to
the **outbox** as an :class:`~schemas.figures.OutboxStats` (key ``stats|<ky>|<unit>``) — *before*
anything is pushed, so a statistics push never exists only in memory. It is debounced
(``portal.stats_debounce_s`` of quiet after the last change) and runs on a schedule too
(``portal.stats_interval_s``: periods roll over).

The body is the domain's own :func:`streams.domain.report.stats_body` — the same function behind
``dvc-hub report`` — built by :class:`DomainStatsBuilder` with the unit registry and the **live**
procedure catalogue: :class:`LiveCatalogue` is fed from the worker's compacted ``catalogue`` table
changelog (``streams.topics.changelog_topic(settings, CATALOGUE_TABLE)``), which the sync service
follows with a consumer for as long as it runs. So ``thu_tuc`` counts the procedures *offered* online
at level 3 / 4 and those that received no dossier (``khong_phat_sinh_ho_so``), and a catalogue change
re-publishes every unit's bodies (:meth:`StatsProducer.catalogue_changed`).

Example::

    >>> from collections import Counter
    >>> from datetime import datetime, timedelta
    >>> from schemas.calendar import TZ
    >>> from schemas.events import CatalogueEntry, Level
    >>> from schemas.units import default_registry
    >>> live = LiveCatalogue()
    >>> entry = CatalogueEntry(event_id="c1", source="motcua", unit_code="14767", procedure_code="P1",
    ...                        level_raw=4, level=Level.TOAN_TRINH, valid_from="2020-01-01T00:00:00+07:00")
    >>> live.apply(b'{"p": 0, "o": 7, "e": ' + entry.model_dump_json().encode() + b'}')
    True
    >>> build = DomainStatsBuilder(default_registry(), live)
    >>> counts = Counter({"received|TOAN_TRINH|TRUC_TUYEN|2021-Q1|": 3})
    >>> body = build("2021-Q1", "14767", "XA", counts, datetime(2021, 4, 1, tzinfo=TZ))
    >>> body["thu_tuc"], body["theo_muc_do"][1]["tiep_nhan"]
    ({'muc_do_3': 0, 'muc_do_4': 1, 'khong_phat_sinh_ho_so': 1}, 3)
    >>> build("2020-Q4", "14767", "XA", counts, datetime(2021, 4, 1, tzinfo=TZ)) is None  # no figures then
    True
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from hub.sync.outbox import stats_digest, stats_item, stats_state_key
from schemas.events import CatalogueEntry
from schemas.figures import UnitFigures, merge_counts, split_key
from schemas.units import Unit, UnitRegistry
from streams.domain.aggregates import Catalogue
from streams.domain.periods import period_bounds
from streams.domain.report import stats_body

log = logging.getLogger(__name__)

__all__ = [
    "DomainStatsBuilder", "LiveCatalogue", "StatsBuilder", "StatsProducer", "figure_periods", "has_figures",
    "periods_around",
]

#: (ky, unit code, unit tier, the unit's counts, now) -> body, or None for "nothing to report".
StatsBuilder = Callable[[str, str, str, Counter[str], datetime], "dict[str, Any] | None"]


def periods_around(now: datetime) -> list[str]:
    """The current and the just-closed month, quarter and year of ``now`` (local time)."""
    y, m = now.year, now.month
    q = (m - 1) // 3 + 1
    prev_m = (y, m - 1) if m > 1 else (y - 1, 12)
    prev_q = (y, q - 1) if q > 1 else (y - 1, 4)
    return [
        f"{y}-{m:02d}", f"{prev_m[0]}-{prev_m[1]:02d}",
        f"{y}-Q{q}", f"{prev_q[0]}-Q{prev_q[1]}",
        f"{y}", f"{y - 1}",
    ]


def has_figures(counts: Counter[str], ky: str) -> bool:
    """True when ``counts`` hold a non-zero count of period ``ky``.

    A period without any figure is not reported: an all-zero body for a period the hub never saw
    (say, last year, when the hub started in March) would overwrite what the portal already holds.
    """
    return ky in figure_periods(counts)


def figure_periods(counts: Counter[str]) -> set[str]:
    """The periods in which ``counts`` hold a non-zero count (keys that do not decode are skipped).

        >>> from schemas.figures import count_key
        >>> sorted(figure_periods(Counter({count_key("received", "*", "*", "2021-03"): 2,
        ...                                count_key("received", "*", "*", "2021-Q1"): 2,
        ...                                count_key("refused", "*", "*", "2020"): 0})))
        ['2021-03', '2021-Q1']
    """
    periods: set[str] = set()
    for key, value in counts.items():
        if value:
            try:
                periods.add(split_key(key)[3])
            except ValueError:
                continue
    return periods


class LiveCatalogue:
    """The procedure catalogue as the workers hold it, kept current from the catalogue table's changelog.

    Feed it the changelog's record values with :meth:`apply` (the sync service follows the topic);
    :attr:`catalogue` is the :class:`~streams.domain.aggregates.Catalogue` the builder reads. Every
    entry is broadcast to every partition, so the changelog holds one copy per partition: adding a
    copy again changes nothing. ``caught_up`` is set once the changelog was read to the end it had
    when the service started (or found absent: no worker has written one yet).
    """

    def __init__(self) -> None:
        self.catalogue = Catalogue()
        self.caught_up = asyncio.Event()
        #: Records applied / unreadable records skipped (tests and logs).
        self.records = 0
        self.unreadable = 0

    def apply(self, value: bytes | None) -> bool:
        """Take one changelog value ``{"p": partition, "o": offset, "e": CatalogueEntry}``; True if it changed."""
        if value is None:  # a tombstone: the worker never deletes rows, and the same row lives on elsewhere
            return False
        try:
            entry = CatalogueEntry.model_validate(orjson.loads(value)["e"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError):
            self.unreadable += 1
            return False
        self.records += 1
        return self.catalogue.add(entry)


class DomainStatsBuilder:
    """The statistics body of :func:`streams.domain.report.stats_body`, with the live catalogue.

    A :data:`StatsBuilder`: ``None`` when the unit has no figure in the period (:func:`has_figures`).
    Units come from ``registry``; a unit the registry does not know (the worker reported it anyway)
    keeps the tier the worker gave it.
    """

    def __init__(self, registry: UnitRegistry, catalogue: LiveCatalogue | None) -> None:
        self._registry = registry
        self._catalogue = catalogue

    def __call__(self, ky: str, unit: str, tier: str, counts: Counter[str], now: datetime) -> dict[str, Any] | None:
        """Build the body of ``unit`` for ``ky`` (see the class docstring)."""
        if not has_figures(counts, ky):
            return None
        # The unit as it was at the period's end (units are versioned by date), else as it is now.
        last_day = period_bounds(ky)[1] - timedelta(days=1)
        known = (self._registry.lookup(unit, on=last_day) or self._registry.lookup(unit)
                 or Unit(code=unit, name="", tier=tier, kind="", parent=""))
        catalogue = self._catalogue.catalogue if self._catalogue is not None else None
        return stats_body(ky, known, counts, catalogue, now)


class OutboxWriter(Protocol):
    """Writes one record to the outbox and returns once Kafka acknowledged it."""

    def __call__(self, key: bytes, value: bytes) -> Awaitable[None]: ...


class StatsProducer:
    """Follows the partials, writes changed statistics bodies to the outbox (debounced, scheduled).

    Feed it partials with :meth:`apply` (the service reads the topic); call :meth:`flush_due`
    regularly. ``now`` is the reporting clock (aware datetime; local time decides the period);
    ``builder`` builds a body (:class:`DomainStatsBuilder` in the service); ``ready`` holds writes back
    until the inputs are complete. ``history_from`` (``portal.stats_history_from``) is the first day
    from which the hub holds every dossier: periods with figures that start then or later are written
    too, not only those around now (see :meth:`periods_due`).
    """

    def __init__(
        self,
        write: OutboxWriter,
        *,
        now: Callable[[], datetime],
        debounce_s: float,
        interval_s: float,
        builder: StatsBuilder,
        monotonic: Callable[[], float] = time.monotonic,
        ready: Callable[[], bool] = lambda: True,
        history_from: date | None = None,
    ) -> None:
        self._write = write
        self._now = now
        self._debounce = debounce_s
        self._interval = interval_s
        self._builder = builder
        self._mono = monotonic
        self._ready = ready
        self._history_from = history_from
        self.partials: dict[str, UnitFigures] = {}
        self._dirty: set[str] = set()
        self._last_change = 0.0
        self._dirty_since = 0.0
        self._last_full = monotonic()
        #: Digest of the last body written per (ky, unit): unchanged figures are not written again.
        self.written: dict[str, str] = {}
        self.items_written = 0

    def apply(self, partial: UnitFigures) -> None:
        """Take the latest partial of one (partition, unit)."""
        key = f"{partial.partition}|{partial.unit_code}"
        old = self.partials.get(key)
        if old is not None and old.counts == partial.counts and old.unit_tier == partial.unit_tier:
            return
        self.partials[key] = partial
        self._mark_dirty({partial.unit_code})

    def catalogue_changed(self) -> None:
        """The procedure catalogue changed: every unit's ``thu_tuc`` may have, so all are due (debounced)."""
        self._mark_dirty({p.unit_code for p in self.partials.values()})

    def _mark_dirty(self, units: set[str]) -> None:
        now = self._mono()
        if not self._dirty:
            self._dirty_since = now
        self._dirty |= units
        self._last_change = now

    def unit_counts(self) -> dict[str, Counter[str]]:
        """Each unit's figures: the sum of the latest partial of every partition."""
        return merge_counts(self.partials.values())

    def unit_tier(self, unit: str) -> str:
        """The tier the worker reported for ``unit`` (``XA`` when unknown)."""
        for p in self.partials.values():
            if p.unit_code == unit:
                return p.unit_tier
        return "XA"

    def body(self, ky: str, unit: str) -> dict[str, Any] | None:
        """The statistics body the hub holds for ``unit`` and ``ky`` right now (read API)."""
        counts = self.unit_counts().get(unit)
        if counts is None:
            return None
        return self._builder(ky, unit, self.unit_tier(unit), counts, self._now())

    async def flush_due(self) -> int:
        """Write what is due: dirty units after the debounce, every unit on the schedule.

        Nothing is written before ``ready()`` (the catalogue read to its end): a body without the
        catalogue would be pushed, then replaced a moment later.
        """
        if not self._ready():
            return 0
        mono = self._mono()
        units: set[str] = set()
        # Quiet for the debounce, or dirty for long: a worker publishing partials every few seconds
        # during live traffic is never quiet, and its statistics must still reach the portal.
        max_wait = max(30.0, 6 * self._debounce)
        if self._dirty and (
            mono - self._last_change >= self._debounce or mono - self._dirty_since >= max_wait
        ):
            units |= self._dirty
        if mono - self._last_full >= self._interval:
            units |= {p.unit_code for p in self.partials.values()}
            self._last_full = mono
        if not units:
            return 0
        self._dirty -= units
        try:
            return await self.flush(units)
        except BaseException:
            self._dirty |= units  # not written: try again on the next tick
            raise

    def periods_due(self, counts: Counter[str], now: datetime) -> list[str]:
        """The periods whose body is built for a unit with ``counts``, sorted.

        Always the current and just-closed month, quarter and year (:func:`periods_around`; the
        builder skips those without figures). With ``history_from`` also every period in which the
        unit has a figure and that starts on or after ``history_from``: the hub holds all of such a
        period's dossiers, so its figures are complete. A period starting earlier is left out, since
        the hub may have seen only part of it and the portal's latest PUT replaces what it held.

            >>> from schemas.calendar import TZ
            >>> from schemas.figures import count_key
            >>> counts = Counter({count_key("received", "*", "*", ky): 1 for ky in ("2020-12", "2021-01")})
            >>> async def write(key: bytes, value: bytes) -> None: ...
            >>> now = datetime(2026, 5, 4, tzinfo=TZ)
            >>> p = StatsProducer(write, now=lambda: now, debounce_s=5, interval_s=300,
            ...                   builder=lambda *args: None, history_from=date(2021, 1, 1))
            >>> p.periods_due(counts, now)  # 2020-12 starts before history_from
            ['2021-01', '2025', '2026', '2026-04', '2026-05', '2026-Q1', '2026-Q2']
        """
        periods = set(periods_around(now))
        if self._history_from is not None:
            for ky in figure_periods(counts) - periods:
                try:
                    start = period_bounds(ky)[0]
                except ValueError:  # not a month, quarter or year: nothing the portal takes
                    continue
                if start >= self._history_from:
                    periods.add(ky)
        return sorted(periods)

    async def flush(self, units: set[str]) -> int:
        """Write the changed bodies of ``units`` for :meth:`periods_due`; returns how many."""
        now = self._now()
        counts = self.unit_counts()
        written = 0
        for unit in sorted(units):
            unit_counts = counts.get(unit, Counter())
            for ky in self.periods_due(unit_counts, now):
                body = self._builder(ky, unit, self.unit_tier(unit), unit_counts, now)
                if body is None:
                    continue
                digest = stats_digest(body)
                state_key = stats_state_key(ky, unit)
                if self.written.get(state_key) == digest:
                    continue
                item = stats_item(ky, unit, body, now)
                await self._write(state_key.encode(), item.model_dump_json().encode())
                self.written[state_key] = digest
                written += 1
        self.items_written += written
        if written:
            log.info("wrote %d statistics bodies to the outbox", written)
        return written

    async def run(self, stop: asyncio.Event, tick_s: float = 0.25) -> None:
        """Call :meth:`flush_due` every ``tick_s`` until ``stop`` is set (errors logged, loop kept)."""
        while not stop.is_set():
            try:
                await self.flush_due()
            except Exception:  # a Kafka hiccup must not end statistics for good
                log.exception("writing statistics to the outbox failed; retrying on the next tick")
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)
