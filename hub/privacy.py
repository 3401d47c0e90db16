"""The privacy edge: what a source record may keep, and how free text is masked.

The hub needs no applicant's name, phone or ID number to count dossiers (domain.md §8), and a
vendor's field names are not a safe guide to what is personal: ``ChuHoSo``, ``chuHoSo``,
``ten_nguoi_nop``, ``applicantName``, ``nguoiDaiDien.hoTen`` all name a person. So the edge works
by **allow-list**: each source declares, as :class:`Fields`, the fields the hub keeps, and
everything else is dropped, at every depth (dicts, lists, lists of lists). Names are matched by
:func:`field_key` — case, diacritics and separators (``_``, ``-``, spaces, camelCase) do not matter —
and a kept field leaves under its declared spelling, so the normaliser reads one name however
the vendor wrote it.

Each kept field has a :class:`Rule`:

- ``KEEP``: codes, dates, flags, amounts, kept as they are (a container where a scalar belongs is
  emptied, so the type error stays visible downstream and the content does not);
- ``TEXT``: free text an operator may want (processing notes, document abstracts, link texts):
  masked by :func:`redact_text` (ID numbers, phones, e-mails, names it can recognise), and left out
  of dead letters and portal pushes unless ``privacy.share_free_text`` is set;
- ``ID_NUMBER``: the applicant's ID number, replaced by ``IdHash``, a keyed HMAC-SHA256
  (:func:`hash_id_number`), so a dossier can still be linked to "the same applicant" without the
  number itself ever reaching Kafka, logs, metrics or dead letters.

The key comes from configuration (``DVC_HUB_PRIVACY__ID_HASH_KEY``); rotating it changes every
hash, which is the point: a leaked topic cannot be joined against a stolen key-less table.

Records that never passed an allow-list (a record produced straight into a raw topic, an outbox
item) are made fit for a dead letter by :func:`redact_payload`: fields that look personal by name
(:func:`is_personal_field`) and free text are dropped, and every string left is masked.

    >>> keep = Fields(keep=("MaHoSo",), text=("NoiDungXuLy",), id_number=("SoGiayToChuHoSo",))
    >>> out = keep.apply({"maHoSo": "H56.1", "chu_ho_so": "Nguyễn Văn A", "so-giay-to-chu-ho-so": "038090001234",
    ...                   "NoiDungXuLy": "Gọi 0912 345 678"}, key=b"k")
    >>> sorted(out), out["NoiDungXuLy"]
    (['IdHash', 'MaHoSo', 'NoiDungXuLy'], 'Gọi <phone>')
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "ADDRESS_FIELDS",
    "ID_FIELDS",
    "ID_HASH_FIELD",
    "NAME_FIELDS",
    "PHONE_FIELDS",
    "WITHHELD",
    "Fields",
    "Rule",
    "field_key",
    "hash_id_number",
    "is_free_text_field",
    "is_personal_field",
    "redact_payload",
    "redact_text",
    "safe_code",
    "scrub_dossier",
]

# Fields of the national sync format that carry a person's identity (kept for callers that name
# them; the edge itself matches far more through is_personal_field and the allow-lists).
NAME_FIELDS = frozenset({"ChuHoSo", "HoTen", "TenNguoiNop", "NguoiNop", "nguoi_nop", "ho_ten", "ten_chu_ho_so"})
PHONE_FIELDS = frozenset({"SoDienThoai", "DienThoai", "so_dien_thoai", "dien_thoai", "Email", "email"})
ID_FIELDS = frozenset({"SoGiayToChuHoSo", "SoCCCD", "so_giay_to", "so_cccd", "cccd"})
ADDRESS_FIELDS = frozenset({"DiaChi", "DiaChiThuongTru", "dia_chi"})

#: Where the hub keeps the keyed hash of the applicant's ID number.
ID_HASH_FIELD = "IdHash"
#: What a string becomes where the allow-list expected an object or a list (its content is not kept).
WITHHELD = "<withheld>"


# --------------------------------------------------------------------------- field names


@functools.lru_cache(maxsize=8192)
def field_key(name: str) -> str:
    """A field name folded for matching: no case, no diacritics, no separators.

    >>> {field_key(n) for n in ("SoGiayToChuHoSo", "so_giay_to_chu_ho_so", "soGiayToChuHoSo", "Số giấy tờ chủ hồ sơ")}
    {'sogiaytochuhoso'}
    """
    folded = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in folded if c.isascii() and c.isalnum()).lower()


# Parts of folded field names that say "a person": names, phones, e-mails, ID documents,
# addresses, birth data. Vietnamese and English, as vendors write them.
_PERSONAL_PARTS = (
    # names and roles that are people
    "hoten", "hovaten", "name", "chuhoso", "nguoi", "canbo", "chuyenvien", "congdan", "daidien", "uyquyen",
    "applicant", "representative", "owner", "signer", "drafter", "author", "officer", "contact", "citizen",
    "person", "tenchu",
    # phones and e-mails
    "dienthoai", "sdt", "phone", "mobile", "didong", "fax", "email", "mail", "thudientu",
    # ID documents
    "cccd", "cmnd", "cmt", "sogiayto", "giaytotuythan", "dinhdanh", "hochieu", "passport", "idnumber",
    "nationalid", "citizenid", "identity", "idcard", "idno", "masothue", "taxid", "ssn",
    # addresses and birth data
    "diachi", "address", "thuongtru", "tamtru", "hokhau", "noio", "quequan", "noisinh", "ngaysinh", "namsinh",
    "birth", "gioitinh", "gender",
)
_PERSONAL_EXACT = frozenset({"tel", "ten", "dob", "sex"})
_NOT_PERSONAL = frozenset({"idhash"})
# Parts of folded names of free-text fields (notes, abstracts, comments, reasons).
_FREE_TEXT_PARTS = ("noidung", "ghichu", "trichyeu", "ykien", "note", "comment", "mota", "description", "lydo",
                    "phanhoi", "nhanxet", "remark", "tieude")


@functools.lru_cache(maxsize=8192)
def is_personal_field(name: str) -> bool:
    """Whether a field name, however spelt, says it holds a person's data (``nguoiKy``, ``SO_CCCD``...)."""
    key = field_key(name)
    if key in _NOT_PERSONAL:
        return False
    return key in _PERSONAL_EXACT or any(part in key for part in _PERSONAL_PARTS)


