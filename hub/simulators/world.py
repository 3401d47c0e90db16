"""The ground truth behind the three simulated systems, in memory and thread-safe.

A :class:`World` holds what the one-stop systems, QLVB and the portal "really" contain. The scenario
player (or :class:`~hub.simulators.live.LiveGenerator`) writes it; the simulator apps read it and
serve it through the contracts' interfaces, traps included; tests compare what the hub computed with
the World's own records (:meth:`World.all_versions` is "every change that ever existed").

    >>> from datetime import datetime, timedelta
    >>> from hub.simulators.clock import SimClock, TZ
    >>> world = World(SimClock.manual(datetime(2021, 1, 15, 9, 30, tzinfo=TZ)))
    >>> world.upsert_dossier({"MaHoSo": "H56.14767-210115-00001", "MaDonVi": "14767", "TrangThaiHoSo": "2"})
    1
    >>> world.upsert_dossier({"MaHoSo": "H56.14767-210115-00001", "MaDonVi": "14767", "TrangThaiHoSo": "4"},
    ...                      visible_delay=timedelta(seconds=60))
    2
    >>> [v["TrangThaiHoSo"] for v in world.visible_dossiers("14767")]   # version 2 commits late
    ['2']

The simulator apps run in an asyncio loop, possibly in another thread than the writer; every
method takes :attr:`World.lock`. The public dictionaries of the portal's target side
(:attr:`portal_dossiers`, ...) may be read directly in tests once the traffic has stopped; while it
runs, use the copying accessors (:meth:`portal_dossier`, :meth:`portal_progress_rows`, ...).
"""

from __future__ import annotations

import copy
import random
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hub.simulators.clock import SimClock, fmt_compact, fmt_iso, parse_iso

__all__ = ["QLVB_EVENT_TYPES", "World"]

#: The QLVB event types of contracts.md §2.
QLVB_EVENT_TYPES = ("DANG_KY", "TRINH_KY", "KY_SO", "BAN_HANH", "CHUYEN_MOT_CUA")

#: Snapshot fields the World owns: a snapshot handed to upsert_dossier must not set them.
_WORLD_FIELDS = ("PhienBan", "NgayCapNhat")


@dataclass(frozen=True)
class _Version:
    """One stored dossier version; ``visible_at`` is when its transaction "commits"."""

    seq: int
    snapshot: dict[str, Any]
    visible_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.snapshot["NgayCapNhat"], self.snapshot["MaHoSo"])


@dataclass
class _PortalItem:
    item: dict[str, Any]
    updated: datetime
    seq: int


