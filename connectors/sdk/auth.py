"""Pluggable authentication for HTTP sources (and for the portal sync, which reuses it).

An :class:`Authenticator` adds credentials to an outgoing :class:`httpx.Request`. Schemes that
hold a short-lived credential (OAuth2 tokens) can also be told that the source refused it
(:meth:`Authenticator.invalidate`); the HTTP client then retries **once** with fresh credentials
and gives up with :class:`~connectors.sdk.errors.InvalidAuth` on a second refusal, so a revoked
token costs one refresh, never a 401 storm.

Build one from configuration with :func:`build_authenticator`::

    >>> import asyncio, httpx
    >>> from pydantic import SecretStr
    >>> from hub.config import ApiKeyAuth
    >>> auth = build_authenticator(ApiKeyAuth(api_key=SecretStr("k-1")), base_url="http://src")
    >>> req = httpx.Request("GET", "http://src/api/v1/health")
    >>> asyncio.run(auth.apply(req, httpx.AsyncClient()))
    >>> req.headers["X-Api-Key"]
    'k-1'

Schemes: :class:`NoAuthenticator`, :class:`ApiKeyAuthenticator` (header), :class:`BasicAuthenticator`,
:class:`OAuth2ClientCredentialsAuthenticator` (token cached, refreshed ``refresh_margin_s`` before
expiry, one fetch at a time), :class:`AccessKeyAuthenticator` (HMAC-SHA256 request signature).
A new scheme is a subclass with ``apply`` (and ``invalidate`` if it caches anything).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.sdk.errors import InvalidAuth, SourceRejected, SourceUnavailable, scrub_url
from hub.config import AccessKeyAuth, ApiKeyAuth, AuthSettings, BasicAuth, NoAuth, OAuth2ClientCredentials

__all__ = [
    "AccessKeyAuthenticator",
    "ApiKeyAuthenticator",
    "Authenticator",
    "BasicAuthenticator",
    "NoAuthenticator",
    "OAuth2ClientCredentialsAuthenticator",
    "build_authenticator",
]


class Authenticator(ABC):
    """Adds credentials to requests; ``refreshable`` schemes can renew them after a 401."""

    #: True when :meth:`invalidate` followed by a retry can succeed (cached, renewable credentials).
    refreshable: bool = False

    @abstractmethod
    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        """Add credentials to ``request`` (may call the source, e.g. for a token)."""

    def invalidate(self) -> None:  # noqa: B027 - deliberately a no-op for stateless schemes
        """The source refused the credentials last applied: drop whatever is cached."""


class NoAuthenticator(Authenticator):
    """No credentials."""

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        """Nothing to add."""


class ApiKeyAuthenticator(Authenticator):
    """A static key in a header (one-stop systems: ``X-Api-Key``)."""

    def __init__(self, settings: ApiKeyAuth) -> None:
        self._settings = settings

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:  # noqa: ARG002
        """Set the key header."""
        request.headers[self._settings.header] = self._settings.api_key.get_secret_value()


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class BasicAuthenticator(Authenticator):
    """HTTP Basic (QLVB)."""

    def __init__(self, settings: BasicAuth) -> None:
        self._settings = settings

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:  # noqa: ARG002
        """Set the ``Authorization: Basic`` header."""
        request.headers["Authorization"] = _basic(self._settings.username, self._settings.password.get_secret_value())


class OAuth2ClientCredentialsAuthenticator(Authenticator):
    """OAuth2 client credentials (the LGSP gateway in front of the provincial portal).

    ``POST {base_url}{token_path}`` with HTTP Basic ``client_id:client_secret`` and the form
    ``grant_type=client_credentials``; the token is cached until ``refresh_margin_s`` before it
    expires. Concurrent requests share one fetch (a lock), so a burst never fetches twice.
    """

    refreshable = True

    def __init__(
        self, settings: OAuth2ClientCredentials, base_url: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._token_url = base_url.rstrip("/") + settings.token_path
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        #: How many tokens were fetched (tests and metrics read it).
        self.fetches = 0

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        """Set ``Authorization: Bearer <token>``, fetching a token first when needed."""
        token = await self.token(http)
        request.headers["Authorization"] = f"Bearer {token}"

    def invalidate(self) -> None:
        """Forget the cached token (the source said it was revoked)."""
        self._token = None
        self._expires_at = 0.0

    async def token(self, http: httpx.AsyncClient) -> str:
        """A valid access token (cached, or fetched now)."""
        async with self._lock:
            if self._token is not None and self._clock() < self._expires_at - self._settings.refresh_margin_s:
                return self._token
            self._token, lifetime = await self._fetch(http)
            self._expires_at = self._clock() + lifetime
            return self._token

    async def _fetch(self, http: httpx.AsyncClient) -> tuple[str, float]:
        self.fetches += 1
        auth = _basic(self._settings.client_id, self._settings.client_secret.get_secret_value())
        where = scrub_url(self._token_url)
        try:
            response = await http.post(
                self._token_url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": auth, "Accept": "application/json"},
            )
        except httpx.TimeoutException:
            raise SourceUnavailable(f"token endpoint {where} timed out", reason="timeout") from None
        except httpx.TransportError as exc:
            raise SourceUnavailable(
                f"token endpoint {where} unreachable ({type(exc).__name__})", reason="connect"
            ) from None
        if response.status_code in (400, 401, 403):
            raise InvalidAuth(
                f"the token endpoint {where} refused client_id {self._settings.client_id!r} "
                f"(HTTP {response.status_code}); check client_id and the client secret in the environment"
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise SourceUnavailable(
                f"token endpoint {where} answered HTTP {response.status_code}",
                reason=f"http_{response.status_code}",
                retry_after=retry_after_seconds(response),
            )
        if response.status_code >= 300:
            raise SourceRejected(f"token endpoint {where} answered HTTP {response.status_code}",
                                 status=response.status_code)
        try:
            body: Any = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise SourceUnavailable(f"token endpoint {where} answered without an access_token",
                                    reason="error_body") from None
        if not isinstance(token, str) or not token:
            raise SourceUnavailable(f"token endpoint {where} answered an empty access_token", reason="error_body")
        return token, lifetime


class AccessKeyAuthenticator(Authenticator):
    """Access key / secret key request signing, as some provinces' gateways use instead of OAuth2.

    Headers: ``X-Access-Key``, ``X-Timestamp`` (UTC ``yyyyMMddTHHmmssZ``) and ``X-Signature`` =
    hex HMAC-SHA256 with the secret key over ``METHOD \\n path \\n sorted query \\n timestamp \\n
    sha256(body)``. The secret never travels; a captured request cannot be replayed with another
    body or path.
    """

    def __init__(self, settings: AccessKeyAuth, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._now = now

    def signature(self, method: str, path: str, query: str, timestamp: str, body: bytes) -> str:
        """The hex signature of one request (public so a gateway test double can verify it)."""
        canonical_query = "&".join(sorted(query.split("&"))) if query else ""
        message = "\n".join(
            [method.upper(), path, canonical_query, timestamp, hashlib.sha256(body).hexdigest()]
        ).encode()
        return hmac.new(self._settings.secret_key.get_secret_value().encode(), message, hashlib.sha256).hexdigest()

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:  # noqa: ARG002
        """Sign ``request``."""
        timestamp = self._now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        body = request.content if request.stream is not None else b""
        request.headers["X-Access-Key"] = self._settings.access_key
        request.headers["X-Timestamp"] = timestamp
        request.headers["X-Signature"] = self.signature(
            request.method, request.url.path, request.url.query.decode("ascii"), timestamp, body
        )


def build_authenticator(settings: AuthSettings, *, base_url: str) -> Authenticator:
    """The authenticator for one configured auth block."""
    if isinstance(settings, ApiKeyAuth):
        return ApiKeyAuthenticator(settings)
    if isinstance(settings, BasicAuth):
        return BasicAuthenticator(settings)
    if isinstance(settings, OAuth2ClientCredentials):
        return OAuth2ClientCredentialsAuthenticator(settings, base_url)
    if isinstance(settings, AccessKeyAuth):
        return AccessKeyAuthenticator(settings)
    if isinstance(settings, NoAuth):
        return NoAuthenticator()
    raise TypeError(f"no authenticator for auth kind {type(settings).__name__}")


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta form only; an HTTP date is treated as absent)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
