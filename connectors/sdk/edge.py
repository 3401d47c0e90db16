"""The edge: source records become :class:`RawRecord` envelopes with only allowed fields, or dead letters.

For every record a stream yields, in this order:

1. its key and version are read (:meth:`Stream.record_key`, :meth:`Stream.record_version`);
   a record without them is a ``missing_key``/``schema`` dead letter;
2. a record nested deeper than ``max_depth`` is a ``too_deep`` dead letter;
3. :meth:`Stream.transform`, then the privacy edge: the stream's allow-list
   (:meth:`Stream.allowed_fields`, :mod:`connectors.sdk.fields`) keeps the fields the hub needs,
   under their declared names, and drops everything else at every depth, however it is spelt;
   the applicant's ID number becomes a keyed hash, free text is masked (:func:`hub.privacy.redact_text`);
4. :meth:`RawRecord.build` makes the envelope with ``event_id = "<source>:<key>:<version>"``.

Dead letters never carry personal data: the payload is the allow-listed record **without free
text** (unless ``privacy.share_free_text``), and an excerpt of an unparseable body keeps only
values of allowed code fields; every other value keeps only its shape (:func:`safe_excerpt`).

Every refused record and reject has a deterministic id (:meth:`Edge.refusal_id`, a keyed hash of
its content): the engine dead-letters each id once, however often a look-back re-reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from connectors.sdk.errors import RecordError
from connectors.sdk.http import json_depth
from hub.deadletter import DeadLetter, shape_of
from hub.privacy import Fields, Rule, field_key, redact_text
from schemas.raw import RawRecord

if TYPE_CHECKING:
    from connectors.sdk.base import Reject, Stream

__all__ = ["Edge", "safe_excerpt"]

EXCERPT_CHARS = 600
#: How much of a body is masked before the excerpt is cut: masking first, so that no ID number cut
#: in half by the excerpt's end can survive unmasked.
_SCAN_CHARS = 8 * EXCERPT_CHARS
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,80}")
# JSON members ("key": value), XML attributes (key="value"), other JSON strings, XML text nodes.
_TOKEN = re.compile(
    r'(?P<jkey>"(?:[^"\\\n]|\\.){0,200}")(?P<jsep>\s*:\s*)'
    r'(?P<jval>"(?:[^"\\]|\\.)*"?|-?\d[\d.eE+\-]*|true|false|null)?'
    r"|(?P<akey>\b[A-Za-z_][\w.\-:]*)(?P<asep>\s*=\s*)(?P<aval>\"[^\"]*\"?|'[^']*'?)"
    r'|(?P<str>"(?:[^"\\]|\\.)*"?)'
    r"|(?P<num>(?<![\w.])-?\d{9,}(?![\w.]))"
    r"|(?P<cdata><!--.*?(?:-->|$)|<!\[CDATA\[.*?(?:\]\]>|$))"
    r"|>(?P<text>[^<>]+)(?=<|$)",
    re.DOTALL,
)
_NO_FIELDS = Fields()


def _quoted(value: str) -> tuple[str, str, str]:
    """(opening quote, inside, closing quote) of a possibly unterminated quoted token."""
    if value[:1] in "\"'":
        q = value[0]
        inner = value[1:]
        if inner.endswith(q) and len(inner) >= 1:
            return q, inner[:-1], q
        return q, inner, ""
    return "", value, ""


def safe_excerpt(raw: bytes | str | None, fields: Fields | None = None, *, keep_text: bool = False) -> str | None:
    """The first few hundred characters of a body, with nothing personal left in it.

    The body could not be parsed, so it cannot be filtered field by field; instead its tokens are:
    a value of a field the allow-list ``fields`` keeps as a code stays readable, a free-text value
    is masked (:func:`hub.privacy.redact_text`) when ``keep_text``, else shaped; every other value,
    quoted string or XML text keeps only its shape (:func:`hub.deadletter.shape_of`: letters ``x``,
    digits ``9``). Masking runs before the excerpt is cut, and a digit run at the cut is removed.
    """
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = unicodedata.normalize("NFC", text[:_SCAN_CHARS])
    rules, parts = (fields or _NO_FIELDS).flat_rules()

    def value(name: str, token: str) -> str:
        key = field_key(name)
        rule = rules.get(key)
        if rule is None and parts and any(p in key for p in parts):
            rule = Rule.TEXT
        q, inner, end = _quoted(token)
        if rule is Rule.KEEP:
            return token
        if rule is Rule.TEXT and keep_text:
            return q + redact_text(inner) + end
        return q + shape_of(inner) + end

    def name_of(token: str) -> str:
        q, inner, end = _quoted(token)
        return token if _IDENT.fullmatch(inner) else q + shape_of(inner) + end

    def sub(m: re.Match[str]) -> str:
        if m.group("jkey") is not None:
            jkey, jval = m.group("jkey"), m.group("jval")
            name = _quoted(jkey)[1]
            return name_of(jkey) + m.group("jsep") + (value(name, jval) if jval is not None else "")
        if m.group("akey") is not None:
            return m.group("akey") + m.group("asep") + value(m.group("akey"), m.group("aval"))
        if m.group("str") is not None:
            q, inner, end = _quoted(m.group("str"))
            return q + shape_of(inner) + end
        if m.group("num") is not None:
            return shape_of(m.group("num"))
        if m.group("cdata") is not None:
            return shape_of(m.group("cdata"))
        return ">" + shape_of(m.group("text"))

    masked = redact_text(_TOKEN.sub(sub, text))
    excerpt = masked[:EXCERPT_CHARS]
    if len(masked) > EXCERPT_CHARS and (masked[EXCERPT_CHARS].isdigit() or excerpt[-1:].isdigit()):
        excerpt = re.sub(r"[\d .\-]+$", "", excerpt)
    return excerpt


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class Edge:
    """Turns one stream's records into raw records and dead letters for one instance."""

    def __init__(self, *, source: str, instance: str, privacy_key: bytes, max_depth: int,
                 share_free_text: bool = False) -> None:
        self.source = source
        self.instance = instance
        self.privacy_key = privacy_key
        self.max_depth = max_depth
        #: ``privacy.share_free_text``: whether dead letters may keep (masked) free text.
        self.share_free_text = share_free_text

    def scrub(self, stream: Stream, record: dict[str, Any], *, keep_text: bool = True) -> dict[str, Any]:
        """The record as it may leave the connector: the stream's allow-list applied (see the module docstring)."""
        return stream.allowed_fields().apply(record, self.privacy_key, keep_text=keep_text)

    def refusal_id(self, stream: Stream, what: Any) -> str:
        """A deterministic id of a refused record or reject: a keyed hash of its content.

        Keyed (the hub's privacy key), so the id of a record that held a name cannot be matched
        against a guess of it. The same record refused again gets the same id.
        """
        digest = hmac.new(self.privacy_key, _canonical(what), hashlib.sha256).hexdigest()[:24]
        return f"refused:{self.instance}:{stream.name}:{digest}"

    def letter(self, reason: str, detail: str, *, stream: Stream | None = None, payload: dict[str, Any] | None = None,
               raw: bytes | str | None = None, event_id: str | None = None,
               codes: dict[str, object] | None = None) -> DeadLetter:
        """A connector-stage dead letter (``raw`` reduced to a safe excerpt; no free text unless shared).

        ``codes``: the codes the letter is about (the record's key, the held cursor), named verbatim
        in its detail when safe (:meth:`hub.deadletter.DeadLetter.make`).
        """
        letter = DeadLetter.make(stage="connector", reason=reason, detail=detail, source=self.instance,
                                 event_id=event_id, payload=payload, keep_text=self.share_free_text, codes=codes)
        fields = stream.allowed_fields() if stream is not None else None
        excerpt = safe_excerpt(raw, fields, keep_text=self.share_free_text)
        return letter.model_copy(update={"excerpt": excerpt}) if excerpt is not None else letter

    def reject(self, stream: Stream, reject: Reject) -> DeadLetter:
        """A parser's reject as a dead letter (with its deterministic id)."""
        payload = (self.scrub(stream, reject.payload, keep_text=self.share_free_text)
                   if reject.payload is not None else None)
        raw = reject.raw.decode("utf-8", "replace") if isinstance(reject.raw, bytes) else reject.raw
        ident = self.refusal_id(stream, ["reject", reject.reason, reject.detail, raw, reject.payload])
        return self.letter(reject.reason, f"{stream.name}: {reject.detail}", stream=stream, payload=payload,
                           raw=reject.raw, event_id=ident)

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
        share = self.share_free_text
        for record in records:
            if not isinstance(record, dict):
                text = json.dumps(record, ensure_ascii=False, default=str)  # JSON: its strings are then shaped
                bad.append(self.letter("schema", f"{stream.name}: a record is a {type(record).__name__}, "
                                       "not an object", stream=stream, raw=text,
                                       event_id=self.refusal_id(stream, ["not_object", text])))
                continue
            try:
                self._check_depth(record)
                key = stream.record_key(record)
                version = stream.record_version(record)
                payload = self.scrub(stream, stream.transform(record))
                good.append(RawRecord.build(source=self.source, instance=self.instance, kind=stream.kind,
                                            key=key, version=version, payload=payload, fetched_at=when))
            except RecordError as exc:
                kept = None if exc.reason == "too_deep" else self.scrub(stream, record, keep_text=share)
                bad.append(self.letter(exc.reason, f"{stream.name}: {exc.detail}", stream=stream, payload=kept,
                                       event_id=self._record_id(stream, record), codes=_key_codes(stream, record)))
            except ValidationError as exc:
                bad.append(self.letter("schema", f"{stream.name}: not a valid raw record "
                                       f"({exc.error_count()} problem(s), e.g. {exc.errors()[0]['loc']})",
                                       stream=stream, payload=self.scrub(stream, record, keep_text=share),
                                       event_id=self._record_id(stream, record), codes=_key_codes(stream, record)))
            except Exception as exc:  # noqa: BLE001 - one bad record must never stop the page
                # Wrong types deep in a record (a list where an object was expected...) surface as
                # KeyError/TypeError/ValueError/RecursionError... from the hooks; the record is refused
                # (its type only: a message may quote the data), the page goes on.
                bad.append(self.letter("schema", f"{stream.name}: unusable record ({type(exc).__name__})",
                                       stream=stream, event_id=self._record_id(stream, record),
                                       codes=_key_codes(stream, record)))
        return good, bad

    def _record_id(self, stream: Stream, record: dict[str, Any]) -> str:
        try:
            return self.refusal_id(stream, ["record", record])
        except (RecursionError, ValueError, TypeError):
            # Too deep to serialise (or a cycle): its shape is all that can identify it.
            return self.refusal_id(stream, ["record", repr(type(record)), len(record), sorted(map(str, record))[:50]])


def _key_codes(stream: Stream, record: dict[str, Any]) -> dict[str, object]:
    """The refused record's key as a dead letter's code (``{"MaHoSo": ...}``), when it has a usable one."""
    try:
        key = stream.record_key(record)
    except Exception:  # noqa: BLE001 - no usable key (the refusal may be about it): the letter has none
        return {}
    return {str(getattr(stream, "primary_key", None) or "key"): key}
