"""The HTTP client every connector uses: retries, backoff, rate limit, size guards, honest errors.

:class:`SourceClient` wraps an **injected** :class:`httpx.AsyncClient` (tests pass one built on
:class:`httpx.MockTransport`; the runner shares one pooled client between instances) and adds
what every source needs:

- explicit per-request timeouts (``retry.timeout_s``);
- a per-source token bucket (``rate_limit_per_s``);
- capped exponential backoff with full jitter, and ``Retry-After`` honoured on 429/503;
- a 401 answered by one credential refresh and one retry, then :class:`InvalidAuth`;
- a body size limit, read as a stream, so a runaway answer cannot exhaust memory;
- a ``parse`` callback run inside the retry loop: a page that says "HTTP 200, error in the body"
  raises :class:`SourceUnavailable` and is retried like a 503, never taken as "no data".

    >>> import asyncio, httpx
    >>> def source(request: httpx.Request) -> httpx.Response:
    ...     return httpx.Response(200, json={"error_code": "0", "data": [1, 2]})
    >>> async def main() -> list[int]:
    ...     async with httpx.AsyncClient(transport=httpx.MockTransport(source)) as http:
    ...         client = SourceClient("http://src", http, NoAuthenticator())
    ...         return await client.fetch("/api", parse=lambda body: body.json()["data"])
    >>> asyncio.run(main())
    [1, 2]
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from connectors.sdk.auth import Authenticator, NoAuthenticator, retry_after_seconds
from connectors.sdk.errors import (
    BadPage,
    ConnectorError,
    InvalidAuth,
    SourceRejected,
    SourceUnavailable,
    page_error,
    scrub_url,
)
from hub.config import RetrySettings

__all__ = ["Body", "SourceClient", "TokenBucket", "json_depth", "parse_json"]

T = TypeVar("T")

#: Retry-After values above this are capped: a source asking for an hour is better re-asked.
MAX_RETRY_AFTER_S = 300.0
DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_MAX_DEPTH = 32

# Jitter is not security-sensitive; a plain PRNG is the right tool.
_JITTER = random.Random()  # noqa: S311


@dataclass(frozen=True)
class Body:
    """A successful (2xx) answer, fully read within the size limit."""

    status: int
    headers: httpx.Headers
    content: bytes
    url: str

    def json(self, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
        """The body as JSON; :class:`BadPage` (``invalid_json``/``too_deep``) otherwise."""
        return parse_json(self.content, max_depth=max_depth)


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative: a hostile value cannot blow the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_json(content: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse ``content`` as UTF-8 JSON with a nesting limit; :class:`BadPage` on any problem."""
    try:
        value = json.loads(content.decode("utf-8"))
    except RecursionError:
        raise BadPage("too_deep", "JSON nested beyond the parser's recursion limit", raw=content) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadPage("invalid_json", f"not valid UTF-8 JSON ({type(exc).__name__})", raw=content) from None
    if json_depth(value) > max_depth:
        raise BadPage("too_deep", f"JSON nested deeper than {max_depth} levels", raw=content)
    return value


class TokenBucket:
    """At most ``rate`` requests per second on average, bursts of ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a token."""
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._sleep((1.0 - self._tokens) / self.rate)


