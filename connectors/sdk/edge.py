"""The edge: source records become scrubbed :class:`RawRecord` envelopes, or dead letters.

For every record a stream yields, in this order:

1. its key and version are read (:meth:`Stream.record_key`, :meth:`Stream.record_version`);
   a record without them is a ``missing_key``/``schema`` dead letter;
2. a record nested deeper than ``max_depth`` is a ``too_deep`` dead letter;
3. :meth:`Stream.transform`, then the privacy edge: :func:`hub.privacy.scrub_dossier` drops
   names, phones and addresses and replaces ID numbers with a keyed hash; the stream's
   ``drop_fields`` go too, and its ``free_text_fields`` are masked with :func:`hub.privacy.redact_text`;
4. :meth:`RawRecord.build` makes the envelope with ``event_id = "<source>:<key>:<version>"``.

Dead letters never carry personal data: the payload is the scrubbed record, and an excerpt of an
unparseable body has personal-looking fields masked (:func:`safe_excerpt`) before
:func:`hub.privacy.redact_text` masks ID and phone numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from connectors.sdk.errors import RecordError
from connectors.sdk.http import json_depth
from hub.deadletter import DeadLetter
from hub.privacy import ADDRESS_FIELDS, ID_FIELDS, NAME_FIELDS, PHONE_FIELDS, redact_text, scrub_dossier
from schemas.raw import RawRecord

if TYPE_CHECKING:
    from connectors.sdk.base import Reject, Stream

__all__ = ["Edge", "safe_excerpt"]

EXCERPT_CHARS = 600
_PERSONAL = sorted(NAME_FIELDS | PHONE_FIELDS | ID_FIELDS | ADDRESS_FIELDS | {"nguoi_ky"})
_FIELD_ALT = "|".join(re.escape(f) for f in _PERSONAL)
# "ChuHoSo": "Nguyễn Văn A"  and  nguoi_ky="..."  (JSON members and XML attributes).
_JSON_FIELD = re.compile(rf'("(?:{_FIELD_ALT})"\s*:\s*)"(?:[^"\\]|\\.)*"?', re.IGNORECASE)
_XML_ATTR = re.compile(rf"""\b((?:{_FIELD_ALT})\s*=\s*)(["'])[^"']*\2?""", re.IGNORECASE)


def safe_excerpt(raw: bytes | str | None) -> str | None:
    """The first few hundred characters of a body, with personal fields and numbers masked."""
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text[:EXCERPT_CHARS]
    text = _JSON_FIELD.sub(r'\1"<redacted>"', text)
    text = _XML_ATTR.sub(r'\1"<redacted>"', text)
    return redact_text(text)


def _mask_free_text(value: Any, fields: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: redact_text(v) if k in fields and isinstance(v, str) else _mask_free_text(v, fields)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_free_text(v, fields) for v in value]
    return value


def _drop(value: Any, fields: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _drop(v, fields) for k, v in value.items() if k not in fields}
    if isinstance(value, list):
        return [_drop(v, fields) for v in value]
    return value


class Edge:
    """Turns one stream's records into raw records and dead letters for one instance."""

    def __init__(self, *, source: str, instance: str, privacy_key: bytes, max_depth: int) -> None:
        self.source = source
        self.instance = instance
        self.privacy_key = privacy_key
        self.max_depth = max_depth

    def scrub(self, stream: Stream, record: dict[str, Any]) -> dict[str, Any]:
        """The record as it may leave the connector (no names, phones, addresses; ID hashed)."""
        cleaned = scrub_dossier(record, key=self.privacy_key)
        if stream.drop_fields:
            cleaned = _drop(cleaned, stream.drop_fields)
        if stream.free_text_fields:
            cleaned = _mask_free_text(cleaned, stream.free_text_fields)
        return dict(cleaned)

    def letter(self, reason: str, detail: str, *, payload: dict[str, Any] | None = None,
               raw: bytes | str | None = None, event_id: str | None = None) -> DeadLetter:
        """A connector-stage dead letter (``raw`` reduced to a safe excerpt)."""
        letter = DeadLetter.make(stage="connector", reason=reason, detail=detail, source=self.instance,
                                 event_id=event_id, payload=payload)
        excerpt = safe_excerpt(raw)
        return letter.model_copy(update={"excerpt": excerpt}) if excerpt is not None else letter

    def reject(self, stream: Stream, reject: Reject) -> DeadLetter:
        """A parser's reject as a dead letter."""
        payload = self.scrub(stream, reject.payload) if reject.payload is not None else None
        return self.letter(reject.reason, f"{stream.name}: {reject.detail}", payload=payload, raw=reject.raw)

    def _check_depth(self, record: dict[str, Any]) -> None:
        if json_depth(record) > self.max_depth:
            raise RecordError("too_deep", f"record nested deeper than {self.max_depth} levels")

    def process(
        self, stream: Stream, records: Sequence[Any], fetched_at: datetime | None = None
    ) -> tuple[list[RawRecord], list[DeadLetter]]:
        """Raw records for the usable records, dead letters for the rest (one bad record never stops a page)."""
        when = fetched_at or datetime.now(UTC)
        good: list[RawRecord] = []
        bad: list[DeadLetter] = []
        for record in records:
            if not isinstance(record, dict):
                bad.append(self.letter("schema", f"{stream.name}: a record is a {type(record).__name__}, "
                                       "not an object", raw=str(record)))
                continue
            try:
                self._check_depth(record)
                key = stream.record_key(record)
                version = stream.record_version(record)
                payload = self.scrub(stream, stream.transform(record))
                good.append(RawRecord.build(source=self.source, instance=self.instance, kind=stream.kind,
                                            key=key, version=version, payload=payload, fetched_at=when))
            except RecordError as exc:
                kept = None if exc.reason == "too_deep" else self.scrub(stream, record)
                bad.append(self.letter(exc.reason, f"{stream.name}: {exc.detail}", payload=kept))
            except ValidationError as exc:
                bad.append(self.letter("schema", f"{stream.name}: not a valid raw record "
                                       f"({exc.error_count()} problem(s), e.g. {exc.errors()[0]['loc']})",
                                       payload=self.scrub(stream, record)))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # Wrong types deep in a record (a list where an object was expected...) surface as
                # these from the hooks; the record is refused, the page goes on.
                bad.append(self.letter("schema", f"{stream.name}: unusable record ({type(exc).__name__})"))
        return good, bad