class World:
    """Ground truth of every simulated source and of what the portal received.

    ``seed`` drives the World's own randomness (QLVB id gaps); ``qlvb_gap_rate`` is the chance that
    an event id skips ahead by 1 to ``qlvb_max_gap`` numbers (a rolled-back transaction), which the
    contract says happens and must not stall a client.
    """

    def __init__(
        self,
        clock: SimClock,
        seed: int = 0,
        *,
        qlvb_first_id: int = 1_000_000,
        qlvb_gap_rate: float = 0.05,
        qlvb_max_gap: int = 3,
        request_log_size: int = 20_000,
    ) -> None:
        self.clock = clock
        self.seed = seed
        self.lock = threading.RLock()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible ground truth, not crypto
        self._seq = 0
        # --- one-stop systems
        self._dossiers: dict[str, list[_Version]] = {}
        self._by_unit: dict[str, set[str]] = {}
        self._catalogues: dict[str, list[dict[str, Any]]] = {}
        # --- QLVB
        self._events: list[dict[str, Any]] = []
        self._next_event_id = qlvb_first_id
        self.qlvb_gap_rate = qlvb_gap_rate
        self.qlvb_max_gap = qlvb_max_gap
        # --- portal, source side
        self._portal_items: dict[str, _PortalItem] = {}
        # --- portal, target side (what the hub pushed)
        #: By MaHoSo: ``{"snapshot": last stored dossier, "writes": applied writes, "changes":
        #: writes that changed the stored content, "created_at"/"updated_at": source-clock ISO}``.
        self.portal_dossiers: dict[str, dict[str, Any]] = {}
        #: Every progress row received, in arrival order (duplicates included).
        self.portal_progress: list[dict[str, Any]] = []
        #: By ``(ky, ma_don_vi)``: the latest accepted PUT body.
        self.portal_stats: dict[tuple[str, str], dict[str, Any]] = {}
        #: Every accepted stats PUT, in order (the replacement history).
        self.portal_stats_history: list[dict[str, Any]] = []
        #: Every request any simulator app received (secrets removed), newest last, bounded.
        self.request_log: deque[dict[str, Any]] = deque(maxlen=request_log_size)

    # ================================================================== one-stop dossiers

    def upsert_dossier(
        self,
        snapshot: dict[str, Any],
        *,
        updated_at: datetime | None = None,
        visible_delay: timedelta = timedelta(0),
    ) -> int:
        """Record a new version of a dossier and return its ``PhienBan``.

        ``snapshot`` is the full dossier in the one-stop format (contracts.md §1) without
        ``PhienBan``/``NgayCapNhat``: the World numbers versions 1, 2, 3... and stamps
        ``NgayCapNhat`` with ``updated_at`` or the clock's now, to the second. The version is
        served once the source clock reaches ``NgayCapNhat + visible_delay`` (late commit).
        """
        ma = snapshot.get("MaHoSo")
        unit = snapshot.get("MaDonVi")
        if not isinstance(ma, str) or not ma or not isinstance(unit, str) or not unit:
            raise ValueError("a dossier snapshot needs non-empty string MaHoSo and MaDonVi")
        for name in _WORLD_FIELDS:
            if name in snapshot:
                raise ValueError(f"{name} is set by the World; leave it out of the snapshot")
        if visible_delay < timedelta(0):
            raise ValueError("visible_delay cannot be negative")
        stamp = (updated_at or self.clock.now()).replace(microsecond=0)
        full = copy.deepcopy(snapshot)
        with self.lock:
            history = self._dossiers.setdefault(ma, [])
            version = len(history) + 1
            full["PhienBan"] = version
            full["NgayCapNhat"] = fmt_compact(stamp)
            self._seq += 1
            history.append(_Version(self._seq, full, stamp + visible_delay))
            self._by_unit.setdefault(unit, set()).add(ma)
        return version

    def dossier_history(self, ma_ho_so: str) -> list[dict[str, Any]]:
        """Every version of one dossier, oldest first (copies)."""
        with self.lock:
            return [copy.deepcopy(v.snapshot) for v in self._dossiers.get(ma_ho_so, [])]

    def all_versions(self) -> list[dict[str, Any]]:
        """Every version ever created, in creation order: the ground truth of "every change"."""
        with self.lock:
            versions = [v for history in self._dossiers.values() for v in history]
            versions.sort(key=lambda v: v.seq)
            return [copy.deepcopy(v.snapshot) for v in versions]

    def final_dossiers(self) -> dict[str, dict[str, Any]]:
        """The latest version of each dossier, visible or not, by ``MaHoSo``."""
        with self.lock:
            return {ma: copy.deepcopy(h[-1].snapshot) for ma, h in self._dossiers.items() if h}

    def visible_version_at(self, ma_ho_so: str, now: datetime) -> dict[str, Any] | None:
        """The version a reader sees at ``now``: the newest whose commit is visible (copy), or None."""
        with self.lock:
            version = _visible(self._dossiers.get(ma_ho_so, []), now)
            return copy.deepcopy(version.snapshot) if version else None

    def visible_dossiers(self, unit: str, now: datetime | None = None) -> list[dict[str, Any]]:
        """What unit ``unit``'s one-stop system serves at ``now`` (default: the clock's now).

        For each dossier handled by the unit, the newest version already visible; a dossier with
        no visible version yet is absent. Sorted by (``NgayCapNhat``, ``MaHoSo``). Copies.
        """
        return [copy.deepcopy(v.snapshot) for v in self._visible_versions(unit, now)]

    def dossier_changes(
        self, unit: str, tu: str, sau: str | None, limit: int, now: datetime | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One keyset page of ``/hoso/thaydoi``: visible snapshots after the cursor, and "more?".

        Without ``sau``: every item with ``NgayCapNhat >= tu``; with ``sau``: strictly after
        ``(tu, sau)`` in (``NgayCapNhat``, ``MaHoSo``) order. Returns at most ``limit`` copies.
        """
        page: list[_Version] = []
        for v in self._visible_versions(unit, now):
            after = v.key[0] >= tu if sau is None else v.key > (tu, sau)
            if after:
                page.append(v)
                if len(page) > limit:
                    break
        more = len(page) > limit
        return [copy.deepcopy(v.snapshot) for v in page[:limit]], more

    def _visible_versions(self, unit: str, now: datetime | None) -> list[_Version]:
        at = now or self.clock.now()
        with self.lock:
            out = []
            for ma in self._by_unit.get(unit, ()):
                version = _visible(self._dossiers[ma], at)
                # The handling unit is that of the served version (a dossier transferred to another
                # unit leaves the first unit's feed).
                if version is not None and version.snapshot.get("MaDonVi") == unit:
                    out.append(version)
        out.sort(key=lambda v: v.key)
        return out

    def units(self) -> list[str]:
        """Units that have at least one dossier or a catalogue."""
        with self.lock:
            return sorted(set(self._by_unit) | set(self._catalogues))

    # ================================================================== catalogues

    def set_catalogue(self, unit: str, rows: list[dict[str, Any]]) -> None:
        """Publish unit ``unit``'s procedure catalogue (one-stop ``/thutuc`` rows, contracts.md §1)."""
        with self.lock:
            self._catalogues[unit] = copy.deepcopy(rows)

    def catalogue(self, unit: str) -> list[dict[str, Any]]:
        """The unit's catalogue rows (copies; empty if none was published)."""
        with self.lock:
            return copy.deepcopy(self._catalogues.get(unit, []))

    # ================================================================== QLVB

    def add_document_event(
        self,
        unit: str,
        loai: str,
        thoi_diem: datetime,
        van_ban: dict[str, str],
        ma_ho_so: str | None,
    ) -> int:
        """Record a document event and return its id.

        Ids increase; now and then (``qlvb_gap_rate``) a few numbers are skipped, as a rolled-back
        transaction does. ``van_ban`` holds the ``VanBan`` attributes (``so_ky_hieu``, ``trich_yeu``,
        ``ngay_ban_hanh``, ``co_quan_ban_hanh``, ``nguoi_ky``, ``ky_so``); ``ma_don_vi`` defaults to
        ``unit``. ``ma_ho_so`` None = a document linked to no dossier.
        """
        if loai not in QLVB_EVENT_TYPES:
            raise ValueError(f"loai must be one of {QLVB_EVENT_TYPES}, got {loai!r}")
        attrs = {str(k): str(v) for k, v in van_ban.items()}
        attrs.setdefault("ma_don_vi", unit)
        with self.lock:
            if self._events and self._rng.random() < self.qlvb_gap_rate:
                self._next_event_id += self._rng.randint(1, max(1, self.qlvb_max_gap))
            event_id = self._next_event_id
            self._next_event_id += 1
            self._events.append(
                {
                    "id": event_id,
                    "loai": loai,
                    "thoi_diem": fmt_iso(thoi_diem),
                    "ma_don_vi": unit,
                    "van_ban": attrs,
                    "ma_ho_so": ma_ho_so,
                }
            )
        return event_id

    def document_events(self) -> list[dict[str, Any]]:
        """Every QLVB event, ascending by id (copies)."""
        with self.lock:
            return copy.deepcopy(self._events)

    def document_events_after(self, tu_id: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Events with ``id > tu_id`` (at most ``limit``) and whether more follow."""
        with self.lock:
            # Ids only grow, so a bisection would do; a scan keeps this readable and is fast
            # enough for the simulator's volumes.
            after = [e for e in self._events if e["id"] > tu_id]
            return copy.deepcopy(after[:limit]), len(after) > limit

    def document_events_upto(self, tu_id: int, count: int) -> list[dict[str, Any]]:
        """The last ``count`` events with ``id <= tu_id`` (what a duplicate re-serve repeats)."""
        with self.lock:
            before = [e for e in self._events if e["id"] <= tu_id]
            return copy.deepcopy(before[-count:]) if count > 0 else []

    # ================================================================== portal, source side

    def upsert_portal_item(self, item: dict[str, Any]) -> None:
        """Create or replace a portal item (online submission, payment, rating; contracts.md §3).

        Keyed by ``ma_ho_so``. ``cap_nhat_luc`` defaults to the clock's now; a changed item moves to
        the end of the ``cap_nhat_luc`` order (that is what breaks offset paging).
        """
        ma = item.get("ma_ho_so")
        if not isinstance(ma, str) or not ma:
            raise ValueError("a portal item needs a non-empty string ma_ho_so")
        stored = copy.deepcopy(item)
        if not stored.get("cap_nhat_luc"):
            stored["cap_nhat_luc"] = fmt_iso(self.clock.now())
        updated = parse_iso(stored["cap_nhat_luc"])
        with self.lock:
            self._seq += 1
            self._portal_items[ma] = _PortalItem(stored, updated, self._seq)

    def touch_portal_item(self, ma_ho_so: str) -> None:
        """Re-save an item as the portal does on any change: it becomes the newest of all.

        Used by the move-during-paging fault; the stamp never goes backwards so the item lands at
        the end even when the clock stands still.
        """
        with self.lock:
            entry = self._portal_items.get(ma_ho_so)
            if entry is None:
                return
            latest = max(e.updated for e in self._portal_items.values())
            stamp = max(self.clock.now().replace(microsecond=0), latest)
            entry.item["cap_nhat_luc"] = fmt_iso(stamp)
            entry.updated = stamp
            self._seq += 1
            entry.seq = self._seq

    def portal_items(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Portal items ordered by ``cap_nhat_luc`` (then by change order), optionally ``>= since``."""
        with self.lock:
            entries = sorted(self._portal_items.values(), key=lambda e: (e.updated, e.seq))
            return [copy.deepcopy(e.item) for e in entries if since is None or e.updated >= since]

    # ================================================================== portal, target side

    def portal_dossier(self, ma_ho_so: str) -> dict[str, Any] | None:
        """What the portal holds for one dossier (see :attr:`portal_dossiers`), or None."""
        with self.lock:
            entry = self.portal_dossiers.get(ma_ho_so)
            return copy.deepcopy(entry) if entry else None

    def store_portal_dossier(self, dossier: dict[str, Any]) -> None:
        """Apply one accepted dossier push (the portal app calls this)."""
        ma = dossier["MaHoSo"]
        now = fmt_iso(self.clock.now())
        with self.lock:
            entry = self.portal_dossiers.get(ma)
            if entry is None:
                self.portal_dossiers[ma] = {
                    "snapshot": copy.deepcopy(dossier), "writes": 1, "changes": 1,
                    "created_at": now, "updated_at": now,
                }
                return
            entry["writes"] += 1
            if entry["snapshot"] != dossier:
                entry["changes"] += 1
                entry["snapshot"] = copy.deepcopy(dossier)
            entry["updated_at"] = now

    def add_portal_progress(self, rows: list[dict[str, Any]]) -> None:
        """Append accepted progress rows (the portal app calls this)."""
        with self.lock:
            self.portal_progress.extend(copy.deepcopy(rows))

    def portal_progress_rows(self, *, dedup: bool = False) -> list[dict[str, Any]]:
        """Progress rows received; with ``dedup``, one per (MaHoSo, TrangThai, ThoiDiemXuLy), first kept."""
        with self.lock:
            rows = copy.deepcopy(self.portal_progress)
        if not dedup:
            return rows
        seen: set[tuple[Any, Any, Any]] = set()
        unique = []
        for row in rows:
            key = (row.get("MaHoSo"), row.get("TrangThai"), row.get("ThoiDiemXuLy"))
            if key not in seen:
                seen.add(key)
                unique.append(row)
        return unique

    def put_portal_stats(self, ky: str, ma_don_vi: str, body: dict[str, Any]) -> None:
        """Store an accepted statistics PUT; the latest replaces the previous one."""
        with self.lock:
            self.portal_stats[(ky, ma_don_vi)] = copy.deepcopy(body)
            self.portal_stats_history.append(copy.deepcopy(body))

    def portal_stats_for(self, ky: str, ma_don_vi: str) -> dict[str, Any] | None:
        """The latest statistics body of one unit and period, or None."""
        with self.lock:
            body = self.portal_stats.get((ky, ma_don_vi))
            return copy.deepcopy(body) if body else None

    # ================================================================== request log

    def log_request(self, entry: dict[str, Any]) -> None:
        """Append one request record (the apps call this; secrets are already removed)."""
        with self.lock:
            self.request_log.append(entry)

    def requests(self, *, app: str | None = None, path_prefix: str = "") -> list[dict[str, Any]]:
        """Logged requests, optionally of one app (``motcua``, ``qlvb``, ``portal``) and path prefix."""
        with self.lock:
            return [
                copy.deepcopy(e)
                for e in self.request_log
                if (app is None or e.get("app") == app) and str(e.get("path", "")).startswith(path_prefix)
            ]


def _visible(history: list[_Version], now: datetime) -> _Version | None:
    """The newest version of ``history`` already committed at ``now``."""
    for version in reversed(history):
        if version.visible_at <= now:
            return version
    return None
