"""Requests between the hub's parts, on the ``topics.requests`` topic.

One kind so far: a worker whose catalogue is empty once it is ready (after a rebuild, the
catalogue table of its active partitions holds no row) asks the connectors to send the whole
catalogue again. The connector runner answers by reading every catalogue stream at once and
delivering every row, even those its seen-set says it already delivered
(:meth:`connectors.sdk.engine.SyncEngine.request_resend`). Re-sent rows change nothing where the
worker has them already: a catalogue row identical to the table's is a duplicate.

Both sides rate-limit: a worker asks at most every ``worker.catalogue_request_interval_s``, the
runner re-sends at most every :data:`connectors.sdk.runner.RESEND_MIN_INTERVAL_S` whatever the
number of workers asking. The worker may write the topic and the connectors read it (ACLs in
:func:`hub.kafka.hub_grants`); a request carries no personal data, only the app id and partitions.

Example::

    >>> req = CatalogueRequest(app_id="dvc-hub", partitions=[0, 1], reason="empty")
    >>> CatalogueRequest.parse(req.value()).partitions
    [0, 1]
    >>> req.key()
    b'catalogue'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CATALOGUE_REQUEST_KEY", "CatalogueRequest"]

#: Kafka key of every catalogue request (one partition, so the key only names the kind).
CATALOGUE_REQUEST_KEY = b"catalogue"


class CatalogueRequest(BaseModel):
    """"Send the whole catalogue again": what a worker with an empty catalogue writes."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["catalogue"] = "catalogue"
    app_id: str = Field(max_length=200)
    partitions: list[int] = Field(default_factory=list, max_length=10_000)
    reason: Literal["empty"] = "empty"
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def key(self) -> bytes:
        """The record's key."""
        return CATALOGUE_REQUEST_KEY

    def value(self) -> bytes:
        """The record's JSON body."""
        return self.model_dump_json().encode()

    @classmethod
    def parse(cls, value: bytes | None) -> CatalogueRequest:
        """Read a request back; raises ``pydantic.ValidationError`` (a ``ValueError``) if it is not one."""
        return cls.model_validate_json(value or b"")
