"""The hub's one authentication module: connectors (sources) and the portal sync (target) both use it.

Why it lives here: the connector SDK is the hub's documented, pluggable home for auth schemes (a
third-party connector subclasses :class:`Authenticator`), and its import graph only reaches the
hub's foundation modules (``hub.config``, ``hub.kafka``, ``hub.deadletter``, ``hub.privacy``), never
``hub.sync`` or ``hub.commands``. So ``hub.sync`` importing this module cannot form a cycle, while
the reverse (the SDK importing a ``hub.sync`` or ``hub.auth`` module that raises the SDK's error
types) would tie the foundation to the SDK. The provincial LGSP gateway has one scheme, so the
portal SOURCE connector and the portal sync TARGET share one implementation, one token cache per
client and one signature format.

An :class:`Authenticator` adds credentials to an outgoing :class:`httpx.Request`. Schemes that hold
a short-lived credential (OAuth2 tokens) can be told that the server refused it
(:meth:`Authenticator.invalidate`); the caller then retries **once** with fresh credentials. Two
ways to use one:

- the connector SDK's :class:`~connectors.sdk.http.SourceClient` calls :meth:`~Authenticator.apply`
  and, after a 401/403, :meth:`~Authenticator.invalidate` and one retry, then gives up with
  :class:`~connectors.sdk.errors.InvalidAuth`;
- any :class:`httpx.AsyncClient` (the portal sync) takes :meth:`Authenticator.httpx_auth` as its
  ``auth=``: the same one refresh and one retry after a 401/403, then the refusal is returned as it is.

Build one from configuration with :func:`build_authenticator`::

    >>> import asyncio, httpx
    >>> from pydantic import SecretStr
    >>> from hub.config import ApiKeyAuth, OAuth2ClientCredentials
    >>> auth = build_authenticator(ApiKeyAuth(api_key=SecretStr("k-1")), base_url="http://src")
    >>> req = httpx.Request("GET", "http://src/api/v1/health")
    >>> asyncio.run(auth.apply(req, httpx.AsyncClient()))
    >>> req.headers["X-Api-Key"]
    'k-1'
    >>> def portal(request: httpx.Request) -> httpx.Response:
    ...     if request.url.path == "/oauth2/token":
    ...         return httpx.Response(200, json={"access_token": "t1", "expires_in": 3600})
    ...     return httpx.Response(200, json={"auth": request.headers["Authorization"]})
    >>> async def demo() -> str:
    ...     async with httpx.AsyncClient(transport=httpx.MockTransport(portal), base_url="http://portal") as c:
    ...         oauth = build_authenticator(OAuth2ClientCredentials(client_id="dvc-hub",
    ...                                     client_secret=SecretStr("s3cret")), base_url="http://portal")
    ...         return (await c.get("/api/v1/x", auth=oauth.httpx_auth(c))).json()["auth"]
    >>> asyncio.run(demo())
    'Bearer t1'

Schemes
-------

:class:`NoAuthenticator`, :class:`ApiKeyAuthenticator` (header, one-stop systems),
:class:`BasicAuthenticator` (QLVB), and for the LGSP gateway in front of the provincial portal:

``oauth2`` — :class:`OAuth2ClientCredentialsAuthenticator` (contracts.md §3)
    ``POST <base_url><token_path>`` with HTTP Basic ``client_id:client_secret`` and the form
    ``grant_type=client_credentials``; the answer ``{"access_token", "expires_in"}`` may be bare or
    inside the gateway envelope's ``response``. The token is cached and refreshed
    ``refresh_margin_s`` before it expires (never more than half its lifetime early); one fetch runs
    at a time (an :class:`asyncio.Lock`), so a hundred concurrent requests that find the token stale
    wait for the same fetch. After a 401 the caller invalidates **the token it sent**: if another
    request already replaced it, nothing is fetched — a revoked token costs one refresh however many
    requests saw the 401. No 401 storm.

``access_key`` — :class:`AccessKeyAuthenticator`: **the** access-key signature format
    (``docs/portal-sync.md`` and ``docs/connectors.md`` point here). Every request carries::

        X-Access-Key: <access key>
        X-Timestamp:  <UTC time, yyyyMMdd'T'HHmmss'Z', e.g. 20210115T013000Z>
        X-Signature:  hex(HMAC-SHA256(secret_key, STRING_TO_SIGN))

        STRING_TO_SIGN = METHOD "\\n" PATH "\\n" QUERY "\\n" TIMESTAMP "\\n" hex(SHA256(body))

    ``METHOD`` upper case; ``PATH`` the request path exactly as sent (percent-encoded, no query);
    ``QUERY`` the raw query string's ``name=value`` pairs as sent, sorted bytewise and joined with
    ``&`` (empty when there is none), so a proxy that reorders parameters does not break the
    signature; ``TIMESTAMP`` the ``X-Timestamp`` value; the body hash of an empty body is
    SHA-256 of ``b""``. :func:`sign` computes it (a gateway test double verifies with it). The
    secret never travels; a captured request cannot be replayed with another path, query or body,
    and the gateway should refuse a timestamp more than 5 minutes from its clock.

A new scheme is a subclass with ``apply`` (and ``invalidate`` if it caches anything).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import hmac
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.sdk.errors import InvalidAuth, SourceRejected, SourceUnavailable, scrub_url
from hub.config import AccessKeyAuth, ApiKeyAuth, AuthSettings, BasicAuth, NoAuth, OAuth2ClientCredentials

__all__ = [
    "REFUSED_STATUSES",
    "AccessKeyAuthenticator",
    "ApiKeyAuthenticator",
    "Authenticator",
    "BasicAuthenticator",
    "NoAuthenticator",
    "OAuth2ClientCredentialsAuthenticator",
    "build_authenticator",
    "retry_after_seconds",
    "sign",
]

log = logging.getLogger(__name__)

#: Statuses that mean "the credentials were refused": one refresh and one retry, then give up.
REFUSED_STATUSES = frozenset({401, 403})

# The token the current task last sent, per authenticator (id): a caller that only says
# "invalidate()" (the SDK's SourceClient) still invalidates *its* token, not one another task
# fetched meanwhile. A context variable is per task, so concurrent requests never mix them up.
_SENT_TOKEN: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar("dvchub_sent_token", default=None)


class Authenticator(ABC):
    """Adds credentials to requests; ``refreshable`` schemes can renew them after a refusal.

    Example: a scheme that sends a static token (the whole subclass)::

        >>> import asyncio, httpx
        >>> class StaticToken(Authenticator):
        ...     async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        ...         request.headers["Authorization"] = "Token abc"
        >>> req = httpx.Request("GET", "http://src/x")
        >>> asyncio.run(StaticToken().apply(req, httpx.AsyncClient()))
        >>> req.headers["Authorization"]
        'Token abc'
    """

    #: True when :meth:`invalidate` followed by a retry can succeed (cached, renewable credentials).
    refreshable: bool = False

    @abstractmethod
    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        """Add credentials to ``request`` (may call the server through ``http``, e.g. for a token)."""

    def invalidate(self, request: httpx.Request | None = None) -> None:  # noqa: B027 - no-op for stateless schemes
        """The server refused the credentials sent on ``request`` (default: the last ones this task applied)."""

    def httpx_auth(self, http: httpx.AsyncClient) -> httpx.Auth:
        """This scheme as an :class:`httpx.Auth`; ``http`` fetches tokens (it may be the client it is used on)."""
        return _HttpxAuth(self, http)


class _HttpxAuth(httpx.Auth):
    """Apply, send; after a refusal (refreshable schemes only): invalidate, apply again, send once more."""

    # Request signing covers the body: httpx must read it before the flow runs.
    requires_request_body = True

    def __init__(self, authenticator: Authenticator, http: httpx.AsyncClient) -> None:
        self._auth = authenticator
        self._http = http

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """One refresh and one retry after a 401/403; a second refusal goes back to the caller."""
        await self._auth.apply(request, self._http)
        response = yield request
        if response.status_code not in REFUSED_STATUSES or not self._auth.refreshable:
            return
        await response.aread()
        self._auth.invalidate(request)
        await self._auth.apply(request, self._http)
        yield request


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
    """OAuth2 client credentials for the LGSP gateway (module docstring: caching, one fetch, 401 rules).

    Token endpoint failures raise the SDK's errors: :class:`InvalidAuth` when it refuses the client
    (400/401/403: fix the configuration), :class:`SourceUnavailable` when it is down, rate limits
    (with ``retry_after``) or answers without a token, :class:`SourceRejected` otherwise.
    ``clock`` is a monotonic clock in seconds (injectable for tests).
    """

    refreshable = True

    def __init__(
        self, settings: OAuth2ClientCredentials, base_url: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._token_url = base_url.rstrip("/") + settings.token_path
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0  # when to refresh: expiry minus the margin
        self._lock = asyncio.Lock()
        #: How many tokens were fetched (tests and the "no refresh storm" check read it).
        self.fetches = 0

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:
        """Set ``Authorization: Bearer <token>``, fetching a token first when needed."""
        token = await self.token(http)
        _SENT_TOKEN.set((id(self), token))
        request.headers["Authorization"] = f"Bearer {token}"

    def invalidate(self, request: httpx.Request | None = None) -> None:
        """Forget the token ``request`` carried, unless another request already replaced it."""
        rejected: str | None = None
        if request is not None:
            header = request.headers.get("Authorization", "")
            rejected = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        else:
            sent = _SENT_TOKEN.get()
            rejected = sent[1] if sent is not None and sent[0] == id(self) else None
        if rejected is None or rejected == self._token:
            self._token = None
            self._expires_at = 0.0

    def _fresh(self) -> str | None:
        return self._token if self._token is not None and self._clock() < self._expires_at else None

    async def token(self, http: httpx.AsyncClient) -> str:
        """A valid access token (cached, or fetched now; one fetch at a time)."""
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:
            # Whoever waited on the lock finds the token the first holder fetched.
            token = self._fresh()
            if token is not None:
                return token
            token, lifetime = await self._fetch(http)
            # A short-lived token still gets used: never let the margin eat more than half its life.
            margin = min(self._settings.refresh_margin_s, lifetime / 2)
            self._token, self._expires_at = token, self._clock() + lifetime - margin
            log.info("access token fetched from %s (valid %.0f s)", scrub_url(self._token_url), lifetime)
            return token

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
            payload: Any = response.json()
            # The LGSP gateway may wrap the token in its envelope's "response".
            body = payload["response"] if isinstance(payload.get("response"), dict) else payload
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SourceUnavailable(f"token endpoint {where} answered without an access_token",
                                    reason="error_body") from None
        if not isinstance(token, str) or not token:
            raise SourceUnavailable(f"token endpoint {where} answered an empty access_token", reason="error_body")
        return token, lifetime


def sign(secret_key: str, *, method: str, path: str, query: str, timestamp: str, body: bytes) -> str:
    """The access-key signature (the format is in the module docstring: this is its one definition)."""
    canonical_query = "&".join(sorted(query.split("&"))) if query else ""
    message = "\n".join([method.upper(), path, canonical_query, timestamp, hashlib.sha256(body).hexdigest()])
    return hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()


class AccessKeyAuthenticator(Authenticator):
    """Access key / secret key request signing (``X-Access-Key``, ``X-Timestamp``, ``X-Signature``).

    The exact format is in the module docstring; ``now`` is injectable for tests.
    """

    def __init__(self, settings: AccessKeyAuth, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._now = now

    def signature(self, method: str, path: str, query: str, timestamp: str, body: bytes) -> str:
        """The hex signature of one request with this key (see :func:`sign`)."""
        return sign(self._settings.secret_key.get_secret_value(), method=method, path=path, query=query,
                    timestamp=timestamp, body=body)

    async def apply(self, request: httpx.Request, http: httpx.AsyncClient) -> None:  # noqa: ARG002
        """Sign ``request`` (its body is read first if it is a stream)."""
        timestamp = self._now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        request.headers["X-Access-Key"] = self._settings.access_key
        request.headers["X-Timestamp"] = timestamp
        request.headers["X-Signature"] = self.signature(request.method, path, query, timestamp, body)


def build_authenticator(settings: AuthSettings, *, base_url: str) -> Authenticator:
    """The authenticator for one configured auth block (``base_url``: where the token endpoint is)."""
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
