"""One exchange with the portal's target endpoints, classified into a typed outcome.

The portal (behind the LGSP gateway) answers in several ways that all need different handling
(contracts.md §3); this module turns each into exactly one of:

- a :class:`Reply` with ``error_code`` ``"0"`` (accepted) or ``"3"``/``"-3"`` (the dossier exists:
  send again with ``isUpdating: "True"``);
- :class:`Transient` — worth retrying: 5xx, 429 (with ``Retry-After``), a timeout, a reset, the
  token endpoint down, ``200 {"error_code": "-1"}`` (the gateway's "system error" under load).
  ``maybe_sent`` says whether the portal may have stored the request before the answer was lost,
  in which case the caller settles it (look-up, same ``Idempotency-Key``) before sending anything new;
- :class:`Rejected` — no retry can fix it: another non-zero ``error_code`` with a message, or a 4xx.

Exception tree::

    PortalError
     ├── Transient(reason, retry_after, maybe_sent)
     └── Rejected(error_code, message)

Example::

    >>> import asyncio, httpx
    >>> def portal(request: httpx.Request) -> httpx.Response:
    ...     return httpx.Response(200, json={"code": 200, "response": {"error_code": "0", "message": ""}})
    >>> async def demo() -> str:
    ...     async with httpx.AsyncClient(transport=httpx.MockTransport(portal), base_url="http://p") as http:
    ...         reply = await PortalClient(http).send("POST", "/api/v1/dongbo/tiendo", {"data": []}, "k1")
    ...         return reply.error_code
    >>> asyncio.run(demo())
    '0'
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from urllib.parse import quote

import httpx

from connectors.sdk.errors import ConnectorError, SourceUnavailable
from hub.privacy import redact_text
from hub.sync.delivery import Limiter
from hub.sync.errors import PortalError, Rejected, Transient

__all__ = ["EXISTS_CODES", "PortalClient", "PortalError", "Rejected", "Reply", "Transient", "parse_retry_after"]

#: "hồ sơ đã tồn tại": the dossier exists; resend with isUpdating "True".
EXISTS_CODES = frozenset({"3", "-3"})
#: The gateway's "Lỗi hệ thống" under load (HTTP 200): transient, not a rejection.
SYSTEM_ERROR_CODES = frozenset({"-1"})


@dataclass(frozen=True)
class Reply:
    """A target endpoint's answer: ``error_code`` ``"0"`` or one of :data:`EXISTS_CODES`."""

    error_code: str
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the portal accepted the request."""
        return self.error_code == "0"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


def _outcome(payload: Any) -> tuple[str | None, str, dict[str, Any]]:
    """(error_code, message, response) from a reply, at the top level or inside the envelope."""
    if not isinstance(payload, dict):
        return None, "", {}
    inner = payload.get("response")
    inner = inner if isinstance(inner, dict) else {}
    code = payload.get("error_code", inner.get("error_code"))
    message = payload.get("message", inner.get("message", ""))
    return (str(code) if code is not None else None), str(message or ""), inner


class PortalClient:
    """The portal's target endpoints over an :class:`httpx.AsyncClient` (base URL set on it).

    ``auth`` is applied to every request (an :meth:`connectors.sdk.auth.Authenticator.httpx_auth`:
    one refresh and one retry after a 401/403); ``limiter`` spaces requests
    (the portal allows about 20 per second per client).
    """

    def __init__(
        self, http: httpx.AsyncClient, auth: httpx.Auth | None = None, limiter: Limiter | None = None
    ) -> None:
        self._http = http
        self._auth = auth
        self._limiter = limiter

    async def _request(self, method: str, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        if self._limiter is not None:
            await self._limiter.acquire()
        content = json.dumps(body, ensure_ascii=False, sort_keys=True).encode() if body is not None else None
        if content is not None:
            headers = {**headers, "Content-Type": "application/json; charset=utf-8"}
        try:
            request = self._http.build_request(method, path, content=content, headers=headers)
            return await self._http.send(request, auth=self._auth or httpx.USE_CLIENT_DEFAULT)
        except ConnectorError as exc:
            # The token endpoint failed (down, rate limited, or refusing the client): nothing was sent.
            retry_after = exc.retry_after if isinstance(exc, SourceUnavailable) else None
            raise Transient("auth", str(exc), retry_after=retry_after) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Never reached the portal: nothing can have been stored.
            raise Transient("connect", f"portal unreachable ({type(exc).__name__})") from None
        except httpx.TimeoutException as exc:
            raise Transient("timeout", f"no answer in time ({type(exc).__name__})", maybe_sent=True) from None
        except httpx.TransportError as exc:
            # Reset or disconnect after (part of) the request went out: it may have been stored.
            raise Transient("reset", f"connection lost ({type(exc).__name__})", maybe_sent=True) from None

    def _classify(self, response: httpx.Response) -> Reply:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        try:
            payload = response.json()
        except ValueError:
            payload = None
        code, message, inner = _outcome(payload)
        message = redact_text(message)[:500]
        if status == 429:
            if retry_after is not None and self._limiter is not None:
                # Meant for this client, not this request: every lane waits (the other lane's next
                # request would be just as early).
                self._limiter.hold(retry_after)
            raise Transient("429", "rate limited by the portal", retry_after=retry_after)
        if status >= 500:
            raise Transient("5xx", f"portal answered HTTP {status}", retry_after=retry_after)
        if status in (401, 403):
            # Already renewed once by the auth flow: the credentials or the gateway are at fault.
            raise Transient("auth", f"portal refused the credentials (HTTP {status}) after one renewal")
        if status == 408:
            raise Transient("timeout", "portal answered 408", retry_after=retry_after, maybe_sent=True)
        if status >= 400:
            raise Rejected(code or str(status), message or f"HTTP {status}")
        if code is None:
            raise Transient("bad_reply", f"portal answered HTTP {status} without an error_code")
        if code in SYSTEM_ERROR_CODES:
            raise Transient("error_body", f"portal answered error_code {code}: {message}", retry_after=retry_after)
        if code == "0" or code in EXISTS_CODES:
            return Reply(code, message, inner)
        raise Rejected(code, message)

    async def send(self, method: str, path: str, body: Any, idempotency_key: str) -> Reply:
        """One attempt of a push (``POST``/``PUT`` with a JSON body and an ``Idempotency-Key``)."""
        response = await self._request(method, path, body, {"Idempotency-Key": idempotency_key})
        return self._classify(response)

    async def lookup_dossier(self, ma_ho_so: str) -> dict[str, Any] | None:
        """What the portal holds for a dossier (``GET /api/v1/dongbo/hoso/{ma}``), or None if nothing."""
        path = "/api/v1/dongbo/hoso/" + quote(ma_ho_so, safe="")
        response = await self._request("GET", path, None, {})
        if response.status_code == 404:
            return None
        reply = self._classify(response)
        held = reply.data.get("data")
        return held if isinstance(held, dict) else None
