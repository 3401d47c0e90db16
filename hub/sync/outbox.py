"""Outbox items, sync state and idempotency keys: the pure part of the portal sync.

Nothing here does I/O, so every rule that makes the sync "exactly once in effect" is unit-testable:

- :func:`parse_item` reads an outbox record (:class:`schemas.figures.OutboxDossier` or
  :class:`schemas.figures.OutboxStats`);
- :func:`newest_per_dossier` keeps, of a batch with duplicates and stale versions, the newest
  version of each dossier — and :meth:`DossierState.supersedes` drops it when the portal already
  has that version or a newer one;
- :func:`new_progress_rows` / :meth:`DossierState.advance` implement the per-dossier progress
  high-water mark (the time of the last row pushed, plus the fingerprints of the rows pushed at
  exactly that time, since several rows can share one second);
- :func:`idempotency_key` is deterministic: the same items and the same body give the same key, in
  this process or after a restart, so the portal recognises a resend;
- :func:`portal_dossier` / :func:`portal_progress_row` are the outbound privacy edge: no name,
  phone or address ever leaves, the ID-number hash only when the province requires it, the
  processing notes only when it asks for them;
- :func:`stats_digest` hashes a statistics body without its ``thoi_diem_tong_hop`` stamp, so
  unchanged figures are recognised as unchanged.

Example::

    >>> rows = [{"TrangThai": "2", "ThoiDiemXuLy": "20210115082010"},
    ...         {"TrangThai": "4", "ThoiDiemXuLy": "20210115093012"}]
    >>> state = DossierState(ma_ho_so="H56.1", version=1)
    >>> len(new_progress_rows(rows, state))
    2
    >>> state.advance(rows[:1]); [r["TrangThai"] for r in new_progress_rows(rows, state)]
    ['4']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hub.privacy import ADDRESS_FIELDS, ID_FIELDS, NAME_FIELDS, PHONE_FIELDS, is_free_text_field
from schemas.figures import OutboxDossier, OutboxStats

__all__ = [
    "DossierState",
    "OutboxItem",
    "StatsState",
    "canonical_json",
    "idempotency_key",
    "new_progress_rows",
    "newest_per_dossier",
    "parse_item",
    "parse_state",
    "portal_dossier",
    "portal_progress_row",
    "progress_row_key",
    "stats_digest",
    "stats_item",
    "stats_state_key",
]

OutboxItem = OutboxDossier | OutboxStats
_ITEM = TypeAdapter(OutboxDossier | OutboxStats)
_NEVER_SENT = NAME_FIELDS | PHONE_FIELDS | ADDRESS_FIELDS | ID_FIELDS
#: Where the hub keeps the keyed hash of the ID number (hub.privacy.scrub_dossier).
ID_HASH_FIELD = "IdHash"


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes (sorted keys, no spaces, UTF-8): the input of every hash here."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def parse_item(value: bytes) -> OutboxItem:
    """An outbox record's item; raises ``ValueError`` (with a reason) when it is not one."""
    try:
        return _ITEM.validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]["msg"]
        raise ValueError(f"not an outbox item: {exc.error_count()} problem(s), first: {first}") from None


def idempotency_key(kind: str, item_ids: Iterable[str], body: Any) -> str:
    """``sha256(kind, sorted item ids, canonical body)``: the same push always gets the same key."""
    digest = hashlib.sha256(kind.encode())
    for item_id in sorted(item_ids):
        digest.update(b"\n" + item_id.encode())
    digest.update(b"\n" + canonical_json(body))
    return f"dvchub-{kind}-{digest.hexdigest()[:40]}"


def stats_digest(body: dict[str, Any]) -> str:
    """SHA-256 of a statistics body without its generation stamp (unchanged figures, same digest)."""
    return hashlib.sha256(canonical_json({k: v for k, v in body.items() if k != "thoi_diem_tong_hop"})).hexdigest()


def stats_item(ky: str, unit: str, body: dict[str, Any], created_at: datetime) -> OutboxStats:
    """The outbox item of one statistics body (item id ``stats:<ky>:<unit>:<digest[:16]>``)."""
    return OutboxStats(
        item_id=f"stats:{ky}:{unit}:{stats_digest(body)[:16]}", ky=ky, ma_don_vi=unit, created_at=created_at, body=body
    )


def stats_state_key(ky: str, unit: str) -> str:
    """Key of a statistics entry on the sync-state topic (and of its outbox records)."""
    return f"stats|{ky}|{unit}"


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _NEVER_SENT}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def portal_dossier(dossier: dict[str, Any], *, send_id_number: bool) -> dict[str, Any]:
    """The dossier as it may leave the hub: no name, phone, address or ID number, ever.

    The raw ID number never exists in the hub (it is hashed at the edge); with
    ``send_id_number`` the keyed hash (``IdHash``) is sent, otherwise it is removed too.
    """
    out = _strip(dossier)
    assert isinstance(out, dict)
    if not send_id_number:
        out.pop(ID_HASH_FIELD, None)
    return out


