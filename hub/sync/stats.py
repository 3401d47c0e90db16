"""Statistics for the portal: from the figure partials to coalesced ``PUT``s, in a lane of their own.

The worker publishes, per (partition, unit), the complete counts of that partition on the compacted
partials topic (:mod:`schemas.figures`); a unit's figures are the sum of the latest partial of every
partition. :class:`StatsLane` follows that topic and keeps, per (period, unit), the newest body that
differs from what the portal acknowledged (the compacted sync-state topic): latest wins, coalesced in
place, pushed on its own schedule (quiet for ``portal.stats_debounce_s``, or at most once per
``portal.stats_min_interval_s`` while figures keep changing) through the portal's shared rate limit,
after the dossiers (:class:`hub.sync.delivery.PriorityRateLimiter`). Nothing in it exists only in
memory: after a restart the partials and the sync state give the same pending map again, and the
``OutboxStats`` records that still reach the outbox (``dvc-hub push stats --from``, ``dlq replay``,
older hubs) keep their outbox offset uncommitted until their key is settled (``docs/portal-sync.md``).

Which periods: the live ones (the current and just-closed month, quarter and year,
:func:`periods_around`; ``portal.stats_live_periods``), those starting on or after
``portal.stats_history_from`` when it is set, and every period the portal already holds from the hub.
Older history goes out on demand (``dvc-hub push stats --from YYYY-MM``: :func:`history_items`).

The body is the domain's own :func:`streams.domain.report.stats_body` — the same function behind
``dvc-hub report`` — built by :class:`DomainStatsBuilder` with the unit registry and the **live**
procedure catalogue: :class:`LiveCatalogue` is fed from the worker's compacted ``catalogue`` table
changelog (``streams.topics.changelog_topic(settings, CATALOGUE_TABLE)``), which the sync service
follows with a consumer for as long as it runs. So ``thu_tuc`` counts the procedures *offered* online
at level 3 / 4 and those that received no dossier (``khong_phat_sinh_ho_so``), and a catalogue change
rebuilds every key (:meth:`StatsLane.catalogue_changed`). A body depends only on the counts of its own
period, so the lane hands the builder that period's slice of the unit's counts: building one body
costs a fraction of a millisecond, not a scan of every period's counts.

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
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from hub.sync.outbox import StatsState, stats_digest, stats_item, stats_state_key
from schemas.events import CatalogueEntry
from schemas.figures import OutboxStats, UnitFigures, split_key
from schemas.units import Unit, UnitRegistry
from streams.domain.aggregates import Catalogue
from streams.domain.periods import period_bounds
from streams.domain.report import stats_body

log = logging.getLogger(__name__)

__all__ = [
    "DomainStatsBuilder", "LiveCatalogue", "Pause", "PendingStats", "StatsBuilder", "StatsLane", "StatsPusher",
    "figure_periods", "has_figures", "history_items", "live_periods", "periods_around",
]

#: (ky, unit code, unit tier, the unit's counts, now) -> body, or None for "nothing to report".
#: The counts may be only those of period ``ky`` (the lane passes that slice): a body reads no other.
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
        return self.always(ky, unit, tier, counts, now)

    def always(self, ky: str, unit: str, tier: str, counts: Counter[str], now: datetime) -> dict[str, Any]:
        """The body even without any figure (all zeros): to correct a body the portal holds."""
        # The unit as it was at the period's end (units are versioned by date), else as it is now.
        last_day = period_bounds(ky)[1] - timedelta(days=1)
        known = (self._registry.lookup(unit, on=last_day) or self._registry.lookup(unit)
                 or Unit(code=unit, name="", tier=tier, kind="", parent=""))
        catalogue = self._catalogue.catalogue if self._catalogue is not None else None
        return stats_body(ky, known, counts, catalogue, now)


def live_periods(now: datetime, which: str = "current_and_previous") -> list[str]:
    """The live periods of ``now``: :func:`periods_around`, or only the current month, quarter and year."""
    periods = periods_around(now)
    return periods if which == "current_and_previous" else periods[0::2]


class Pause:
    """Yield to the event loop once ``budget_s`` of work has passed since the last yield.

    The portal sync shares one asyncio loop with aiokafka's heartbeat: a long synchronous stretch
    (parsing thousands of partials, building hundreds of bodies) would starve it until the group
    coordinator evicts the consumer ("Heartbeat session expired"). Call ``await pause()`` between
    units of work.
    """

    def __init__(self, budget_s: float = 0.02) -> None:
        self._budget = budget_s
        self._since = time.perf_counter()

    async def __call__(self) -> None:
        """Yield if the budget is spent."""
        if time.perf_counter() - self._since >= self._budget:
            await asyncio.sleep(0)
            self._since = time.perf_counter()


@dataclass
class PendingStats:
    """The newest body of one (period, unit) that the portal has not acknowledged yet."""

    ky: str
    unit: str
    body: dict[str, Any]
    digest: str
    seq: int
    #: Monotonic times: when the key became pending (differing from the portal), and its last change.
    first_change: float
    last_change: float
    #: A ``dvc-hub dlq replay``: pushed even when the portal refused this very body before.
    force: bool = False
    #: Monotonic time before which it is not retried (after a failed sync-state write).
    not_before: float = 0.0

    @property
    def key(self) -> str:
        """``stats|<ky>|<unit>`` (:func:`~hub.sync.outbox.stats_state_key`)."""
        return stats_state_key(self.ky, self.unit)

    @property
    def item_id(self) -> str:
        """``stats:<ky>:<unit>:<digest[:16]>``: the base of the push's Idempotency-Key."""
        return f"stats:{self.ky}:{self.unit}:{self.digest[:16]}"


