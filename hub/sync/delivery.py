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
- :class:`PriorityRateLimiter` — one such limit shared by the dossier and the statistics lane:
  dossiers first, statistics every slot dossiers leave free and a reserved share of the contended
  ones (so neither lane starves, and both together never exceed what the portal allows).
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
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from hub.sync.errors import Rejected, Transient

if TYPE_CHECKING:
    from hub.sync.metrics import SyncMetrics

log = logging.getLogger(__name__)

__all__ = ["Backoff", "CircuitBreaker", "Deliverer", "FakeClock", "Limiter", "PriorityRateLimiter", "RateLimiter"]

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

    def abandon(self) -> None:
        """A request ended without a verdict (cancelled): a half-open breaker lets the next probe through."""
        self._probe_out = False

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

    def hold(self, seconds: float) -> None:
        """No request starts for ``seconds`` (the portal answered 429 with a ``Retry-After``)."""
        self._next = max(self._next, self._clock() + min(seconds, MAX_RETRY_AFTER_S))

    async def acquire(self) -> None:
        """Wait for the next free slot."""
        async with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            await self._sleep(start - now)


class Limiter(Protocol):
    """Anything a request waits on before it starts (:class:`RateLimiter`, a lane of :class:`PriorityRateLimiter`)."""

    async def acquire(self) -> None:
        """Return when the request may start."""

    def hold(self, seconds: float) -> None:
        """Let no request start for ``seconds`` (a 429's ``Retry-After`` is meant for the whole client)."""


class PriorityRateLimiter:
    """``rate`` request starts per second, evenly spaced, shared by prioritised lanes.

    ``lanes`` are in priority order (``("dossier", "stats")``). A free slot goes to the first lane
    with a waiter; when the first and the second lane both wait, every ``round(1/reserved_share)``-th
    contended slot goes to the second, so statistics keep at least ``reserved_share`` of the rate
    and dossiers at least the rest. A lane alone takes every slot (the limiter is work-conserving).
    Take a lane's view with :meth:`lane` (a :class:`Limiter`).

        >>> clock = FakeClock()
        >>> limiter = PriorityRateLimiter(10, reserved_share=0.25, clock=clock.now, sleep=clock.sleep)
        >>> order: list[str] = []
        >>> async def take(lane: str) -> None:
        ...     await limiter.lane(lane).acquire()
        ...     order.append(lane)
        >>> async def both() -> None:
        ...     await asyncio.gather(*(take("stats") for _ in range(4)), *(take("dossier") for _ in range(8)))
        >>> asyncio.run(both()); "".join(x[0] for x in order), round(clock.t, 2)
        ('dddsdddsddss', 1.1)
    """

    def __init__(
        self,
        rate: float,
        *,
        lanes: tuple[str, str] = ("dossier", "stats"),
        reserved_share: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 1.0 / rate
        self._lanes = lanes
        self._every = max(2, round(1.0 / reserved_share))
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {lane: deque() for lane in lanes}
        self._contended_high = 0
        self._task: asyncio.Task[None] | None = None
        #: Slots granted per lane (tests, metrics).
        self.granted: dict[str, int] = dict.fromkeys(lanes, 0)

    def lane(self, name: str) -> Limiter:
        """The :class:`Limiter` of one lane."""
        if name not in self._waiters:
            raise ValueError(f"unknown lane {name!r}; the lanes are {self._lanes}")
        return _Lane(self, name)

    def hold(self, seconds: float) -> None:
        """No request of any lane starts for ``seconds`` (the portal answered 429 with a ``Retry-After``)."""
        self._next = max(self._next, self._clock() + min(seconds, MAX_RETRY_AFTER_S))

    def waiting(self, name: str) -> int:
        """Requests of lane ``name`` waiting for a slot."""
        return sum(1 for f in self._waiters[name] if not f.done())

    async def acquire(self, name: str) -> None:
        """Wait for a slot of lane ``name``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[name].append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._dispatch(), name="rate-limiter")
        await future  # cancelled with the waiter: the dispatcher skips it

    def _pick(self) -> str | None:
        for queue in self._waiters.values():
            while queue and queue[0].done():
                queue.popleft()
        high, low = self._lanes
        if self._waiters[high] and self._waiters[low]:
            if self._contended_high >= self._every - 1:
                self._contended_high = 0
                return low
            self._contended_high += 1
            return high
        if self._waiters[high]:
            return high
        return low if self._waiters[low] else None

    async def _dispatch(self) -> None:
        while True:
            if not any(not f.done() for queue in self._waiters.values() for f in queue):
                return
            now = self._clock()
            if self._next > now:
                await self._sleep(self._next - now)
                continue
            lane = self._pick()
            if lane is None:
                return
            self._waiters[lane].popleft().set_result(None)
            self.granted[lane] += 1
            self._next = max(now, self._next) + self._interval

    async def aclose(self) -> None:
        """Stop the dispatcher (waiters still queued are cancelled)."""
        for queue in self._waiters.values():
            for future in queue:
                future.cancel()
            queue.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _Lane:
    def __init__(self, limiter: PriorityRateLimiter, name: str) -> None:
        self._limiter = limiter
        self.name = name

    async def acquire(self) -> None:
        await self._limiter.acquire(self.name)

    def hold(self, seconds: float) -> None:
        self._limiter.hold(seconds)


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
            except Rejected:
                # The portal answered (it refused this push): it is up, and a half-open probe is over.
                self.breaker.success()
                raise
            except BaseException as exc:
                if not isinstance(exc, Transient):
                    # Cancelled (or a bug) mid-probe: let another push probe, or the lanes wait forever.
                    self.breaker.abandon()
                    raise
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
