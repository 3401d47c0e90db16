"""The envelope every connector writes to a raw topic.

A connector does not interpret a source's record: it wraps the record (after the privacy edge
has dropped names and phones and hashed ID numbers) in a :class:`RawRecord` and produces it to
the source's raw topic, keyed by the record's business key (the dossier code where there is
one). The normalising agents own the interpretation, so a mapping bug is fixed by redeploying
the agents and replaying the raw topic, never by re-polling a source.

``event_id`` is deterministic — ``"<source>:<key>:<version>"`` — so that the same change seen
twice (a re-read, a look-back window, a restarted producer) carries the same id and is
absorbed downstream.

Example::

    >>> rec = RawRecord.build(source="motcua", instance="motcua-14767", kind="dossier",
    ...                       key="H56.14767-210115-00012", version="3", payload={"MaHoSo": "..."})
    >>> rec.event_id
    'motcua:H56.14767-210115-00012:3'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

RAW_SCHEMA_VERSION = 1

RecordKind = Literal["dossier", "document", "portal", "catalogue"]


class RawRecord(BaseModel):
    """One source record as fetched, plus where and when it was fetched."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = RAW_SCHEMA_VERSION
    event_id: str = Field(min_length=3, max_length=300)
    #: A connector type's name: it becomes part of event ids and dead-letter headers, so a safe charset.
    source: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    #: A connector instance name (``hub.config.ConnectorInstance.name``): printable, no whitespace.
    instance: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: RecordKind
    key: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=60)
    fetched_at: AwareDatetime
    payload: dict[str, Any]

    @classmethod
    def build(
        cls,
        *,
        source: str,
        instance: str,
        kind: RecordKind,
        key: str,
        version: str,
        payload: dict[str, Any],
        fetched_at: datetime | None = None,
    ) -> RawRecord:
        """Make a record with its deterministic ``event_id``."""
        return cls(
            event_id=f"{source}:{key}:{version}",
            source=source,
            instance=instance,
            kind=kind,
            key=key,
            version=version,
            fetched_at=fetched_at or datetime.now(UTC),
            payload=payload,
        )
