"""Getting a push through an unreliable portal: backoff, circuit breaker, rate limit.

- :class:`Backoff` — capped exponential backoff with *full* jitter (a random wait in
  ``[0, min(cap, base·2^attempt)]``, so many clients that failed together do not retry together);
  a ``Retry-After`` from the portal wins when it asks for longer.
- :class:`CircuitBreaker` — after ``threshold`` consecutive failures the breaker *opens*: no request
  goes out for ``reset_s``; then it is *half-open* and lets exactly one probe through; the probe's
  success closes it, its failure opens it again. The caller simply awaits :meth:`CircuitBreaker.acquire`,
  so while the portal is down the push loop sleeps — no hot loop — and because the loop is asleep it
  consumes nothing new: uncommitted Kafka offsets are the queue, nothing waits in memory only.
- :class:`RateLimiter` — spaces requests to ``rate`` per second.
- :class:`Deliverer` — the retry loop that ties them together. It never gives up on a transient
  failure (the portal being down for an hour must not drop anything); only a :class:`Rejected`
  leaves it, and a gateway that answers "system error" (``-1``) to the same push more than
  ``max_attempts`` times in a row is treated as a rejection of that push.

Example (a fake clock, so it runs instantly)::

    >>> import asyncio
    >>> clock = FakeClock()
    >>> breaker = CircuitBreaker(threshold=2, reset_s=30, clock=clock.now, sleep=clock.sleep)
    >>> breaker.failure(); breaker.failure(); breaker.state
    'open'
    >>> asyncio.run(breaker.acquire()); breaker.state, clock.t
    ('half_open', 30.0)
    >>> breaker.success(); breaker.state
    'closed'
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from hub.sync.errors import Rejected, Transient

if TYPE_CHECKING:
    from hub.sync.metrics import SyncMetrics

log = logging.getLogger(__name__)

__all__ = ["Backoff", "CircuitBreaker", "Deliverer", "FakeClock", "RateLimiter"]

T = TypeVar("T")
BreakerState = Literal["closed", "half_open", "open"]
BREAKER_CODE: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}
#: Longest Retry-After honoured as given (a broken header must not stall the hub for a day).
MAX_RETRY_AFTER_S = 900.0


class FakeClock:
    """A manual monotonic clock whose ``sleep`` advances time instantly (tests, doctests)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def now(self) -> float:
        """The current fake time."""
        return self.t

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` and yield to the loop once."""
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


class Backoff:
    """Capped exponential backoff with full jitter, honouring ``Retry-After``."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)))
        wait = self._rng.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER_S))
        return wait


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures → half-open after ``reset_s`` → one probe."""

    def __init__(
        self,
        threshold: int,
        reset_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self._clock = clock
        self._sleep = sleep
        self._on_change = on_change
        self.state: BreakerState = "closed"
        self.failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        #: Every state change, in order (operators' and tests' history).
        self.transitions: list[BreakerState] = []

    def _set(self, state: BreakerState) -> None:
        if state != self.state:
            log.warning("portal circuit breaker %s -> %s", self.state, state)
            self.state = state
            self.transitions.append(state)
            if self._on_change is not None:
                self._on_change(state)

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when a request may go now)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self.reset_s - self._clock())

    async def acquire(self) -> None:
        """Wait until a request may go out (immediately while closed)."""
        while True:
            if self.state == "closed":
                return
            if self.state == "open":
                wait = self.retry_in()
                if wait > 0:
                    await self._sleep(wait)
                    continue
                self._set("half_open")
                self._probe_out = False
            if not self._probe_out:
                self._probe_out = True
                return
            # Another task's probe is out: wait for its verdict.
            await self._sleep(min(0.2, self.reset_s))

    def success(self) -> None:
        """The portal answered usefully: close."""
        self.failures = 0
        self._probe_out = False
        self._set("closed")

    def failure(self) -> None:
        """The portal failed (5xx, timeout, reset...): count, maybe open."""
        self._probe_out = False
        if self.state == "half_open":
            self._opened_at = self._clock()
            self._set("open")
            return
        self.failures += 1
        if self.state == "closed" and self.failures >= self.threshold:
            self._opened_at = self._clock()
            self._set("open")


class RateLimiter:
    """At most ``rate`` request starts per second, evenly spaced (no bursts to trip the gateway)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for the next free slot."""
        async with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            await self._sleep(start - now)


class Deliverer:
    """Run one push until the portal accepts it or rejects it for good.

    ``attempt(lost)`` performs one try; ``lost`` is True when an earlier try may have been stored
    but its answer was lost, so the attempt must settle that first (look-up, same Idempotency-Key).
    """

    def __init__(
        self,
        backoff: Backoff,
        breaker: CircuitBreaker,
        metrics: SyncMetrics | None = None,
        *,
        max_attempts: int = 12,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.backoff = backoff
        self.breaker = breaker
        self.metrics = metrics
        self.max_attempts = max_attempts
        self._sleep = sleep
        #: The last transient errors (kind, reason, detail), newest last, for ``push status``.
        self.last_errors: list[tuple[str, str, str]] = []

    async def run(self, kind: str, attempt: Callable[[bool], Awaitable[T]]) -> T:
        """Retry ``attempt`` through transient failures; return its result or raise ``Rejected``."""
        tries = 0
        system_errors = 0
        lost = False
        while True:
            await self.breaker.acquire()
            try:
                result = await attempt(lost)
            except Transient as exc:
                tries += 1
                lost = lost or exc.maybe_sent
                self.last_errors = [*self.last_errors[-9:], (kind, exc.reason, str(exc))]
                if self.metrics is not None:
                    self.metrics.retries.labels(kind=kind, reason=exc.reason).inc()
                if exc.reason == "429":
                    # The portal is up and only asks us to slow down: not a breaker failure.
                    self.breaker.success()
                else:
                    self.breaker.failure()
                if exc.reason == "error_body":
                    system_errors += 1
                    if system_errors > self.max_attempts:
                        raise Rejected("-1", f"the portal answered 'system error' {system_errors} times in a row "
                                       f"to this push: {exc}") from None
                wait = self.backoff.delay(min(tries - 1, self.max_attempts), exc.retry_after)
                log.info("portal %s push failed (%s: %s); retry %d in %.2f s", kind, exc.reason, exc, tries, wait)
                await self._sleep(wait)
                continue
            self.breaker.success()
            return result