def progress_row_key(row: dict[str, Any]) -> str:
    """A progress row's fingerprint (its content, canonical)."""
    return hashlib.sha256(canonical_json(row)).hexdigest()[:16]


def portal_progress_row(ma_ho_so: str, row: dict[str, Any], *, share_free_text: bool = False) -> dict[str, Any]:
    """A progress row for ``POST /dongbo/tiendo``: with its ``MaHoSo``, without personal fields.

    The processing note (``NoiDungXuLy``, free text: masked at the edge, but masking cannot find every
    name) is sent empty unless the province asked for it (``privacy.share_free_text``).
    """
    out = _strip(row)
    assert isinstance(out, dict)
    out.pop(ID_HASH_FIELD, None)
    if not share_free_text:
        for name in [k for k in out if is_free_text_field(k)]:
            out[name] = ""
    out["MaHoSo"] = ma_ho_so
    return out


class DossierState(BaseModel):
    """What the hub knows the portal holds for one dossier (a sync-state record, keyed by MaHoSo)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["dossier"] = "dossier"
    ma_ho_so: str
    #: Newest version the portal accepted (0: none yet).
    version: int = 0
    item_id: str = ""
    on_portal: bool = False
    #: Progress high-water mark: time (yyyyMMddHHmmss) of the newest row pushed, and the
    #: fingerprints of the rows pushed at exactly that time.
    progress_hwm: str = ""
    progress_hwm_keys: list[str] = Field(default_factory=list)
    progress_pushed: int = 0
    outcome: Literal["none", "pushed", "rejected"] = "none"
    detail: str = ""
    #: The item the portal refused (already dead-lettered: a re-delivery is not dead-lettered again).
    rejected_item_id: str = ""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def supersedes(self, item: OutboxDossier) -> bool:
        """True when the portal already has ``item``'s version or a newer one."""
        return self.on_portal and self.version >= item.version

    def advance(self, rows: list[dict[str, Any]]) -> None:
        """Move the high-water mark past ``rows`` (just accepted by the portal)."""
        for row in rows:
            when = str(row.get("ThoiDiemXuLy") or "")
            key = progress_row_key(row)
            if when > self.progress_hwm:
                self.progress_hwm, self.progress_hwm_keys = when, [key]
            elif when == self.progress_hwm and key not in self.progress_hwm_keys:
                self.progress_hwm_keys.append(key)
        self.progress_pushed += len(rows)


class StatsState(BaseModel):
    """The last statistics body the portal acknowledged for one (period, unit)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["stats"] = "stats"
    ky: str
    ma_don_vi: str
    digest: str = ""
    item_id: str = ""
    outcome: Literal["none", "pushed", "rejected"] = "none"
    detail: str = ""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


_STATE = TypeAdapter(DossierState | StatsState)


def parse_state(value: bytes) -> DossierState | StatsState:
    """A sync-state record (raises ``ValueError`` when unreadable)."""
    try:
        return _STATE.validate_json(value)
    except ValidationError as exc:
        raise ValueError(f"unreadable sync-state record: {exc.errors()[0]['msg']}") from None


def new_progress_rows(rows: list[dict[str, Any]], state: DossierState) -> list[dict[str, Any]]:
    """The rows of ``rows`` beyond the dossier's high-water mark, oldest first.

    Rows older than the mark count as pushed: progress is a history that only grows forward in time.
    """
    out = []
    for row in rows:
        when = str(row.get("ThoiDiemXuLy") or "")
        at_mark = when == state.progress_hwm and progress_row_key(row) not in state.progress_hwm_keys
        if when > state.progress_hwm or at_mark:
            out.append(row)
    out.sort(key=lambda r: str(r.get("ThoiDiemXuLy") or ""))
    # The same row twice in one version's history is one row.
    unique: dict[str, dict[str, Any]] = {}
    for row in out:
        unique.setdefault(progress_row_key(row), row)
    return list(unique.values())


def newest_per_dossier(items: Iterable[OutboxDossier]) -> dict[str, OutboxDossier]:
    """The newest version of each dossier among ``items`` (duplicates and stale versions dropped)."""
    newest: dict[str, OutboxDossier] = {}
    for item in items:
        seen = newest.get(item.ma_ho_so)
        if seen is None or item.version > seen.version:
            newest[item.ma_ho_so] = item
    return newest
