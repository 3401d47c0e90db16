"""Figures in flight: per-partition partial counts, and outbox items for the portal.

Why partials: dossiers are partitioned by dossier code (so the three sources' views of one
dossier meet on one partition), which spreads one unit's dossiers over every partition. A worker
therefore knows only *part* of each unit's figures. Each worker publishes, for each partition it
owns and each unit, the full current counts of that (partition, unit) as one :class:`UnitFigures`
record on a compacted topic keyed ``"<partition>|<unit>"``. Whoever needs a unit's figures (the
report, the read API, the statistics push) takes the latest record of every partition and adds
them up (:func:`merge_counts`). A partition that moves to another worker is republished under the
same key, so nothing is counted twice, and a recount is always "sum of the latest partials".

Count keys are ``"metric|level|channel|period|extra"``: ``metric`` from :data:`METRICS`;
``level`` a :class:`schemas.events.Level` value or ``*``; ``channel`` a
:class:`schemas.events.Channel` value or ``*``; ``period`` like ``2021-03``, ``2021-Q1``,
``2021``; ``extra`` metric-specific (a procedure code for ``procedure_dossiers``), else empty.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

METRICS = (
    "received",  # received in the period (reception date, local time)
    "finished_early",  # finished in the period before the due day
    "finished_on_time",  # finished in the period on the due day
    "finished_late",  # finished in the period after the due day
    "refused",  # refused at reception in the period
    "withdrawn",  # withdrawn in the period
    "open_end",  # received by the period's end and still open at its end
    "overdue_end",  # open at the period's end and past due then
    "paid_online",  # received in the period and paid online (766 §3.6)
    "fee_bearing",  # received in the period for a fee-bearing procedure
    "electronic_result",  # finished in the period with an electronic result (766 §4.1)
    "paper_result_procedure",  # finished in the period, procedure with a paper result
    "digitised_reuse",  # received in the period with a reused digitised part (766 §4.3)
    "procedure_dossiers",  # received in the period for procedure `extra`
)


def count_key(metric: str, level: str, channel: str, period: str, extra: str = "") -> str:
    """Encode one count key (see the module docstring)."""
    return f"{metric}|{level}|{channel}|{period}|{extra}"


def split_key(key: str) -> tuple[str, str, str, str, str]:
    """Decode a count key into (metric, level, channel, period, extra)."""
    metric, level, channel, period, extra = key.split("|", 4)
    return metric, level, channel, period, extra


class UnitFigures(BaseModel):
    """The complete current counts of one unit within one partition (a compacted-topic record)."""

    model_config = ConfigDict(extra="forbid")

    partition: int = Field(ge=0)
    unit_code: str
    unit_tier: str
    generated_at: AwareDatetime
    counts: dict[str, int]

    def key(self) -> bytes:
        """Kafka key on the partials topic."""
        return f"{self.partition}|{self.unit_code}".encode()


def merge_counts(partials: Iterable[UnitFigures]) -> dict[str, Counter[str]]:
    """Add up the latest partial of every partition: unit code -> counts."""
    out: dict[str, Counter[str]] = {}
    for p in partials:
        out.setdefault(p.unit_code, Counter()).update(p.counts)
    return out


# --------------------------------------------------------------------------- outbox


class OutboxDossier(BaseModel):
    """A dossier version to synchronise to the portal (``POST /api/v1/dongbo/hoso``) with its progress.

    ``dossier`` is in the national DongBoHoSoMC format (dates ``yyyyMMddHHmmss``, statuses "1".."10"),
    without names or phones; ``IdHash`` stands where the ID number was.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["dossier"] = "dossier"
    item_id: str  # "dossier:<MaHoSo>:<version>" — deterministic, the base of the Idempotency-Key
    ma_ho_so: str
    version: int
    created_at: datetime
    dossier: dict[str, Any]
    progress: list[dict[str, Any]] = Field(default_factory=list)


class OutboxStats(BaseModel):
    """A unit's statistics for one period (``PUT /api/v1/thongke/dvctt/{ky}/{ma_don_vi}``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["stats"] = "stats"
    item_id: str  # "stats:<ky>:<unit>:<sha256 of body>[:16]"
    ky: str
    ma_don_vi: str
    created_at: datetime
    body: dict[str, Any]
