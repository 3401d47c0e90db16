"""The privacy edge: personal data is removed before anything leaves a connector.

The hub needs no applicant's name, phone or ID number to count dossiers (domain.md §8). At the
edge, :func:`scrub_dossier` drops names and phones and replaces the ID number with a keyed
HMAC-SHA256 (:func:`hash_id_number`), so a dossier can still be linked to "the same applicant"
without the number itself ever reaching Kafka, logs, metrics or dead letters.

The key comes from configuration (``DVC_HUB_PRIVACY__ID_HASH_KEY``); rotating it changes every
hash, which is the point: a leaked topic cannot be joined against a stolen key-less table.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

# Fields of the national sync format that carry a person's identity.
NAME_FIELDS = frozenset({"ChuHoSo", "HoTen", "TenNguoiNop", "NguoiNop", "nguoi_nop", "ho_ten", "ten_chu_ho_so"})
PHONE_FIELDS = frozenset({"SoDienThoai", "DienThoai", "so_dien_thoai", "dien_thoai", "Email", "email"})
ID_FIELDS = frozenset({"SoGiayToChuHoSo", "SoCCCD", "so_giay_to", "so_cccd", "cccd"})
ADDRESS_FIELDS = frozenset({"DiaChi", "DiaChiThuongTru", "dia_chi"})

_ID_RE = re.compile(r"(?<!\d)\d{9}(?:\d{3})?(?!\d)")
_PHONE_RE = re.compile(r"(?<!\d)(?:\+?84|0)\d{9,10}(?!\d)")


def hash_id_number(id_number: str, key: bytes) -> str:
    """Keyed hash of an ID number: stable for one key, useless without it."""
    digest = hmac.new(key, id_number.strip().encode("utf-8"), hashlib.sha256).hexdigest()
    return f"h1:{digest[:32]}"


def scrub_dossier(record: dict[str, Any], key: bytes) -> dict[str, Any]:
    """Return a copy of a source record without names, phones or addresses, ID numbers hashed.

    Nested dicts and lists are scrubbed too (progress rows can name the officer's client).
    """
    out: dict[str, Any] = {}
    for name, value in record.items():
        if name in NAME_FIELDS or name in PHONE_FIELDS or name in ADDRESS_FIELDS:
            continue
        if name in ID_FIELDS:
            if value not in (None, ""):
                out["IdHash"] = hash_id_number(str(value), key)
            continue
        if isinstance(value, dict):
            out[name] = scrub_dossier(value, key)
        elif isinstance(value, list):
            out[name] = [scrub_dossier(v, key) if isinstance(v, dict) else v for v in value]
        else:
            out[name] = value
    return out


def redact_text(text: str) -> str:
    """Mask anything that looks like an ID number or a phone in free text (logs, error reasons)."""
    return _PHONE_RE.sub("<phone>", _ID_RE.sub("<id>", text))


def redact_payload(value: Any) -> Any:
    """A copy of any JSON value fit for a dead letter: no person in it, whatever its shape.

    Unlike :func:`scrub_dossier`, which runs at the edge with the hashing key, this runs on records
    that may never have passed the edge (produced straight into a raw topic, or malformed in a way
    the edge did not expect). Name, phone, address and ID fields are dropped (an ``IdHash`` is kept:
    it is already a keyed hash), and every string left is passed through :func:`redact_text`, so an
    ID number or a phone under an unexpected field name is masked too.
    """
    if isinstance(value, dict):
        return {
            k: redact_payload(v) for k, v in value.items()
            if k not in NAME_FIELDS and k not in PHONE_FIELDS and k not in ADDRESS_FIELDS and k not in ID_FIELDS
        }
    if isinstance(value, list):
        return [redact_payload(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