#: Pushes one pending body (HTTP, dead letter on a refusal, sync-state write) and returns the state written.
StatsPusher = Callable[[PendingStats], Awaitable[StatsState]]


class StatsLane:
    """The statistics lane: the newest body per (period, unit), coalesced, pushed on its own schedule.

    State, all of it recomputable (nothing lives only here):

    - the latest partial of every (partition, unit), fed with :meth:`apply` from the compacted
      partials topic, and each unit's merged counts **by period** (a body depends only on its
      period's counts, so one change rebuilds only the periods it touched, from a small slice);
    - :attr:`acked`: what the portal acknowledged per key, loaded from the compacted sync-state
      topic (:meth:`load_acked`) and updated after every push;
    - :attr:`pending`: key -> :class:`PendingStats`, the newest body that differs from the
      acknowledged one. A newer body replaces an older one in place (latest wins); the bodies of
      ``OutboxStats`` records (older hubs, ``dlq replay``, ``dvc-hub push stats --from``) fold in
      with :meth:`offer` — unless the lane computes that key itself, in which case its own body
      (from the same partials, always current) wins.

    Which keys: the live periods of ``now`` (``live``: :func:`periods_around` by default), the
    periods with figures starting on or after ``history_from``, and every key the portal already
    holds from the hub or that is pending (so a period whose figures drop to zero is corrected).

    When a key is pushed (:meth:`due`): once it has been quiet for ``debounce_s``; or, while it
    keeps changing, once its last push (or, never pushed, its becoming pending) is
    ``min_interval_s`` old. So a key that changes for ``T`` seconds is pushed at most
    ``T / min_interval_s`` times plus once per quiet spell, and its final body always goes out
    ``debounce_s`` after the last change (convergence). Everything is rebuilt at least every
    ``interval_s`` (periods roll over; only changed bodies become pending).
    """

    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        builder: StatsBuilder,
        debounce_s: float,
        min_interval_s: float,
        interval_s: float,
        history_from: date | None = None,
        history_to: date | None = None,
        live: Callable[[datetime], list[str]] = periods_around,
        retract: StatsBuilder | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rebuild_s: float = 0.0,
    ) -> None:
        self._now = now
        self._builder = builder
        #: Builds a body even without figures: a key the portal holds whose figures dropped to zero.
        self._retract = retract
        self._debounce = debounce_s
        self._min_interval = min_interval_s
        self._interval = interval_s
        self._history_from = history_from
        #: Exclusive: a history period must start before this day (``portal.stats_history_to``).
        self._history_to = history_to
        self._live = live
        self._mono = monotonic
        #: A dirty unit is rebuilt once it has been dirty this long (its partials of all partitions
        #: arrive within a moment: one rebuild, not one per partition); a catalogue being loaded is
        #: applied once it has been quiet for the debounce (or after ``min_interval_s``).
        self._rebuild_s = rebuild_s
        self._dirty_since: dict[str, float] = {}
        self._catalogue_since: float | None = None
        self._catalogue_last = 0.0
        self.partials: dict[str, UnitFigures] = {}
        self._by_period: dict[str, dict[str, Counter[str]]] = {}
        self._tiers: dict[str, str] = {}
        self._dirty: dict[str, set[str] | None] = {}
        self._known: dict[str, set[str]] = {}
        self._last_full: float | None = None
        self.acked: dict[str, StatsState] = {}
        self.pending: dict[str, PendingStats] = {}
        self._last_push: dict[str, float] = {}
        self._seq = 0
        self._settled: dict[str, int] = {}
        self._computed: set[str] = set()
        self.inflight: set[str] = set()
        #: Set once the inputs are complete (partials and catalogue read to their end at start).
        self.ready = False
        #: Bodies built, and pushes finished (tests, logs).
        self.built = 0
        self.pushes = 0

    # ------------------------------------------------------------------ inputs

    def load_acked(self, states: dict[str, StatsState], wall_now: datetime) -> None:
        """Take the sync state: what the portal holds, and when each key was last pushed (for the min interval)."""
        mono = self._mono()
        for key, state in states.items():
            self.acked[key] = state
            self._known.setdefault(state.ma_don_vi, set()).add(state.ky)
            if state.outcome == "pushed":
                age = max(0.0, (wall_now - state.at).total_seconds())
                self._last_push[key] = mono - age

    def apply(self, partial: UnitFigures) -> None:
        """Take the latest partial of one (partition, unit); mark the periods whose counts changed."""
        key = f"{partial.partition}|{partial.unit_code}"
        old = self.partials.get(key)
        old_counts = old.counts if old is not None else {}
        new_counts = partial.counts
        unit = partial.unit_code
        self.partials[key] = partial
        tier_changed = self._tiers.get(unit) != partial.unit_tier
        self._tiers[unit] = partial.unit_tier
        by_period = self._by_period.setdefault(unit, {})
        changed: set[str] = set()
        for name, value in new_counts.items():
            delta = value - old_counts.get(name, 0)
            if delta:
                self._add(by_period, name, delta, changed)
        for name, value in old_counts.items():
            if name not in new_counts and value:
                self._add(by_period, name, -value, changed)
        if tier_changed:
            self._mark(unit, None)
        elif changed:
            self._mark(unit, changed)

    @staticmethod
    def _add(by_period: dict[str, Counter[str]], name: str, delta: int, changed: set[str]) -> None:
        try:
            ky = split_key(name)[3]
        except ValueError:
            return  # not a count key: nothing any body reads
        slice_ = by_period.setdefault(ky, Counter())
        slice_[name] += delta
        if not slice_[name]:
            del slice_[name]
            if not slice_:
                del by_period[ky]
        changed.add(ky)

    def catalogue_changed(self) -> None:
        """The procedure catalogue changed: every unit's ``thu_tuc`` may have, so every key is rebuilt.

        While a catalogue is being loaded it changes with every batch of its changelog: the rebuild
        of every key waits until it has been quiet for the debounce (at most ``min_interval_s``).
        """
        mono = self._mono()
        if self._catalogue_since is None:
            self._catalogue_since = mono
        self._catalogue_last = mono

    def _mark(self, unit: str, periods: set[str] | None) -> None:
        self._dirty_since.setdefault(unit, self._mono())
        if unit in self._dirty and self._dirty[unit] is None:
            return
        if periods is None:
            self._dirty[unit] = None
        else:
            current = self._dirty.get(unit)
            self._dirty[unit] = periods if current is None else current | periods

    def offer(self, item: OutboxStats, *, replayed: bool = False) -> int:
        """Fold an outbox ``OutboxStats`` into the pending map; returns its ticket (see :meth:`settled`).

        The lane's own body wins for a key it computes (same partials, always as new). A body equal
        to the acknowledged one is settled at once, unless ``replayed`` (an operator's ``dlq replay``
        retries a refused body on purpose).
        """
        key = stats_state_key(item.ky, item.ma_don_vi)
        digest = stats_digest(item.body)
        self._seq += 1
        seq = self._seq
        if key in self._computed and not replayed:
            current = self.pending.get(key)
            if current is None:
                self._settle(key, seq)
                return seq
            return current.seq if current.seq > self._settled.get(key, 0) else seq
        acked = self.acked.get(key)
        if not replayed and acked is not None and acked.outcome != "none" and acked.digest == digest:
            self._settle(key, seq)
            return seq
        self._set_pending(item.ky, item.ma_don_vi, item.body, digest, seq=seq, force=replayed)
        self._known.setdefault(item.ma_don_vi, set()).add(item.ky)
        return seq

    def settled(self, key: str, ticket: int) -> bool:
        """True once the body of ``ticket``, or a newer one of the same key, is acknowledged (or refused)."""
        return self._settled.get(key, 0) >= ticket

    def _settle(self, key: str, seq: int) -> None:
        if self._settled.get(key, 0) < seq:
            self._settled[key] = seq

    def _set_pending(
        self, ky: str, unit: str, body: dict[str, Any], digest: str, *, seq: int, force: bool = False
    ) -> None:
        key = stats_state_key(ky, unit)
        mono = self._mono()
        current = self.pending.get(key)
        if current is not None and current.digest == digest:
            current.force |= force
            # Same body: the earlier tickets settle with it; keep the newest seq for the newest ticket.
            current.seq = max(current.seq, seq)
            return
        first = current.first_change if current is not None else mono
        self.pending[key] = PendingStats(ky, unit, body, digest, seq, first, mono, force=force)

    # ------------------------------------------------------------------ computing

    def unit_counts(self) -> dict[str, Counter[str]]:
        """Each unit's merged counts (all periods): the read API and tests."""
        out: dict[str, Counter[str]] = {}
        for unit, by_period in self._by_period.items():
            total: Counter[str] = Counter()
            for slice_ in by_period.values():
                total.update(slice_)
            out[unit] = total
        return out

    def period_counts(self, unit: str) -> dict[str, Counter[str]]:
        """``unit``'s merged counts by period (read-only)."""
        return self._by_period.get(unit, {})

    def units(self) -> list[str]:
        """Units with figures."""
        return sorted(u for u, by_period in self._by_period.items() if by_period)

    def unit_tier(self, unit: str) -> str:
        """The tier the worker reported for ``unit`` (``XA`` when unknown)."""
        return self._tiers.get(unit, "XA")

    def body(self, ky: str, unit: str) -> dict[str, Any] | None:
        """The statistics body the hub holds for ``unit`` and ``ky`` right now (read API)."""
        by_period = self._by_period.get(unit)
        if by_period is None:
            return None
        return self._builder(ky, unit, self.unit_tier(unit), by_period.get(ky, Counter()), self._now())

    def periods_due(self, unit: str, now: datetime) -> list[str]:
        """The periods whose body the lane keeps current for ``unit``, sorted.

        The live periods (the builder skips those without figures); with ``history_from`` every
        period with a figure that starts on or after it (a period starting earlier may hold only
        part of its dossiers, and the portal's latest PUT replaces what it held); and every period
        the portal holds from the hub or that is pending (its figures may have dropped to zero).

            >>> from schemas.calendar import TZ
            >>> from schemas.figures import count_key
            >>> counts = {count_key("received", "*", "*", ky): 1 for ky in ("2020-12", "2021-01")}
            >>> lane = StatsLane(now=lambda: now, builder=lambda *args: None, debounce_s=5, min_interval_s=300,
            ...                  interval_s=300, history_from=date(2021, 1, 1))
            >>> now = datetime(2026, 5, 4, tzinfo=TZ)
            >>> lane.apply(UnitFigures(partition=0, unit_code="1", unit_tier="XA", generated_at=now, counts=counts))
            >>> lane.periods_due("1", now)  # 2020-12 starts before history_from
            ['2021-01', '2025', '2026', '2026-04', '2026-05', '2026-Q1', '2026-Q2']
        """
        periods = set(self._live(now)) | self._known.get(unit, set())
        if self._history_from is not None:
            for ky in set(self._by_period.get(unit, {})) - periods:
                try:
                    start = period_bounds(ky)[0]
                except ValueError:  # not a month, quarter or year: nothing the portal takes
                    continue
                if start >= self._history_from and (self._history_to is None or start < self._history_to):
                    periods.add(ky)
        return sorted(periods)

    async def refresh(self) -> int:
        """Rebuild the dirty keys (every key each ``interval_s``); returns how many became pending.

        Yields to the loop every few milliseconds (:class:`Pause`): thousands of bodies are built
        without ever holding up the consumer's heartbeat. Nothing is built before :attr:`ready`.
        """
        if not self.ready:
            return 0
        mono = self._mono()
        full = self._last_full is None or mono - self._last_full >= self._interval
        since = self._catalogue_since
        if since is not None and (mono - self._catalogue_last >= self._debounce
                                  or mono - since >= self._min_interval):
            self._catalogue_since = None
            full = True
        if full:
            self._last_full = mono
            for unit in set(self._by_period) | set(self._known):
                self._mark(unit, None)
                self._dirty_since[unit] = mono - self._rebuild_s  # at once
        ripe = [u for u in self._dirty if mono - self._dirty_since.get(u, mono) >= self._rebuild_s]
        if not ripe:
            return 0
        dirty = {u: self._dirty.pop(u) for u in ripe}
        for unit in ripe:
            self._dirty_since.pop(unit, None)
        now = self._now()
        pause = Pause()
        changed = 0
        for unit, periods in sorted(dirty.items()):
            due = self.periods_due(unit, now)
            for ky in due if periods is None else sorted(periods & set(due)):
                changed += self._rebuild(ky, unit, now)
                await pause()
        if changed:
            log.info("statistics: %d bodies changed, %d pending", changed, len(self.pending))
        return changed

    def _rebuild(self, ky: str, unit: str, now: datetime) -> int:
        key = stats_state_key(ky, unit)
        counts = self._by_period.get(unit, {}).get(ky, Counter())
        tier = self.unit_tier(unit)
        body = self._builder(ky, unit, tier, counts, now)
        self.built += 1
        acked = self.acked.get(key)
        if body is None:
            held = (acked is not None and acked.outcome == "pushed") or key in self.pending
            if not held or self._retract is None:
                return 0
            body = self._retract(ky, unit, tier, counts, now)  # the portal holds figures that are gone
            if body is None:
                return 0
        self._computed.add(key)
        digest = stats_digest(body)
        self._seq += 1
        current = self.pending.get(key)
        if acked is not None and acked.outcome != "none" and acked.digest == digest and not (
            current is not None and current.force and current.digest == digest
        ):
            if current is not None:
                del self.pending[key]
            self._settle(key, self._seq)  # the portal holds this body (or refused it already)
            return 0
        if current is not None and current.digest == digest:
            return 0
        self._set_pending(ky, unit, body, digest, seq=self._seq)
        self._known.setdefault(unit, set()).add(ky)
        return 1

    # ------------------------------------------------------------------ pushing

    def due_at(self, p: PendingStats) -> float:
        """When ``p`` may be pushed (monotonic): quiet for the debounce, or its min interval elapsed."""
        quiet = p.last_change + self._debounce
        # Spaced from the key's last push, or (never pushed) from when it became pending: during a
        # backlog drain a new key waits for quiet or one interval instead of going out half-counted.
        last = self._last_push.get(p.key)
        spaced = max(last, p.first_change) if last is not None else p.first_change
        return max(min(quiet, spaced + self._min_interval), p.not_before)

    def due(self, mono: float | None = None) -> list[PendingStats]:
        """Pending keys that may be pushed now and are not in flight, the longest due first."""
        mono = self._mono() if mono is None else mono
        ready = [(at, p.key, p) for p in self.pending.values()
                 if p.key not in self.inflight and (at := self.due_at(p)) <= mono]
        ready.sort(key=lambda t: (t[0], t[1]))
        return [p for _, _, p in ready]

    def done(self, pushed: PendingStats, state: StatsState) -> None:
        """``pushed`` went out (``state``: acknowledged or refused): settle it, unless a newer body arrived."""
        key = pushed.key
        self.acked[key] = state
        self._last_push[key] = self._mono()
        self.pushes += 1
        current = self.pending.get(key)
        if current is not None and (current.seq <= pushed.seq or current.digest == pushed.digest):
            del self.pending[key]
            self._settle(key, max(current.seq, pushed.seq))
        else:
            self._settle(key, pushed.seq)

    def failed(self, pushed: PendingStats, retry_in_s: float = 5.0) -> None:
        """Pushing ``pushed`` failed outside the portal (say, the sync-state write): retry it later."""
        current = self.pending.get(pushed.key)
        if current is not None:
            current.not_before = self._mono() + retry_in_s

    async def run(self, stop: asyncio.Event, push: StatsPusher, *, concurrency: int = 4, tick_s: float = 0.25) -> None:
        """Rebuild and push until ``stop`` is set, ``concurrency`` pushes in flight at most (errors logged)."""
        tasks: set[asyncio.Task[None]] = set()
        wake = asyncio.Event()

        async def one(p: PendingStats) -> None:
            snapshot = dataclasses.replace(p)
            try:
                state = await push(snapshot)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pushing statistics %s failed; retrying later", snapshot.key)
                self.failed(snapshot)
            else:
                self.done(snapshot, state)
            finally:
                self.inflight.discard(snapshot.key)
                wake.set()

        try:
            while not stop.is_set():
                try:
                    await self.refresh()
                except Exception:
                    log.exception("rebuilding statistics failed; retrying on the next tick")
                for p in self.due():
                    if len(self.inflight) >= concurrency:
                        break
                    self.inflight.add(p.key)
                    task = asyncio.create_task(one(p), name=f"stats-push {p.key}")
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(stop, wake), tick_s)
        finally:
            for task in list(tasks):
                task.cancel()
            for task in list(tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _first(*events: asyncio.Event) -> None:
    """Return when any of ``events`` is set."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def history_items(
    partials: Iterable[UnitFigures],
    builder: StatsBuilder,
    now: datetime,
    start: date,
    end: date | None = None,
) -> list[OutboxStats]:
    """``OutboxStats`` of every period with figures that starts on or after ``start`` (and before ``end``).

    What ``dvc-hub push stats --from`` enqueues: the same bodies the lane builds (same partials,
    same builder), for periods it does not keep current by itself.
    """
    lane = StatsLane(now=lambda: now, builder=builder, debounce_s=0, min_interval_s=1, interval_s=1)
    for partial in partials:
        lane.apply(partial)
    out: list[OutboxStats] = []
    for unit in lane.units():
        for ky, counts in sorted(lane.period_counts(unit).items()):
            try:
                first, _ = period_bounds(ky)
            except ValueError:
                continue
            if first < start or (end is not None and first >= end):
                continue
            body = builder(ky, unit, lane.unit_tier(unit), counts, now)
            if body is not None:
                out.append(stats_item(ky, unit, body, now))
    return out
