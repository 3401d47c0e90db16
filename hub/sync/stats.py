"""Statistics for the portal: from the figure partials to ``OutboxStats`` items on the outbox topic.

The worker publishes, per (partition, unit), the complete counts of that partition on the compacted
partials topic (:mod:`schemas.figures`); a unit's figures are the sum of the latest partial of every
partition. :class:`StatsProducer` follows that topic, and for every unit whose figures changed it
builds the statistics body of the current and the just-closed month, quarter and year, and writes
each body that differs from the last one it wrote to the **outbox** as an
:class:`~schemas.figures.OutboxStats` (key ``stats|<ky>|<unit>``) — *before* anything is pushed, so a
statistics push never exists only in memory. It is debounced (``portal.stats_debounce_s`` of quiet
after the last change) and runs on a schedule too (``portal.stats_interval_s``: periods roll over).

The body builder is pluggable (``builder=``): :func:`basic_stats_body` derives the body from the
counts alone; the domain's ``streams.domain.report.stats_body`` (with the procedure catalogue)
replaces it where available.

Example::

    >>> from collections import Counter
    >>> counts = Counter({"received|MOT_PHAN|TRUC_TUYEN|2021-Q1|": 3, "received|MOT_PHAN|TRUC_TIEP|2021-Q1|": 1,
    ...                   "finished_early|MOT_PHAN|TRUC_TUYEN|2021-Q1|": 2})
    >>> from datetime import datetime, timezone
    >>> body = basic_stats_body("2021-Q1", "14767", "XA", counts, datetime(2021, 4, 1, tzinfo=timezone.utc))
    >>> row = body["theo_muc_do"][0]
    >>> (row["muc_do"], row["tiep_nhan"], row["tiep_nhan_truc_tuyen"], row["dung_han"], row["truoc_han"])
    (3, 4, 3, 2, 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from hub.sync.outbox import stats_digest, stats_item, stats_state_key
from schemas.figures import UnitFigures, merge_counts, split_key

log = logging.getLogger(__name__)

__all__ = ["StatsBuilder", "StatsProducer", "basic_stats_body", "periods_around"]

#: (ky, unit code, unit tier, the unit's counts, now) -> body, or None for "nothing to report".
StatsBuilder = Callable[[str, str, str, Counter[str], datetime], "dict[str, Any] | None"]

_LEVEL_MUC_DO = {"KHONG_TRUC_TUYEN": 2, "MOT_PHAN": 3, "TOAN_TRINH": 4}
_ONLINE = "TRUC_TUYEN"


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


def basic_stats_body(ky: str, unit: str, tier: str, counts: Counter[str], now: datetime) -> dict[str, Any] | None:
    """The statistics body of ``unit`` for ``ky`` from its counts alone (None when it has none).

    Per level: a ``*`` channel key, where the worker writes one, is the all-channel total; otherwise
    the channels are added up. ``thu_tuc`` counts the procedures that received dossiers in the period
    (the catalogue-aware builder of the domain reports the procedures *offered* instead).
    """
    per: dict[tuple[str, str], Counter[str]] = {}  # (metric, level) -> channel -> n
    procedures: dict[int, set[str]] = {}
    for key, value in counts.items():
        try:
            metric, level, channel, period, extra = split_key(key)
        except ValueError:
            continue
        if period != ky or level not in _LEVEL_MUC_DO:
            continue
        per.setdefault((metric, level), Counter())[channel] += value
        if metric == "procedure_dossiers" and value > 0 and extra:
            procedures.setdefault(_LEVEL_MUC_DO[level], set()).add(extra)
    if not per:
        return None

    def total(metric: str, level: str) -> int:
        channels = per.get((metric, level), Counter())
        return channels["*"] if "*" in channels else sum(channels.values())

    rows = []
    for level, muc_do in sorted(_LEVEL_MUC_DO.items(), key=lambda kv: kv[1]):
        early, on_time, late = (total(m, level) for m in ("finished_early", "finished_on_time", "finished_late"))
        row = {
            "muc_do": muc_do,
            "tiep_nhan": total("received", level),
            "tiep_nhan_truc_tuyen": per.get(("received", level), Counter())[_ONLINE],
            "da_giai_quyet": early + on_time + late,
            "dung_han": early + on_time,
            "truoc_han": early,
            "qua_han": late,
            "dang_xu_ly": total("open_end", level),
            "qua_han_dang_xu_ly": total("overdue_end", level),
        }
        row["tiep_nhan_truc_tuyen"] = min(row["tiep_nhan_truc_tuyen"], row["tiep_nhan"])
        row["qua_han_dang_xu_ly"] = min(row["qua_han_dang_xu_ly"], row["dang_xu_ly"])
        if any(v for k, v in row.items() if k != "muc_do"):
            rows.append(row)
    if not rows:
        return None
    return {
        "ky": ky,
        "ma_don_vi": unit,
        "cap": tier,
        "thoi_diem_tong_hop": now.isoformat(timespec="seconds"),
        "theo_muc_do": rows,
        "thu_tuc": {
            "muc_do_3": len(procedures.get(3, ())),
            "muc_do_4": len(procedures.get(4, ())),
            "khong_phat_sinh_ho_so": 0,
        },
    }


class OutboxWriter(Protocol):
    """Writes one record to the outbox and returns once Kafka acknowledged it."""

    def __call__(self, key: bytes, value: bytes) -> Awaitable[None]: ...


class StatsProducer:
    """Follows the partials, writes changed statistics bodies to the outbox (debounced, scheduled).

    Feed it partials with :meth:`apply` (the service reads the topic); call :meth:`flush_due`
    regularly. ``now`` is the reporting clock (aware datetime; local time decides the period).
    """

    def __init__(
        self,
        write: OutboxWriter,
        *,
        now: Callable[[], datetime],
        debounce_s: float,
        interval_s: float,
        builder: StatsBuilder = basic_stats_body,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._now = now
        self._debounce = debounce_s
        self._interval = interval_s
        self._builder = builder
        self._mono = monotonic
        self.partials: dict[str, UnitFigures] = {}
        self._dirty: set[str] = set()
        self._last_change = 0.0
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
        self._dirty.add(partial.unit_code)
        self._last_change = self._mono()

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
        """Write what is due: dirty units after the debounce, every unit on the schedule."""
        mono = self._mono()
        units: set[str] = set()
        if self._dirty and mono - self._last_change >= self._debounce:
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

    async def flush(self, units: set[str]) -> int:
        """Write the changed bodies of ``units`` for the periods around now; returns how many."""
        now = self._now()
        counts = self.unit_counts()
        written = 0
        for unit in sorted(units):
            for ky in periods_around(now):
                body = self._builder(ky, unit, self.unit_tier(unit), counts.get(unit, Counter()), now)
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
