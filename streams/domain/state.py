"""Per-dossier state: the merged facts of the three sources, applied idempotently and commutatively.

The state agent keeps one value per dossier (key: ``MaHoSo``) in a faust Table whose values are
JSON. :func:`apply` folds one canonical event into that value and returns the new value, or
``None`` when the event changes nothing (a replay, a stale version, a duplicate document event) —
so the agent writes the table, and recomputes counters, only for real changes.

Merge rules (domain.md §3–4, contracts.md §1–3):

* **one-stop snapshot** (:class:`DossierEvent`): the newest ``version`` wins; an equal or older
  version changes nothing. A snapshot is a full picture, so it replaces the one-stop facts whole.
* **document** (:class:`DocumentEvent`): a signed (``KY_SO``) or issued (``BAN_HANH``) document
  linked to the dossier — :attr:`DocumentEvent.is_electronic_result` — marks an electronic
  result. The fact is monotonic (once true, true), so no set of seen document ids is kept: a
  duplicate or reordered document event cannot change the result twice.
* **portal** (:class:`PortalEvent`): the newest ``updated_at`` wins for the portal status (ties:
  the larger status code); an online payment, once seen, stays (OR); the newest rating wins
  (ties: the larger value). Every rule is a max or an OR, hence commutative and idempotent.

Events can arrive in any order: a document or portal event for a dossier the one-stop system does
not show yet is kept in the state, and counts once the first snapshot appears
(:func:`view` is ``None`` until then, and such a dossier counts nowhere).

The value is small on purpose (a worker holds millions): short keys, epoch seconds, positional
lists. Layout::

    {"k": "<MaHoSo>",
     "s": [version, unit, tier, procedure, level_raw, channel(1|2|3), status,
           received, due, end, as_of, supplements, flags],     # one-stop facts (absent before the 1st snapshot)
     "d": 1,                                                     # electronic result from QLVB (absent if not)
     "p": [updated, portal_status(1|2|3), paid(0|1), rated, satisfied(-1|0|1)]}   # portal facts

Example::

    >>> from schemas.events import DocumentEvent
    >>> doc = DocumentEvent(event_id="qlvb:7", source="qlvb", ma_ho_so="H56.X-1", doc_event_id=7,
    ...                     kind="KY_SO", at="2021-01-16T10:02:11+07:00")
    >>> s = apply(None, doc)
    >>> s
    {'k': 'H56.X-1', 'd': 1}
    >>> apply(s, doc) is None        # a replay changes nothing
    True
    >>> view(s) is None              # no one-stop snapshot yet: counts nowhere
    True
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.calendar import TZ
from schemas.events import Channel, DocumentEvent, DossierEvent, Level, PortalEvent, level_from_raw

__all__ = [
    "OPEN_STATUSES",
    "DossierView",
    "Event",
    "State",
    "apply",
    "end_ts_of",
    "received_ts_of",
    "view",
]

State = dict[str, Any]
Event = DossierEvent | DocumentEvent | PortalEvent

#: Statuses of a dossier that is received and not yet finished (paused ones included: 5, 6).
OPEN_STATUSES = frozenset({2, 4, 5, 6})

# positions in the "s" list
_V, _UNIT, _TIER, _PROC, _LEVEL, _CHAN, _STATUS, _RECV, _DUE, _END, _ASOF, _SUPP, _FLAGS = range(13)
# flags bits
_PAID, _DIGITISED, _ERESULT = 1, 2, 4
# positions in the "p" list
_P_UPD, _P_STATUS, _P_PAID, _P_RATED, _P_SAT = range(5)

_CHAN_CODE = {Channel.TRUC_TIEP: 1, Channel.TRUC_TUYEN: 2, Channel.BUU_CHINH: 3}
_CHAN_OF = {1: Channel.TRUC_TIEP, 2: Channel.TRUC_TUYEN, 3: Channel.BUU_CHINH}
_PORTAL_CODE = {"DA_NOP": 1, "DA_CHUYEN_MOT_CUA": 2, "DA_HUY": 3}
_PORTAL_OF = {v: k for k, v in _PORTAL_CODE.items()}


def _ts(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp())


def received_ts_of(ev: DossierEvent) -> int | None:
    """Reception time: ``NgayTiepNhan``, else the first "received" (2) progress row, else ``None``."""
    if ev.received_at is not None:
        return int(ev.received_at.timestamp())
    for s in ev.progress:
        if s.status == 2:
            return int(s.at.timestamp())
    return None


def _first_step(ev: DossierEvent, statuses: tuple[int, ...]) -> int | None:
    for s in ev.progress:
        if s.status in statuses:
            return int(s.at.timestamp())
    return None


def end_ts_of(ev: DossierEvent) -> int | None:
    """When the processing clock stopped (domain.md §4), or ``None`` while the dossier is open.

    Processed (9) time first, else result returned (10), else refused (3) / withdrawn (7) /
    stopped (8); each from its date field, else its first progress row, else the snapshot time.
    """
    st = ev.status
    if st in (9, 10):
        t = ev.finished_at or ev.returned_at
        if t is not None:
            return int(t.timestamp())
        step = _first_step(ev, (9, 10))
    elif st == 3:
        if ev.refused_at is not None:
            return int(ev.refused_at.timestamp())
        step = _first_step(ev, (3,))
    elif st in (7, 8):
        step = _first_step(ev, (st,))
    else:
        return None
    return step if step is not None else int(ev.updated_at.timestamp())


def _snapshot(ev: DossierEvent) -> list[Any]:
    flags = (_PAID if ev.paid_online else 0) | (_DIGITISED if ev.digitised else 0)
    flags |= _ERESULT if ev.electronic_result else 0
    return [
        ev.version,
        sys.intern(ev.unit_code),
        sys.intern(ev.unit_tier),
        sys.intern(ev.procedure_code),
        ev.level_raw,
        _CHAN_CODE[ev.channel],
        ev.status,
        received_ts_of(ev),
        _ts(ev.due_at),
        end_ts_of(ev),
        int(ev.updated_at.timestamp()),
        ev.supplement_requests,
        flags,
    ]


def _merge_portal(old: list[Any] | None, ev: PortalEvent) -> list[Any]:
    upd = int(ev.updated_at.timestamp())
    code = _PORTAL_CODE[ev.portal_status]
    rated = _ts(ev.rated_at) or 0
    sat = -1 if ev.satisfied is None else int(ev.satisfied)
    if old is None:
        return [upd, code, int(ev.paid_online), rated if sat >= 0 else 0, sat]
    new = list(old)
    if (upd, code) > (old[_P_UPD], old[_P_STATUS]):
        new[_P_UPD], new[_P_STATUS] = upd, code
    new[_P_PAID] = old[_P_PAID] | int(ev.paid_online)
    if sat >= 0 and (rated, sat) > (old[_P_RATED], old[_P_SAT]):
        new[_P_RATED], new[_P_SAT] = rated, sat
    return new


def apply(state: State | None, event: Event) -> State | None:
    """Fold ``event`` into ``state``; the new state, or ``None`` when nothing changes (see the module doc)."""
    new: State
    if isinstance(event, DossierEvent):
        old_s = state.get("s") if state is not None else None
        if old_s is not None and event.version <= old_s[_V]:
            return None
        new = dict(state) if state is not None else {"k": event.ma_ho_so}
        new["s"] = _snapshot(event)
        return new
    if isinstance(event, DocumentEvent):
        if event.ma_ho_so is None or not event.is_electronic_result:
            return None
        if state is not None and state.get("d"):
            return None
        new = dict(state) if state is not None else {"k": event.ma_ho_so}
        new["d"] = 1
        return new
    if isinstance(event, PortalEvent):
        old_p = state.get("p") if state is not None else None
        merged = _merge_portal(old_p, event)
        if merged == old_p:
            return None
        new = dict(state) if state is not None else {"k": event.ma_ho_so}
        new["p"] = merged
        return new
    raise TypeError(f"apply() takes dossier, document or portal events, not {type(event).__name__}")


@dataclass(frozen=True, slots=True)
class DossierView:
    """The effective merged facts of one dossier, as the counters need them (times: epoch seconds)."""

    ma_ho_so: str
    version: int
    unit_code: str
    unit_tier: str
    procedure_code: str
    level_raw: int
    channel: Channel
    status: int
    received_ts: int | None
    due_ts: int | None
    end_ts: int | None
    as_of_ts: int
    supplement_requests: int
    paid_online: bool
    digitised: bool
    electronic_result: bool
    satisfied: bool | None = None
    portal_status: str | None = None

    @property
    def level(self) -> Level:
        """Normalised level of the procedure when the dossier was filed."""
        return level_from_raw(self.level_raw)

    @property
    def is_received(self) -> bool:
        """Received by the one-stop desk (not just submitted, not refused) with a reception time."""
        return self.received_ts is not None and self.status not in (1, 3)

    @property
    def is_open(self) -> bool:
        """Received and still being handled (statuses 2, 4, 5, 6)."""
        return self.status in OPEN_STATUSES and self.received_ts is not None

    def at(self, ts: int | None) -> datetime | None:
        """An epoch field as a local aware datetime (for display and tests)."""
        return None if ts is None else datetime.fromtimestamp(ts, TZ)


def view(state: State | None) -> DossierView | None:
    """The merged facts of a state, or ``None`` while no one-stop snapshot exists."""
    if state is None:
        return None
    s = state.get("s")
    if s is None:
        return None
    p = state.get("p")
    flags = s[_FLAGS]
    portal_paid = bool(p[_P_PAID]) if p is not None else False
    sat = p[_P_SAT] if p is not None else -1
    return DossierView(
        ma_ho_so=state["k"],
        version=s[_V],
        unit_code=s[_UNIT],
        unit_tier=s[_TIER],
        procedure_code=s[_PROC],
        level_raw=s[_LEVEL],
        channel=_CHAN_OF[s[_CHAN]],
        status=s[_STATUS],
        received_ts=s[_RECV],
        due_ts=s[_DUE],
        end_ts=s[_END],
        as_of_ts=s[_ASOF],
        supplement_requests=s[_SUPP],
        paid_online=bool(flags & _PAID) or portal_paid,
        digitised=bool(flags & _DIGITISED),
        electronic_result=bool(flags & _ERESULT) or bool(state.get("d")),
        satisfied=None if sat < 0 else bool(sat),
        portal_status=_PORTAL_OF.get(p[_P_STATUS]) if p is not None else None,
    )
