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

import re
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


class RecordError(ConnectorError):
    """One record cannot be used (missing key, wrong types); it is dead-lettered and skipped."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DeliveryError(ConnectorError):
    """Kafka did not acknowledge produced records; nothing is lost because the cursor stays put."""