@functools.lru_cache(maxsize=8192)
def is_free_text_field(name: str) -> bool:
    """Whether a field name says free text (``NoiDungXuLy``, ``trich_yeu``, ``GhiChu``, ``note``...)."""
    key = field_key(name)
    return any(part in key for part in _FREE_TEXT_PARTS)


# --------------------------------------------------------------------------- ID numbers


def hash_id_number(id_number: str, key: bytes) -> str:
    """Keyed hash of an ID number: stable for one key, useless without it.

    Spaces, dots and dashes are removed first, so ``038 090 001 234`` and ``038090001234`` are the
    same applicant.
    """
    canonical = re.sub(r"[\s.\-]", "", id_number).upper()
    digest = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"h1:{digest[:32]}"


# --------------------------------------------------------------------------- free text

_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
# A run of digits joined by single separators, with an optional (+84) / (0xx) / + prefix.
_NUM_RUN = re.compile(r"(?:\(\+?\d{1,4}\)[ .\-]?|\+)?\d+(?:[ .\-]\d+)*")
# Procedure codes (1.003801, 1.003801.000.00.00) and amounts (150.000.000 đồng) are not personal.
_PROCEDURE = re.compile(r"\d\.\d{6}(?:\.\d{3}\.\d{2}\.\d{2})?")
_AMOUNT = re.compile(r"\d{1,3}(?:[.,]\d{3})+")
_CURRENCY = re.compile(r"\s?(?:đồng|đ|vnđ|vnd)\b", re.IGNORECASE)
_POSITION = re.compile(r"(?<!\w)(?:offsets?|partition)[ =:]$", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")
_GAP = re.compile(r"[ \t]+")

# The commonest Vietnamese family names (about nine in ten people carry one of them).
_SURNAMES = frozenset(s.casefold() for s in (
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô",
    "Dương", "Lý", "Đinh", "Trịnh", "Lương", "Đào", "Đoàn", "Vương", "Trương", "Lâm", "Hà", "Lưu", "Quách",
    "Triệu", "Phùng", "Tạ", "Mạc", "Kiều", "Khổng", "Hứa", "Tăng", "Lục",
))
# Words that announce a person's name (ông Nguyễn..., chị Lan, công dân ...).
_HONORIFICS = frozenset(s.casefold() for s in (
    "ông", "bà", "anh", "chị", "cô", "chú", "bác", "em", "cháu", "cụ", "Mr", "Mrs", "Ms",
))
_TWO_WORD_HONORIFICS = frozenset({("công", "dân"), ("đồng", "chí"), ("người", "nộp"), ("người", "ký"),
                                  ("chủ", "hồ")})
# A cheap first look: only a text with a family name or a title in it is scanned word by word.
_NAME_HINT = re.compile(
    r"(?<!\w)(?:" + "|".join(sorted((re.escape(w) for w in _SURNAMES | _HONORIFICS | {"công", "đồng", "người", "chủ"}),
                                      key=len, reverse=True)) + r")(?!\w)",
    re.IGNORECASE,
)
_PLACES = frozenset({("hà", "nội"), ("hà", "tĩnh"), ("hà", "giang"), ("hà", "nam"), ("hồ", "chí")})


def _is_id(digits: str) -> bool:
    return len(digits) in (9, 12)


def _is_phone(digits: str) -> bool:
    return (digits.startswith("0") and len(digits) in (10, 11)) or (digits.startswith("84") and len(digits) in (11, 12))


def _personal_number(digits: str) -> str | None:
    if _is_phone(digits):
        return "<phone>"
    if _is_id(digits):
        return "<id>"
    return None


def _mask_chunks(chunks: list[str], seps: list[str]) -> str:
    """Chunks of one whitespace-joined digit run: mask the longest personal-looking spans, left to right."""
    out: list[str] = []
    i = 0
    while i < len(chunks):
        best = None
        for j in range(len(chunks), i, -1):
            mask = _personal_number("".join(re.sub(r"\D", "", c) for c in chunks[i:j]))
            if mask is not None:
                best = (j, mask)
                break
        if best is None:
            out.append(chunks[i])
            i += 1
        else:
            out.append(best[1])
            i = best[0]
        if i < len(chunks):
            out.append(seps[i - 1])
    return "".join(out)


def _mask_number(match: re.Match[str]) -> str:
    run = match.group(0)
    text = match.string
    before = text[match.start() - 1] if match.start() > 0 else ""
    after = text[match.end()] if match.end() < len(text) else ""
    after2 = text[match.end() + 1] if match.end() + 1 < len(text) else ""
    if before.isalpha() or after.isalpha() or (after != "" and after in "./-_" and after2.isalpha()) or (
        before != "" and before in "/_"
    ):
        # Part of a code (H56.14767-210115-00012, 1.003560.000.00.00.H56, a file name): only a group
        # that is by itself an ID number or a phone is masked.
        return re.sub(r"\d+", lambda g: _personal_number(g.group(0)) or g.group(0), run)
    if _PROCEDURE.fullmatch(run) or (_AMOUNT.fullmatch(run) and _CURRENCY.match(text, match.end())):
        return run
    if run.isdigit() and _POSITION.search(text[max(0, match.start() - 12):match.start()]):
        # A Kafka offset or partition ("offset 123456789"): a position in a topic, not a person.
        return run
    whole = _personal_number(re.sub(r"\D", "", run))
    if whole is not None:
        return whole
    parts = re.split(r"( )", run)
    if len(parts) == 1:
        return run
    return _mask_chunks(parts[::2], parts[1::2])


def _mask_names(text: str) -> str:
    words = list(_WORD.finditer(text))

    def cap(k: int) -> bool:
        return words[k].group(0)[0].isupper()

    def joined(a: int, b: int, *, colon: bool = False) -> bool:
        gap = text[words[a].end():words[b].start()]
        return _GAP.fullmatch(gap) is not None or (colon and gap.strip(" \t") == ":")

    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        low = words[i].group(0).casefold()
        nxt = words[i + 1].group(0).casefold() if i + 1 < len(words) else ""
        if low in _HONORIFICS:
            start, need = i + 1, 1
        elif (low, nxt) in _TWO_WORD_HONORIFICS:
            start, need = i + 2, 1
            if low == "chủ" and start < len(words) and words[start].group(0).casefold() == "sơ":
                start += 1
        elif low in _SURNAMES and cap(i):
            start, need = i, 2
        else:
            i += 1
            continue
        if start >= len(words) or not cap(start) or (start > i and not joined(start - 1, start, colon=True)):
            i += 1
            continue
        end = start + 1
        while end < len(words) and end - start < 5 and cap(end) and joined(end - 1, end):
            end += 1
        pair = (words[start].group(0).casefold(), words[start + 1].group(0).casefold()) if end - start == 2 else None
        if end - start >= need and pair not in _PLACES:
            spans.append((words[start].start(), words[end - 1].end()))
            i = end
        else:
            i += 1
    if not spans:
        return text
    out, last = [], 0
    for a, b in spans:
        out.append(text[last:a])
        out.append("<name>")
        last = b
    out.append(text[last:])
    return "".join(out)


@functools.lru_cache(maxsize=32_768)
def redact_text(text: str) -> str:
    """Mask what looks personal in free text: e-mails, phones, ID numbers, and names it can recognise.

    Phones with any separators and a ``+84``/``84``/``0`` prefix, and ID numbers of 9 or 12 digits
    (spaces, dots or dashes between groups) become ``<phone>``/``<id>``; a name after a title
    (``ông``, ``bà``, ``anh``, ``chị``, ``công dân``...) or starting with a common family name becomes
    ``<name>``. Codes stay readable: unit codes (``14768``), procedure codes (``1.003801``), dossier
    codes (``H56.14767-210115-00012``), dates and amounts.

    >>> redact_text("Ông Nguyễn Văn An, CCCD 038 090 001 234, ĐT +84 912.345.678, an@x.vn; hồ sơ H56.14768-210115-1")
    'Ông <name>, CCCD <id>, ĐT <phone>, <email>; hồ sơ H56.14768-210115-1'
    """
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    if any(c.isdigit() for c in text):
        text = _NUM_RUN.sub(_mask_number, text)
    if _NAME_HINT.search(text):
        text = _mask_names(text)
    return text


# A code's characters: what every configured code pattern (streams.bounds) and topic name allows,
# plus ``:``/``|``/``/``/``+`` of the hub's own keys and cursors (``stats|2021-01|14768``,
# ``2021-01-15T08:00:00+07:00``); a leading ``-`` for the portal's negative error codes (``-3``).
_CODE_CHARS = re.compile(r"-?[A-Za-z0-9][A-Za-z0-9._:|/+-]{0,63}")


def safe_code(value: object) -> str | None:
    """``value`` as a code that may be shown verbatim in a dead letter's detail, or None.

    A code (a unit, procedure, dossier, field, status or level code, a topic name, an offset) is
    not personal data, and a dead letter that hides it hides its cause. It is shown as it is when
    it is a short token of code characters (letters, digits, ``. _ - : | / +``, at most 64) that
    :func:`redact_text` leaves untouched: so a name with spaces or diacritics, an e-mail, a 9- or
    12-digit ID number or a phone given where a code belongs is never shown (None: the caller
    masks it).

    >>> [safe_code(v) for v in ("14768", 14768, "H56.23-210115-0001", "000.00.12.H56", "038090001234",
    ...                         "0912345678", "Nguyễn Văn A", "a@b.vn", True)]
    ['14768', '14768', 'H56.23-210115-0001', '000.00.12.H56', None, None, None, None, None]
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if _CODE_CHARS.fullmatch(text) is None or redact_text(text) != text:
        return None
    return text


# --------------------------------------------------------------------------- allow-lists


class Rule(Enum):
    """What the edge does with a kept field (see the module docstring)."""

    KEEP = "keep"
    TEXT = "text"
    ID_NUMBER = "id_number"


@dataclass(frozen=True)
class Fields:
    """An allow-list of a record (or of the objects in one of its lists): see the module docstring.

    ``keep``/``text``/``id_number`` name fields by their declared spelling; ``nested`` gives the
    allow-list of a field holding an object or a list of objects; ``text_matching`` keeps, as free
    text, any field whose folded name contains one of these parts (vendors name a file link
    ``DuongDanTep``, ``fileUrl``, ``link``...); ``items`` is the rule for strings inside this field's
    lists (None: they are withheld). Everything else is dropped.
    """

    keep: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    id_number: tuple[str, ...] = ()
    nested: Mapping[str, Fields] = field(default_factory=dict)
    text_matching: tuple[str, ...] = ()
    items: Rule | None = None
    _index: dict[str, tuple[str, Rule | Fields]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, tuple[str, Rule | Fields]] = {}
        for names, rule in ((self.keep, Rule.KEEP), (self.text, Rule.TEXT), (self.id_number, Rule.ID_NUMBER)):
            for name in names:
                index[field_key(name)] = (name, rule)
        for name, sub in self.nested.items():
            index[field_key(name)] = (name, sub)
        object.__setattr__(self, "_index", index)

    def names(self) -> set[str]:
        """Every declared name (top level)."""
        return {declared for declared, _ in self._index.values()}

    def lookup(self, name: str) -> tuple[str, Rule | Fields] | None:
        """The declared name and rule of a source field name, or None (dropped)."""
        hit = self._index.get(field_key(name))
        if hit is not None:
            return hit
        if self.text_matching:
            key = field_key(name)
            if any(part in key for part in self.text_matching):
                return (name, Rule.TEXT)
        return None

    def flat_rules(self) -> tuple[dict[str, Rule], tuple[str, ...]]:
        """Folded name -> rule at any depth, and every ``text_matching`` part (for excerpts of
        bodies that could not be parsed, where the depth of a field is unknown). A ``TEXT`` or
        ``ID_NUMBER`` anywhere wins over a ``KEEP`` of the same name elsewhere."""
        rules: dict[str, Rule] = {}
        parts: list[str] = list(self.text_matching)
        for key, (_, rule) in self._index.items():
            if isinstance(rule, Fields):
                sub, sub_parts = rule.flat_rules()
                for k, r in sub.items():
                    if rules.get(k) in (None, Rule.KEEP):
                        rules[k] = r
                parts.extend(sub_parts)
            elif rules.get(key) in (None, Rule.KEEP):
                rules[key] = rule
        return rules, tuple(parts)

    def rule_of(self, path: str) -> Rule | None:
        """The rule of a dotted path (``QuaTrinhXuLy.NoiDungXuLy``), or None if it is not kept."""
        head, _, rest = path.partition(".")
        hit = self.lookup(head)
        if hit is None:
            return None
        rule = hit[1]
        if isinstance(rule, Fields):
            return rule.rule_of(rest) if rest else Rule.KEEP
        return None if rest else rule

    def extend(self, *, keep: Iterable[str] = (), text: Iterable[str] = (), drop: Iterable[str] = ()) -> Fields:
        """A copy with more fields kept (dotted paths reach nested objects) and some dropped.

        ``drop`` wins over everything (a stream's ``drop_fields``).
        """
        tree: Fields = self
        for path, rule in [*((p, Rule.KEEP) for p in keep), *((p, Rule.TEXT) for p in text)]:
            tree = tree._with(path.split("."), rule)
        dropped = {field_key(d) for d in drop}
        return tree._without(dropped) if dropped else tree

    def _with(self, parts: list[str], rule: Rule) -> Fields:
        head, rest = parts[0], parts[1:]
        nested = dict(self.nested)
        if rest:
            current = self.lookup(head)
            sub = current[1] if current is not None and isinstance(current[1], Fields) else Fields()
            name = current[0] if current is not None else head
            nested[name] = sub._with(rest, rule)
            return Fields(self.keep, self.text, self.id_number, nested, self.text_matching, self.items)
        keep = tuple(n for n in self.keep if field_key(n) != field_key(head))
        text = tuple(n for n in self.text if field_key(n) != field_key(head))
        if rule is Rule.KEEP:
            keep += (head,)
        else:
            text += (head,)
        return Fields(keep, text, self.id_number, nested, self.text_matching, self.items)

    def _without(self, dropped: set[str]) -> Fields:
        def kept(names: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(n for n in names if field_key(n) not in dropped)

        nested = {k: v._without(dropped) for k, v in self.nested.items() if field_key(k) not in dropped}
        return Fields(kept(self.keep), kept(self.text), kept(self.id_number), nested,
                      tuple(p for p in self.text_matching if p not in dropped), self.items)

    # ------------------------------------------------------------------ applying
    def apply(self, record: Mapping[Any, Any], key: bytes, *, keep_text: bool = True) -> dict[str, Any]:
        """The record with only the declared fields, under their declared names (see the module docstring).

        ``keep_text=False`` drops the free text too (a dead letter, unless the province shares it).
        """
        out: dict[str, Any] = {}
        for name, value in record.items():
            if not isinstance(name, str):
                continue
            hit = self.lookup(name)
            if hit is None:
                continue
            declared, rule = hit
            if declared in out and name != declared:
                continue  # the declared spelling wins over a variant of it
            if isinstance(rule, Fields):
                out[declared] = rule._nested_value(value, key, keep_text)
            elif rule is Rule.KEEP:
                out[declared] = _scalar(value)
            elif rule is Rule.TEXT:
                if keep_text:
                    out[declared] = _text_value(value)
            elif (ID_HASH_FIELD not in out and isinstance(value, str | int) and not isinstance(value, bool)
                  and str(value).strip()):
                out[ID_HASH_FIELD] = hash_id_number(str(value), key)
        return out

    def _nested_value(self, value: Any, key: bytes, keep_text: bool) -> Any:
        if isinstance(value, dict):
            return self.apply(value, key, keep_text=keep_text)
        if isinstance(value, list):
            return [self._nested_value(v, key, keep_text) for v in value]
        if isinstance(value, str):
            if self.items is Rule.TEXT:
                return _text_value(value) if keep_text else (WITHHELD if value.strip() else value)
            if self.items is Rule.KEEP:
                return value
            return WITHHELD if value.strip() else value
        return value


def _scalar(value: Any) -> Any:
    """A KEEP field's value; a container where a scalar belongs is emptied (the type error stays visible)."""
    if isinstance(value, dict):
        return {}
    if isinstance(value, list):
        return []
    return value


def _text_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        digits = re.sub(r"\D", "", str(value))
        return value if len(digits) < 9 else "<number>"
    if isinstance(value, list):
        return [_text_value(v) for v in value]
    return {}


# --------------------------------------------------------------------------- without an allow-list


def scrub_dossier(record: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of a record without fields that look personal by name, the ID number hashed.

    For records that have no allow-list (the edge uses :meth:`Fields.apply`): fields named like a
    person's data (:func:`is_personal_field`, any spelling) are dropped at every depth, the first
    ID-number field of an object becomes its ``IdHash``, free-text fields (:func:`is_free_text_field`)
    are masked with :func:`redact_text`.
    """
    out: dict[str, Any] = {}
    for name, value in record.items():
        if not isinstance(name, str) or field_key(name) == "idhash":
            continue
        if name in ID_FIELDS or field_key(name) in _ID_KEYS:
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                out.setdefault(ID_HASH_FIELD, hash_id_number(str(value), key))
            continue
        if is_personal_field(name):
            continue
        out[name] = _text_value(value) if is_free_text_field(name) else _scrub_any(value, key)
    return out


_ID_KEYS = frozenset(field_key(n) for n in ID_FIELDS)


def _scrub_any(value: Any, key: bytes) -> Any:
    if isinstance(value, dict):
        return scrub_dossier(value, key)
    if isinstance(value, list):
        return [_scrub_any(v, key) for v in value]
    return value


def redact_payload(value: Any, *, keep_text: bool = False) -> Any:
    """A copy of any JSON value fit for a dead letter: no person in it, whatever its shape.

    Unlike :meth:`Fields.apply`, which runs at the edge with the source's allow-list, this runs on
    records that may never have passed the edge (produced straight into a raw topic, an outbox
    item, a record malformed in a way the edge did not expect). Fields that look personal by name
    (any spelling, at any depth) are dropped (an ``IdHash`` is kept: it is already a keyed hash),
    free-text fields too unless ``keep_text``, and every string left is passed through
    :func:`redact_text`, so an ID number or a phone under an unexpected field name is masked too.
    """
    if isinstance(value, dict):
        return {
            k: redact_payload(v, keep_text=keep_text) for k, v in value.items()
            if not (isinstance(k, str) and (is_personal_field(k) or (not keep_text and is_free_text_field(k))))
        }
    if isinstance(value, list):
        return [redact_payload(v, keep_text=keep_text) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
