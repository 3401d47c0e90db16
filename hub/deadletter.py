"""The dead-letter topic: where bad input goes, with the reason, instead of being lost.

Every stage that can meet input it cannot process (a connector's page parser, a normalising
agent, the portal sync) sends the record here and moves on; the process keeps running.

A dead letter says *where* the input came from and *why* it was refused, in Kafka headers
(``dlq.stage``, ``dlq.reason``, ``dlq.source``, ``dlq.topic``, ``dlq.partition``,
``dlq.offset``, ``dlq.event_id``) and in a JSON body (:class:`DeadLetter`). It never carries
personal data: the payload is the already-scrubbed raw record where there is one (fields that look
personal by name and free-text fields dropped again, every string masked by
:func:`hub.privacy.redact_payload`), messages go through :func:`hub.privacy.redact_text` with quoted
values masked, and an unparseable body is kept only as its shape (:func:`shape_of`: letters and
digits masked), since a body that cannot be parsed cannot be scrubbed field by field.

``reason`` is a short key from a fixed vocabulary (it becomes a metric label); ``detail`` is
the human explanation, saying what to do.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.privacy import redact_payload, redact_text

Stage = Literal["connector", "normalize", "state", "portal_sync", "replay"]

# The bounded vocabulary of reasons (metric label values).
REASONS = (
    "invalid_json",
    "invalid_xml",
    "hostile_xml",
    "schema",
    "unknown_unit",
    "unknown_status",
    "unknown_level",
    "too_large",
    "too_deep",
    "out_of_range",
    "missing_key",
    "portal_rejected",
    "unauthenticated",
    "unexpected",
)

MAX_EXCERPT = 2_000
_QUOTED = re.compile(r"(['\"])(.*?)(\1)")


def shape_of(text: str) -> str:
    """The shape of unreadable input without its content: letters become ``x``, digits ``9``.

    A dead letter must say what was wrong without carrying a name: input that could not be parsed
    cannot be scrubbed field by field, so only its structure (brackets, quotes, separators, lengths)
    is kept — enough to see a truncated body, a stray DTD, or a value where an object belongs.
    """
    return "".join("9" if c.isdigit() else "x" if c.isalnum() else c for c in text)


def mask_quoted(text: str) -> str:
    """Mask quoted values in an error message (parsers quote the offending input)."""
    return _QUOTED.sub(lambda m: m.group(1) + shape_of(m.group(2)) + m.group(3), text)


class DeadLetter(BaseModel):
    """The body of a dead-letter record."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage
    reason: str = Field(description="one of REASONS")
    detail: str
    source: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    event_id: str | None = None
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    payload: dict[str, Any] | None = None
    excerpt: str | None = None

    @classmethod
    def make(
        cls,
        *,
        stage: Stage,
        reason: str,
        detail: str,
        source: str,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        event_id: str | None = None,
        payload: dict[str, Any] | None = None,
        raw: bytes | str | None = None,
        keep_text: bool = False,
    ) -> DeadLetter:
        """Build a dead letter; ``raw`` text is truncated and redacted, never stored whole.

        ``payload`` is kept for replay and diagnosis, without personal data
        (:func:`hub.privacy.redact_payload`): it may come from a record that never passed the edge.
        Free-text fields (notes, abstracts) are left out unless ``keep_text`` (the province's
        ``privacy.share_free_text``): masking finds the numbers in them, not every name.
        """
        if reason not in REASONS:
            reason = "unexpected"
        excerpt = None
        if raw is not None:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            excerpt = shape_of(text[:MAX_EXCERPT])
        return cls(
            stage=stage, reason=reason, detail=redact_text(mask_quoted(detail))[:MAX_EXCERPT], source=source,
            topic=topic,
            partition=partition, offset=offset, event_id=event_id,
            payload=redact_payload(payload, keep_text=keep_text) if payload is not None else None, excerpt=excerpt,
        )

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers that let an operator filter dead letters without parsing bodies."""
        items = {
            "dlq.stage": self.stage,
            "dlq.reason": self.reason,
            "dlq.source": self.source,
            "dlq.topic": self.topic,
            "dlq.partition": self.partition,
            "dlq.offset": self.offset,
            "dlq.event_id": self.event_id,
        }
        return [(k, str(v).encode()) for k, v in items.items() if v is not None]

    def key(self) -> bytes:
        """Dead letters are keyed by event id (no personal data) or by origin position."""
        return (self.event_id or f"{self.topic}:{self.partition}:{self.offset}").encode()

    def value(self) -> bytes:
        """The JSON body."""
        return self.model_dump_json().encode()

    @classmethod
    def parse(cls, value: bytes) -> DeadLetter:
        """Read a dead letter back (``dvc-hub dlq``)."""
        return cls.model_validate(json.loads(value))
