"""Outbox items are authenticated: only the hub's own writers can put an item before the portal.

The portal sync pushes whatever it reads from the outbox topic to the provincial portal under the
hub's own portal credentials. A process that can write to Kafka (the embedded broker's ACLs make
that hard, an external cluster's may be looser, a leaked client credential makes it easy) must
still not be able to have a dossier pushed. So every writer of the outbox (the worker's state
agent, the portal sync's statistics producer, ``dvc-hub dlq replay``) puts an HMAC-SHA256 of the
record in the :data:`MAC_HEADER` header, keyed with the installation's outbox key
(:meth:`hub.config.KafkaSettings.outbox_key`), and the portal sync refuses any record whose
header is missing, repeated, malformed or does not match: it is dead-lettered (reason
``unauthenticated``, without its payload) and never pushed.

The MAC covers the exact value bytes *and* the record key, length-prefixed so no split of the two
is ambiguous, under a domain-separation label; a valid value replayed under another key (another
dossier's partition) fails too::

    >>> key = b"k" * 32
    >>> headers = sign(key, b"H56.14767-210310-00001", b'{"type":"dossier"}')
    >>> verify(key, b"H56.14767-210310-00001", b'{"type":"dossier"}', headers) is None
    True
    >>> verify(key, b"H56.14767-210310-00002", b'{"type":"dossier"}', headers)
    'the outbox signature does not match this record (forged, altered, or signed with another key)'
    >>> verify(key, b"x", b"{}", [])
    'the outbox record has no signature header dvc.mac (not written by the hub)'
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Final

__all__ = ["MAC_HEADER", "mac", "sign", "verify"]

#: The record header holding ``v1:<hex HMAC-SHA256>``.
MAC_HEADER: Final = "dvc.mac"
_LABEL: Final = b"dvc-hub outbox v1\n"
_VERSION: Final = b"v1:"


def mac(key: bytes, record_key: bytes | None, value: bytes) -> bytes:
    """``v1:`` + the hex HMAC-SHA256 of (label, len(key), key, value) under ``key``."""
    rk = record_key or b""
    digest = hmac.new(key, _LABEL + len(rk).to_bytes(8, "big") + rk + value, hashlib.sha256).hexdigest()
    return _VERSION + digest.encode("ascii")


def sign(key: bytes, record_key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
    """The headers to send with an outbox record (add them to any others)."""
    return [(MAC_HEADER, mac(key, record_key, value))]


def verify(
    key: bytes, record_key: bytes | None, value: bytes, headers: Iterable[tuple[str, bytes | None]] | None
) -> str | None:
    """None when the record carries exactly one valid MAC; otherwise why it is refused."""
    found = [v for name, v in (headers or ()) if name == MAC_HEADER]
    if not found:
        return f"the outbox record has no signature header {MAC_HEADER} (not written by the hub)"
    if len(found) > 1:
        return f"the outbox record has {len(found)} {MAC_HEADER} headers (exactly one is written)"
    given = found[0] or b""
    if not given.startswith(_VERSION):
        return f"the outbox signature is not in the {_VERSION.decode()} format"
    if not hmac.compare_digest(given, mac(key, record_key, value)):
        return "the outbox signature does not match this record (forged, altered, or signed with another key)"
    return None
