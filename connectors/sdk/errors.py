"""The exceptions of the connector SDK, and the stable keys ``dvc-hub connectors check`` prints.

::

    ConnectorError                  base; ``key`` is the stable error key, the message says what to do
    ├── SourceUnavailable           network error, timeout, 429, 5xx, HTTP 200 with an error in the body
    │                               (retried with backoff; after the last attempt: ``cannot_connect``)
    ├── InvalidAuth                 401/403 even after one credential refresh (``invalid_auth``)
    ├── SourceRejected              another 4xx: the request itself is wrong (``unknown``)
    ├── BadPage                     a page that cannot be parsed (invalid JSON/XML, hostile XML, too large,
    │                               too deep); retried, then dead-lettered and the stream holds its cursor
    ├── RecordError                 one record that cannot be used; dead-lettered, the stream goes on
    └── DeliveryError               Kafka did not acknowledge; the cursor is not advanced

Messages never contain a secret or a full URL with credentials: build them with :func:`scrub_url`.
"""

from __future__ import annotations

import json
import re
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.etree.ElementTree import ParseError
from xml.parsers.expat import ExpatError

from defusedxml import DefusedXmlException

CheckKey = Literal["ok", "cannot_connect", "invalid_auth", "unknown"]

_SECRET_PARAM = re.compile(r"(key|token|secret|password|passwd|signature|auth)", re.IGNORECASE)


def scrub_url(url: object) -> str:
    """``url`` without userinfo and with secret-looking query values masked (safe for logs)."""
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = urlencode(
        [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class ConnectorError(Exception):
    """Base of every connector error; ``key`` is what ``check`` prints."""

    key: CheckKey = "unknown"


class SourceUnavailable(ConnectorError):  # noqa: N818 - named like the check keys, as Home Assistant does
    """A transient failure of the source; ``reason`` is a metric label, ``retry_after`` in seconds."""

    key: CheckKey = "cannot_connect"

    def __init__(self, message: str, *, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class InvalidAuth(ConnectorError):  # noqa: N818 - named like the check keys, as Home Assistant does
    """The source refused the credentials (after one refresh where the scheme allows it)."""

    key: CheckKey = "invalid_auth"


class SourceRejected(ConnectorError):  # noqa: N818 - named like the check keys, as Home Assistant does
    """The source refused the request itself (a 4xx other than 401/403/408/429)."""

    key: CheckKey = "unknown"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
        if status == 404:
            # A 404 on a well-formed request almost always means a wrong base_url.
            self.key = "cannot_connect"


class BadPage(ConnectorError):  # noqa: N818 - named like the check keys, as Home Assistant does
    """A whole page cannot be read; ``reason`` is a dead-letter reason (hub.deadletter.REASONS)."""

    def __init__(self, reason: str, detail: str, *, raw: bytes | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.raw = raw


def page_error(exc: BaseException, raw: bytes | None = None, *, where: str = "the page") -> BadPage:
    """Any exception met while reading or parsing a page, as the :class:`BadPage` it is.

    A parser can fail in many ways besides the ones it checks for: a deeply nested body raises
    ``RecursionError``, a missing member ``KeyError``, a wrong type ``TypeError``, bad bytes
    ``UnicodeDecodeError``. Each is an unreadable page, not a crash: it is fetched again, then
    dead-lettered once and the stream holds (see :mod:`connectors.sdk.engine`). The reason is a
    dead-letter reason by the exception's kind; the detail names the exception's type (never its
    message, which may quote the data).
    """
    if isinstance(exc, BadPage):
        return exc
    name = type(exc).__name__
    reason = "schema"
    if isinstance(exc, RecursionError):
        reason = "too_deep"
    elif isinstance(exc, MemoryError):
        reason = "too_large"
    elif isinstance(exc, json.JSONDecodeError):
        reason = "invalid_json"
    elif isinstance(exc, DefusedXmlException):
        reason = "hostile_xml"
    elif isinstance(exc, ParseError | ExpatError):
        reason = "invalid_xml"
    return BadPage(reason, f"{where} could not be parsed: {name} (the source sent something the connector "
                   "cannot read; look at the dead letter's excerpt)", raw=raw)


class RecordError(ConnectorError):
    """One record cannot be used (missing key, wrong types); it is dead-lettered and skipped."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DeliveryError(ConnectorError):
    """Kafka did not acknowledge produced records; nothing is lost because the cursor stays put."""
