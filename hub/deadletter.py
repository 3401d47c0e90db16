"""The dead-letter topic: where bad input goes, with the reason, instead of being lost.

Every stage that can meet input it cannot process (a connector's page parser, a normalising
agent, the portal sync) sends the record here and moves on; the process keeps running.

A dead letter says *where* the input came from and *why* it was refused, in Kafka headers
(``dlq.stage``, ``dlq.reason``, ``dlq.source``, ``dlq.topic``, ``dlq.partition``,
``dlq.offset``, ``dlq.event_id``) and in a JSON body (:class:`DeadLetter`). It never carries
personal data: the payload is the already-scrubbed raw record where there is one (fields that look
personal by name and free-text fields dropped again, every string masked by
:func:`hub.privacy.redact_payload`), messages go through :func:`hub.privacy.redact_text` with quoted
values masked unless they are codes, and an unparseable body is kept only as its shape
(:func:`shape_of`: letters and digits masked), since a body that cannot be parsed cannot be
scrubbed field by field.

``reason`` is a short key from a fixed vocabulary (it becomes a metric label); ``detail`` is
the human explanation, saying what to do.

Codes are not personal data, and a letter that hides them hides its cause (62 letters about unit
14768 once read as if about ``99999``, the shape of the quoted code). So the codes a letter is
about (the unknown unit, the refused status, the dossier the portal refused, the portal's error
code) are given to :meth:`DeadLetter.make` as ``codes``, by name: each value is checked
(:func:`hub.privacy.safe_code`: a short token of code characters that is not an ID number, a
phone or an e-mail), kept in the body's ``codes`` and named verbatim in the detail, while the rest
of the detail is masked as free text. A value that fails the check is masked (its shape), in
``codes`` and in the detail alike.

    >>> dl = DeadLetter.make(stage="normalize", reason="unknown_unit", source="motcua",
    ...                      detail="MaDonVi '14768' is not in the unit registry (reported by ông Lê Văn Tám)",
    ...                      codes={"MaDonVi": "14768"})
    >>> dl.detail, dl.codes
    ("MaDonVi '14768' is not in the unit registry (reported by ông <name>)", {'MaDonVi': '14768'})
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.privacy import redact_payload, redact_text, safe_code

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
#: At most this many codes per letter (a letter is about one record: a handful of codes).
MAX_CODES = 8
_QUOTED = re.compile(r"(['\"])(.*?)(\1)")
# Codes that are positions in a topic (given as integers).
_POSITIONS = frozenset({"offset", "partition", "dead_letter_offset"})
# A word of a quoted phrase, without the punctuation around it ("14768," -> "14768").
_WORD = re.compile(r"[^\s,;!?()\[\]{}\"']+")
#: What a code that is not safe to show becomes in a detail.
MASKED = "<masked>"
# Its stand-in while the rest of the detail is masked: a private-use character, neither letter
# nor digit, so no masking rule touches it.
_MASK_MARK = "\ue000"
# A code's name: a field name or a path (MaDonVi, QuaTrinhXuLy[3].TrangThai, error_code).
_CODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\[\]]{0,59}")


def shape_of(text: str) -> str:
    """The shape of unreadable input without its content: letters become ``x``, digits ``9``.

    A dead letter must say what was wrong without carrying a name: input that could not be parsed
    cannot be scrubbed field by field, so only its structure (brackets, quotes, separators, lengths)
    is kept — enough to see a truncated body, a stray DTD, or a value where an object belongs.
    """
    return "".join("9" if c.isdigit() else "x" if c.isalnum() else c for c in text)


def mask_quoted(text: str) -> str:
    """Mask quoted values in an error message (parsers quote the offending input), codes excepted.

    A quoted code (``'14768'``, ``'H56.23-210115-0001'``, ``'DA_XU_LY'``: :func:`hub.privacy.safe_code`)
    is kept; in a quoted phrase, so are the words that can only be codes (a safe code with a digit
    or one of ``_ . : | /``, never a name); anything else quoted (``'Nguyễn Văn A'``,
    ``'038090001234'``, the words of a phrase) becomes its shape.

    >>> print(mask_quoted("MaDonVi '14768' or '038090001234' or 'Nguyễn Văn A' or 'unit 14768 khong ton tai'"))
    MaDonVi '14768' or '999999999999' or 'xxxxxx xxx x' or 'xxxx 14768 xxxxx xxx xxx'
    """
    return _QUOTED.sub(lambda m: m.group(1) + _mask_quoted_value(m.group(2)) + m.group(3), text)


def _mask_quoted_value(value: str) -> str:
    if safe_code(value) is not None:
        return value
    return _WORD.sub(_mask_quoted_word, value)


def _mask_quoted_word(match: re.Match[str]) -> str:
    word = match.group(0)
    code = safe_code(word)
    if code is not None and any(c.isdigit() or c in "_.:|/" for c in code):
        return word
    return shape_of(word)


def _shown(name: str, value: object) -> str | None:
    """The code as a letter may show it, or None: an integer offset or partition is a position in a
    topic, never a person, whatever its digits; anything else must be a safe code."""
    if name in _POSITIONS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return safe_code(value)


def _code_name(name: object) -> str:
    return name if isinstance(name, str) and _CODE_NAME.fullmatch(name) else "code"


def checked_codes(codes: Mapping[str, object] | None) -> dict[str, str]:
    """The codes of a letter as they may be stored: verbatim when :func:`hub.privacy.safe_code`
    accepts them, else their shape (letters ``x``, digits ``9``, at most 64 characters)."""
    out: dict[str, str] = {}
    for name, value in list((codes or {}).items())[:MAX_CODES]:
        if value is None:
            continue
        code = _shown(_code_name(name), value)
        out[_code_name(name)] = code if code is not None else masked_code(str(value))
    return out


def masked_code(value: str) -> str:
    """A code that failed :func:`hub.privacy.safe_code`, as a letter keeps it: its shape (at most 64
    characters, control characters as ``?``), enough to see "12 digits" or "a name" without the value."""
    return "".join(c if c.isprintable() else "?" for c in shape_of(value[:64]))


def render_detail(detail: str, codes: Mapping[str, object] | None = None) -> str:
    """The detail as a dead letter keeps it: free text masked, the letter's codes named verbatim.

    The detail is masked as free text (:func:`mask_quoted`, then :func:`hub.privacy.redact_text`),
    which keeps codes (quoted or not) as they are. A code of ``codes`` the masked detail does not
    name any more (or never did) is added at its end (``(MaDonVi 14768)``), so the detail always
    names the codes the letter is about; nothing masked is ever put back (a code that happens to
    be part of an ID number stays inside the mask). A code that fails the check is replaced by
    ``<masked>`` wherever the detail mentions it, and named by its shape (:func:`masked_code`) if
    the detail does not.

    >>> render_detail("unit 14768 is unknown", {"MaDonVi": "14768", "MaHoSo": "H56.1-2", "x": "038090001234"})
    'unit 14768 is unknown (x 999999999999, MaHoSo H56.1-2)'
    >>> render_detail("status 'Nguyễn Văn A' is unknown", {"TrangThai": "Nguyễn Văn A"})
    "status '<masked>' is unknown"
    """
    text = detail.replace(_MASK_MARK, "")
    shown: list[tuple[str, str]] = []
    missing: list[tuple[str, str]] = []
    for name, value in list((codes or {}).items())[:MAX_CODES]:
        if value is None:
            continue
        raw, code = str(value), _shown(_code_name(name), value)
        if code is not None:
            shown.append((_code_name(name), code))
        elif raw and raw in text:
            text = text.replace(raw, _MASK_MARK)  # becomes MASKED once the rest is masked
        else:
            missing.append((_code_name(name), masked_code(raw)))
    text = redact_text(mask_quoted(text)).replace(_MASK_MARK, MASKED)
    missing += [(name, code) for name, code in shown if not _names(text, code)]
    suffix = " (" + ", ".join(f"{name} {code}" for name, code in missing) + ")" if missing else ""
    return text[:MAX_EXCERPT - len(suffix)] + suffix


def _names(text: str, code: str) -> bool:
    """Whether ``text`` names ``code`` as a whole token (not as a part of a longer code)."""
    return re.search(r"(?<![A-Za-z0-9._:|/+-])" + re.escape(code) + r"(?![A-Za-z0-9_:|/+-])(?!\.[A-Za-z0-9])",
                     text) is not None


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
    codes: dict[str, str] | None = Field(
        default=None, description="the codes the letter is about, by field name (verbatim if safe, else masked)")

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
        codes: Mapping[str, object] | None = None,
    ) -> DeadLetter:
        """Build a dead letter; ``raw`` text is truncated and redacted, never stored whole.

        ``codes`` names the codes the letter is about (``{"MaDonVi": "14768"}``): named verbatim in
        the detail and kept in ``codes`` when they are safe (:func:`render_detail`), masked if not.

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
            stage=stage, reason=reason, detail=render_detail(detail, codes), source=source,
            topic=topic,
            partition=partition, offset=offset, event_id=event_id,
            payload=redact_payload(payload, keep_text=keep_text) if payload is not None else None, excerpt=excerpt,
            codes=checked_codes(codes) or None,
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
