"""Canonical event models: the one language every stage of the hub speaks.

Three source systems describe the same dossier in three dialects (one-stop JSON in
``yyyyMMddHHmmss`` local time, document-management XML, the portal's ISO-8601 JSON behind an
LGSP envelope). The normalising agents translate each dialect into one of the models here and
publish it on the canonical topic, keyed by the dossier code, so that the state agent merges
the three views of a dossier on one partition.

Rules every model follows:

* **No personal data.** Names and phones are dropped at the connector edge; the ID number
  survives only as ``id_hash`` (a keyed HMAC, see :mod:`hub.privacy`).
* **Aware datetimes** in Asia/Ho_Chi_Minh; ``None`` when the source left the date empty.
* **Deterministic ids.** ``event_id`` is ``source:key:version`` so that a replay or a restarted
  producer's resend is recognisable as the same event, never a new one.

Example::

    >>> from schemas.events import DossierEvent, Level, Channel
    >>> ev = DossierEvent(
    ...     event_id="motcua:H56.14767-210115-00012:3", source="motcua", version=3,
    ...     ma_ho_so="H56.14767-210115-00012", unit_code="14767", unit_tier="XA",
    ...     procedure_code="1.003560.000.00.00.H56", level_raw=4, level=Level.TOAN_TRINH,
    ...     channel=Channel.TRUC_TUYEN, status=4, updated_at="2021-01-15T09:30:12+07:00")
    >>> ev.status_group
    <StatusGroup.DANG_XU_LY: 'DANG_XU_LY'>
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Level(StrEnum):
    """Normalised service level (Decree 42/2022 vocabulary); raw ``MucDo`` is kept beside it."""

    KHONG_TRUC_TUYEN = "KHONG_TRUC_TUYEN"  # MucDo 1, 2: information only
    MOT_PHAN = "MOT_PHAN"  # MucDo 3: "mức độ 3", partly online
    TOAN_TRINH = "TOAN_TRINH"  # MucDo 4: "mức độ 4", fully online


class Channel(StrEnum):
    """How the dossier was filed (one-stop ``KenhThucHien``; NOT the EMC numbering)."""

    TRUC_TIEP = "TRUC_TIEP"  # "1", "", null, missing
    TRUC_TUYEN = "TRUC_TUYEN"  # "2"
    BUU_CHINH = "BUU_CHINH"  # "3"


class StatusGroup(StrEnum):
    """The reporting group of a national status code (domain.md §3)."""

    CHUA_TIEP_NHAN = "CHUA_TIEP_NHAN"  # 1, 3: not received
    DANG_XU_LY = "DANG_XU_LY"  # 2, 4: in progress
    BO_SUNG = "BO_SUNG"  # 5: waiting for the citizen's supplement
    TAM_DUNG = "TAM_DUNG"  # 6, 8: paused (fees requested, stopped)
    RUT_HO_SO = "RUT_HO_SO"  # 7: withdrawn
    DA_XONG = "DA_XONG"  # 9, 10: finished


STATUS_GROUP: dict[int, StatusGroup] = {
    1: StatusGroup.CHUA_TIEP_NHAN,
    2: StatusGroup.DANG_XU_LY,
    3: StatusGroup.CHUA_TIEP_NHAN,
    4: StatusGroup.DANG_XU_LY,
    5: StatusGroup.BO_SUNG,
    6: StatusGroup.TAM_DUNG,
    7: StatusGroup.RUT_HO_SO,
    8: StatusGroup.TAM_DUNG,
    9: StatusGroup.DA_XONG,
    10: StatusGroup.DA_XONG,
}

UnitTier = Literal["TINH", "HUYEN", "XA"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    schema_version: int = SCHEMA_VERSION
    event_id: Annotated[str, Field(min_length=3, max_length=200)]
    source: Annotated[str, Field(min_length=1, max_length=40)]
    ma_ho_so: Annotated[str, Field(min_length=1, max_length=100)] | None


class ProgressStep(BaseModel):
    """One row of ``QuaTrinhXuLy``: what happened to the dossier, when, where (no person's name)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Annotated[int, Field(ge=1, le=10)]
    at: AwareDatetime
    department: str = ""
    note: str = ""


class DossierEvent(_Event):
    """The one-stop system's view of a dossier at one version (a full snapshot, not a delta)."""

    type: Literal["dossier"] = "dossier"
    ma_ho_so: Annotated[str, Field(min_length=1, max_length=100)]
    #: ``PhienBan``; the normaliser holds it to ``bounds.max_version``, the schema to what JSON keeps exact.
    version: Annotated[int, Field(ge=0, le=2**53)]
    unit_code: Annotated[str, Field(min_length=1, max_length=10)]
    unit_tier: UnitTier
    procedure_code: Annotated[str, Field(min_length=1, max_length=60)]
    procedure_name: str = ""
    field_code: str = ""
    level_raw: Annotated[int, Field(ge=1, le=4)]
    level: Level
    channel: Channel
    status: Annotated[int, Field(ge=1, le=10)]
    submitted_at: AwareDatetime | None = None
    received_at: AwareDatetime | None = None
    due_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    returned_at: AwareDatetime | None = None
    refused_at: AwareDatetime | None = None
    updated_at: AwareDatetime
    paid_online: bool = False
    digitised: bool = False
    electronic_result: bool = False
    supplement_requests: Annotated[int, Field(ge=0)] = 0
    applicant_kind: int | None = None
    id_hash: str | None = None
    progress: tuple[ProgressStep, ...] = ()

    @property
    def status_group(self) -> StatusGroup:
        """Reporting group of :attr:`status`."""
        return STATUS_GROUP[self.status]


class DocumentEvent(_Event):
    """A document-management (QLVB) event; linked to a dossier when ``ma_ho_so`` is set."""

    type: Literal["document"] = "document"
    doc_event_id: Annotated[int, Field(ge=0, le=2**53)]
    kind: Literal["DANG_KY", "TRINH_KY", "KY_SO", "BAN_HANH", "CHUYEN_MOT_CUA"]
    at: AwareDatetime
    unit_code: str | None = None
    document_number: str = ""
    signed: bool = False

    @property
    def is_electronic_result(self) -> bool:
        """A signed or issued document linked to a dossier is that dossier's electronic result."""
        return self.ma_ho_so is not None and (self.kind in ("KY_SO", "BAN_HANH") or self.signed)


class PortalEvent(_Event):
    """The provincial portal's view: online submission, online payment, citizen rating."""

    type: Literal["portal"] = "portal"
    ma_ho_so: Annotated[str, Field(min_length=1, max_length=100)]
    procedure_code: str
    unit_code: str
    level_raw: Annotated[int, Field(ge=1, le=4)] | None = None
    submitted_at: AwareDatetime | None = None
    portal_status: Literal["DA_NOP", "DA_CHUYEN_MOT_CUA", "DA_HUY"]
    paid_amount: int | None = None
    paid_online: bool = False
    paid_at: AwareDatetime | None = None
    satisfied: bool | None = None
    rated_at: AwareDatetime | None = None
    updated_at: AwareDatetime


class CatalogueEntry(BaseModel):
    """One procedure a unit offers, with the level it had over a date range (``HieuLucTu``..``Den``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["catalogue"] = "catalogue"
    schema_version: int = SCHEMA_VERSION
    event_id: str
    source: str
    unit_code: str
    procedure_code: str
    procedure_name: str = ""
    level_raw: Annotated[int, Field(ge=1, le=4)]
    level: Level
    has_fee: bool = False
    paper_result: bool = False
    valid_from: AwareDatetime
    valid_to: AwareDatetime | None = None


CanonicalEvent = Annotated[
    DossierEvent | DocumentEvent | PortalEvent | CatalogueEntry, Field(discriminator="type")
]


def level_from_raw(muc_do: int) -> Level:
    """Map raw ``MucDo`` (1..4) to the normalised level (domain.md §2)."""
    if muc_do == 4:
        return Level.TOAN_TRINH
    if muc_do == 3:
        return Level.MOT_PHAN
    return Level.KHONG_TRUC_TUYEN


def channel_from_raw(kenh: str | int | None) -> Channel:
    """Map one-stop ``KenhThucHien`` to a channel; empty or missing counts as in person."""
    value = str(kenh).strip() if kenh is not None else ""
    if value == "2":
        return Channel.TRUC_TUYEN
    if value == "3":
        return Channel.BUU_CHINH
    if value in ("", "1", "None"):
        return Channel.TRUC_TIEP
    raise ValueError(f"KenhThucHien {kenh!r} is not 1, 2, 3 or empty")


__all__ = [
    "SCHEMA_VERSION",
    "STATUS_GROUP",
    "CanonicalEvent",
    "CatalogueEntry",
    "Channel",
    "DocumentEvent",
    "DossierEvent",
    "Level",
    "PortalEvent",
    "ProgressStep",
    "StatusGroup",
    "UnitTier",
    "channel_from_raw",
    "level_from_raw",
]