class SourceClient:
    """Requests to one source instance (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        auth: Authenticator | None = None,
        *,
        retry: RetrySettings | None = None,
        rate_limit_per_s: float = 10.0,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        bad_page_attempts: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.auth = auth or NoAuthenticator()
        self.retry = retry or RetrySettings()
        self.bucket = TokenBucket(rate_limit_per_s, sleep=sleep)
        self.max_body_bytes = max_body_bytes
        self.bad_page_attempts = bad_page_attempts
        self._sleep = sleep
        self._on_retry = on_retry
        #: Requests sent (every attempt counts), for tests and health.
        self.requests = 0

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter over a capped exponential; a larger ``Retry-After`` wins."""
        ceiling = min(self.retry.max_delay_s, self.retry.base_delay_s * 2**attempt)
        delay = _JITTER.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return delay

    async def fetch(
        self,
        path: str,
        *,
        parse: Callable[[Body], T],
        params: dict[str, Any] | None = None,
        method: str = "GET",
        max_attempts: int | None = None,
    ) -> T:
        """Request ``path`` and ``parse`` the body, retrying transient failures.

        Raises :class:`SourceUnavailable` after the last attempt, :class:`InvalidAuth`,
        :class:`SourceRejected`, or :class:`BadPage` when ``parse`` refused the page — or raised
        anything else (:func:`connectors.sdk.errors.page_error`) — ``bad_page_attempts`` times in a row.
        """
        attempts = max_attempts or self.retry.max_attempts
        refreshed = False
        bad_pages = 0
        attempt = 0
        while True:
            try:
                body = await self._send(method, path, params)
                try:
                    return parse(body)
                except ConnectorError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every parser failure is a bad page, by design
                    # Whatever a parser raises (RecursionError on a deeply nested body, KeyError,
                    # TypeError, UnicodeDecodeError...) is an unreadable page, retried then held.
                    raise page_error(exc, body.content, where=body.url) from None
            except InvalidAuth:
                if refreshed or not self.auth.refreshable:
                    raise
                # Exactly one refresh and one immediate retry: a revoked token is renewed,
                # a wrong secret fails fast instead of hammering the gateway.
                refreshed = True
                self.auth.invalidate()
                self._note("invalid_auth_refresh")
                continue
            except SourceUnavailable as exc:
                attempt += 1
                self._note(exc.reason)
                if attempt >= attempts:
                    raise
                await self._sleep(self.backoff(attempt, exc.retry_after))
            except BadPage as exc:
                bad_pages += 1
                self._note(f"bad_page_{exc.reason}")
                if bad_pages >= self.bad_page_attempts:
                    raise
                await self._sleep(self.backoff(bad_pages, None))

    def _note(self, reason: str) -> None:
        if self._on_retry is not None:
            self._on_retry(reason)

    async def _send(self, method: str, path: str, params: dict[str, Any] | None) -> Body:
        await self.bucket.acquire()
        url = self.base_url + path
        request = self.http.build_request(
            method, url, params=params, timeout=httpx.Timeout(self.retry.timeout_s),
            headers={"Accept": "application/json, application/xml;q=0.9"},
        )
        await self.auth.apply(request, self.http)
        where = scrub_url(request.url)
        self.requests += 1
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TimeoutException:
            raise SourceUnavailable(f"{method} {where} timed out after {self.retry.timeout_s}s",
                                    reason="timeout") from None
        except httpx.TransportError as exc:
            raise SourceUnavailable(f"{method} {where} failed: {type(exc).__name__} (connection refused, reset "
                                    "or dropped; check that the source is up and base_url is right)",
                                    reason="connect") from None
        try:
            status = response.status_code
            if status in (401, 403):
                raise InvalidAuth(f"{method} {where} answered HTTP {status}: the source refused the credentials; "
                                  "check the instance's auth settings (secrets come from the environment)")
            if status in (408, 425, 429) or status >= 500:
                raise SourceUnavailable(f"{method} {where} answered HTTP {status}", reason=f"http_{status}",
                                        retry_after=retry_after_seconds(response))
            if status >= 300:
                raise SourceRejected(f"{method} {where} answered HTTP {status}; check base_url and the "
                                     "connector's request parameters", status=status)
            content = await self._read_limited(response, where)
        except httpx.TimeoutException:
            raise SourceUnavailable(f"{method} {where} timed out while reading the body",
                                    reason="timeout") from None
        except httpx.TransportError as exc:
            raise SourceUnavailable(f"{method} {where} broke while reading the body ({type(exc).__name__})",
                                    reason="connect") from None
        finally:
            await response.aclose()
        return Body(status, response.headers, content, where)

    async def _read_limited(self, response: httpx.Response, where: str) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BadPage("too_large", f"{where} declared {declared} bytes, over max_body_bytes "
                          f"{self.max_body_bytes}; lower page_size or raise max_body_bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BadPage("too_large", f"{where} sent more than max_body_bytes {self.max_body_bytes}; "
                              "lower page_size or raise max_body_bytes", raw=b"".join(chunks)[:2000])
            chunks.append(chunk)
        return b"".join(chunks)
