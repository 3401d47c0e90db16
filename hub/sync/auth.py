"""Authentication to the provincial portal: a pluggable :class:`httpx.Auth`.

Two schemes, chosen by ``settings.portal.auth.kind`` (:func:`make_auth`):

``oauth2`` — :class:`OAuth2ClientCredentials` (contracts.md §3)
    ``POST <token_path>`` with HTTP Basic ``client_id:client_secret`` and
    ``grant_type=client_credentials``; the access token goes out as ``Authorization: Bearer``.
    The token is refreshed ``refresh_margin_s`` before it expires, and only **one** refresh runs at
    a time (an :class:`asyncio.Lock`): a hundred concurrent requests that find the token stale wait
    for the same refresh instead of each fetching one. A 401 (the gateway revoked the token early)
    triggers one refresh — unless another request already replaced the revoked token — and one
    retry of the request; a second 401 is returned to the caller as it is. No 401 storm.

``access_key`` — :class:`AccessKeySignature`
    For gateways that sign requests instead. Every request carries::

        X-Access-Key: <access key>
        X-Timestamp:  <unix seconds, UTC>
        X-Signature:  hex(HMAC-SHA256(secret_key, METHOD "\\n" PATH_AND_QUERY "\\n" TIMESTAMP "\\n" hex(SHA256(body))))

    ``METHOD`` is upper case, ``PATH_AND_QUERY`` is the raw request target (``/api/v1/dongbo/hoso``,
    with ``?query`` when there is one), the body hash of an empty body is SHA-256 of ``b""``. The
    portal should refuse a timestamp more than 5 minutes from its clock. A province whose gateway
    signs differently plugs in its own :class:`httpx.Auth` the same way.

Example (no network: the transport is a mock)::

    >>> import asyncio, httpx
    >>> def portal(request: httpx.Request) -> httpx.Response:
    ...     if request.url.path == "/oauth2/token":
    ...         return httpx.Response(200, json={"access_token": "t1", "expires_in": 3600})
    ...     return httpx.Response(200, json={"auth": request.headers["Authorization"]})
    >>> async def demo() -> str:
    ...     async with httpx.AsyncClient(transport=httpx.MockTransport(portal), base_url="http://portal") as c:
    ...         auth = OAuth2ClientCredentials(c, "/oauth2/token", "dvc-hub", "s3cret")
    ...         return (await c.get("/api/v1/x", auth=auth)).json()["auth"]
    >>> asyncio.run(demo())
    'Bearer t1'
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncGenerator, Callable

import httpx

from hub.config import AccessKeyAuth
from hub.config import OAuth2ClientCredentials as OAuth2Settings

log = logging.getLogger(__name__)

__all__ = [
    "AccessKeySignature",
    "AuthConfigError",
    "OAuth2ClientCredentials",
    "TokenUnavailable",
    "make_auth",
    "sign",
]


class TokenUnavailable(Exception):  # noqa: N818 - reads as a state ("token unavailable"), like httpx's names
    """The token endpoint did not answer usefully this time (5xx, timeout, reset): retry later."""


class AuthConfigError(Exception):
    """The token endpoint refused the client's credentials: fix ``portal.auth`` (no retry helps)."""


class OAuth2ClientCredentials(httpx.Auth):
    """OAuth2 client-credentials bearer auth with single-flight refresh and one retry after a 401.

    ``token_client`` sends the token requests (it may be the same client the auth is used on);
    ``clock`` is a monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        token_client: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        refresh_margin_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = token_client
        self._url = token_url
        self._basic = httpx.BasicAuth(client_id, client_secret)
        self._margin = refresh_margin_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        #: How many tokens were fetched (tests and the operator's "no refresh storm" check).
        self.refreshes = 0

    async def token(self) -> str:
        """A valid access token, refreshed first when it is missing or about to expire."""
        token = self._token
        if token is not None and self._clock() < self._expires_at:
            return token
        async with self._lock:
            # Whoever waited on the lock finds the token the first holder fetched.
            if self._token is not None and self._clock() < self._expires_at:
                return self._token
            return await self._fetch()

    async def renew_after_401(self, rejected: str) -> str:
        """A new token after ``rejected`` got a 401 — fetched once, however many requests saw the 401."""
        async with self._lock:
            if self._token is not None and self._token != rejected and self._clock() < self._expires_at:
                return self._token
            self._token = None
            return await self._fetch()

    async def _fetch(self) -> str:
        try:
            response = await self._client.post(
                self._url, data={"grant_type": "client_credentials"}, auth=self._basic
            )
        except httpx.HTTPError as exc:
            raise TokenUnavailable(f"token endpoint unreachable ({type(exc).__name__}); will retry") from None
        if response.status_code in (400, 401, 403):
            raise AuthConfigError(
                f"the portal's token endpoint refused the client credentials (HTTP {response.status_code}); "
                "check portal.auth.client_id and DVC_HUB_PORTAL__AUTH__CLIENT_SECRET"
            )
        if response.status_code != 200:
            raise TokenUnavailable(f"token endpoint answered HTTP {response.status_code}; will retry")
        try:
            payload = response.json()
            body = payload.get("response", payload) if isinstance(payload, dict) else {}
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenUnavailable("token endpoint answered without an access_token; will retry") from None
        # A short-lived token still gets used: never let the margin eat more than half its life.
        margin = min(self._margin, expires_in / 2)
        self._token = token
        self._expires_at = self._clock() + expires_in - margin
        self.refreshes += 1
        log.info("portal access token refreshed (valid %.0f s)", expires_in)
        return token

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send with the current token; after a 401, renew once and retry once."""
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()
        fresh = await self.renew_after_401(token)
        request.headers["Authorization"] = f"Bearer {fresh}"
        yield request


def sign(secret_key: str, method: str, target: str, timestamp: str, body: bytes) -> str:
    """The access-key signature (see the module docstring for the exact string signed)."""
    message = "\n".join((method.upper(), target, timestamp, hashlib.sha256(body).hexdigest()))
    return hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()


class AccessKeySignature(httpx.Auth):
    """``X-Access-Key`` / ``X-Timestamp`` / ``X-Signature`` request signing (module docstring)."""

    requires_request_body = True

    def __init__(self, access_key: str, secret_key: str, *, clock: Callable[[], float] = time.time) -> None:
        self._access_key = access_key
        self._secret = secret_key
        self._clock = clock

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Sign the request (the body is read first, so the signature covers it)."""
        timestamp = str(int(self._clock()))
        target = request.url.raw_path.decode("ascii")
        request.headers["X-Access-Key"] = self._access_key
        request.headers["X-Timestamp"] = timestamp
        request.headers["X-Signature"] = sign(self._secret, request.method, target, timestamp, request.content)
        yield request


def make_auth(settings: OAuth2Settings | AccessKeyAuth, client: httpx.AsyncClient) -> httpx.Auth:
    """The auth of ``settings.portal.auth``; ``client`` (with the portal's base URL) fetches tokens."""
    if isinstance(settings, AccessKeyAuth):
        return AccessKeySignature(settings.access_key, settings.secret_key.get_secret_value())
    return OAuth2ClientCredentials(
        client,
        settings.token_path,
        settings.client_id,
        settings.client_secret.get_secret_value(),
        refresh_margin_s=settings.refresh_margin_s,
    )
